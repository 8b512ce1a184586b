"""SLIM's curation pipeline on arrays: budget accounting, screening, determinism, edge cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.core.errors import HarnessError
from simulated_oracle import SimulatedOracle
from slim.pipeline import SlimCurator

N, SIDE = 160, 8


def toy_split(seed: int = 0):
    """Two classes x two environments. Attention is correct on 70% of instances: there F_A carries the class
    and the map lies on the object mask; elsewhere F_A carries the environment and the map misses the object.
    F_Abar carries the environment. Returns fa, fabar, labels, env, correct, maps, masks."""
    rng = np.random.default_rng(seed)
    labels, env = rng.integers(0, 2, N), rng.integers(0, 2, N)
    correct = rng.random(N) < 0.7
    class_dir, env_dir = rng.normal(size=(2, 16)) * 4, rng.normal(size=(2, 16)) * 4
    fa = np.where(correct[:, None], class_dir[labels], env_dir[env] + 10) + rng.normal(size=(N, 16))
    fabar = env_dir[env] + rng.normal(size=(N, 16))
    masks = np.zeros((N, SIDE, SIDE), bool)
    masks[:, 2:6, 2:6] = True
    maps = np.where(correct[:, None, None], masks, ~masks).astype(np.float32)
    return fa, fabar, labels, env, correct, maps, masks


def pca2(x: np.ndarray) -> np.ndarray:
    """A stand-in attention space (2-D PCA), so these tests need no UMAP."""
    centred = x - x.mean(0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


def oracle_for(maps, masks, budget, flip_prob=0.0):
    return SimulatedOracle(maps, masks, flip_prob=flip_prob, budget=budget, random_state=0)


def test_curation_spends_exactly_the_budget_and_keeps_mostly_correct_attention():
    fa, fabar, labels, _, correct, maps, masks = toy_split()
    oracle = oracle_for(maps, masks, budget=12)
    curation = SlimCurator(12, 40, random_state=0).curate(fa, fabar, labels, oracle, embedding=pca2(fa))
    assert oracle.used == 12 and len(curation.query_ids) == 12 and len(set(curation.query_ids)) == 12
    assert curation.budgets == {0: 6, 1: 6}
    assert all(labels[curation.query_ids[:6]] == 0) and all(labels[curation.query_ids[6:]] == 1)
    assert len(curation.indices) == 40 == sum(curation.quotas.values())
    assert correct[curation.keep].mean() > correct.mean() + 0.15  # screening removes wrong attention
    assert correct[curation.indices].mean() > 0.9
    details = curation.details()
    json.dumps(details)
    assert details["queries"] == 12 and details["query_fraction"] == 12 / N
    assert details["subset_size"] == 40 and details["subset_fraction"] == 40 / N
    assert details["answers"] == {"yes": int(correct[curation.query_ids].sum()),
                                  "no": int((~correct[curation.query_ids]).sum()), "not_sure": 0}
    assert all(set(v) == {"core", "env"} for v in details["clusters"].values())
    assert sum(details["quotas"].values()) == 40
    counts = np.bincount(labels[curation.indices], minlength=2)
    assert details["subset_classes"] == {str(c): int(n) for c, n in enumerate(counts) if n}


def test_oracle_refuses_queries_beyond_its_budget():
    fa, fabar, labels, _, _, maps, masks = toy_split()
    oracle = oracle_for(maps, masks, budget=10)
    with pytest.raises(HarnessError, match="budget exceeded"):
        SlimCurator(12, 40).curate(fa, fabar, labels, oracle, embedding=pca2(fa))
    assert oracle.used == 0


def test_curation_is_deterministic_given_random_state():
    fa, fabar, labels, _, _, maps, masks = toy_split(1)
    runs = [SlimCurator(10, 30, random_state=5).curate(fa, fabar, labels, oracle_for(maps, masks, 10, 0.1),
                                                        embedding=pca2(fa)) for _ in range(2)]
    assert np.array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].details() == runs[1].details()


def test_a_subset_larger_than_the_kept_set_repeats_instances():
    fa, fabar, labels, _, _, maps, masks = toy_split(2)
    curation = SlimCurator(8, 150, random_state=0).curate(fa, fabar, labels, oracle_for(maps, masks, 8),
                                                          embedding=pca2(fa))
    kept = int(curation.keep.sum())
    assert len(curation.indices) == 150 and kept < 150
    assert curation.repeats == 150 - len(np.unique(curation.indices)) > 0
    assert curation.keep[curation.indices].all()  # only screened-in instances are drawn


def test_all_wrong_attention_everywhere_keeps_every_class_unscreened_with_warnings():
    fa, fabar, labels, _, _, _, masks = toy_split()
    wrong = (~masks).astype(np.float32)
    curation = SlimCurator(6, 20).curate(fa, fabar, labels, oracle_for(wrong, masks, 6), embedding=pca2(fa))
    assert (curation.scores == 0).all()  # nothing is marked correct (the authors' code marks all correct)
    assert curation.keep.all() and set(labels[curation.indices]) == {0, 1}
    assert sum("kept unscreened" in w for w in curation.warnings) == 2


def test_one_class_answered_only_no_is_scored_zero_and_kept_unscreened_with_a_warning():
    fa, fabar, labels, _, correct, maps, masks = toy_split()
    maps = np.where((labels == 1)[:, None, None], ~masks, maps).astype(np.float32)  # class 1: always wrong
    curation = SlimCurator(12, 30).curate(fa, fabar, labels, oracle_for(maps, masks, 12), embedding=pca2(fa))
    assert curation.spread_status[1] == "all_no" and (curation.scores[labels == 1] == 0).all()
    assert curation.keep[labels == 1].all()  # the class stays in the subset, unscreened
    assert not curation.keep[(labels == 0) & ~correct].all()  # class 0 is still screened
    assert any("class 1" in w and "unscreened" in w for w in curation.details()["warnings"])


def test_curation_rejects_inconsistent_inputs():
    fa, fabar, labels, _, _, maps, masks = toy_split()
    with pytest.raises(HarnessError, match="one row per instance"):
        SlimCurator(6, 20).curate(fa, fabar[:-1], labels, oracle_for(maps, masks, 6))
    with pytest.raises(HarnessError, match="subset size"):
        SlimCurator(6, 0).curate(fa, fabar, labels, oracle_for(maps, masks, 6))
