"""SLIM stages 1-6 on small arrays: attention space, budgets, annotation sampling, expansion, screening,
the elbow rule and disentangling."""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import HarnessError
from simulated_oracle import Answer
from slim.annotation import NO, NOT_SURE, YES, AnnotationSampler, ask, split_budget
from slim.clustering import Disentangler, cluster_by_elbow, elbow, nearest_to_centres
from slim.expansion import (
    ALL_NO,
    ALL_YES,
    NO_ANSWERS,
    SPREAD,
    AttentionLabelSpreading,
    Screening,
    nearest_yes_distance,
    symmetric_knn_graph,
)
from slim.space import AttentionSpace, seeded_arpack


def blobs(centres, per_blob: int, spread: float, seed: int = 0) -> np.ndarray:
    """``per_blob`` points around each centre, in pairs placed symmetrically, so each blob's mean is exactly
    its centre, which is itself the blob's first row (and its last too when ``per_blob`` is even)."""
    rng = np.random.default_rng(seed)
    out = []
    for centre in np.asarray(centres, dtype=float):
        half = rng.normal(scale=spread, size=((per_blob - 1) // 2, len(centre)))
        extra = [centre] * (per_blob - 1 - 2 * len(half))
        out.append(np.vstack([centre, centre + half, centre - half, *extra]))
    return np.vstack(out)


# ---- elbow -------------------------------------------------------------------------------------------------
def test_elbow_on_hand_made_curves():
    ks = [1, 2, 3, 4, 5]
    # Scaled: y = 1, .205, .091, .034, 0 against the chord 1, .75, .5, .25, 0 -> largest gap (.545) at k = 2.
    assert elbow(ks, [100, 30, 20, 15, 12]) == 2
    # y = 1, .886, .091, .034, 0 -> gaps 0, -.136, .409, .216, 0 -> k = 3.
    assert elbow(ks, [100, 90, 20, 15, 12]) == 3
    assert elbow(ks, [100, 90, 20, 15, 12], candidates=[4, 5]) == 4  # restricted to the candidates
    assert elbow(ks, [5, 4, 3, 2, 1]) == 1  # a straight line has no elbow: the smallest candidate
    assert elbow(ks, [10, 9.9, 9.5, 8, 0]) == 1  # bends the other way (concave): no elbow either
    with pytest.raises(HarnessError, match="one inertia per k"):
        elbow(ks, [1, 2])


def test_cluster_by_elbow_finds_three_blobs_and_records_the_curve():
    points = blobs([[0, 0], [10, 0], [0, 10]], per_blob=21, spread=0.5)
    result = cluster_by_elbow(points, (2, 5), n_init=2, random_state=0)
    assert result.k == 3 and sorted(result.curve) == [1, 2, 3, 4, 5]
    assert len(np.unique(result.labels)) == 3
    # each instance's distance is to its own cluster's centre: the blob centres, where points[0::21] sit
    assert np.allclose(result.distances[[0, 21, 42]], 0, atol=1e-6)
    assert cluster_by_elbow(points[:1], (2, 5), n_init=1, random_state=0).k == 1  # fewer points than k


def test_disentangler_clusters_core_and_environment_separately():
    core = blobs([[0, 0], [8, 8]], per_blob=30, spread=0.3)  # 2 core clusters
    tetrahedron = 5 * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])  # 4 equidistant clusters
    env = blobs(tetrahedron, per_blob=15, spread=0.2, seed=1)
    d = Disentangler(k_range=(2, 5), pca_dims=None, random_state=0).fit(core, env)
    assert d.core_.k == 2 and d.env_.k == 4
    with pytest.raises(HarnessError, match="F_A has"):
        Disentangler().fit(core, env[:5])


