"""SLIM's data construction pipeline (paper Sec. 4, Fig. 2) on arrays: from F_A, F_Abar, class labels and
an oracle to the rows of a curated subset.

It reads no group or spurious labels: its only inputs are the reference model's attention-weighted and
inverse-attention-weighted features, the class labels, and the oracle's answers. Every setting lives in
:data:`DEFAULT_SETTINGS` (the run's hparams may override any of them).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import HarnessError
from simulated_oracle import Oracle
from slim.annotation import NO, NOT_SURE, YES, AnnotationSampler, ask
from slim.clustering import Clustering, Disentangler
from slim.expansion import AttentionLabelSpreading, Screening
from slim.sampling import SubgroupSampler, allocate
from slim.space import AttentionSpace

DEFAULT_SETTINGS: dict[str, Any] = {
    # stage 1, attention space (authors: n_neighbors=5, min_dist=0)
    "umap_neighbors": 5, "umap_min_dist": 0.0, "umap_pca_dims": "auto", "umap_fit_sample": "auto",
    # stage 4, expansion (LabelSpreading, knn kernel; alpha as in Zhou et al. 2003)
    "spread_neighbors": 7, "spread_alpha": 0.99,
    # stage 5, screening: keep scores >= the class quantile and > the threshold
    "screen_quantile": 0.5, "screen_threshold": 0.0,
    # stage 6, disentangling: elbow over k_min..k_max, on PCA-reduced features
    "cluster_k_min": 2, "cluster_k_max": 5, "cluster_pca_dims": 50,
    # stages 6-7 over each class's kept instances, the subset split equally over classes ("class"), or over
    # the whole kept set at once ("all", the paper's literal reading, which can leave a class out)
    "curation_scope": "class",
}


def settings_from(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline settings: defaults, overridden by any of the same keys in ``hparams``."""
    return {key: hparams.get(key, default) for key, default in DEFAULT_SETTINGS.items()}


def make_space(settings: Mapping[str, Any], random_state: int) -> AttentionSpace:
    return AttentionSpace(n_neighbors=settings["umap_neighbors"], min_dist=settings["umap_min_dist"],
                          pca_dims=_none_or(settings["umap_pca_dims"]),
                          fit_sample=_none_or(settings["umap_fit_sample"]), random_state=random_state)


def _none_or(value: Any) -> Any:
    """Command-line overrides arrive as strings: 'none' means None."""
    return None if isinstance(value, str) and value.lower() == "none" else value


@dataclass
class Curation:
    """Everything the pipeline decided, stage by stage."""

    embedding: np.ndarray  # (N, 2) attention space
    space_mode: dict[str, Any]
    budgets: dict[int, int]  # queries per class
    query_ids: np.ndarray
    answers: np.ndarray  # codes YES / NO / NOT_SURE, one per query
    scores: np.ndarray  # (N,) propagated probability of correct attention
    spread_status: dict[int, str]
    unreached: dict[int, int]
    keep: np.ndarray  # (N,) bool, screening result
    cutoffs: dict[int, float]
    core: dict[str, Clustering]  # per scope ("all", or "class k"): clusters of the kept instances
    env: dict[str, Clustering]
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
            "queries": int(len(self.query_ids)),
            "query_fraction": len(self.query_ids) / n,
            "class_budgets": {str(c): b for c, b in self.budgets.items()},
            "answers": counts,
            "attention_space": self.space_mode,
            "spreading": {str(c): s for c, s in self.spread_status.items()},
            "unreached": {str(c): u for c, u in self.unreached.items()},
            "kept": int(self.keep.sum()),
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
            "subset_fraction": len(self.indices) / n,
            "repeats": int(self.repeats),
            "subset_classes": {str(c): n for c, n in self.subset_classes.items()},
            "warnings": list(self.warnings),
        }


