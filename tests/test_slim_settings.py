"""SLIM's settings: the paper's Table 4 shares as budgets, SLIM_Tr's training budget in steps, the two
variants and the ablations."""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.engine.hparams_registry import default_hparams
from simulated_oracle import SimulatedOracle
from slim.ablations import ABLATIONS, Truth
from slim.authors import PATCHES, AuthorsCurator
from slim.methods import resolve_budget, training_epochs
from slim.pipeline import SlimCurator, make_curator, settings_from


def test_budgets_are_the_papers_table4_shares_of_the_split():
    tr = default_hparams("slim-tr", "waterbirds-synth", "quick")
    val = default_hparams("slim-val", "waterbirds-synth", "quick")
    assert tr["budget"] is None and tr["budget_share"] == pytest.approx(120 / 4795)  # 2.5 %
    assert val["budget_share"] == pytest.approx(40 / 1199) and val["subset_frac"] == 0.1
    assert default_hparams("slim-val", "celeba-synth", "tiny")["subset_frac"] == 0.05
    assert default_hparams("slim-tr", "nico-synth", "tiny")["budget_share"] == pytest.approx(40 / 2220)
    # 2.5 % of a 2,500-row train split is 62.6 -> 63 queries (the old quick preset asked 40, 1.6 %)
    assert resolve_budget(tr, np.repeat([0, 1], 1250))[0] == 63
    # at least two queries per class: 0.35 % of 258 rows is 0.9
    celeba = default_hparams("slim-val", "celeba-synth", "tiny")
    assert resolve_budget(celeba, np.repeat([0, 1], 129)) == (4, {"rule": "budget_share", "share":
                                                                   celeba["budget_share"], "split_size": 258,
                                                                   "budget": 4})
    paper = default_hparams("slim-tr", "waterbirds", "paper")
    assert paper["budget"] == 120 and resolve_budget(paper, np.zeros(10))[0] == 120


def test_slim_tr_trains_at_least_as_many_steps_as_erm():
    hp = dict(batch_size=64, epochs=12, slim_tr_steps="match_erm", slim_tr_min_epochs=50)
    erm = dict(epochs=12, batch_size=64)
    # ERM: 12 epochs x ceil(2500 / 64) = 40 steps = 480 steps; the subset of 250 rows has 4 steps an epoch
    epochs, budget = training_epochs(hp, erm, 2500, 250)
    assert epochs == 120 and budget == {"rule": "match_erm", "epochs": 120, "steps": 480, "erm_steps": 480,
                                        "steps_per_epoch": 4}
    assert training_epochs(hp, erm, 200, 250)[0] == 50  # the authors' 50 epochs when ERM takes fewer steps
    assert training_epochs(dict(hp, slim_tr_steps="epochs"), erm, 2500, 250)[0] == 12
    assert training_epochs(dict(hp, slim_tr_steps=10), erm, 2500, 250)[0] == 3
    assert default_hparams("slim-tr", "waterbirds-synth", "quick")["slim_tr_steps"] == "match_erm"
    assert default_hparams("slim-tr", "waterbirds-synth", "quick")["selection"] == "val_class_balanced_acc"
    with pytest.raises(HarnessError, match="slim_tr_steps"):
        training_epochs(dict(hp, slim_tr_steps="more"), erm, 2500, 250)


def test_the_variant_chooses_the_curator():
    assert isinstance(make_curator(12, 30, settings=settings_from({})), SlimCurator)
    assert isinstance(make_curator(12, 30, settings=settings_from({"slim_variant": "authors"})), AuthorsCurator)
    assert default_hparams("slim-val", "waterbirds-synth", "tiny")["slim_variant"] == "paper"
    with pytest.raises(HarnessError, match="slim_variant"):
        settings_from({"slim_variant": "mine"})
    with pytest.raises(HarnessError, match="slim_ablation"):
        settings_from({"slim_ablation": "oracle"})