# ---- budgets and annotation sampling -----------------------------------------------------------------------
def test_split_budget_equal_with_remainder_to_largest_classes():
    labels = np.repeat([0, 1, 2], [5, 20, 8])
    assert split_budget(10, labels) == {0: 3, 1: 4, 2: 3}
    assert split_budget(7, np.repeat([0, 1, 2], [2, 30, 30])) == {0: 2, 1: 3, 2: 2}  # tie: lower class id
    assert split_budget({0: 1, 2: 4}, labels) == {0: 1, 1: 0, 2: 4}


def test_split_budget_errors():
    labels = np.repeat([0, 1, 2], [2, 20, 8])
    with pytest.raises(HarnessError, match="class 0 has 2 instances, fewer than its attention budget 3"):
        split_budget(9, labels)
    with pytest.raises(HarnessError, match="smaller than the 3 classes"):
        split_budget(2, labels)
    with pytest.raises(HarnessError, match="no instance"):
        split_budget({7: 1}, labels)
    with pytest.raises(HarnessError, match="non-negative integer"):
        split_budget(2.5, labels)


def test_annotation_sampler_queries_the_instance_nearest_each_centre():
    centres = [[0, 0], [10, 0], [0, 10]]
    points = np.vstack([blobs(centres, 11, 0.4), blobs(centres, 11, 0.4, seed=1) + 100])
    labels = np.repeat([0, 1], 33)
    ids = AnnotationSampler({0: 3, 1: 3}, random_state=0).fit_predict(points, labels)
    # each blob's centre point (row 0 of the blob) is its mean, hence the nearest to the k-means centre
    assert sorted(ids.tolist()) == [0, 11, 22, 33, 44, 55]
    again = AnnotationSampler({0: 3, 1: 3}, random_state=0).fit_predict(points, labels)
    assert np.array_equal(ids, again)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nearest_to_centres_gives_distinct_rows_even_with_duplicates():
    points = np.zeros((6, 2))
    picked = nearest_to_centres(points, 4, random_state=0)
    assert len(set(picked.tolist())) == 4
    with pytest.raises(HarnessError, match="cannot pick 7"):
        nearest_to_centres(points, 7)


class ScriptedOracle:
    """A minimal Oracle: fixed answers per instance, with a budget."""

    def __init__(self, answers: dict[int, Answer], budget: int) -> None:
        self.answers, self.budget, self.log, self.total_seconds = answers, budget, [], 0.0

    @property
    def used(self) -> int:
        return len(self.log)

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def query(self, ids):
        if self.used + len(ids) > self.budget:
            raise HarnessError("attention query budget exceeded")
        self.log += list(ids)
        return [self.answers[i] for i in ids]


def test_ask_returns_codes_and_the_oracle_charges_every_answer():
    oracle = ScriptedOracle({0: Answer.YES, 1: Answer.NO, 2: Answer.NOT_SURE}, budget=3)
    assert ask(oracle, [0, 1, 2]).tolist() == [YES, NO, NOT_SURE]
    with pytest.raises(HarnessError, match="budget exceeded"):
        ask(oracle, [0])


# ---- expansion and screening -------------------------------------------------------------------------------
def two_blob_class(seed: int = 0) -> np.ndarray:
    return blobs([[0, 0], [5, 5]], per_blob=21, spread=0.3, seed=seed)


def test_spreading_carries_answers_to_neighbours():
    points = two_blob_class()
    labels = np.zeros(42, dtype=int)
    spreading = AttentionLabelSpreading().fit(points, labels, np.array([0, 21]), np.array([YES, NO]))
    assert spreading.status_ == {0: SPREAD}
    assert (spreading.scores_[:21] > 0.9).all() and (spreading.scores_[21:] < 0.1).all()


