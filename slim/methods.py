"""SLIM_Tr and SLIM_Val (paper Sec. 4.4): curate a split with the variant's curator (:mod:`slim.pipeline`), then train.

- SLIM_Tr curates the train split and trains a fresh model by ERM on the curated subset, for at least the
  authors' 50 epochs and at least as many SGD steps as ERM takes on the whole train split
  (``slim_tr_steps="match_erm"``), selected by val class-balanced accuracy (reads class labels only; a val
  split that is mostly one class does not reward predicting that class).
- SLIM_Val curates the val split and retrains only the last linear layer of the reference model f_r on the
  curated subset (DFR-style, ``harness.engine.last_layer``). C is chosen without group labels: by class-balanced
  accuracy on a held-out half of the curated subset's distinct instances (see :func:`choose_c`).

The attention budget is ``budget`` queries, or when that is None ``budget_share`` of the split (paper
Table 4's share, at least 2 queries per class). Where the split has object masks, every record gets
``details["diagnostics"]``: each stage measured against ground truth (:mod:`slim.diagnostics`).

Both reuse the cached f_r and its cached attention pass on the split, and cache the attention space
(UMAP) keyed on that pass and the UMAP settings, so a sweep over budgets and subset sizes repeats only the
cheap stages. The simulated oracle answers from the split's object masks and f_r's GradCAM maps; a person's
recorded answers replace it with the setting ``oracle=answers:PATH`` (written by ``python -m harness
annotate``), or any oracle can be passed (``SlimTr(hparams, oracle=...)``).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from harness.attention.gallery import save_cam_gallery
from harness.attention.passes import AttentionPass, attention_identity, attention_key, cached_attention
from harness.core.cache import load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.core.records import atomic_write_bytes
from harness.core.registry import CAMS
from harness.data.containers import Split
from harness.data.facts import FACTS, facts, is_synthetic
from harness.engine.context import RunContext
from harness.engine.features import reference_features
from harness.engine.hparams_registry import budget_from_share
from harness.engine.last_layer import C_GRID, fit_logistic, head_from, score_c_grid, with_head
from harness.engine.methods import Method, MethodResult, register
from harness.engine.settings import FLAG, Setting, count, fraction
from harness.engine.training import SELECTIONS, class_balanced_accuracy
from simulated_oracle import Answer, Oracle, RecordedOracle, SimulatedOracle, oracle_seed, save_log, summarize_log
from slim.ablations import Truth, ablation
from slim.analysis import FIG4_FILE, FIG4_KS, consistency_curves
from slim.annotation import split_budget
from slim.authors import AuthorsCurator, AuthorsSpace
from slim.curation import Curation
from slim.diagnostics import stage_diagnostics
from slim.pipeline import DEFAULT_SETTINGS, STAGE_SETTINGS, SlimCurator, make_curator, make_space, settings_from
from slim.plots import save_figures
from slim.space import AttentionSpace
from slim.threads import single_threaded

ATTENTION_METHOD, ATTENTION_TARGET = "gradcam", "label"  # GradCAM for the true class, as the authors do
TRUTH_BATCH = 512  # instances whose noise-free answers are computed at once
# SLIM_Tr trains for at least the authors' 50 epochs, and at least as many SGD steps as ERM takes on train.
SLIM_TR_MIN_EPOCHS = 50
# The ablations whose runs are rows of the accuracy tables beside SLIM's own: subsets of SLIM's size that replace
# its whole curation (the others replace one stage, and are read in the stage-diagnostics table)
ACCURACY_TABLE_ABLATIONS = ("none", "random_subset", "group_balanced_subset")
# The type and range of SLIM's settings: the stages' (slim.pipeline), then the run's: the budget (None: a share
# of the split), the subset, the figures, SLIM_Tr's training budget, who answers (the simulated oracle's noise,
# or a person's recorded answers) and which attention maps SLIM curates with (a name of
# harness.core.registry.CAMS, ATTENTION_METHOD unless set; no default lists it, so runs that leave it out keep
# their run ids; a run that sets it records it).
SETTINGS_SCHEMA: dict[str, Setting] = {
    **STAGE_SETTINGS,
    "budget": Setting(int, 1, nullable=True), "subset_frac": fraction(open_low=True), "figures": FLAG,
    "budget_share": fraction(open_low=True), "figure4": FLAG, "slim_tr_steps": count(1, None, "match_erm", "epochs"),
    "slim_tr_min_epochs": count(0), "oracle": Setting(str), "oracle_flip_prob": fraction(),
    "attention_method": Setting(str),
}


def slim_shares(split_index: int, dataset: str) -> tuple[float, float]:
    """(share of the split annotated, curated subset fraction) of paper Table 4 for ``dataset`` (datasets
    the paper has not use Waterbirds'): e.g. SLIM_Tr (``split_index`` 0) on Waterbirds 120 / 4795 = 2.5 %
    and 0.1; SLIM_Val is ``split_index`` 1."""
    known = facts(dataset) or FACTS["waterbirds"]
    budget, frac = known.slim_budgets[split_index]
    return budget / known.split_sizes[split_index], frac


def resolve_budget(hparams: dict[str, Any], labels: np.ndarray) -> tuple[int, dict[str, Any]]:
    """The attention budget of a run and how it came about: ``budget`` when set, else ``budget_share`` of
    the split (:func:`harness.engine.hparams_registry.budget_from_share`)."""
    n, classes = len(labels), len(np.unique(labels))
    if hparams.get("budget") is not None:
        return int(hparams["budget"]), {"rule": "budget", "budget": int(hparams["budget"]), "split_size": n}
    share = float(hparams["budget_share"])
    budget = budget_from_share(share, n, classes)
    return budget, {"rule": "budget_share", "share": share, "split_size": n, "budget": budget}


@dataclass
class SlimInputs:
    """What SLIM has before asking anyone: the split, f_r's attention pass on it (and that pass's identity,
    see ``harness.attention.passes.attention_identity``), its attention space and the curator."""

    split_name: str
    split: Split
    attention: AttentionPass
    identity: str
    fa: np.ndarray
    fabar: np.ndarray
    labels: np.ndarray
    embedding: np.ndarray
    space_mode: dict[str, Any]
    env_embedding: np.ndarray | None  # the environment space, for a variant that projects F_Abar too
    curator: SlimCurator | AuthorsCurator
    budget_rule: dict[str, Any]  # how the budget came about (see resolve_budget)

    def query_ids(self) -> np.ndarray:
        """The rows stage 2 asks the oracle about, in the order it asks."""
        return self.curator.query_ids(self.embedding, self.labels, self.env_embedding)


class _Slim(Method):
    """The curation both variants share; subclasses set ``name``, ``attention_split`` and train."""

    attention_split: ClassVar[str]
    split_index: ClassVar[int]  # 0 for SLIM_Tr, 1 for SLIM_Val in paper Table 4's pairs
    # SLIM's oracle ("simulated" or "answers:PATH") and the simulated one's flip probability, and the
    # attention method: no default lists them, so runs that leave them out keep their run ids.
    extra_settings = ("oracle", "oracle_flip_prob", "attention_method")
    settings_schema = SETTINGS_SCHEMA
    budgeted = True

    @classmethod
    def default_hparams(cls, dataset: str, scale: str) -> dict[str, Any]:
        """The pipeline's stage settings (beside their code in slim.pipeline) and the run's budget: at the
        paper scale on a real dataset Table 4's budget; otherwise ``budget`` None and the run asks
        ``budget_share`` of the split it curates (at least 2 queries per class), the paper's share."""
        share, frac = slim_shares(cls.split_index, dataset)
        known = facts(dataset)
        budget = known.slim_budgets[cls.split_index][0] if scale == "paper" and not is_synthetic(dataset) \
            and known else None
        return dict(DEFAULT_SETTINGS, budget=budget, budget_share=share, subset_frac=frac, figures=True,
                    figure4=True)

    @classmethod
    def adjust_hparams(cls, hp: dict[str, Any], given: dict[str, Any], dataset: str, scale: str) -> None:
        """An unknown ``attention_method`` or ``oracle`` fails here, before any work (their types are the
        schema's check), and so does an answers file that is missing or malformed: it is read here."""
        method = hp.get("attention_method", ATTENTION_METHOD)
        if isinstance(method, str):
            CAMS.get(method)
        oracle = hp.get("oracle", "simulated")
        path = answers_path(oracle) if isinstance(oracle, str) else None
        if path is not None:
            try:
                RecordedOracle.from_file(path)
            except HarnessError as exc:
                raise HarnessError(f"setting oracle={oracle!r}: {exc}") from None

    @classmethod
    def row_label(cls, hparams: dict[str, Any]) -> str:
        """'SLIM_Val', 'SLIM_Val (authors' code)', 'SLIM_Val: random subset', ...: one row per variant and per
        reference ablation."""
        variant, name = cls.variant(hparams)
        label = cls.title + (" (authors' code)" if variant == "authors" else "")
        return label if name == "none" else f"{label}: {name.replace('_', ' ')}"

    @classmethod
    def in_accuracy_tables(cls, hparams: dict[str, Any]) -> bool:
        """Both variants, and the two subsets of SLIM's size that replace its whole curation (a uniform one and
        a group-balanced one); the other ablations are stage diagnostics, in their own table."""
        return hparams.get("slim_ablation", "none") in ACCURACY_TABLE_ABLATIONS

    @classmethod
    def variant(cls, hparams: dict[str, Any]) -> tuple[str, str]:
        """(slim_variant, slim_ablation); ("paper", "none") for runs from before both existed."""
        return str(hparams.get("slim_variant", "paper")), str(hparams.get("slim_ablation", "none"))

    @property
    def attention_method(self) -> str:
        return str(self.hparams.get("attention_method", ATTENTION_METHOD))

    def __init__(self, hparams: dict[str, Any], oracle: Oracle | None = None) -> None:
        super().__init__(hparams)
        self.oracle = oracle

    def check_no_group_labels(self) -> None:
        selection = self.hparams.get("selection", "val_avg_acc")
        if SELECTIONS.get(selection):
            raise HarnessError(f"{self.name} reads no group labels: selection {selection!r} does; use "
                               "val_class_balanced_acc, val_avg_acc or last")
        if self.hparams.get("sampler", "shuffle") != "shuffle":
            raise HarnessError(f"{self.name} reads no group labels: use sampler=shuffle")

    def labels_used(self, result: MethodResult) -> dict[str, Any]:
        """The base declaration, plus what an ablation reads (``ground_truth``): a group-balanced subset
        reads the curated split's group labels."""
        used = super().labels_used(result)
        name = self.hparams.get("slim_ablation", "none")
        used["ground_truth"] = ablation(name).reads
        if ablation(name).subset == "group_balanced":
            used["train_group_labels" if self.attention_split == "train" else "val_group_labels"] = True
        return used

    def prepare(self, ctx: RunContext) -> SlimInputs:
        """Everything before the oracle answers (stages 1-2's inputs) for ``attention_split``: what
        ``curate`` runs on and what ``python -m harness annotate`` shows a person."""
        self.check_no_group_labels()
        name = self.attention_split
        split = ctx.benchmark.splits[name]
        labels = split.labels.numpy()
        total, budget_rule = resolve_budget(self.hparams, labels)
        budgets = split_budget(total, labels)
        subset_frac = float(self.hparams["subset_frac"])
        if subset_frac <= 0:
            raise HarnessError(f"subset_frac must be positive, got {subset_frac}")
        method = self.attention_method
        key = attention_key(ctx, name, method=method, target=ATTENTION_TARGET)
        attention = cached_attention(ctx, name, method=method, target=ATTENTION_TARGET)
        settings = settings_from(self.hparams)
        fa, fabar = attention.fa.numpy(), attention.fabar.numpy()
        curator = make_curator(budgets, max(1, round(subset_frac * len(split))), settings=settings,
                               random_state=ctx.seed)
        embedding, mode = cached_space(ctx, name, fa, curator.space(), method)
        env_space = curator.env_space()
        env_embedding = None if env_space is None else cached_space(ctx, name, fabar, env_space, method,
                                                                    features="fabar")[0]
        return SlimInputs(split_name=name, split=split, attention=attention, identity=attention_identity(key),
                          fa=fa, fabar=fabar, labels=labels, embedding=embedding, space_mode=mode,
                          env_embedding=env_embedding, curator=curator, budget_rule=budget_rule)

    def make_oracle(self, ctx: RunContext, inputs: SlimInputs) -> Oracle:
        """The oracle given at construction, else the run's ``oracle`` setting: "simulated" (default; its
        flip probability is ``oracle_flip_prob``, its noise seeded by (seed, dataset, split)) or
        "answers:PATH", a person's recorded answers, refused unless given for this run's attention pass."""
        budget = sum(inputs.curator.budget.values())
        path = answers_path(str(self.hparams.get("oracle", "simulated")))
        row = ablation(inputs.curator.settings["slim_ablation"])
        oracle = self.oracle
        if oracle is None and path is not None:
            oracle = RecordedOracle.from_file(path, budget=budget)
        if row.noise_free_oracle and oracle is not None:
            raise HarnessError("the noise_free_oracle ablation replaces the simulated oracle: give no other oracle")
        if isinstance(oracle, RecordedOracle):
            oracle.check_attention(inputs.identity, self.answered_where(ctx))
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
        flip = row.flip_prob(float(self.hparams.get("oracle_flip_prob", 0.05)))
        return SimulatedOracle(attention=lambda ids: attention.maps(ids, split.image_size),
                               masks=split.masks.numpy(), flip_prob=flip, budget=budget,
                               random_state=oracle_seed(ctx.seed, ctx.benchmark.name, inputs.split_name))

    def answered_where(self, ctx: RunContext) -> str:
        return f"{ctx.benchmark.name} {self.attention_split}, {ctx.arch} seed {ctx.seed}"

    def check_answers_pass(self, ctx: RunContext) -> None:
        """Refuse an answers file given for another attention pass now, before ``prepare`` trains the reference
        model (the pass's identity is a hash of its cache key, known before the pass is computed)."""
        path = answers_path(str(self.hparams.get("oracle", "simulated")))
        if self.oracle is None and path is not None:
            key = attention_key(ctx, self.attention_split, method=self.attention_method, target=ATTENTION_TARGET)
            RecordedOracle.from_file(path).check_attention(attention_identity(key), self.answered_where(ctx))

    def curate(self, ctx: RunContext) -> tuple[Curation, Oracle, dict[str, Any]]:
        """Run the pipeline on ``attention_split``; save the query log and figures in ``ctx.run_dir``.
        Returns the curation, the oracle and the record details (the diagnostics where masks exist)."""
        self.check_answers_pass(ctx)
        inputs = self.prepare(ctx)
        oracle = self.make_oracle(ctx, inputs)
        split, attention = inputs.split, inputs.attention
        truth = None
        if split.masks is not None:
            noise_free = SimulatedOracle(lambda ids: attention.maps(ids, split.image_size), split.masks.numpy())
            correct = np.concatenate([np.array(noise_free.true_answers(ids)) == Answer.YES
                                      for ids in np.array_split(np.arange(len(split)),
                                                                max(1, math.ceil(len(split) / TRUTH_BATCH)))])
            truth = Truth(correct=correct, groups=split.groups.numpy())
        curation = inputs.curator.curate(inputs.fa, inputs.fabar, inputs.labels, oracle, embedding=inputs.embedding,
                                         space_mode=inputs.space_mode, env_embedding=inputs.env_embedding,
                                         truth=truth)
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        save_log(oracle.log, ctx.run_dir / "queries.jsonl")
        if self.hparams.get("figures", True):
            save_figures(ctx.run_dir, curation, split.groups.numpy(), ctx.benchmark.group_names)
            if self.hparams.get("figure4", True):
                save_figure4(ctx, inputs.split_name, attention, inputs.embedding, inputs.curator.settings)
        # the curated rows in order, as a digest: two records with the same digest trained on the same subset
        subset = hashlib.sha256(np.asarray(curation.indices, dtype=np.int64).tobytes()).hexdigest()
        details: dict[str, Any] = {"budget_rule": inputs.budget_rule, "subset_sha256": subset}
        if truth is not None:
            with single_threaded():  # measurement only, but as repeatable as the stages it measures
                details["diagnostics"] = stage_diagnostics(curation, oracle.log, truth.correct, inputs.labels,
                                                           split.spurious.numpy(), truth.groups,
                                                           ctx.benchmark.num_groups,
                                                           empty=~attention.cams.flatten(1).any(1).numpy())
        return curation, oracle, details

    def result(self, ctx: RunContext, model: torch.nn.Module, selection: dict[str, Any], curation: Curation,
               oracle: Oracle, **details: Any) -> MethodResult:
        """The run's result; with figures on and test masks known, also ``cam_gallery.png``: f_r's worst
        test group under f_r's and this model's attention (paper Table 5, left)."""
        if self.hparams.get("figures", True) and ctx.benchmark.splits["test"].masks is not None:
            reference, _ = ctx.reference_model()
            save_cam_gallery(ctx.run_dir / "cam_gallery.png", {"ERM (f_r)": reference, self.title: model},
                             ctx.benchmark, ctx.device)
        return MethodResult(
            model=model, selection=selection,
            extra_training_fraction=len(curation.indices) / len(ctx.benchmark.splits["train"]),
            attention_queries=oracle.used, annotation_seconds=float(oracle.total_seconds),
            details={**curation.details(), "oracle": oracle_summary(ctx, oracle, self.attention_split), **details},
        )


