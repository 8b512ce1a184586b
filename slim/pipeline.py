"""SLIM's data construction pipeline (paper Sec. 4, Fig. 2) on arrays: from F_A, F_Abar, class labels and
an oracle to the rows of a curated subset.

It reads no group or spurious labels: its only inputs are the reference model's attention-weighted and
inverse-attention-weighted features, the class labels, and the oracle's answers (an ablation alone may read
the :class:`Truth` it is given, and says so). Every setting lives in :data:`DEFAULT_SETTINGS` (the run's
hparams may override any of them); "auto" values come from the variant (:data:`VARIANTS`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.settings import AUTO, SETTINGS, Setting, count, positive
from simulated_oracle import Oracle
from slim.annotation import NO, NOT_SURE, YES, AnnotationSampler, ask
from slim.clustering import Clustering, Disentangler
from slim.expansion import AttentionLabelSpreading, Screening, nearest_yes_distance
from slim.sampling import SubgroupSampler, allocate
from slim.space import AttentionSpace
from slim.threads import single_threaded

DEFAULT_SETTINGS: dict[str, Any] = {
    # "paper" (the paper's equations, the default) or "authors" (their public code where it differs); every
    # "auto" setting below takes its value from the variant (see VARIANTS)
    "slim_variant": "paper",
    # stage 1, attention space (authors: n_neighbors=5, min_dist=0)
    "umap_neighbors": 5, "umap_min_dist": 0.0, "umap_pca_dims": "auto", "umap_fit_sample": "auto",
    # stages 2 and 7: which of the points nearest a k-means centre is picked (1: the nearest)
    "query_candidates": "auto", "pick_candidates": "auto",
    # stage 4, expansion: kernel knn_sym (W + W^T) or rbf (the authors'); alpha as in Zhou et al. 2003
    # (spread_gamma: the rbf kernel's, on standardised coordinates; the authors' notebook uses 10 and 5)
    "spread_kernel": "auto", "spread_neighbors": 7, "spread_alpha": "auto", "spread_gamma": 10.0,
    # stage 5, screening: class_top keeps the top (1 - quantile) share of each class with score > threshold;
    # pooled_median keeps median-centred scores above their pooled median (the authors')
    "screen_rule": "auto", "screen_quantile": 0.5, "screen_threshold": 0.0,
    # stage 6, disentangling: elbow over k_min..k_max, on PCA-reduced features or on 2-D UMAP embeddings
    "cluster_space": "auto", "cluster_k_min": 2, "cluster_k_max": 5, "cluster_pca_dims": 50,
    # stage 7: the distance average of eqs. (3) and (5), mean (paper) or median (authors)
    "sampling_distance": "auto",
    # stages 6-7 over each class's kept instances, the subset split equally over classes ("class"), or over
    # the whole kept set at once ("all", the paper's literal reading, which can leave a class out)
    "curation_scope": "class",
    # an ablation that reads ground truth (declared in the record's labels_used): see ABLATIONS
    "slim_ablation": "none",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"query_candidates": 1, "pick_candidates": 1, "spread_kernel": "knn_sym", "spread_alpha": 0.99,
              "screen_rule": "class_top", "cluster_space": "features", "sampling_distance": "mean"},
    "authors": {"query_candidates": 5, "pick_candidates": 3, "spread_kernel": "rbf", "spread_alpha": 1e-6,
                "screen_rule": "pooled_median", "cluster_space": "umap", "sampling_distance": "median"},
}
CLUSTER_SPACES = ("features", "umap")
# The schema of the settings above that harness.settings does not know (types and ranges, checked before work)
SETTINGS.update({
    "slim_variant": Setting(str, choices=tuple(VARIANTS)),
    "query_candidates": count(1, None, AUTO), "pick_candidates": count(1, None, AUTO),
    "spread_kernel": Setting(str, choices=("knn_sym", "rbf", AUTO)),
    "spread_alpha": Setting(float, 0.0, 1.0, open_low=True, open_high=True, words=(AUTO,)),
    "spread_gamma": positive(), "screen_rule": Setting(str, choices=("class_top", "pooled_median", AUTO)),
    "cluster_space": Setting(str, choices=(*CLUSTER_SPACES, AUTO)),
    "sampling_distance": Setting(str, choices=("mean", "median", AUTO)),
})
# Ablations: each replaces one stage by what ground truth says, to tell a failing stage from a failing premise.
ABLATIONS = {
    "none": None,
    "noise_free_oracle": "attention masks (an oracle without answer noise)",
    "true_screening": "attention masks (screening keeps exactly the instances with correct attention)",
    "random_subset": None,  # a uniform draw of the subset's size from the whole split: reads nothing
    "uniform_pick": None,  # SLIM's subgroups and quotas, each quota drawn uniformly inside its subgroup: reads nothing
    "uniform_kept": None,  # each class's share drawn uniformly from its kept instances (no subgroups): reads nothing
    "group_balanced_subset": "group labels of the curated split (equal rows per group)",
}
SETTINGS["slim_ablation"] = Setting(str, choices=tuple(ABLATIONS))


def settings_from(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline settings: defaults, overridden by any of the same keys in ``hparams``, with every
    "auto" value taken from ``slim_variant``."""
    return resolve({key: hparams.get(key, default) for key, default in DEFAULT_SETTINGS.items()})


