"""Stages 4-5 (paper Secs. 4.2-4.3): spread the answers over the attention space, then screen.

Expansion: label spreading (Zhou et al. 2003, scikit-learn's ``LabelSpreading``) of the yes/no answers
over the attention space, separately per class, gives each instance a score in [0, 1], the propagated
probability that the reference model's attention on it is correct. Screening then keeps, per class, the
instances with high scores.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from sklearn.semi_supervised import LabelSpreading

from harness.errors import HarnessError
from slim.annotation import NO, NOT_SURE, YES

# How a class's scores came about (recorded per class).
SPREAD, ALL_YES, ALL_NO, NO_ANSWERS = "spread", "all_yes", "all_no", "no_answers"
NEUTRAL_SCORE = 0.5


class AttentionLabelSpreading:
    """Stage 4: per class, label spreading of the answers (kernel knn) over the attention space.

    The graph links each instance to its ``n_neighbors`` nearest neighbours (scikit-learn's default 7,
    capped below the class size); ``alpha`` = 0.99 is Zhou et al.'s value (0: keep the answers as given,
    near 1: let the neighbourhood decide, so an occasional wrong answer is outvoted). scikit-learn's default
    0.2 carries an answer only a few hops before the iteration's convergence test stops it.
    NOT_SURE answers are left unlabelled. Edge cases, decided per class:

    - only YES answers: every score is 1; only NO answers: every score is 0 (the authors' code marks them
      all correct) and a warning is recorded, as screening then drops the whole class;
    - no YES/NO answer at all: every score is 0.5 (nothing is known) and a warning is recorded;
    - instances the graph does not connect to any answer take the answer of the nearest answered
      instance of their class in the attention space (counted in ``unreached_``).
    """

    def __init__(self, n_neighbors: int = 7, alpha: float = 0.99, max_iter: int = 1000,
                 tol: float = 1e-3) -> None:
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, embedding: np.ndarray, labels: np.ndarray, query_ids: np.ndarray,
            answers: np.ndarray) -> AttentionLabelSpreading:
        """Sets ``scores_`` (N,), ``status_`` {class: how}, ``unreached_`` {class: n}, ``warnings_``."""
        embedding, labels = np.asarray(embedding, dtype=float), np.asarray(labels)
        query_ids, answers = np.asarray(query_ids, dtype=np.int64), np.asarray(answers, dtype=np.int64)
        if len(embedding) != len(labels) or len(query_ids) != len(answers):
            raise HarnessError("label spreading needs one label per point and one answer per query")
        if not np.isin(answers, [YES, NO, NOT_SURE]).all():
            raise HarnessError(f"answer codes must be {YES}, {NO} or {NOT_SURE}")
        given = np.full(len(labels), NOT_SURE, dtype=np.int64)
        given[query_ids] = answers
        self.scores_ = np.empty(len(labels))
        self.status_: dict[int, str] = {}
        self.unreached_: dict[int, int] = {}
        self.warnings_: list[str] = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            scores, status, unreached = self._spread_class(embedding[members], given[members])
            self.scores_[members] = scores
            self.status_[int(c)], self.unreached_[int(c)] = status, unreached
            if status == ALL_NO:
                self.warnings_.append(f"class {int(c)}: every answer was 'no'; all its instances score 0 and "
                                      "screening drops the class")
            elif status == NO_ANSWERS:
                self.warnings_.append(f"class {int(c)}: no yes/no answer; all its instances score "
                                      f"{NEUTRAL_SCORE} and none is screened out")
        return self

    def fit_transform(self, embedding: np.ndarray, labels: np.ndarray, query_ids: np.ndarray,
                      answers: np.ndarray) -> np.ndarray:
        return self.fit(embedding, labels, query_ids, answers).scores_

    def _spread_class(self, points: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, str, int]:
        answered = given != NOT_SURE
        if not answered.any():
            return np.full(len(points), NEUTRAL_SCORE), NO_ANSWERS, 0
        if (given[answered] == YES).all():
            return np.ones(len(points)), ALL_YES, 0
        if (given[answered] == NO).all():
            return np.zeros(len(points)), ALL_NO, 0
        model = LabelSpreading(kernel="knn", n_neighbors=min(self.n_neighbors, len(points) - 1),
                               alpha=self.alpha, max_iter=self.max_iter, tol=self.tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(points, given)
        dist = model.label_distributions_  # columns follow model.classes_ == [NO, YES]
        scores = dist[:, list(model.classes_).index(YES)].copy()
        unreached = dist.sum(1) == 0
        if unreached.any():
            answered_rows = np.flatnonzero(answered)
            nearest = NearestNeighbors(n_neighbors=1).fit(points[answered_rows])
            idx = nearest.kneighbors(points[unreached], return_distance=False)[:, 0]
            scores[unreached] = (given[answered_rows[idx]] == YES).astype(float)
        return scores, SPREAD, int(unreached.sum())


class Screening:
    """Stage 5: keep, per class, the instances whose score is at least the class's ``quantile`` of scores
    (default 0.5, the median; ties are kept, as propagated scores often tie) and above ``threshold``
    (default 0: an instance with no evidence of correct attention is never kept).

    ``quantile=None`` screens by the threshold alone.
    """

    def __init__(self, quantile: float | None = 0.5, threshold: float = 0.0) -> None:
        self.quantile = quantile
        self.threshold = threshold

    def fit_predict(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Boolean keep mask (N,); sets ``cutoffs_`` {class: score cut-off} and ``kept_`` {class: n}."""
        if self.quantile is not None and not 0.0 <= self.quantile <= 1.0:
            raise HarnessError(f"screening quantile must be in [0, 1] or None, got {self.quantile!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise HarnessError(f"screening threshold must be in [0, 1), got {self.threshold!r}")
        scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
        keep = scores > self.threshold
        self.cutoffs_: dict[int, float] = {}
        self.kept_: dict[int, int] = {}
        for c in np.unique(labels):
            members = labels == c
            if self.quantile is not None:
                cutoff = float(np.quantile(scores[members], self.quantile))
                keep &= ~members | (scores >= cutoff)
                self.cutoffs_[int(c)] = cutoff
            self.kept_[int(c)] = int((keep & members).sum())
        return keep