def answers_path(spec: str) -> Path | None:
    """The answers file of an ``oracle`` setting: None for "simulated", PATH for "answers:PATH"."""
    if spec == "simulated":
        return None
    if spec.startswith("answers:") and spec != "answers:":
        return Path(spec.removeprefix("answers:"))
    raise HarnessError(f"unknown oracle {spec!r}: use 'simulated' or 'answers:PATH'")


def oracle_summary(ctx: RunContext, oracle: Oracle, split: str) -> dict[str, Any]:
    """The record's account of who answered (``summarize_log``), with a simulated oracle's noise seed."""
    summary = summarize_log(oracle.log)
    if isinstance(oracle, SimulatedOracle):
        summary["seed"] = oracle_seed(ctx.seed, ctx.benchmark.name, split)
    return summary


def cached_space(ctx: RunContext, split: str, features_array: np.ndarray, space: AttentionSpace | AuthorsSpace,
                 attention_method: str, features: str = "fa") -> tuple[np.ndarray, dict[str, Any]]:
    """The 2-D projection ``space`` of ``split``'s ``features`` ("fa": the attention space of stage 1;
    "fabar": the authors' environment space; "pooled": Fig. 4's original feature space), cached on the
    attention pass's identity, the projection's settings and which features; returns the embedding and
    what ran (``space.mode_``)."""
    key = dict(reference=ctx.reference_key(), split=split, attention=attention_method,
               target=ATTENTION_TARGET, device=torch.device(ctx.device).type, space=space.params(),
               features=features)

    def compute(path: Path) -> None:
        embedding = space.fit_transform(features_array)
        save_tensors(path, {"embedding": torch.from_numpy(embedding)}, meta=space.mode_)

    tensors, mode = load_tensors(ctx.cache.get_or_create("attention_space", key, "safetensors", compute))
    return tensors["embedding"].numpy(), mode


