"""The dataset facts: each dataset's class holds its own, and tables, evaluation and hyperparameters read them
by name (harness.data.facts)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from conftest import make_toy_benchmark
from test_tables import make_record

from harness.core.registry import DATASETS
from harness.data.containers import Benchmark, Split
from harness.data.dataset import Dataset, DatasetFacts
from harness.data.facts import FACTS, facts, is_synthetic, paper_dataset
from harness.data.real import REAL_DATASETS
from harness.data.real.nico import NICO
from harness.data.synthetic import PRESETS
from harness.engine.evaluation import group_metrics, train_weights
from harness.engine.hparams_registry import default_hparams
from harness.reporting.tables.paper import table2, table3


def test_names_and_facts():
    assert paper_dataset("waterbirds-synth") == "waterbirds" == paper_dataset("waterbirds")
    assert is_synthetic("nico-synth") and not is_synthetic("nico") and not is_synthetic("synth-nico")
    assert not is_synthetic("spawrious-synth")  # a preset is known by its class, not by a name suffix
    assert facts("celeba-synth") is facts("celeba") is FACTS["celeba"] is REAL_DATASETS["celeba"].facts
    assert facts("toy") is None and "waterbirds-synth" not in FACTS
    # every paper dataset has its facts, in the paper's order (the tables'); csv, the user's own, has none
    assert list(FACTS) == ["waterbirds", "celeba", "isic", "nico", "imagenet9"]
    assert set(REAL_DATASETS) - {"csv"} == set(FACTS) == {preset.paper_dataset for preset in PRESETS.values()}


def test_slim_shares_are_the_table4_budgets_over_the_split_sizes():
    """Paper Table 4 (SLIM_Tr / SLIM_Val): Waterbirds 120 of 4795 train and 40 of 1199 val; CelebA 200 of
    162770 and 70 of 19867 with subset fractions 0.1 and 0.05."""
    assert default_hparams("slim-tr", "waterbirds-synth", "tiny")["budget_share"] == 120 / 4795
    assert default_hparams("slim-val", "celeba-synth", "tiny")["budget_share"] == 70 / 19867
    assert default_hparams("slim-val", "celeba", "paper")["budget"] == 70
    assert default_hparams("slim-val", "celeba", "paper")["subset_frac"] == 0.05


def small_benchmark(name: str) -> Benchmark:
    """Two groups of one class each in every split; train 3:1, test 1:1 with one error in group 0."""
    def split(labels, groups):
        n = len(labels)
        return Split(images=torch.zeros(n, 3, 4, 4, dtype=torch.uint8), labels=torch.tensor(labels),
                     spurious=torch.tensor(groups), groups=torch.tensor(groups))
    train = split([0, 0, 0, 1], [0, 0, 0, 1])
    test = split([0, 0, 1, 1], [0, 0, 1, 1])
    return Benchmark(name=name, class_names=["a", "b"], spurious_names=["x", "y"], group_names=["a/x", "b/y"],
                     splits={"train": train, "val": test, "test": test}, info={})


def test_weighted_average_follows_the_facts(monkeypatch):
    """Predictions [1, 0, 1, 1] on the test split: group accuracies 1/2 and 1; train proportions 3/4, 1/4
    give the weighted average 3/4 * 1/2 + 1/4 * 1 = 0.625, reported only where the facts say so."""
    predictions = np.array([1, 0, 1, 1])

    def test_metrics(name: str) -> dict:
        bench = small_benchmark(name)
        test = bench.splits["test"]
        return group_metrics(predictions, test.labels.numpy(), test.groups.numpy(), bench.group_names,
                             train_weights(bench))

    assert np.isclose(test_metrics("waterbirds-synth")["weighted_avg_acc"], 0.625)
    assert "weighted_avg_acc" not in test_metrics("nico")
    monkeypatch.setattr(NICO, "facts", dataclasses.replace(NICO.facts, weighted_avg=True))
    assert np.isclose(test_metrics("nico")["weighted_avg_acc"], 0.625)


class Spawrious(Dataset):
    """A plug-in dataset that brings paper facts."""

    name, description = "spawrious", "a dataset with facts"
    facts = DatasetFacts("Spawrious", "multi-class", weighted_avg=False, published="waterbirds",
                         slim_budgets=((40, 0.2), (20, 0.2)), split_sizes=(3000, 600), masks="none")

    def load(self, *, scale, data_seed, data_root, image_size, options, show_progress):
        return make_toy_benchmark(seed=data_seed)  # the tables read only its facts; any data will do


def test_a_dataset_with_facts_shows_in_its_family_table():
    """A new dataset is its class's ``facts`` away from Tables 2 / 3 and its display name."""
    records = [make_record("erm", "spawrious")]
    assert table2(records, "resnet18", "tiny") is None and table3(records, "resnet18", "tiny") is None
    DATASETS.register()(Spawrious)
    try:
        assert list(FACTS)[-1] == "spawrious" and facts("spawrious") is Spawrious.facts
        assert table2(records, "resnet18", "tiny") is None
        assert "Spawrious" in table3(records, "resnet18", "tiny")
    finally:
        DATASETS.unregister("spawrious")
