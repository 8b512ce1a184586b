"""GroupDRO: the online q update and loss on hand-worked steps, the adjustment, and a full run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST_MODEL, make_toy_benchmark

from baselines.groupdro import GroupDROLoss
from harness.core.errors import HarnessError
from harness.engine.hparams_registry import default_hparams, run_hparams
from harness.experiments.runner import execute, make_config

LN2 = math.log(2.0)


def batch(losses_by_group: list[tuple[int, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and groups whose per-example cross-entropy is exactly the given value:
    logits (0, log(exp(loss) - 1)) with label 0 give CE = log(1 + exp(loss) - 1) = loss."""
    rows = [[0.0, math.log(math.exp(loss) - 1.0)] for _, loss in losses_by_group]
    logits = torch.tensor(rows, requires_grad=True)
    labels = torch.zeros(len(losses_by_group), dtype=torch.long)
    groups = torch.tensor([g for g, _ in losses_by_group])
    return logits, labels, groups


def test_hand_worked_steps_and_absent_groups() -> None:
    # Step 1 (eta = 1, q = 1/3 each): group 0 loses ln 2 (two examples), group 1 loses ln 4, group 2 absent.
    # q' = (1/3 * 2, 1/3 * 4, 1/3 * 1) = (2/3, 4/3, 1/3), sum 7/3 -> q = (2/7, 4/7, 1/7);
    # loss = 2/7 ln 2 + 4/7 * 2 ln 2 = 10/7 ln 2.
    objective = GroupDROLoss(np.array([10, 10, 10]), eta=1.0)
    logits, labels, groups = batch([(0, LN2), (0, LN2), (1, 2 * LN2)])
    loss = objective(logits, labels, groups)
    assert objective.q.tolist() == pytest.approx([2 / 7, 4 / 7, 1 / 7], rel=1e-6)
    assert float(loss.detach()) == pytest.approx(10 / 7 * LN2, rel=1e-6)
    # The gradient flows through the group means with q fixed: d loss / d CE_i = q_g / n_g(batch).
    loss.backward()
    p1 = torch.softmax(logits.detach(), 1)[:, 1]  # dCE/dz_1 = p_1 for label 0
    expected = torch.tensor([2 / 7 / 2, 2 / 7 / 2, 4 / 7]) * p1
    assert logits.grad[:, 1].tolist() == pytest.approx(expected.tolist(), rel=1e-5)

    # Step 2: only group 2, loss ln 2. Groups 0 and 1 are not multiplied (they keep their ratio 1:2):
    # q' = (2/7, 4/7, 2/7), sum 8/7 -> q = (1/4, 1/2, 1/4); loss = 1/4 ln 2.
    logits, labels, groups = batch([(2, LN2)])
    loss = objective(logits, labels, groups)
    assert objective.q.tolist() == pytest.approx([0.25, 0.5, 0.25], rel=1e-6)
    assert float(loss.detach()) == pytest.approx(0.25 * LN2, rel=1e-6)

    # Logged per epoch: q and each group's mean loss over the epoch's batches; then the tallies reset.
    logged = objective.end_epoch()
    assert logged["q"] == pytest.approx([0.25, 0.5, 0.25], rel=1e-6)
    assert logged["group_train_loss"] == pytest.approx([LN2, 2 * LN2, LN2], rel=1e-6)
    assert objective.end_epoch()["group_train_loss"] == [None, None, None]


def test_generalisation_adjustment() -> None:
    # C = 1, train counts (4, 16, 9): adjustments (1/2, 1/4, 1/3). Batch: group 0 ln 2, group 1 ln 4, group 2
    # absent (loss 0, as the authors count it), so every group's q is multiplied, the absent one's by e^(1/3):
    # q' = (1/3 * 2 e^(1/2), 1/3 * 4 e^(1/4), 1/3 * e^(1/3)) with eta = 1; loss = sum_g q_g (loss_g + adj_g).
    objective = GroupDROLoss(np.array([4, 16, 9]), eta=1.0, adjustment=1.0)
    logits, labels, groups = batch([(0, LN2), (1, 2 * LN2)])
    loss = objective(logits, labels, groups)
    raw = np.array([2 * math.exp(0.5), 4 * math.exp(0.25), math.exp(1 / 3)])
    q = raw / raw.sum()
    assert objective.q.tolist() == pytest.approx(q.tolist(), rel=1e-6)
    assert float(loss.detach()) == pytest.approx(q[0] * (LN2 + 0.5) + q[1] * (2 * LN2 + 0.25) + q[2] / 3, rel=1e-6)


