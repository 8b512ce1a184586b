"""slim.authors against numbers the authors' code produced (the golden cases), and its rules by hand.

The golden cases (tests/golden/slim-authors/, copied from the project's shared reference) hold the inputs
and every stage's output of xiweix/SLIM's curation on fixed inputs; their README says how they were made.
More cases are picked up from ``$SLIM_AUTHORS_GOLDEN`` or ``../shared/reference/slim-authors-golden`` beside
the checkout, when present.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from slim.authors import (
    ELBOW_KS,
    PATCHES,
    class_gamma,
    curate,
    draw_subgroups,
    elbow_k,
    subgroup_weights,
)

ROOT = Path(__file__).resolve().parent
GOLDEN_DIRS = [ROOT / "golden" / "slim-authors", ROOT.parent.parent / "shared" / "reference" / "slim-authors-golden"]
if os.environ.get("SLIM_AUTHORS_GOLDEN"):
    GOLDEN_DIRS.append(Path(os.environ["SLIM_AUTHORS_GOLDEN"]))


def golden_cases() -> list[Path]:
    found: dict[str, Path] = {}
    for folder in GOLDEN_DIRS:
        for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
            found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


CASES = golden_cases()
EXACT = ("query_ids", "answers", "kept", "k_core", "k_env", "core_labels", "env_labels", "sizes")


def run_case(path: Path, *, with_embeddings: bool) -> tuple[dict, dict, dict]:
    case = np.load(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    truth = case["truth"]
    given = {"att_emb": case["att_emb"], "op_emb": case["op_emb"]} if with_embeddings else {}
    out = curate(case["fa"], case["fabar"], case["labels"], lambda rows: truth[rows],
                 budgets={int(c): n for c, n in meta["budgets"].items()}, subset_size=meta["subset_size"],
                 seed=meta["seed"], gamma=meta["gamma"], **given)
    return out, dict(case), meta


def assert_stages_equal(out: dict, case: dict) -> None:
    for name in EXACT:
        np.testing.assert_array_equal(np.asarray(out[name]), case[name], err_msg=name)
    np.testing.assert_allclose(out["scores"], case["scores"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["weights"], case["weights"], rtol=0, atol=1e-5)
    assert sorted(out["constructed"].tolist()) == sorted(case["constructed"].tolist())  # a multiset


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_stage_after_the_attention_space_equals_the_authors(path):
    out, case, _ = run_case(path, with_embeddings=True)
    assert_stages_equal(out, case)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_end_to_end_from_the_features_equals_the_authors(path):
    """Stage 1 too (UMAP fitted, then transform): embeddings within 1e-3, and so every later stage equal."""
    out, case, _ = run_case(path, with_embeddings=False)
    np.testing.assert_allclose(out["att_emb"], case["att_emb"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out["op_emb"], case["op_emb"], rtol=0, atol=1e-3)
    assert_stages_equal(out, case)


def test_golden_cases_are_found():
    assert len(CASES) >= 2


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_the_cases_where_the_published_cells_raise_need_a_patch_of_cell_26_or_27(path):
    out, _, meta = run_case(path, with_embeddings=True)
    cell_patches = {"core_loop", "env_lookup", "size_pairing", "zero_sizes"}
    assert bool(cell_patches & set(out["patches"])) == bool(meta.get("published_cells_raise"))
    assert set(out["patches"]) <= set(PATCHES)


def test_elbow_reads_the_largest_second_difference_by_hand():
    # [100, 40, 30, 25]: halved differences -30, -5, -2.5; halved again 12.5, 1.25 -> the bend at k = 3
    assert elbow_k(np.float32([100, 40, 30, 25])) == 3
    # [100, 90, 30, 25]: -5, -30, -2.5; then -12.5, 13.75 -> k = 4
    assert elbow_k(np.float32([100, 90, 30, 25])) == 4
    # a straight line has no bend: the first (k = 3) wins the tie
    assert elbow_k(np.float32([40, 30, 20, 10])) == 3


def test_elbow_can_only_choose_an_inner_k():
    rng = np.random.default_rng(0)
    chosen = {elbow_k(np.sort(rng.random(len(ELBOW_KS)).astype(np.float32))[::-1]) for _ in range(200)}
    assert chosen <= {3, 4} and chosen == {3, 4}


def square(radius: float, centre=(0.0, 0.0)) -> np.ndarray:
    """Four points at ``radius`` from ``centre``: each lies exactly ``radius`` from the group's mean."""
    x, y = centre
    return np.float32([[x + radius, y], [x - radius, y], [x, y + radius], [x, y - radius]])


def test_floored_quotas_by_hand():
    """Core 0 has median spread 1, core 1 spread 3: core shares 1/4 and 3/4. Inside core 0 the environments
    0 and 1 have equal spread (1/2 each); core 1 holds environment 0 only, so (1, 1) gets 0 (the patched
    lookup). Weights 1/8, 1/8, 3/4, 0; with a subset of 10 the floored sizes are 1, 1, 7, 0 (9 in all)."""
    att = np.concatenate([square(1.0), square(3.0, (10, 10))])
    op = np.float32([[0, 0], [2, 0], [5, 5], [5, 7], [0, 0], [4, 0], [0, 4], [4, 4]])
    core = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    env = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    weights, patches = subgroup_weights(att, op, core, env, k_core=2, k_env=2)
    np.testing.assert_allclose(weights, [0.125, 0.125, 0.75, 0.0], atol=1e-7)
    assert [int(10 * w) for w in weights] == [1, 1, 7, 0]
    assert patches == ["env_lookup"]


