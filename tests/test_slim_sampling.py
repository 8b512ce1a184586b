"""SLIM stage 7: eqs. (3)-(6) on hand-worked examples, rounding, and the subgroup draw."""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import HarnessError
from slim import allocate
from slim.sampling import SubgroupSampler, largest_remainder

# Two core clusters, three environment clusters (N != M); core 1 has no member in env 1.
CORE = np.array([0, 0, 0, 0, 1, 1, 1])
CORE_DIST = np.array([1.0, 1.0, 3.0, 3.0, 1.0, 1.0, 1.0])  # mean 2 for core 0, 1 for core 1
ENV = np.array([0, 0, 1, 2, 0, 0, 2])
ENV_DIST = np.array([1.0, 3.0, 4.0, 6.0, 2.0, 2.0, 1.0])


def test_allocate_hand_worked_exact_shares():
    # eq. (3)-(4): weights (mean distances) 2 and 1 -> 9 * 2/3 = 6 and 9 * 1/3 = 3.
    # eq. (5)-(6): core 0's subgroups have mean env distances 2, 4, 6 -> 6 * (2, 4, 6) / 12 = 1, 2, 3;
    # core 1's non-empty subgroups (env 0, env 2) have 2 and 1 -> 3 * (2, 1) / 3 = 2, 1; (1, 1) is empty.
    quotas = allocate(CORE, CORE_DIST, ENV, ENV_DIST, 9)
    assert quotas == {(0, 0): 1, (0, 1): 2, (0, 2): 3, (1, 0): 2, (1, 1): 0, (1, 2): 1}


def test_allocate_hand_worked_with_rounding_at_both_levels():
    # Core level: 10 * (2/3, 1/3) = 6.67, 3.33 -> 7, 3. Core 0: 7 * (2, 4, 6) / 12 = 1.17, 2.33, 3.5 -> floors
    # 1, 2, 3 and the leftover unit to the largest remainder (3.5) -> 1, 2, 4. Core 1: 3 * (2, 1) / 3 = 2, 1.
    quotas = allocate(CORE, CORE_DIST, ENV, ENV_DIST, 10)
    assert quotas == {(0, 0): 1, (0, 1): 2, (0, 2): 4, (1, 0): 2, (1, 1): 0, (1, 2): 1}


def test_allocate_uses_mean_not_median_distance():
    # Core 0 distances 1, 1, 4: mean 2 (median 1); core 1: 2, 2, 2 (mean = median = 2). Means -> equal halves.
    core = np.array([0, 0, 0, 1, 1, 1])
    quotas = allocate(core, np.array([1.0, 1.0, 4.0, 2.0, 2.0, 2.0]), np.zeros(6, int), np.ones(6), 6)
    assert quotas == {(0, 0): 3, (1, 0): 3}


def test_allocate_more_core_than_env_clusters():
    # Three core clusters (all at mean distance 1), one shared env cluster and a second one only core 2 has.
    core = np.array([0, 0, 1, 1, 2, 2])
    env = np.array([0, 0, 0, 0, 0, 1])
    env_dist = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0])
    quotas = allocate(core, np.ones(6), env, env_dist, 12)
    assert quotas == {(0, 0): 4, (0, 1): 0, (1, 0): 4, (1, 1): 0, (2, 0): 1, (2, 1): 3}


def test_allocate_all_members_on_centres_splits_equally():
    quotas = allocate(np.array([0, 1, 2]), np.zeros(3), np.zeros(3, int), np.zeros(3), 4)
    assert quotas == {(0, 0): 2, (1, 0): 1, (2, 0): 1}  # 4/3 each: the leftover unit goes to the lowest id


@pytest.mark.parametrize("seed", range(5))
def test_allocate_quotas_are_integers_summing_to_the_budget(seed):
    rng = np.random.default_rng(seed)
    n = 200
    core, env = rng.integers(0, 4, n), rng.integers(0, 3, n)
    core_dist, env_dist = rng.random(n), rng.random(n)
    budget = int(rng.integers(1, 500))
    quotas = allocate(core, core_dist, env, env_dist, budget)
    assert sum(quotas.values()) == budget
    assert all(isinstance(q, int) and q >= 0 for q in quotas.values())
    for c in np.unique(core):  # level 1: each core's subgroups sum to a rounding of eq. (4)
        weights = np.array([core_dist[core == k].mean() for k in np.unique(core)])
        exact = budget * weights[c] / weights.sum()
        assert abs(sum(q for (k, _), q in quotas.items() if k == c) - exact) < 1
    for (c, e), q in quotas.items():
        if not ((core == c) & (env == e)).any():
            assert q == 0