def resolve(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with each "auto" value replaced by its variant's; unknown variants or ablations fail."""
    variant = settings.get("slim_variant", "paper")
    if variant not in VARIANTS:
        raise HarnessError(f"slim_variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if settings.get("slim_ablation", "none") not in ABLATIONS:
        raise HarnessError(f"slim_ablation must be one of {', '.join(ABLATIONS)}, got "
                           f"{settings.get('slim_ablation')!r}")
    if settings.get("cluster_space", "auto") not in (*CLUSTER_SPACES, "auto"):
        raise HarnessError(f"cluster_space must be one of {', '.join(CLUSTER_SPACES)}, got "
                           f"{settings['cluster_space']!r}")
    return {key: VARIANTS[variant].get(key, value) if value == "auto" and key in VARIANTS[variant] else value
            for key, value in {**DEFAULT_SETTINGS, **settings}.items()}


def make_space(settings: Mapping[str, Any], random_state: int) -> AttentionSpace:
    return AttentionSpace(n_neighbors=settings["umap_neighbors"], min_dist=settings["umap_min_dist"],
                          pca_dims=_none_or(settings["umap_pca_dims"]),
                          fit_sample=_none_or(settings["umap_fit_sample"]), random_state=random_state)


def _none_or(value: Any) -> Any:
    """Command-line overrides arrive as strings: 'none' means None."""
    return None if isinstance(value, str) and value.lower() == "none" else value


@dataclass
class Truth:
    """Ground truth an ablation may read (never the pipeline proper): per instance, whether the reference
    model's attention is correct (the noise-free oracle's answer) and its group."""

    correct: np.ndarray  # (N,) bool
    groups: np.ndarray  # (N,) int


@dataclass
class Curation:
    """Everything the pipeline decided, stage by stage."""

    embedding: np.ndarray  # (N, 2) attention space
    space_mode: dict[str, Any]
    settings: dict[str, Any]  # the resolved settings the stages ran with
    budgets: dict[int, int]  # queries per class
    query_ids: np.ndarray
    answers: np.ndarray  # codes YES / NO / NOT_SURE, one per query
    scores: np.ndarray  # (N,) propagated probability of correct attention
    spread_status: dict[int, str]
    unreached: dict[int, int]
    unreached_scores: dict[int, float]  # the score an unreached instance of the class gets (its answer prior)
    keep: np.ndarray  # (N,) bool, screening result
    cutoffs: dict[int, float | None]
    kept_share: dict[int, float]
    core: dict[str, Clustering]  # per scope ("all", or "class k"): clusters of the kept instances
    env: dict[str, Clustering]
    scope_rows: dict[str, np.ndarray]  # per scope: the rows of the split its clusterings describe
    quotas: dict[tuple[str, int, int], int]  # (scope, core cluster, env cluster) -> rows
    indices: np.ndarray  # rows of the split forming the curated subset (repeats allowed)
    repeats: int
    subset_classes: dict[int, int]  # rows of the subset per class (repeats counted)
    warnings: list[str] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        """JSON-ready facts for the run record (what paper Table 4 reports, and how the subset came about)."""
        n = len(self.scores)
        counts = {name: int((self.answers == code).sum()) for name, code in
                  (("yes", YES), ("no", NO), ("not_sure", NOT_SURE))}
        return {
            "slim_variant": self.settings["slim_variant"],
            "slim_ablation": self.settings["slim_ablation"],
            "settings": dict(self.settings),
            "queries": int(len(self.query_ids)),
            "query_fraction": len(self.query_ids) / n,
            "class_budgets": {str(c): b for c, b in self.budgets.items()},
            "answers": counts,
            "attention_space": self.space_mode,
            "spreading": {str(c): s for c, s in self.spread_status.items()},
            "unreached": {str(c): u for c, u in self.unreached.items()},
            "unreached_score": {str(c): v for c, v in self.unreached_scores.items()},
            "kept": int(self.keep.sum()),
            "kept_share": {str(c): v for c, v in self.kept_share.items()},
            "screening_cutoffs": {str(c): v for c, v in self.cutoffs.items()},
            "clusters": {scope: {"core": self.core[scope].k, "env": self.env[scope].k} for scope in self.core},
            "elbow_curves": {scope: {"core": {str(k): v for k, v in self.core[scope].curve.items()},
                                     "env": {str(k): v for k, v in self.env[scope].curve.items()}}
                             for scope in self.core},
            "quotas": {f"{scope}: {c},{e}": q for (scope, c, e), q in self.quotas.items()},
            "subgroup_sizes": {f"{scope}: {c},{e}": int(((self.core[scope].labels == c)
                                                         & (self.env[scope].labels == e)).sum())
                               for (scope, c, e) in self.quotas},
            "subset_size": int(len(self.indices)),
            "subset_distinct": int(len(np.unique(self.indices))),
            "subset_fraction": len(self.indices) / n,
            "repeats": int(self.repeats),
            "subset_classes": {str(c): n for c, n in self.subset_classes.items()},
            "warnings": list(self.warnings),
        }


class SlimCurator:
    """Runs the stages in order: space, annotation sampling, oracle, expansion, screening, disentangling,
    consistency-weighted sampling. ``budget`` is the attention budget (total or per class),
    ``subset_size`` the number of rows of the curated subset.

    Every stage runs single-threaded (:func:`slim.threads.single_threaded`), so the same inputs give the
    same curation whatever the thread count.
    """

    def __init__(self, budget: int | Mapping[int, int], subset_size: int, *,
                 settings: Mapping[str, Any] | None = None, random_state: int = 0) -> None:
        self.budget = budget
        self.subset_size = subset_size
        self.settings = resolve(settings or {})
        self.random_state = random_state

    def curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle, *,
               embedding: np.ndarray | None = None, space_mode: dict[str, Any] | None = None,
               truth: Truth | None = None) -> Curation:
        """Curate the split whose rows ``fa``, ``fabar`` and ``labels`` describe; ``oracle`` answers row ids.

        A precomputed attention space (``embedding``, with its ``space_mode``) skips stage 1. ``truth`` is
        read only by the ablations ``true_screening`` and ``group_balanced_subset`` (which require it).
        """
        with single_threaded():
            return self._curate(fa, fabar, labels, oracle, embedding, space_mode, truth)

    def _curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle,
                embedding: np.ndarray | None, space_mode: dict[str, Any] | None, truth: Truth | None) -> Curation:
        s, rs = self.settings, self.random_state
        fa, fabar, labels = np.asarray(fa), np.asarray(fabar), np.asarray(labels)
        if not (len(fa) == len(fabar) == len(labels)):
            raise HarnessError(f"F_A, F_Abar and labels must have one row per instance, got "
                               f"{len(fa)}, {len(fabar)}, {len(labels)}")
        size = self.subset_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise HarnessError(f"curated subset size must be a positive integer, got {size!r}")
        ablation = s["slim_ablation"]
        if ablation in ("true_screening", "group_balanced_subset") and truth is None:
            raise HarnessError(f"the ablation {ablation!r} needs the split's ground truth")
        if embedding is None:
            space = make_space(s, rs)
            embedding, space_mode = space.fit_transform(fa), space.mode_
        elif len(embedding) != len(fa):
            raise HarnessError(f"attention space has {len(embedding)} rows, F_A has {len(fa)}")
        sampler = self.sampler(embedding, labels)
        answers = ask(oracle, sampler.query_ids_)
        spreading = AttentionLabelSpreading(kernel=s["spread_kernel"], n_neighbors=s["spread_neighbors"],
                                            alpha=s["spread_alpha"], gamma=s["spread_gamma"], random_state=rs)
        scores = spreading.fit_transform(embedding, labels, sampler.query_ids_, answers)
        screening = Screening(quantile=_none_or(s["screen_quantile"]), threshold=s["screen_threshold"],
                              rule=s["screen_rule"])
        keep = screening.fit_predict(scores, labels,
                                     nearest_yes_distance(embedding, sampler.query_ids_, answers, labels))
        if ablation == "true_screening":
            keep = np.asarray(truth.correct, dtype=bool).copy()
        notes = list(spreading.warnings_)
        for c in np.unique(labels):  # screening never empties a class: the subset must represent every class
            if not keep[labels == c].any():
                keep[labels == c] = True
                notes.append(f"class {c}: screening kept no instance, so the class is kept unscreened")
        kept_share = {int(c): float(keep[labels == c].mean()) for c in np.unique(labels)}
        kept_rows = np.flatnonzero(keep)
        scopes = self._scopes(kept_rows, labels, int(size))
        if s["cluster_space"] == "umap":  # the authors cluster 2-D UMAP embeddings of F_A and F_Abar
            core_x, env_x, dims = embedding, make_space(s, rs).fit_transform(fabar), None
        else:
            core_x, env_x, dims = fa, fabar, _none_or(s["cluster_pca_dims"])
        disentangler = Disentangler(k_range=(s["cluster_k_min"], s["cluster_k_max"]), pca_dims=dims,
                                    random_state=rs)
        core, env, quotas, parts, repeats = {}, {}, {}, [], 0
        for scope, (rows, scope_size) in scopes.items():
            disentangler.fit(core_x[rows], env_x[rows])
            core[scope], env[scope] = disentangler.core_, disentangler.env_
            scope_quotas = allocate(core[scope].labels, core[scope].distances, env[scope].labels,
                                    env[scope].distances, scope_size, statistic=s["sampling_distance"])
            draw = SubgroupSampler(random_state=rs, candidates=s["pick_candidates"],
                                   pick="uniform" if ablation == "uniform_pick" else "centres").fit(
                np.hstack([core[scope].points, env[scope].points]), core[scope].labels, env[scope].labels,
                scope_quotas)
            quotas.update({(scope, c, e): q for (c, e), q in scope_quotas.items()})
            parts.append(rows[draw.indices_])
            repeats += draw.repeats_
        indices = np.concatenate(parts)
        if ablation == "uniform_kept":
            rng = np.random.default_rng(rs)
            indices = np.concatenate([np.sort(rng.choice(rows, size=n, replace=n > len(rows)))
                                      for rows, n in scopes.values()])
        if ablation in ("random_subset", "group_balanced_subset"):
            indices = ablation_subset(len(labels), len(indices), None if truth is None else truth.groups,
                                      ablation, rs)
        if ablation in ("uniform_kept", "random_subset", "group_balanced_subset"):
            repeats = len(indices) - len(np.unique(indices))
        classes, counts = np.unique(labels[indices], return_counts=True)
        return Curation(
            embedding=embedding, space_mode=dict(space_mode or {}), settings=dict(s), budgets=sampler.budgets_,
            query_ids=sampler.query_ids_, answers=answers, scores=scores, spread_status=spreading.status_,
            unreached=spreading.unreached_, unreached_scores=spreading.priors_, keep=keep,
            cutoffs=screening.cutoffs_, kept_share=kept_share, core=core, env=env,
            scope_rows={scope: rows for scope, (rows, _) in scopes.items()}, quotas=quotas,
            indices=indices, repeats=repeats,
            subset_classes={int(c): int(n) for c, n in zip(classes, counts, strict=True)},
            warnings=notes,
        )

    def sampler(self, embedding: np.ndarray, labels: np.ndarray) -> AnnotationSampler:
        """Stage 2 alone, fitted: the instances ``curate`` asks the oracle about (``query_ids_``)."""
        return AnnotationSampler(self.budget, random_state=self.random_state,
                                 candidates=self.settings["query_candidates"]).fit(embedding, labels)

    def _scopes(self, kept_rows: np.ndarray, labels: np.ndarray, size: int) -> dict[str, tuple[np.ndarray, int]]:
        """Where stages 6-7 run: each class's kept rows with an equal share of the subset (remainder to the
        lower class ids), or the whole kept set with all of it."""
        scope = self.settings["curation_scope"]
        if scope == "all":
            return {"all": (kept_rows, size)}
        if scope != "class":
            raise HarnessError(f"curation_scope must be 'class' or 'all', got {scope!r}")
        classes = np.unique(labels[kept_rows])
        share, extra = divmod(size, len(classes))
        return {f"class {c}": (kept_rows[labels[kept_rows] == c], share + (i < extra))
                for i, c in enumerate(classes) if share + (i < extra) > 0}


def ablation_subset(n: int, size: int, groups: np.ndarray | None, ablation: str, random_state: int) -> np.ndarray:
    """The subset an ablation puts in place of stages 6-7: ``size`` rows drawn uniformly without replacement
    from the n rows ("random_subset"), or an equal share of them from every group present (remainder to
    the lower group ids; with replacement only where a group is smaller than its share)."""
    rng = np.random.default_rng(random_state)
    if ablation == "random_subset":
        return np.sort(rng.choice(n, size=min(size, n), replace=False))
    present = np.unique(groups)
    share, extra = divmod(size, len(present))
    parts = []
    for i, g in enumerate(present):
        members, want = np.flatnonzero(groups == g), share + (i < extra)
        parts.append(rng.choice(members, size=want, replace=want > len(members)))
    return np.concatenate(parts)