def test_spreading_edge_cases_per_class():
    points = np.vstack([two_blob_class(0), two_blob_class(1) + 50, two_blob_class(2) + 100,
                        two_blob_class(3) - 50])
    labels = np.repeat([0, 1, 2, 3], 42)
    query = np.array([0, 21, 42, 63, 84, 105, 126])
    answers = np.array([YES, NOT_SURE, NO, NO, NOT_SURE, NOT_SURE, YES])  # class 3: one yes only
    spreading = AttentionLabelSpreading().fit(points, labels, query, answers)
    assert spreading.status_ == {0: ALL_YES, 1: ALL_NO, 2: NO_ANSWERS, 3: ALL_YES}
    scores = spreading.scores_
    assert (scores[:42] == 1).all() and (scores[42:84] == 0).all() and (scores[84:126] == 0.5).all()
    assert len(spreading.warnings_) == 2
    assert "class 1" in spreading.warnings_[0] and "'no'" in spreading.warnings_[0]
    keep = Screening().fit_predict(scores, labels)
    # all-'no' class is dropped; the others keep exactly their upper half (ties: the lower rows)
    assert keep[:21].all() and not keep[21:84].any() and keep[84:105].all() and not keep[105:126].any()


def test_spreading_graph_is_symmetric_so_a_one_way_neighbour_is_reached():
    # Row 3 (x = 10) is far from the others; its 2 nearest neighbours are rows 2 and 1, but it is nobody's:
    # on W + W^T rows 2 and 3 are linked both ways.
    points = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0], [-1, 0]])
    graph = symmetric_knn_graph(points, 2)
    assert (graph != graph.T).nnz == 0 and graph[2, 3] > 0 and graph[3, 2] > 0
    # A far blob with no answer is unreached on any knn graph: its points take the class's answer prior
    # (2 yes of 3), not the answer of the nearest answered point (the no at row 20).
    a = np.column_stack([np.linspace(0, 1, 21), np.zeros(21)])
    b = np.column_stack([np.linspace(40, 41, 21), np.zeros(21)])
    points = np.vstack([a, b])
    spreading = AttentionLabelSpreading(n_neighbors=5).fit(points, np.zeros(42, int), np.array([0, 10, 20]),
                                                           np.array([YES, YES, NO]))
    assert spreading.unreached_ == {0: 21} and spreading.priors_ == {0: pytest.approx(2 / 3)}
    assert np.allclose(spreading.scores_[21:], 2 / 3)
    assert spreading.scores_[0] > spreading.scores_[20]


def test_spreading_reaches_points_that_only_link_one_way():
    # A line of points whose spacing doubles: every point's 2 nearest neighbours lie towards the start, so
    # on scikit-learn's one-way graph (a point draws only from its own neighbours) the answers at the far
    # end reach none of rows 0-9. W + W^T links both ways: all are reached.
    x = np.cumsum(2.0 ** np.arange(12)) - 1
    points = np.column_stack([x, np.zeros_like(x)])
    spreading = AttentionLabelSpreading(n_neighbors=2).fit(points, np.zeros(12, int), np.array([10, 11]),
                                                           np.array([YES, NO]))
    assert spreading.unreached_ == {0: 0}
    scores = spreading.scores_
    assert np.all((scores > 0) & (scores < 1)) and len(np.unique(np.round(scores, 9))) > 2


def test_screening_keeps_exactly_the_top_share_with_a_deterministic_tie_break():
    # Class 0: 4 tied 1s and 2 zeros: the top half is 3 of the tied 1s, chosen by the tie-break (distance,
    # smaller first), then the lower row. Class 1: 5 points, top half rounds 2.5 up to 3.
    scores = np.array([1, 1, 1, 1, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.1])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    tiebreak = np.array([3.0, 1.0, 2.0, 1.0, 0, 0, 0, 0, 0, 0, 0])
    screening = Screening()
    keep = screening.fit_predict(scores, labels, tiebreak)
    assert keep.tolist() == [0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    assert screening.kept_ == {0: 3, 1: 3} and screening.kept_share_ == {0: 0.5, 1: 0.6}
    assert screening.cutoffs_ == {0: 1.0, 1: 0.4}
    assert Screening().fit_predict(scores, labels).tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0]