class SlimCurator:
    """Runs the stages in order: space, annotation sampling, oracle, expansion, screening, disentangling,
    consistency-weighted sampling. ``budget`` is the attention budget (total or per class),
    ``subset_size`` the number of rows of the curated subset."""

    def __init__(self, budget: int | Mapping[int, int], subset_size: int, *,
                 settings: Mapping[str, Any] | None = None, random_state: int = 0) -> None:
        self.budget = budget
        self.subset_size = subset_size
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.random_state = random_state

    def curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle, *,
               embedding: np.ndarray | None = None, space_mode: dict[str, Any] | None = None) -> Curation:
        """Curate the split whose rows ``fa``, ``fabar`` and ``labels`` describe; ``oracle`` answers row ids.

        A precomputed attention space (``embedding``, with its ``space_mode``) skips stage 1.
        """
        s, rs = self.settings, self.random_state
        fa, fabar, labels = np.asarray(fa), np.asarray(fabar), np.asarray(labels)
        if not (len(fa) == len(fabar) == len(labels)):
            raise HarnessError(f"F_A, F_Abar and labels must have one row per instance, got "
                               f"{len(fa)}, {len(fabar)}, {len(labels)}")
        size = self.subset_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise HarnessError(f"curated subset size must be a positive integer, got {size!r}")
        if embedding is None:
            space = make_space(s, rs)
            embedding, space_mode = space.fit_transform(fa), space.mode_
        elif len(embedding) != len(fa):
            raise HarnessError(f"attention space has {len(embedding)} rows, F_A has {len(fa)}")
        sampler = self.sampler(embedding, labels)
        answers = ask(oracle, sampler.query_ids_)
        spreading = AttentionLabelSpreading(n_neighbors=s["spread_neighbors"], alpha=s["spread_alpha"])
        scores = spreading.fit_transform(embedding, labels, sampler.query_ids_, answers)
        screening = Screening(quantile=_none_or(s["screen_quantile"]), threshold=s["screen_threshold"])
        keep = screening.fit_predict(scores, labels)
        notes = list(spreading.warnings_)
        for c in np.unique(labels):  # screening never empties a class: the subset must represent every class
            if not keep[labels == c].any():
                keep[labels == c] = True
                notes.append(f"class {c}: screening kept no instance, so the class is kept unscreened")
        kept_rows = np.flatnonzero(keep)
        scopes = self._scopes(kept_rows, labels, int(size))
        disentangler = Disentangler(k_range=(s["cluster_k_min"], s["cluster_k_max"]),
                                    pca_dims=_none_or(s["cluster_pca_dims"]), random_state=rs)
        core, env, quotas, parts, repeats = {}, {}, {}, [], 0
        for scope, (rows, scope_size) in scopes.items():
            disentangler.fit(fa[rows], fabar[rows])
            core[scope], env[scope] = disentangler.core_, disentangler.env_
            scope_quotas = allocate(core[scope].labels, core[scope].distances, env[scope].labels,
                                    env[scope].distances, scope_size)
            draw = SubgroupSampler(random_state=rs).fit(np.hstack([core[scope].points, env[scope].points]),
                                                        core[scope].labels, env[scope].labels, scope_quotas)
            quotas.update({(scope, c, e): q for (c, e), q in scope_quotas.items()})
            parts.append(rows[draw.indices_])
            repeats += draw.repeats_
        indices = np.concatenate(parts)
        classes, counts = np.unique(labels[indices], return_counts=True)
        return Curation(
            embedding=embedding, space_mode=dict(space_mode or {}), budgets=sampler.budgets_,
            query_ids=sampler.query_ids_, answers=answers, scores=scores, spread_status=spreading.status_,
            unreached=spreading.unreached_, keep=keep, cutoffs=screening.cutoffs_, core=core, env=env,
            quotas=quotas, indices=indices, repeats=repeats,
            subset_classes={int(c): int(n) for c, n in zip(classes, counts, strict=True)},
            warnings=notes,
        )

    def sampler(self, embedding: np.ndarray, labels: np.ndarray) -> AnnotationSampler:
        """Stage 2 alone, fitted: the instances ``curate`` asks the oracle about (``query_ids_``)."""
        return AnnotationSampler(self.budget, random_state=self.random_state).fit(embedding, labels)

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