def save_figure4(ctx: RunContext, split: str, attention: Any, embedding: np.ndarray,
                 settings: dict[str, Any]) -> None:
    """Paper Fig. 4 for this run's split: neighbour consistency of the attention maps and the features
    under k-means of the original feature space (UMAP of the pooled features F) and of the attention space;
    ``figure4.png`` and its numbers ``figure4.json`` beside the record (``python -m harness figure4``
    averages them over runs)."""
    pooled = attention.pooled.numpy()
    original, _ = cached_space(ctx, split, pooled, make_space(settings, ctx.seed), attention.method,
                               features="pooled")
    curves = consistency_curves({"original feature space": original, "attention space": embedding},
                                {"attention": attention.cams.numpy(), "features": pooled}, FIG4_KS,
                                random_state=ctx.seed)
    curves.figure(title=f"Fig. 4: {ctx.benchmark.name} {split}").savefig(ctx.run_dir / "figure4.png", dpi=110)
    atomic_write_bytes(ctx.run_dir / FIG4_FILE, json.dumps(curves.to_json()).encode())


@register
class SlimTr(_Slim):
    """SLIM_Tr: ERM of a fresh model on the curated train subset."""

    name = "slim-tr"
    title = "SLIM_Tr"
    table_rank = 2
    attention_split = "train"
    split_index = 0

    @classmethod
    def default_hparams(cls, dataset: str, scale: str) -> dict[str, Any]:
        """Selection reads class labels only; a training budget in steps (see :func:`training_epochs`)."""
        return super().default_hparams(dataset, scale) | dict(
            selection="val_class_balanced_acc", slim_tr_steps="match_erm", slim_tr_min_epochs=SLIM_TR_MIN_EPOCHS)

    def fit(self, ctx: RunContext) -> MethodResult:
        curation, oracle, details = self.curate(ctx)
        hp = dict(self.hparams)
        hp["epochs"], budget = training_epochs(self.hparams, ctx.reference_hparams(),
                                               len(ctx.benchmark.splits["train"]), len(curation.indices))
        model = ctx.new_model()
        fit = ctx.train(model, hp, indices=curation.indices, desc=f"SLIM_Tr {ctx.arch} seed {ctx.seed}")
        return self.result(ctx, model, fit.selection, curation, oracle, history=fit.history,
                           training_budget=budget, **details)