def test_allocate_rejects_bad_input():
    with pytest.raises(HarnessError, match="one core label"):
        allocate(CORE, CORE_DIST[:-1], ENV, ENV_DIST, 5)
    with pytest.raises(HarnessError, match="non-negative integer"):
        allocate(CORE, CORE_DIST, ENV, ENV_DIST, -1)
    with pytest.raises(HarnessError, match="non-negative"):
        allocate(CORE, -CORE_DIST, ENV, ENV_DIST, 5)
    with pytest.raises(HarnessError, match="no instance"):
        allocate(np.zeros(0, int), np.zeros(0), np.zeros(0, int), np.zeros(0), 3)


def test_largest_remainder_ties_go_to_lower_index():
    assert largest_remainder(np.array([1.5, 1.5, 1.0]), 4).tolist() == [2, 1, 1]
    assert largest_remainder(np.array([0.2, 0.4, 0.4]), 1).tolist() == [0, 1, 0]
    assert largest_remainder(np.array([1 / 3] * 3), 1).tolist() == [1, 0, 0]
    with pytest.raises(HarnessError, match="sum"):
        largest_remainder(np.array([1.0, 1.0]), 3)


def test_subgroup_sampler_takes_small_subgroups_whole_and_repeats():
    core = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    env = np.array([0, 0, 0, 0, 0, 0, 0, 0])
    points = np.arange(16, dtype=float).reshape(8, 2)
    sampler = SubgroupSampler(random_state=0).fit(points, core, env, {(0, 0): 5, (1, 0): 3})
    picked = sampler.indices_
    assert len(picked) == 8 and sampler.repeats_ == 3
    small = picked[np.isin(picked, [0, 1])]
    assert len(small) == 5 and set(small) == {0, 1}  # both members, plus 3 draws with replacement
    large = picked[np.isin(picked, np.arange(2, 8))]
    assert len(large) == 3 and len(set(large)) == 3  # distinct: one per k-means centre


def test_hand_worked_quotas_drawn_with_repeats_where_subgroups_are_small():
    # Budget 9 quotas (above): (0,0) 1 of 2 members, (0,1) 2 of 1, (0,2) 3 of 1, (1,0) 2 of 2, (1,2) 1 of 1.
    quotas = allocate(CORE, CORE_DIST, ENV, ENV_DIST, 9)
    points = np.column_stack([CORE, ENV]).astype(float)
    sampler = SubgroupSampler(random_state=0).fit(points, CORE, ENV, quotas)
    counts = np.bincount(sampler.indices_, minlength=7)
    assert sampler.repeats_ == 3  # (0,1): one extra draw, (0,2): two
    assert counts[[2, 3, 4, 5, 6]].tolist() == [2, 3, 1, 1, 1] and counts[[0, 1]].sum() == 1


def random_subgroups(n: int, env_clusters: int, budget: int, seed: int):
    """Points, core and environment labels of n random instances, and the quotas eqs. (3)-(6) give them."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    core, env = rng.integers(0, 2, n), rng.integers(0, env_clusters, n)
    return points, core, env, allocate(core, rng.random(n), env, rng.random(n), budget)


def test_subgroup_sampler_is_deterministic_and_rejects_empty_subgroups_with_quota():
    points, core, env, quotas = random_subgroups(60, 2, 20, seed=0)
    a = SubgroupSampler(random_state=3).fit_predict(points, core, env, quotas)
    b = SubgroupSampler(random_state=3).fit_predict(points, core, env, quotas)
    assert np.array_equal(a, b) and len(a) == 20
    with pytest.raises(HarnessError, match="no instance"):
        SubgroupSampler().fit(points, core, env, {(5, 5): 1})


def test_uniform_pick_keeps_the_quotas_and_draws_distinct_members_of_each_subgroup():
    """The uniform_pick ablation changes only which members fill a quota, never how many or from where."""
    points, core, env, quotas = random_subgroups(80, 3, 24, seed=1)
    centres = SubgroupSampler(random_state=0).fit(points, core, env, quotas)
    uniform = SubgroupSampler(random_state=0, pick="uniform").fit(points, core, env, quotas)
    for (c, e), quota in quotas.items():
        members = set(np.flatnonzero((core == c) & (env == e)).tolist())
        drawn = [int(i) for i in uniform.indices_ if i in members]
        assert len(drawn) == quota and (len(set(drawn)) == quota or quota > len(members))
    assert uniform.repeats_ == centres.repeats_ and len(uniform.indices_) == len(centres.indices_) == 24
    assert set(uniform.indices_.tolist()) != set(centres.indices_.tolist())
    with pytest.raises(HarnessError, match="pick"):
        SubgroupSampler(pick="nearest").fit(points, core, env, quotas)
