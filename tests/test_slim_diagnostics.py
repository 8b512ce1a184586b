"""SLIM's stage diagnostics against values worked out by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simulated_oracle import Answer, QueryLogEntry
from slim.clustering import Clustering
from slim.curation import Curation
from slim.diagnostics import auroc, group_shares, knn_vote, purity, stage_diagnostics
from slim.pipeline import resolve


def test_auroc_purity_and_shares_by_hand():
    # positives 0.9, 0.4; negatives 0.5, 0.1: of the 4 pairs, 3 are ordered right -> 0.75
    assert auroc(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0], bool)) == 0.75
    assert auroc(np.ones(3), np.ones(3, bool)) is None
    # clusters {0,1,2} -> truth 0,0,1 (majority 2), {3} -> 1 (1): 3 of 4
    assert purity(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == 0.75
    assert group_shares(np.array([0, 0, 2]), np.array([0, 1, 1]), 3) == [2 / 3, 1 / 3, 0.0]


def test_knn_vote_leaves_the_point_out():
    # a line 0, 1, 2, 10, 11 of one class; positives at rows 0 and 1; k=1: each point's nearest other
    points = np.array([[0.0], [1], [2], [10], [11]])
    vote = knn_vote(points, np.zeros(5, int), np.array([1, 1, 0, 0, 0], bool), 1)
    assert vote.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # row 0's nearest is 1, row 1's is 0 (lower), row 2's is 1


def curation_by_hand() -> Curation:
    """Eight instances, two classes; rows 0-3 class 0, 4-7 class 1; one scope per class."""
    n = 8
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.6, 0.4, 0.3])
    keep = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)

    def clustering(labels):
        labels = np.asarray(labels)
        return Clustering(labels=labels, distances=np.zeros(len(labels)), k=int(labels.max()) + 1, curve={},
                          points=np.zeros((len(labels), 2)))

    return Curation(
        embedding=np.column_stack([np.arange(n), np.zeros(n)]).astype(float), space_mode={},
        settings=resolve({}), budgets={0: 2, 1: 2}, query_ids=np.array([0, 2, 4, 6]),
        answers=np.array([1, 0, 1, 1]), scores=scores, spread_status={}, unreached={}, unreached_scores={},
        keep=keep, cutoffs={}, kept_share={}, core={"class 0": clustering([0, 0]), "class 1": clustering([0, 0])},
        env={"class 0": clustering([0, 1]), "class 1": clustering([0, 0])},
        scope_rows={"class 0": np.array([0, 1]), "class 1": np.array([4, 5])}, quotas={},
        indices=np.array([0, 1, 4, 4]), repeats=1, subset_classes={0: 2, 1: 2})


def entry(i, truth, answer):
    return QueryLogEntry(i, 0.0, truth, answer, truth is not answer, 1.0)


def test_stage_diagnostics_by_hand():
    curation = curation_by_hand()
    correct = np.array([1, 1, 0, 0, 1, 0, 0, 1], bool)  # base rate 0.5
    spurious = np.array([0, 1, 0, 1, 0, 0, 1, 1])
    groups = np.array([0, 1, 0, 1, 2, 2, 3, 3])
    y, no = Answer.YES, Answer.NO
    log = [entry(0, y, y), entry(2, no, no), entry(4, y, y), entry(6, no, y)]  # one flip
    empty = np.array([0, 0, 1, 0, 0, 0, 1, 0], bool)  # rows 2 and 6 have all-zero maps (not correct)
    d = stage_diagnostics(curation, log, correct, np.repeat([0, 1], 4), spurious, groups, 4, empty=empty)
    json.dumps(d)
    # without rows 2 and 6: correct 1, 1, 0, 1, 0, 1 -> 4 of 6
    assert d["oracle"] == {"answer_accuracy": 0.75, "yes_share": 0.75, "yes_share_answered": 0.75,
                           "true_yes_share_queried": 0.5, "base_rate": 0.5, "empty_maps": 2,
                           "base_rate_nonempty": 4 / 6}
    # pooled: positives 0.9, 0.8, 0.7, 0.3; negatives 0.2, 0.1, 0.6, 0.4 -> 4 + 4 + 4 + 2 of 16 pairs right
    assert d["expansion"]["auroc"] == 14 / 16
    assert d["expansion"]["auroc_per_class"] == {"0": 1.0, "1": 0.5}
    # groups 0-3 hold rows (0, 2), (1, 3), (4, 5), (6, 7): kept 1, 1, 2, 0 of 2; correct 1, 1, 1, 1 of 2
    assert d["screening"] == {"kept_correct": 0.75, "base_rate": 0.5, "kept_share": 0.5,
                              "kept_share_by_group": [0.5, 0.5, 1.0, 0.0], "correct_by_group": [0.5] * 4}
    # env clusters: class 0 rows 0, 1 split (spurious 0 | 1), class 1 rows 4, 5 together (0, 0): pure
    # three pure clusters (sizes 1, 1, 2) of spurious values (3 x 0, 1 x 1): the mutual information is
    # H(S); NMI (arithmetic) = 2 H(S) / (H(C) + H(S)) with H(C) = 1.5 bits, H(S) = H(3/4, 1/4)
    h_s = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert d["disentangling"]["env_purity_spurious"] == 1.0
    assert d["disentangling"]["env_nmi_spurious"] == pytest.approx(2 * h_s / (1.5 + h_s))
    assert d["disentangling"]["core_purity_class"] == 1.0
    # subset rows 0, 1, 4, 4: groups 0, 1, 2, 2 -> shares .25 .25 .5 0; distinct 0, 1, 4 -> 1/3 each of 3
    assert d["curation"]["group_shares_rows"] == [0.25, 0.25, 0.5, 0.0]
    assert d["curation"]["group_shares_distinct"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert d["curation"]["min_group_share"] == 0.0 and d["curation"]["random_min_group_share"] == 0.25
    assert d["curation"]["balanced_min_group_share"] == 0.25 and d["curation"]["distinct"] == 3
    assert d["curation"]["subset_correct"] == 1.0  # rows 0, 1 and 4 are all correct