def test_quota_loop_runs_over_the_core_clusters_when_there_are_more_than_environments():
    """Three core clusters, two environments: the notebook's range(k_env) loop would drop core 2."""
    att = np.concatenate([square(1.0), square(1.0, (10, 0)), square(2.0, (20, 0))])
    op = np.concatenate([square(1.0), square(1.0), square(1.0)])
    core = np.repeat([0, 1, 2], 4)
    env = np.tile([0, 0, 1, 1], 3)
    weights, patches = subgroup_weights(att, op, core, env, k_core=3, k_env=2)
    # core shares 1/4, 1/4, 1/2; inside each core both environments are alike (two points each, spread 1)
    np.testing.assert_allclose(weights, [0.125, 0.125, 0.125, 0.125, 0.25, 0.25], atol=1e-7)
    assert patches == ["core_loop"]


def test_each_subgroup_is_drawn_with_its_own_size():
    """Subgroup 1 is empty. The notebook would pair subgroup 2 with size 5 (the list's second entry); the
    patch draws it with its own size 3, and subgroup 0 with 2."""
    subgroup = np.array([0, 0, 0, 0, 2, 2, 2, 2])
    vectors = np.float32([[0, 0], [1, 0], [0, 1], [1, 1], [5, 5], [6, 5], [5, 6], [6, 6]])
    picked, patches = draw_subgroups(subgroup, [2, 5, 3], vectors, seed=0)
    assert np.bincount(subgroup[picked], minlength=3).tolist() == [2, 0, 3]
    assert patches == ["size_pairing"]


def test_a_subgroup_smaller_than_its_size_is_taken_whole_plus_draws_with_replacement():
    subgroup = np.array([0, 0, 1])
    picked, patches = draw_subgroups(subgroup, [0, 4], np.float32([[0, 0], [1, 1], [2, 2]]), seed=3)
    assert sorted(set(picked.tolist())) == [2] and len(picked) == 4
    assert patches == ["zero_sizes"]


def test_gamma_beyond_the_published_classes_repeats_the_last_value():
    assert [class_gamma((10, 5), c) for c in range(4)] == [10.0, 5.0, 5.0, 5.0]


def test_one_sided_answers_score_every_row_of_the_class_one():
    """The authors' rule: a class whose answers are all "no" scores 1 everywhere (so screening keeps by the
    other class); recorded here as what their code does, not as a good rule."""
    rng = np.random.default_rng(0)
    fa = rng.normal(size=(60, 8)).astype(np.float32)
    labels = np.repeat([0, 1], 30)
    emb = rng.normal(size=(60, 2)).astype(np.float32)
    out = curate(fa, fa, labels, lambda rows: np.where(labels[rows] == 0, 0, rows % 2), budgets={0: 4, 1: 6},
                 subset_size=10, att_emb=emb, op_emb=emb)
    assert (out["scores"][labels == 0] == 1.0).all()
    assert out["scores"][labels == 1].min() == 0.0 and out["scores"][labels == 1].max() == 1.0
    # over half the rows score 1, so nothing is above the pooled median: the patch keeps the rows at it
    assert "median_ties" in out["patches"]
    np.testing.assert_array_equal(out["kept"], np.flatnonzero(out["scores"] == 1.0))


def test_coincident_points_share_equally_instead_of_dividing_by_zero():
    att = np.zeros((6, 2), np.float32)  # UMAP with min_dist 0 can put a whole cluster on one point
    core, env = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 0, 1])
    weights, patches = subgroup_weights(att, att, core, env, k_core=2, k_env=2)
    np.testing.assert_allclose(weights, [0.25, 0.25, 0.25, 0.25])
    assert patches == ["zero_spread"]


def test_variant_report_measures_by_hand():
    from slim.variant_report import jaccard, neighbour_overlap

    assert jaccard([1, 2, 3, 3], [2, 3, 4]) == 2 / 4
    points = np.float32([[0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [5, 6]])
    assert neighbour_overlap(points, points * 3 + 1, k=2) == 1.0  # a similarity keeps every neighbour
    swapped = points[[3, 4, 5, 0, 1, 2]]  # rows 0-2 now sit where 3-5 were: neighbourhoods still within thirds
    assert neighbour_overlap(points, swapped, k=2) == 1.0
    mixed = points[[0, 3, 1, 4, 2, 5]]
    assert neighbour_overlap(points, mixed, k=2) < 1.0


def test_variant_report_compares_every_stage_on_a_golden_case():
    from slim.variant_report import compare_case, load_case

    result = compare_case(*load_case(CASES[0]))
    for key in ("queries_jaccard", "kept_jaccard", "picks_jaccard", "end_to_end_subset_jaccard"):
        assert 0.0 <= result[key] <= 1.0
    assert result["sizes_total_paper"] == json.loads(CASES[0].with_suffix(".json").read_text())["subset_size"]
    assert result == compare_case(*load_case(CASES[0]))  # deterministic
