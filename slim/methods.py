"""SLIM_Tr and SLIM_Val (paper Sec. 4.4): curate a split with :class:`slim.pipeline.SlimCurator`, then train.

- SLIM_Tr curates the train split and trains a fresh model by ERM on the curated subset (selected by
  val average accuracy, which reads no group labels).
- SLIM_Val curates the val split and retrains only the last linear layer of the reference model f_r on the
  curated subset (DFR-style, ``harness.last_layer``). C is chosen without group labels: by accuracy on a
  held-out half of the curated subset's distinct instances (see :func:`choose_c`).

Both reuse the cached f_r and its cached attention pass on the split, and cache the attention space
(UMAP) keyed on that pass and the UMAP settings, so a sweep over budgets and subset sizes repeats only the
cheap stages. The simulated oracle answers from the split's object masks and f_r's GradCAM maps; a person's
recorded answers replace it with the setting ``oracle=answers:PATH`` (written by ``python -m harness
annotate``), or any oracle can be passed (``SlimTr(hparams, oracle=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from baselines.dfr import C_GRID
from harness.attention import AttentionPass, attention_identity, attention_key, cached_attention
from harness.cache import load_tensors, save_tensors
from harness.data import Split
from harness.errors import HarnessError
from harness.features import reference_features
from harness.last_layer import fit_logistic, head_from, with_head
from harness.methods import Method, MethodResult, RunContext, register
from harness.training import SELECTIONS
from simulated_oracle import Oracle, RecordedOracle, SimulatedOracle, save_log, summarize_log
from slim.annotation import split_budget
from slim.pipeline import Curation, SlimCurator, make_space, settings_from

ATTENTION_METHOD, ATTENTION_TARGET = "gradcam", "label"  # GradCAM for the true class, as the authors do


@dataclass
class SlimInputs:
    """What SLIM has before asking anyone: the split, f_r's attention pass on it (and that pass's identity,
    see ``harness.attention.attention_identity``), its attention space and the curator."""

    split_name: str
    split: Split
    attention: AttentionPass
    identity: str
    fa: np.ndarray
    fabar: np.ndarray
    labels: np.ndarray
    embedding: np.ndarray
    space_mode: dict[str, Any]
    curator: SlimCurator

    def query_ids(self) -> np.ndarray:
        """The rows stage 2 asks the oracle about, in the order it asks."""
        return self.curator.sampler(self.embedding, self.labels).query_ids_


class _Slim(Method):
    """The curation both variants share; subclasses set ``name``, ``attention_split`` and train."""

    attention_split: ClassVar[str]
    title: ClassVar[str]  # the name its figures show

    def __init__(self, hparams: dict[str, Any], oracle: Oracle | None = None) -> None:
        super().__init__(hparams)
        self.oracle = oracle

    def check_no_group_labels(self) -> None:
        if SELECTIONS.get(self.hparams.get("selection", "val_avg_acc")):
            raise HarnessError(f"{self.name} reads no group labels: selection {self.hparams['selection']!r} "
                               "does; use val_avg_acc or last")
        if self.hparams.get("sampler", "shuffle") != "shuffle":
            raise HarnessError(f"{self.name} reads no group labels: use sampler=shuffle")

    def prepare(self, ctx: RunContext) -> SlimInputs:
        """Everything before the oracle answers (stages 1-2's inputs) for ``attention_split``: what
        ``curate`` runs on and what ``python -m harness annotate`` shows a person."""
        self.check_no_group_labels()
        name = self.attention_split
        split = ctx.benchmark.splits[name]
        labels = split.labels.numpy()
        budgets = split_budget(self.hparams["budget"], labels)
        subset_frac = float(self.hparams["subset_frac"])
        if subset_frac <= 0:
            raise HarnessError(f"subset_frac must be positive, got {subset_frac}")
        key = attention_key(ctx, name, method=ATTENTION_METHOD, target=ATTENTION_TARGET)
        attention = cached_attention(ctx, name, method=ATTENTION_METHOD, target=ATTENTION_TARGET)
        settings = settings_from(self.hparams)
        fa, fabar = attention.fa.numpy(), attention.fabar.numpy()
        embedding, mode = cached_space(ctx, name, fa, settings)
        curator = SlimCurator(budgets, max(1, round(subset_frac * len(split))), settings=settings,
                              random_state=ctx.seed)
        return SlimInputs(split_name=name, split=split, attention=attention, identity=attention_identity(key),
                          fa=fa, fabar=fabar, labels=labels, embedding=embedding, space_mode=mode, curator=curator)

    def make_oracle(self, ctx: RunContext, inputs: SlimInputs) -> Oracle:
        """The oracle given at construction, else the run's ``oracle`` setting: "simulated" (default; its
        flip probability is ``oracle_flip_prob``, default 0.05) or "answers:PATH", a person's recorded
        answers, refused unless given for this run's attention pass."""
        budget = sum(inputs.curator.budget.values())
        spec = str(self.hparams.get("oracle", "simulated"))
        oracle = self.oracle
        if oracle is None and spec.startswith("answers:"):
            oracle = RecordedOracle.from_file(spec.removeprefix("answers:"), budget=budget)
        elif oracle is None and spec != "simulated":
            raise HarnessError(f"unknown oracle {spec!r}: use 'simulated' or 'answers:PATH'")
        if isinstance(oracle, RecordedOracle):
            oracle.check_attention(inputs.identity, f"{ctx.benchmark.name} {inputs.split_name}, {ctx.arch} "
                                                    f"seed {ctx.seed}")
        if oracle is not None:
            return oracle
        split = inputs.split
        if split.masks is None:
            raise HarnessError(
                f"the simulated oracle needs object masks, and the {inputs.split_name} split of "
                f"{ctx.benchmark.name!r} has none: supply masks or boxes for it (or a human oracle: "
                "python -m harness annotate, then --oracle answers:PATH)"
            )
        attention = inputs.attention
        return SimulatedOracle(attention=lambda ids: attention.maps(ids, split.image_size),
                               masks=split.masks.numpy(), flip_prob=float(self.hparams.get("oracle_flip_prob", 0.05)),
                               budget=budget, random_state=ctx.seed)

    def curate(self, ctx: RunContext) -> tuple[Curation, Oracle]:
        """Run the pipeline on ``attention_split``; save the query log and figures in ``ctx.run_dir``."""
        inputs = self.prepare(ctx)
        oracle = self.make_oracle(ctx, inputs)
        curation = inputs.curator.curate(inputs.fa, inputs.fabar, inputs.labels, oracle, embedding=inputs.embedding,
                                         space_mode=inputs.space_mode)
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        save_log(oracle.log, ctx.run_dir / "queries.jsonl")
        if self.hparams.get("figures", True):
            from slim.plots import save_figures

            save_figures(ctx.run_dir, curation, inputs.split.groups.numpy(), ctx.benchmark.group_names)
        return curation, oracle

    def result(self, ctx: RunContext, model: torch.nn.Module, selection: dict[str, Any], curation: Curation,
               oracle: Oracle, **details: Any) -> MethodResult:
        """The run's result; with figures on and test masks known, also ``cam_gallery.png``: f_r's worst
        test group under f_r's and this model's attention (paper Table 5, left)."""
        if self.hparams.get("figures", True) and ctx.benchmark.splits["test"].masks is not None:
            from harness.gallery import save_cam_gallery

            reference, _ = ctx.reference_model()
            save_cam_gallery(ctx.run_dir / "cam_gallery.png", {"ERM (f_r)": reference, self.title: model},
                             ctx.benchmark, ctx.device)
        return MethodResult(
            model=model, selection=selection,
            extra_training_fraction=len(curation.indices) / len(ctx.benchmark.splits["train"]),
            attention_queries=oracle.used, annotation_seconds=float(oracle.total_seconds),
            details={**curation.details(), "oracle": summarize_log(oracle.log), **details},
        )