def training_epochs(hparams: dict[str, Any], erm: dict[str, Any], n_train: int,
                    n_subset: int) -> tuple[int, dict[str, Any]]:
    """SLIM_Tr's epochs on the curated subset and how they were chosen (recorded).

    ``slim_tr_steps="match_erm"``: enough epochs that the SGD steps reach those of ERM's schedule on the
    whole train split, and at least ``slim_tr_min_epochs`` (the authors train up to 50); an integer: that
    many steps at least; "epochs": ``epochs`` as given.
    """
    rule = hparams.get("slim_tr_steps", "epochs")
    per_epoch = math.ceil(n_subset / int(hparams["batch_size"]))
    erm_steps = int(erm["epochs"]) * math.ceil(n_train / int(erm["batch_size"]))
    if rule == "epochs":
        epochs = int(hparams["epochs"])
    elif rule == "match_erm":
        epochs = max(int(hparams.get("slim_tr_min_epochs", 0)), math.ceil(erm_steps / per_epoch))
    elif isinstance(rule, int) and not isinstance(rule, bool) and rule > 0:
        epochs = math.ceil(rule / per_epoch)
    else:
        raise HarnessError(f"slim_tr_steps must be 'match_erm', 'epochs' or a positive integer, got {rule!r}")
    return epochs, {"rule": rule, "epochs": epochs, "steps": epochs * per_epoch, "erm_steps": erm_steps,
                    "steps_per_epoch": per_epoch}


