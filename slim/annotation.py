"""Stages 2-3 (paper Sec. 4.2): which instances to show the annotator, and asking the oracle.

Per class, k-means in the attention space with k = that class's budget (diversity), and the instance
nearest each centre is queried (typicality). (The authors' code picks at random among the five nearest:
:mod:`slim.authors`.)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from harness.core.errors import HarnessError
from simulated_oracle import Answer, Oracle
from slim.clustering import nearest_to_centres

YES, NO, NOT_SURE = 1, 0, -1  # answer codes; NOT_SURE instances stay unlabelled in the expansion
_CODES = {Answer.YES: YES, Answer.NO: NO, Answer.NOT_SURE: NOT_SURE}


def split_budget(budget: int | Mapping[int, int], labels: np.ndarray) -> dict[int, int]:
    """Per-class query budgets {class: n} over the classes present in ``labels``.

    A mapping is taken as given (classes it omits get 0). A total is split equally over the classes
    present; the remainder goes one query each to the largest classes (ties: the lower class id), and
    every class must get at least one. A class budget larger than the class -> HarnessError.
    """
    classes, sizes = np.unique(np.asarray(labels), return_counts=True)
    size_of = {int(c): int(s) for c, s in zip(classes, sizes, strict=True)}
    if isinstance(budget, Mapping):
        unknown = sorted(set(int(c) for c in budget) - set(size_of))
        if unknown:
            raise HarnessError(f"budget names classes {unknown} that have no instance in the split")
        per_class = {c: int(budget.get(c, 0)) for c in size_of}
        if any(v < 0 for v in per_class.values()):
            raise HarnessError(f"class budgets must be non-negative, got {dict(budget)}")
    else:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise HarnessError(f"attention budget must be a non-negative integer, got {budget!r}")
        if budget < len(size_of):
            raise HarnessError(
                f"attention budget {budget} is smaller than the {len(size_of)} classes of the split: every "
                "class needs at least one query (raise --budget or give per-class budgets)"
            )
        base, extra = divmod(int(budget), len(size_of))
        largest_first = sorted(size_of, key=lambda c: (-size_of[c], c))
        per_class = {c: base + (c in largest_first[:extra]) for c in size_of}
    for c, n in per_class.items():
        if n > size_of[c]:
            raise HarnessError(f"class {c} has {size_of[c]} instances, fewer than its attention budget {n}")
    return per_class


class AnnotationSampler:
    """Stage 2: per class, k-means (k = the class's budget) in the attention space; query the nearest."""

    def __init__(self, budget: int | Mapping[int, int], n_init: int = 4, random_state: int = 0) -> None:
        self.budget = budget
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, embedding: np.ndarray, labels: np.ndarray) -> AnnotationSampler:
        """Sets ``budgets_`` {class: n} and ``query_ids_`` (rows to query, class by class)."""
        labels = np.asarray(labels)
        if len(embedding) != len(labels):
            raise HarnessError(f"attention space has {len(embedding)} rows, labels have {len(labels)}")
        self.budgets_ = split_budget(self.budget, labels)
        picked = []
        for c, k in sorted(self.budgets_.items()):
            members = np.flatnonzero(labels == c)
            picked.append(members[nearest_to_centres(embedding[members], k, n_init=self.n_init,
                                                     random_state=self.random_state)])
        self.query_ids_ = np.concatenate(picked).astype(np.int64)
        return self

    def fit_predict(self, embedding: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.fit(embedding, labels).query_ids_


def ask(oracle: Oracle, instance_ids: Sequence[int]) -> np.ndarray:
    """Stage 3: the oracle's answers to ``instance_ids`` as codes YES=1, NO=0, NOT_SURE=-1.

    One call for all ids: the oracle charges every answer and refuses a query beyond its budget.
    """
    ids = [int(i) for i in instance_ids]
    answers = oracle.query(ids)
    if len(answers) != len(ids):
        raise HarnessError(f"the oracle gave {len(answers)} answers to {len(ids)} queries")
    return np.array([_CODES[Answer(a)] for a in answers], dtype=np.int64)