def cached_space(ctx: RunContext, split: str, fa: np.ndarray,
                 settings: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The attention space of ``split`` (stage 1), cached on the attention pass's identity and the UMAP
    settings; returns the embedding and what ran (``AttentionSpace.mode_``)."""
    space = make_space(settings, ctx.seed)
    key = dict(reference=ctx.reference_key(), split=split, attention=ATTENTION_METHOD,
               target=ATTENTION_TARGET, device=torch.device(ctx.device).type, space=space.params())

    def compute(path: Path) -> None:
        embedding = space.fit_transform(fa)
        save_tensors(path, {"embedding": torch.from_numpy(embedding)}, meta=space.mode_)

    tensors, mode = load_tensors(ctx.cache.get_or_create("attention_space", key, "safetensors", compute))
    return tensors["embedding"].numpy(), mode


@register
class SlimTr(_Slim):
    """SLIM_Tr: ERM of a fresh model on the curated train subset."""

    name = "slim-tr"
    title = "SLIM_Tr"
    attention_split = "train"

    def fit(self, ctx: RunContext) -> MethodResult:
        curation, oracle = self.curate(ctx)
        model = ctx.new_model()
        fit = ctx.train(model, self.hparams, indices=curation.indices,
                        desc=f"SLIM_Tr {ctx.arch} seed {ctx.seed}")
        return self.result(ctx, model, fit.selection, curation, oracle, history=fit.history)


@register
class SlimVal(_Slim):
    """SLIM_Val: last-layer retraining of the reference model on the curated val subset."""

    name = "slim-val"
    title = "SLIM_Val"
    attention_split = "val"

    def fit(self, ctx: RunContext) -> MethodResult:
        curation, oracle = self.curate(ctx)
        features = reference_features(ctx, "val").numpy()
        labels = ctx.benchmark.splits["val"].labels.numpy()
        rows = curation.indices
        if len(np.unique(labels[rows])) < 2:
            raise HarnessError("the curated val subset holds a single class: last-layer retraining needs two "
                               f"(warnings: {'; '.join(curation.warnings) or 'none'})")
        c, holdout = choose_c(features, labels, rows, ctx.benchmark.num_classes, random_state=ctx.seed)
        scaler = StandardScaler().fit(features[rows])
        coef, intercept = fit_logistic(features[rows], labels[rows], C=c, num_classes=ctx.benchmark.num_classes,
                                   scaler=scaler, random_state=ctx.seed)
        reference, _ = ctx.reference_model()
        model = with_head(reference, head_from(coef, intercept, scaler))
        selection = {"criterion": "curated_holdout_acc", "uses_val_group_labels": False, "epoch": None,
                     "C": c}
        return self.result(ctx, model, selection, curation, oracle,
                           last_layer={"C": c, "holdout_acc": holdout})


def choose_c(features: np.ndarray, labels: np.ndarray, rows: np.ndarray, num_classes: int, *,
             grid: tuple[float, ...] = C_GRID, random_state: int = 0) -> tuple[float, dict[str, float]]:
    """C for SLIM_Val's logistic regression, chosen without group labels.

    The distinct instances of the curated subset are split in halves per class (repeats of an instance stay
    on one side); each C of ``grid`` is fit on one half's rows (with their repeats) and scored by accuracy
    on the other half's distinct instances. The best wins, ties to the smaller C (stronger regularisation).
    When a half would lack a class, the grid's first value is returned with no scores.
    """
    rng = np.random.default_rng(random_state)
    distinct = np.unique(rows)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[distinct]):
        members = rng.permutation(distinct[labels[distinct] == c])
        held[members[: len(members) // 2]] = True
    fit_rows, test_rows = rows[~held[rows]], distinct[held[distinct]]
    if len(np.unique(labels[fit_rows])) < 2 or len(test_rows) == 0:
        return grid[0], {}
    scaler = StandardScaler().fit(features[fit_rows])
    scores = {}
    for c in grid:
        coef, intercept = fit_logistic(features[fit_rows], labels[fit_rows], C=c, num_classes=num_classes,
                                   scaler=scaler, random_state=random_state)
        head = head_from(coef, intercept, scaler)
        scores[str(c)] = float((head.logits(features[test_rows]).argmax(1) == labels[test_rows]).mean())
    best = max(grid, key=lambda c: (scores[str(c)], -c))
    return best, scores