def random_batches(seed: int, num_groups: int, sizes: list[int]) -> list[tuple[torch.Tensor, ...]]:
    """Random logits, labels and groups of the given batch sizes; small batches leave some group out."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 2, generator=gen), torch.randint(0, 2, (n,), generator=gen),
             torch.randint(0, num_groups, (n,), generator=gen)) for n in sizes]


def test_adjustment_updates_absent_groups_as_the_authors_code() -> None:
    """With C > 0 the authors' update (group_DRO's loss.py) counts an absent group's mean loss as 0 and adds
    the adjustment to every group before q_g <- q_g exp(eta * adjusted_g); its loss is sum_g q_g adjusted_g.
    A float64 transcription of that description, over batches that miss groups, gives the same q and loss."""
    counts, eta, c = np.array([40, 9, 25, 4]), 0.3, 2.0
    objective = GroupDROLoss(counts, eta=eta, adjustment=c)
    q = np.full(4, 0.25)
    absent_seen = 0
    for logits, labels, groups in random_batches(0, 4, [3, 2, 5, 3, 6]):
        per_example = [-math.log(math.exp(z[y]) / (math.exp(z[0]) + math.exp(z[1])))
                       for z, y in zip(logits.tolist(), labels.tolist(), strict=True)]
        group_loss = np.zeros(4)
        for g in range(4):
            rows = [loss for loss, h in zip(per_example, groups.tolist(), strict=True) if h == g]
            group_loss[g] = sum(rows) / len(rows) if rows else 0.0
        absent_seen += int((np.bincount(groups.numpy(), minlength=4) == 0).sum())
        adjusted = group_loss + c / np.sqrt(counts)
        q = q * np.exp(eta * adjusted)
        q = q / q.sum()
        loss = objective(logits, labels, groups)
        assert objective.q.tolist() == pytest.approx(q.tolist(), rel=1e-6)
        assert float(loss) == pytest.approx(float(q @ adjusted), rel=1e-6)
    assert absent_seen >= 4  # batches that miss groups: the case the update differs in


def test_without_adjustment_absent_groups_keep_their_weight_bit_for_bit() -> None:
    """C = 0 (the default): q of the groups present is multiplied by exp(eta * loss_g), the others' not; q, the
    loss and its gradient equal, bit for bit, this float32 computation of that rule (the update before the
    authors' C > 0 rule was adopted, whose results must not move)."""
    counts, eta = np.array([40, 9, 25, 4]), 0.3
    objective = GroupDROLoss(counts, eta=eta)
    q = torch.full((4,), 0.25)
    absent_seen = 0
    for logits, labels, groups in random_batches(1, 4, [3, 2, 5, 3, 6]):
        logits.requires_grad_(True)
        mine = logits.detach().clone().requires_grad_(True)
        losses = F.cross_entropy(mine, labels, reduction="none")
        n = torch.bincount(groups, minlength=4).float()
        group_loss = torch.zeros(4).index_add(0, groups, losses) / n.clamp(min=1)
        present = n > 0
        absent_seen += int((~present).sum())
        with torch.no_grad():
            q = q * torch.where(present, torch.exp(eta * group_loss), torch.ones_like(q))
            q = q / q.sum()
        expected = (q * torch.where(present, group_loss, torch.zeros_like(group_loss))).sum()
        expected.backward()
        loss = objective(logits, labels, groups)
        loss.backward()
        assert torch.equal(objective.q, q) and torch.equal(loss.detach(), expected.detach())
        assert torch.equal(logits.grad, mine.grad)
    assert absent_seen >= 4  # batches that miss groups: the case the C > 0 rule changed


def test_eta_zero_keeps_q_uniform_and_bad_values_fail() -> None:
    objective = GroupDROLoss(np.array([5, 5]), eta=0.0)
    logits, labels, groups = batch([(0, 3.0), (1, 0.1)])
    loss = objective(logits, labels, groups)
    assert objective.q.tolist() == pytest.approx([0.5, 0.5])
    assert float(loss.detach()) == pytest.approx(0.5 * 3.0 + 0.5 * 0.1, rel=1e-6)
    with pytest.raises(HarnessError, match="gdro_eta"):
        GroupDROLoss(np.array([5, 5]), eta=-0.1)


def test_registry_settings() -> None:
    paper = default_hparams("gdro", "waterbirds", "paper")
    training = (paper["lr"], paper["weight_decay"], paper["batch_size"], paper["epochs"])
    assert training == (1e-3, 1e-4, 128, 300)
    assert paper["gdro_eta"] == 0.01 and paper["sampler"] == "group_balanced"
    assert paper["selection"] == "val_worst_group_acc"
    strong = run_hparams("gdro", "celeba", "paper", "resnet50", {"gdro_strong_l2": True})
    assert (strong["lr"], strong["weight_decay"]) == (1e-5, 0.1)
    # An explicit override wins over the strong-L2 preset.
    mixed = run_hparams("gdro", "waterbirds", "paper", "resnet50",
                        {"gdro_strong_l2": True, "weight_decay": 0.5})
    assert (mixed["lr"], mixed["weight_decay"]) == (1e-5, 0.5)


def test_trains_without_augmentation_at_the_paper_scale_as_the_authors() -> None:
    """The authors' code trains without augmentation; so does a paper-scale run on real data, with its own
    weights file too, unless the user asks for augmentation. Elsewhere the protocol decides, as for ERM."""
    assert default_hparams("gdro", "celeba", "paper")["augment"] is False
    for dataset in ("waterbirds", "celeba", "nico"):
        assert run_hparams("gdro", dataset, "paper", "resnet50")["augment"] is False
    assert run_hparams("gdro", "waterbirds", "paper", "resnet50", {"pretrained": "/w.safetensors"})["augment"] is False
    assert run_hparams("gdro", "waterbirds", "paper", "resnet50", {"augment": True})["augment"] is True
    assert run_hparams("erm", "waterbirds", "paper", "resnet50")["augment"] is True
    assert run_hparams("gdro", "waterbirds-synth", "paper", "resnet50")["augment"] is True
    assert run_hparams("gdro", "waterbirds-synth", "tiny", "resnet18", {"pretrained": "standin"})["augment"] is True


def test_runs_end_to_end(tmp_path, monkeypatch) -> None:
    """A default synthetic run fits once per (eta, weight decay) pair of the search (the run's own first, eta
    the outer loop) and keeps the fit whose selected epoch has the best val worst-group accuracy: the model
    the record evaluates."""
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: make_toy_benchmark(n_train=48))
    config = make_config(dataset="toy", method="gdro", arch="resnet18", overrides={**FAST_MODEL, "epochs": 1},
                         device="cpu")
    record = json.loads(execute(config, tmp_path, show_progress=False).read_text())
    assert record["labels_used"]["train_group_labels"] and record["labels_used"]["val_group_labels"]
    search = record["details"]["search"]
    own = config["hparams"]["weight_decay"]
    assert [(fit["gdro_eta"], fit["weight_decay"]) for fit in search] == \
        [(0.1, own), (0.1, 0.1), (0.1, 1.0), (0.01, own), (0.01, 0.1), (0.01, 1.0)]
    assert record["cost"]["extra_training_fraction"] == 5.0  # five fits beyond the first
    scores = [fit["val_worst_group_acc"] for fit in search]
    chosen = search[scores.index(max(scores))]
    assert (record["details"]["gdro_eta"], record["details"]["weight_decay"]) == \
        (chosen["gdro_eta"], chosen["weight_decay"])
    assert record["metrics"]["val"]["worst_group_acc"] == pytest.approx(max(scores))
    assert record["model_selection"]["criterion"] == "val_worst_group_acc"
    q = record["details"]["history"][-1]["q"]
    assert len(q) == 4 and sum(q) == pytest.approx(1.0, rel=1e-5)
    assert list(record["details"]["final_q"].values()) == pytest.approx(q)