def toy(seed: int = 0, n: int = 120):
    rng = np.random.default_rng(seed)
    labels, env = np.repeat([0, 1], n // 2), np.tile([0, 1], n // 2)
    correct = rng.random(n) < 0.6
    fa = np.where(correct[:, None], labels[:, None] * 5.0, env[:, None] * 5.0 + 10) + rng.normal(size=(n, 6))
    fabar = env[:, None] * 4.0 + rng.normal(size=(n, 6))
    masks = np.zeros((n, 4, 4), bool)
    masks[:, :2] = True
    maps = np.where(correct[:, None, None], masks, ~masks).astype(np.float32)
    return fa, fabar, labels, env, correct, maps, masks


def test_authors_variant_curates_and_records_its_patches():
    fa, fabar, labels, env, correct, maps, masks = toy()
    oracle = SimulatedOracle(maps, masks, flip_prob=0.0, budget=12, random_state=0)
    curator = make_curator({0: 6, 1: 6}, 30, settings={"slim_variant": "authors"}, random_state=0)
    embedding, env_embedding = fa[:, :2] + fa[:, 2:4], fabar[:, :2]
    curation = curator.curate(fa, fabar, labels, oracle, embedding=embedding, env_embedding=env_embedding)
    details = curation.details()
    assert details["slim_variant"] == "authors" and set(details["authors"]["patches"]) <= set(PATCHES)
    assert details["authors"]["gamma"] == {"0": 10.0, "1": 5.0}
    assert 0 < len(curation.indices) <= 30  # sizes are floored
    assert sum(curation.quotas.values()) == len(curation.indices)
    assert list(curation.core) == ["all"] and curation.core["all"].points.shape[1] == 2
    np.testing.assert_array_equal(curation.query_ids, curator.query_ids(embedding, labels))
    assert oracle.used == 12


def test_ablations_replace_one_stage_with_ground_truth():
    fa, fabar, labels, env, correct, maps, masks = toy()
    groups = labels * 2 + env
    truth = Truth(correct=correct, groups=groups)
    embedding = fa[:, :2]

    def curate(ablation, variant="paper"):
        oracle = SimulatedOracle(maps, masks, flip_prob=0.0, budget=12, random_state=0)
        return make_curator({0: 6, 1: 6}, 40, settings={"slim_ablation": ablation, "slim_variant": variant},
                            random_state=0).curate(fa, fabar, labels, oracle, embedding=embedding,
                                                   env_embedding=fabar[:, :2], truth=truth)

    assert np.array_equal(curate("true_screening").keep, correct)
    balanced = curate("group_balanced_subset").indices
    assert np.bincount(groups[balanced]).tolist() == [10, 10, 10, 10]
    random = curate("random_subset").indices
    assert len(random) == len(np.unique(random)) == 40
    assert np.array_equal(random, np.sort(np.random.default_rng(0).choice(120, size=40, replace=False)))
    paper, uniform = curate("none"), curate("uniform_pick")  # same subgroups and quotas, other members
    assert uniform.quotas == paper.quotas and len(uniform.indices) == len(paper.indices) == 40
    assert not np.array_equal(np.sort(uniform.indices), np.sort(paper.indices))
    kept = curate("uniform_kept")  # the same kept set and class shares, drawn without subgroups
    assert np.array_equal(kept.keep, paper.keep) and kept.subset_classes == paper.subset_classes
    assert kept.keep[kept.indices].all() and len(np.unique(kept.indices)) == 40
    with pytest.raises(HarnessError, match="ground truth"):
        SlimCurator(12, 40, settings={"slim_ablation": "true_screening"}).curate(
            fa, fabar, labels, SimulatedOracle(maps, masks, budget=12), embedding=embedding)
    # the authors' variant reads the same overrides at the same stages
    authors = curate("none", "authors")
    assert np.array_equal(curate("true_screening", "authors").keep, correct)
    authors_balanced = curate("group_balanced_subset", "authors").indices
    assert len(authors_balanced) == len(authors.indices)
    assert np.bincount(groups[authors_balanced]).max() - np.bincount(groups[authors_balanced]).min() <= 1
    authors_uniform = curate("uniform_pick", "authors")
    assert authors_uniform.quotas == authors.quotas and len(authors_uniform.indices) == len(authors.indices)
    assert curate("uniform_kept", "authors").keep[curate("uniform_kept", "authors").indices].all()


def test_every_ablation_is_a_row_of_stage_overrides():
    rows = {name: row for name, row in ABLATIONS.items() if name != "none"}
    assert all(row != ABLATIONS["none"] for row in rows.values())
    assert {name for name, row in rows.items() if row.reads} == {"noise_free_oracle", "true_screening",
                                                                 "group_balanced_subset"}
    assert ABLATIONS["none"].replaced_subset(np.arange(3), {}, 10, None, 0) is None


def test_ablations_that_read_ground_truth_are_declared_in_labels_used():
    from harness.engine.methods import MethodResult, get_method

    result = MethodResult(model=None, selection={"uses_val_group_labels": False}, attention_queries=8)
    for method, split_key in (("slim-tr", "train_group_labels"), ("slim-val", "val_group_labels")):
        hp = default_hparams(method, "waterbirds-synth", "tiny")
        plain = get_method(method)(hp).labels_used(result)
        assert plain["ground_truth"] is None and not plain[split_key]
        balanced = get_method(method)(dict(hp, slim_ablation="group_balanced_subset")).labels_used(result)
        assert balanced[split_key] and "group labels" in balanced["ground_truth"]
        noise_free = get_method(method)(dict(hp, slim_ablation="noise_free_oracle")).labels_used(result)
        assert "masks" in noise_free["ground_truth"]


def test_the_attention_method_is_a_setting(make_context):
    """SLIM curates with the registered CAM its ``attention_method`` names (GradCAM unless set, as the
    authors); the setting is checked by the schema, and an unknown name is a one-line error."""
    from harness.engine.hparams_registry import run_hparams
    from harness.engine.methods import get_method
    from harness.engine.settings import schema

    assert "attention_method" in schema() and "attention_method" not in default_hparams("slim-val", "toy", "tiny")
    default = get_method("slim-val")(make_context("slim-val").hparams).prepare(make_context("slim-val"))
    assert default.attention.method == "gradcam"
    ctx = make_context("slim-val", attention_method="eigencam")
    inputs = get_method("slim-val")(ctx.hparams).prepare(ctx)
    assert inputs.attention.method == "eigencam" and inputs.identity != default.identity
    assert not np.array_equal(inputs.fa, default.fa)  # other maps, other attention-weighted features
    with pytest.raises(HarnessError, match="unknown attention method 'nope'"):  # before any work
        run_hparams("slim-val", "waterbirds-synth", "tiny", "resnet18", {"attention_method": "nope"})
    with pytest.raises(HarnessError, match="must be a string"):
        run_hparams("slim-val", "waterbirds-synth", "tiny", "resnet18", {"attention_method": 3})
