"""Stages 4-5 (paper Secs. 4.2-4.3): spread the answers over the attention space, then screen.

Expansion: label spreading (Zhou et al. 2003) of the yes/no answers over the attention space, separately
per class, gives each instance a score in [0, 1], the propagated probability that the reference model's
attention on it is correct. Screening then keeps, per class, the instances with the highest scores.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

from harness.core.errors import HarnessError
from slim.annotation import NO, NOT_SURE, YES

# How a class's scores came about (recorded per class).
SPREAD, ALL_YES, ALL_NO, NO_ANSWERS = "spread", "all_yes", "all_no", "no_answers"
NEUTRAL_SCORE = 0.5


def symmetric_knn_graph(points: np.ndarray, n_neighbors: int) -> sparse.csr_matrix:
    """W + W^T of the k-nearest-neighbour connectivity graph W (no self loops): i and j are linked when
    either is among the other's k nearest, so the graph is undirected (Zhou et al. 2003 need W = W^T)."""
    knn = kneighbors_graph(points, n_neighbors=n_neighbors, mode="connectivity", include_self=False)
    return (knn + knn.T).tocsr()


def spread(graph: sparse.spmatrix, seeds: np.ndarray, alpha: float, *, max_iter: int = 1000,
           tol: float = 1e-6) -> np.ndarray:
    """Zhou et al. (2003): F <- alpha S F + (1 - alpha) Y with S = D^-1/2 W D^-1/2, iterated to a fixed point.

    ``graph`` is the symmetric affinity W (n, n), ``seeds`` the one-hot label matrix Y (n, k) (all-zero
    rows for unlabelled points). Returns F (n, k); a row stays all zero when its point's connected
    component holds no labelled point.
    """
    degree = np.asarray(graph.sum(1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree, dtype=float), where=degree > 0)
    s = sparse.diags(inv_sqrt) @ graph @ sparse.diags(inv_sqrt)
    y = np.asarray(seeds, dtype=float)
    f = y.copy()
    for _ in range(max_iter):
        updated = alpha * (s @ f) + (1 - alpha) * y
        if np.abs(updated - f).sum() < tol:
            return updated
        f = updated
    return f


class AttentionLabelSpreading:
    """Stage 4: per class, label spreading of the answers over the attention space.

    The graph is the symmetric k-nearest-neighbour graph W + W^T (:func:`symmetric_knn_graph`,
    ``n_neighbors`` capped below the class size), the iteration Zhou et al.'s (:func:`spread`); ``alpha`` =
    0.99 is their value (near 1: the neighbourhood decides, so an occasional wrong answer is outvoted).
    scikit-learn's ``knn`` kernel is not used: it links each point only to its own neighbours (a one-way
    graph), so most points are reached only through one-way chains or not at all. (The authors' rbf
    spreading is in :mod:`slim.authors`.)

    A score is F_yes / (F_yes + F_no). NOT_SURE answers are left unlabelled. Edge cases, per class:

    - only YES answers: every score is 1; only NO answers: every score is 0 (the authors' code marks them
      all correct) and a warning is recorded, as screening then drops the whole class;
    - no YES/NO answer at all: every score is 0.5 (nothing is known) and a warning is recorded;
    - instances the spreading does not reach (a graph component with no answer) get the class's prior:
      the share of YES among its YES/NO answers. They are counted in ``unreached_``; nothing is filled from
      a nearest answered neighbour.
    """

    def __init__(self, n_neighbors: int = 7, alpha: float = 0.99, max_iter: int = 1000, tol: float = 1e-6) -> None:
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, embedding: np.ndarray, labels: np.ndarray, query_ids: np.ndarray,
            answers: np.ndarray) -> AttentionLabelSpreading:
        """Sets ``scores_`` (N,), ``status_`` {class: how}, ``unreached_`` {class: n}, ``priors_``
        {class: the score an unreached instance gets}, ``warnings_``."""
        if not 0.0 <= self.alpha < 1.0:
            raise HarnessError(f"spread_alpha must be in [0, 1), got {self.alpha!r}")
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
        self.priors_: dict[int, float] = {}
        self.warnings_: list[str] = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            scores, status, unreached, prior = self._spread_class(embedding[members], given[members])
            self.scores_[members] = scores
            self.status_[int(c)], self.unreached_[int(c)], self.priors_[int(c)] = status, unreached, prior
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

    def _spread_class(self, points: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, str, int, float]:
        answered = given != NOT_SURE
        if not answered.any():
            return np.full(len(points), NEUTRAL_SCORE), NO_ANSWERS, 0, NEUTRAL_SCORE
        prior = float((given[answered] == YES).mean())
        if prior == 1.0:
            return np.ones(len(points)), ALL_YES, 0, prior
        if prior == 0.0:
            return np.zeros(len(points)), ALL_NO, 0, prior
        mass = self._knn_sym(points, given)
        total = mass.sum(1)
        unreached = total <= 0
        scores = np.divide(mass[:, 1], total, out=np.full(len(points), prior), where=~unreached)
        return scores, SPREAD, int(unreached.sum()), prior

    def _knn_sym(self, points: np.ndarray, given: np.ndarray) -> np.ndarray:
        """(n, 2) propagated mass of [NO, YES] on the symmetric knn graph."""
        graph = symmetric_knn_graph(points, min(self.n_neighbors, len(points) - 1))
        seeds = np.column_stack([given == NO, given == YES]).astype(float)
        return spread(graph, seeds, self.alpha, max_iter=self.max_iter, tol=self.tol)