def test_the_search_lists_the_run_values_first_and_refuses_malformed_lists() -> None:
    from baselines.groupdro import search_grid, search_values

    assert search_values({"weight_decay": 5e-4, "gdro_l2_search": "none"}, "gdro_l2_search", "weight_decay") == [5e-4]
    assert search_values({"weight_decay": 5e-4, "gdro_l2_search": "1, 0.1,1,0.0005"}, "gdro_l2_search",
                         "weight_decay") == [5e-4, 1.0, 0.1]
    assert search_grid({"weight_decay": 5e-4, "gdro_l2_search": "1", "gdro_eta": 0.1, "gdro_eta_search": "0.01,0.1"}) \
        == [(0.1, 5e-4), (0.1, 1.0), (0.01, 5e-4), (0.01, 1.0)]
    for search in ("gdro_l2_search", "gdro_eta_search"):
        for bad in ("0.1,x", "-1", "0.1,,1", "inf"):
            with pytest.raises(HarnessError, match=search):
                search_grid({"weight_decay": 5e-4, "gdro_eta": 0.1, "gdro_l2_search": "none", "gdro_eta_search": "none",
                             search: bad})
    # one number from the command line reads as a number; the setting takes it as a one-item list
    assert run_hparams("gdro", "waterbirds-synth", "tiny", "resnet18", {"gdro_l2_search": 1})["gdro_l2_search"] == "1"
    assert run_hparams("gdro", "waterbirds-synth", "tiny", "resnet18", {"gdro_eta_search": 0.001})["gdro_eta_search"] \
        == "0.001"
    assert run_hparams("gdro", "waterbirds", "paper", "resnet50")["gdro_eta_search"] == "none"
    assert run_hparams("gdro", "waterbirds", "paper", "resnet50")["gdro_l2_search"] == "none"
    for search in ("gdro_l2_search", "gdro_eta_search"):
        with pytest.raises(HarnessError, match=search):
            make_config(dataset="waterbirds-synth", method="gdro", overrides={search: "0.1;1"})