@register
class SlimVal(_Slim):
    """SLIM_Val: last-layer retraining of the reference model on the curated val subset."""

    name = "slim-val"
    title = "SLIM_Val"
    table_rank = 3
    attention_split = "val"
    split_index = 1

    def fit(self, ctx: RunContext) -> MethodResult:
        curation, oracle, details = self.curate(ctx)
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
        selection = {"criterion": "curated_holdout_class_balanced_acc", "uses_val_group_labels": False,
                     "epoch": None, "C": c}
        return self.result(ctx, model, selection, curation, oracle,
                           last_layer={"C": c, "holdout_class_balanced_acc": holdout}, **details)


def choose_c(features: np.ndarray, labels: np.ndarray, rows: np.ndarray, num_classes: int, *,
             grid: tuple[float, ...] = C_GRID, random_state: int = 0) -> tuple[float, dict[str, float]]:
    """C for SLIM_Val's logistic regression, chosen without group labels.

    The distinct instances of the curated subset are split in halves per class (repeats of an instance stay
    on one side); each C of ``grid`` is fit on one half's rows (with their repeats) and scored by accuracy
    class-balanced accuracy (:func:`harness.engine.training.class_balanced_accuracy`) on the other half's distinct
    instances. The best wins, ties to the smaller C (stronger regularisation).
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
    scores = score_c_grid(features, labels, fit_rows, test_rows, num_classes=num_classes, grid=grid,
                          score=lambda preds, test: class_balanced_accuracy(preds, labels[test]),
                          random_state=random_state)
    best = max(grid, key=lambda c: (scores[c], -c))
    return best, {str(c): score for c, score in scores.items()}