def nearest_yes_distance(embedding: np.ndarray, query_ids: np.ndarray, answers: np.ndarray,
                         labels: np.ndarray) -> np.ndarray:
    """(N,) distance in the attention space from each instance to the nearest "yes" query of its class
    (infinite when its class has none): screening's tie-break."""
    embedding, labels = np.asarray(embedding, dtype=float), np.asarray(labels)
    yes = np.asarray(query_ids)[np.asarray(answers) == YES]
    out = np.full(len(labels), np.inf)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        anchors = yes[labels[yes] == c]
        if len(anchors):
            nearest = NearestNeighbors(n_neighbors=1).fit(embedding[anchors])
            out[members] = nearest.kneighbors(embedding[members])[0][:, 0]
    return out


class Screening:
    """Stage 5: keep the instances with the highest propagated scores.

    Per class, exactly the top ``1 - quantile`` share of the class
    (rounded half up; default quantile 0.5, the upper half), ordered by score, then by ``tiebreak`` (a
    smaller value first: the distance to the nearest "yes" query), then by row. Propagated scores tie
    often (0 and 1 exactly), so a cut at a score value would keep an arbitrary share. Of those, only
    scores above ``threshold`` are kept (default 0: an instance with no evidence of correct attention
    never is). ``quantile=None`` screens by the threshold alone.
    """

    def __init__(self, quantile: float | None = 0.5, threshold: float = 0.0) -> None:
        self.quantile = quantile
        self.threshold = threshold

    def fit_predict(self, scores: np.ndarray, labels: np.ndarray,
                    tiebreak: np.ndarray | None = None) -> np.ndarray:
        """Boolean keep mask (N,); sets ``cutoffs_`` {class: lowest kept score}, ``kept_`` {class: n} and
        ``kept_share_`` {class: kept / class size}; a class with nothing kept has cut-off None."""
        if self.quantile is not None and not 0.0 <= self.quantile <= 1.0:
            raise HarnessError(f"screening quantile must be in [0, 1] or None, got {self.quantile!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise HarnessError(f"screening threshold must be in [0, 1), got {self.threshold!r}")
        scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
        tiebreak = np.zeros(len(scores)) if tiebreak is None else np.asarray(tiebreak, dtype=float)
        keep = scores > self.threshold
        self.cutoffs_: dict[int, float | None] = {}
        self.kept_: dict[int, int] = {}
        self.kept_share_: dict[int, float] = {}
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if self.quantile is not None:
                n_top = int(np.floor((1 - self.quantile) * len(members) + 0.5))
                order = members[np.lexsort((members, tiebreak[members], -scores[members]))]
                top = np.zeros(len(scores), dtype=bool)
                top[order[:n_top]] = True
                keep[members] &= top[members]
            kept = members[keep[members]]
            self.cutoffs_[int(c)] = float(scores[kept].min()) if len(kept) else None
            self.kept_[int(c)] = int(len(kept))
            self.kept_share_[int(c)] = len(kept) / len(members)
        return keep
