"""What a SLIM curation decided, stage by stage (:class:`Curation`), whichever variant ran it, and the
checks every curator makes before any work."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from slim.ablations import Truth, ablation
from slim.annotation import NO, NOT_SURE, YES
from slim.clustering import Clustering


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
    variant_details: dict[str, Any] = field(default_factory=dict)  # what only one variant decides

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
            **self.variant_details,
        }


def check_inputs(fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, subset_size: Any, ablation_name: str,
                 truth: Truth | None) -> None:
    """What every curator refuses before any work: rows that disagree, a subset size that is not a positive
    integer, an ablation that reads ground truth it is not given."""
    if not (len(fa) == len(fabar) == len(labels)):
        raise HarnessError(f"F_A, F_Abar and labels must have one row per instance, got "
                           f"{len(fa)}, {len(fabar)}, {len(labels)}")
    if isinstance(subset_size, bool) or not isinstance(subset_size, (int, np.integer)) or subset_size < 1:
        raise HarnessError(f"curated subset size must be a positive integer, got {subset_size!r}")
    if ablation(ablation_name).needs_truth and truth is None:
        raise HarnessError(f"the ablation {ablation_name!r} needs the split's ground truth")


def class_counts(labels: np.ndarray, indices: np.ndarray) -> dict[int, int]:
    """Rows of the subset per class (repeats counted)."""
    classes, counts = np.unique(labels[indices], return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, counts, strict=True)}