def test_screening_threshold():
    scores = np.array([1, 1, 1, 0, 0, 0.2, 0.4, 0.6, 0.8, 0, 0, 0.3])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    # class 2: its top share (2 of 3) holds a 0, which the threshold drops
    assert Screening().fit_predict(scores, labels).tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    by_threshold = Screening(quantile=None, threshold=0.5).fit_predict(scores, labels)
    assert by_threshold.tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    with pytest.raises(HarnessError, match="quantile"):
        Screening(quantile=1.5).fit_predict(scores, labels)


def test_nearest_yes_distance_is_per_class():
    embedding = np.array([[0.0, 0], [3, 4], [10, 0], [10, 1]])
    labels = np.array([0, 0, 1, 1])
    dist = nearest_yes_distance(embedding, np.array([0, 2, 3]), np.array([YES, NO, NO]), labels)
    assert dist.tolist()[:2] == [0.0, 5.0] and np.isinf(dist[2:]).all()


# ---- attention space (a tiny UMAP) -------------------------------------------------------------------------
def test_attention_space_reports_its_mode_and_is_deterministic():
    fa = np.vstack([blobs([np.zeros(60), np.full(60, 3.0)], per_blob=41, spread=0.3)]).astype(np.float32)
    space = AttentionSpace(fit_sample=50, random_state=0)
    embedding = space.fit_transform(fa)
    assert embedding.shape == (82, 2) and np.isfinite(embedding).all()
    assert (space.mode_["pca_dims"], space.mode_["fit_size"], space.mode_["transformed"]) == (50, 50, 32)
    assert space.describe() == "PCA 50 -> UMAP fit on 50, 32 transformed"
    assert np.array_equal(embedding, AttentionSpace(fit_sample=50, random_state=0).fit_transform(fa))
    # the two blobs stay apart in the attention space
    gap = np.linalg.norm(embedding[:41].mean(0) - embedding[41:].mean(0))
    assert gap > 3 * max(embedding[:41].std(0).max(), embedding[41:].std(0).max())


def test_seeded_arpack_makes_eigsh_repeatable_and_restores_it():
    import scipy.sparse
    import scipy.sparse.linalg
    from sklearn.manifold import _spectral_embedding

    # a path-graph Laplacian; without v0 ARPACK starts from a random vector, which scipy draws from OS
    # entropy when no rng is given (what umap-learn's spectral initialisation does)
    n = 300
    laplacian = scipy.sparse.diags([np.full(n - 1, -1.0), np.full(n, 2.0), np.full(n - 1, -1.0)], [-1, 0, 1])
    original = scipy.sparse.linalg.eigsh
    with seeded_arpack(7):
        assert scipy.sparse.linalg.eigsh is not original and _spectral_embedding.eigsh is not original
        first = scipy.sparse.linalg.eigsh(laplacian, 3, which="LM", tol=1e-3)[1]
        second = scipy.sparse.linalg.eigsh(laplacian, 3, which="LM", tol=1e-3)[1]
    assert np.array_equal(first, second)
    assert scipy.sparse.linalg.eigsh is original and _spectral_embedding.eigsh is original


def test_attention_space_auto_mode_and_errors():
    space = AttentionSpace()
    assert space.resolve(160_000, 2048) == (50, 5_000)
    assert space.resolve(5_000, 2048) == (None, None)  # below the sampled sizes: raw F_A, as the authors
    assert space.resolve(30_000, 32) == (None, 5_000)  # PCA only where the features have more dimensions
    assert AttentionSpace(pca_dims=50).resolve(5_000, 2048) == (50, None)
    with pytest.raises(HarnessError, match="needs"):
        space.fit_transform(np.zeros((3, 8)))
    with pytest.raises(HarnessError, match="NaN"):
        space.fit_transform(np.full((10, 8), np.nan))
