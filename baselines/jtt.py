"""JTT, Just Train Twice (Liu et al., ICML 2021): upweight what a briefly trained ERM model gets wrong.

Stage 1 trains an identification model by ERM for T epochs (hp ``jtt_epochs``); the error set E is the
train instances it misclassifies in the training pass of epoch T, as the authors' code logs it: each row's
prediction is the argmax of the logits of the forward pass that trained on it (train mode, with the batch's
augmentation if any, before that batch's step), not of an eval pass after the epoch. Stage 2 retrains from
the same starting weights on the train set with every instance of E repeated lambda more times (hp
``jtt_lambda``), i.e. an effective weight of lambda + 1: the authors' code concatenates the train set with
``up_weight`` extra copies of the error points, and their lambda_up is that ``up_weight``. Stage 2 is
selected by val worst-group accuracy, the only place JTT reads group labels.

Both stages use the run's lr, weight decay, batch size and optimiser, as in the authors' commands; at the
paper scale on real data they train without augmentation and with CelebA's batch size 64, as the authors'
code does. One difference from their code: the shared training loop anneals the learning rate (cosine) over
each stage's own epochs, where the authors keep it constant and take the epoch-T predictions of a longer run.
Stage 1 is cached per (data, arch, seed, model choices, stage-1 settings), so a sweep over lambda or
over stage-2 settings trains it once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.cache import load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.engine.context import MODEL_KEYS, TRAIN_KEYS, RunContext
from harness.engine.hparams_registry import literature
from harness.engine.methods import Method, MethodResult, register
from harness.engine.settings import count


def upweighted_indices(num_train: int, error_set: np.ndarray, lam: int) -> np.ndarray:
    """Training rows of one stage-2 epoch: every row once, plus ``lam`` more copies of each error row."""
    return np.concatenate([np.arange(num_train), np.repeat(np.asarray(error_set, dtype=np.int64), lam)])


def upweight_factor(value: Any) -> int:
    """lambda as a non-negative integer (copies must be whole)."""
    whole = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if not whole or value < 0:
        raise HarnessError(f"jtt_lambda must be a non-negative whole number, got {value!r}")
    return int(value)


def stage1_hparams(hp: dict[str, Any]) -> dict[str, Any]:
    """The identification model's settings: the run's training settings, T epochs, shuffled, last epoch."""
    epochs = hp.get("jtt_epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise HarnessError(f"jtt_epochs must be a positive whole number of epochs, got {epochs!r}")
    stage1 = {k: hp[k] for k in TRAIN_KEYS if k in hp}
    stage1.update(epochs=epochs, sampler="shuffle", selection="last")
    stage1.update({k: hp[k] for k in MODEL_KEYS if k in hp})
    return stage1


def stage1_predictions(ctx: RunContext, hp: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Train-set predictions of the stage-1 ERM model, logged during its last epoch's training pass (trained
    once per key, then read from the cache)."""
    stage1 = stage1_hparams(hp)

    def train(path: Path) -> None:
        predictions = torch.empty(len(ctx.benchmark.splits["train"]), dtype=torch.long)

        def log_last_epoch(epoch: int, rows: torch.Tensor, logits: torch.Tensor) -> None:
            if epoch == stage1["epochs"]:  # a shuffled epoch over all rows: each row is seen once
                predictions[rows.cpu()] = logits.argmax(1).cpu()

        result = ctx.train(ctx.new_model(), stage1, on_batch=log_last_epoch,
                           desc=f"JTT stage 1 ({stage1['epochs']} epochs) seed {ctx.seed}")
        save_tensors(path, {"predictions": predictions}, meta={"history": result.history})

    key = dict(ctx.reference_key(), hparams=stage1, stage="jtt-stage1", predictions="last epoch's training pass")
    path = ctx.cache.get_or_create("jtt_stage1", key, "safetensors", train)
    tensors, meta = load_tensors(path)
    return tensors["predictions"].numpy(), meta


# JTT (Liu et al. 2021, Appx. / authors' README and code): both stages share lr, wd and batch size; stage 1
# runs T = jtt_epochs epochs; the error set is repeated jtt_lambda more times in stage 2; no augmentation.
PUBLISHED = {
    "waterbirds": dict(epochs=300, lr=1e-5, weight_decay=1.0, batch_size=64, jtt_epochs=60, jtt_lambda=100,
                       augment=False),
    "celeba": dict(epochs=50, lr=1e-5, weight_decay=0.1, batch_size=64, jtt_epochs=1, jtt_lambda=50, augment=False),
}
# Synthetic presets: a briefly trained identification model (a few epochs of the ERM schedule) and a
# smaller upweight, since the tiny/quick splits give error sets of roughly 10-20% rather than a few %.
SYNTHETIC = {"tiny": dict(jtt_epochs=2, jtt_lambda=10), "quick": dict(jtt_epochs=3, jtt_lambda=10),
             "paper": dict(jtt_epochs=3, jtt_lambda=10)}


@register
class JTT(Method):
    name = "jtt"
    title = "JTT"
    needs_val_group_labels = True  # model selection by val worst-group accuracy
    settings_schema = {"jtt_epochs": count(1), "jtt_lambda": count(0)}
    table_rank = 1

    @classmethod
    def default_hparams(cls, dataset: str, scale: str) -> dict[str, Any]:
        paper = literature(dataset, scale)
        return dict(PUBLISHED[paper] if paper else SYNTHETIC[scale], selection="val_worst_group_acc")

    def fit(self, ctx: RunContext) -> MethodResult:
        lam = upweight_factor(self.hparams.get("jtt_lambda"))
        train = ctx.benchmark.splits["train"]
        preds, stage1_meta = stage1_predictions(ctx, self.hparams)
        error_set = np.flatnonzero(preds != train.labels.numpy())
        indices = upweighted_indices(len(train), error_set, lam)

        model = ctx.new_model()
        result = ctx.train(model, self.hparams, indices=indices,
                           desc=f"JTT stage 2 (lambda {lam}, |E| {len(error_set)}) seed {ctx.seed}")
        n = len(train)
        # Reported only (JTT never trains on it): how the error set splits over the train groups.
        composition = np.bincount(train.groups[torch.as_tensor(error_set)].numpy(),
                                  minlength=ctx.benchmark.num_groups)
        details = {
            "jtt_epochs": self.hparams["jtt_epochs"],
            "jtt_lambda": lam,
            "error_set_size": int(len(error_set)),
            "error_set_fraction": len(error_set) / n,
            "error_set_groups": dict(zip(ctx.benchmark.group_names, composition.tolist(), strict=True)),
            "stage1_history": stage1_meta.get("history", []),
            "history": result.history,
            # The paper's "add. training cost" (Table 2, JTT 5x-6x): the upsampled train set's size in
            # train-set sizes, (N + lambda |E|) / N. Epoch-weighted passes are kept here for compute.
            "training_passes": {"stage1": float(self.hparams["jtt_epochs"]),
                                "stage2": result.samples_seen / n},
        }
        return MethodResult(model=model, selection=result.selection,
                            extra_training_fraction=len(indices) / n, details=details)
