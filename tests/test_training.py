import numpy as np
import pytest
import torch

from harness.core.errors import HarnessError
from harness.engine.training import TrainHparams, _epoch_order, augment, class_balanced_accuracy, fit
from harness.models.network import create_model

HP = dict(epochs=2, lr=0.05, weight_decay=0.0, batch_size=32)


def _train(benchmark, seed, resident=None, **hp):
    torch.manual_seed(seed)
    model = create_model("resnet18", 2, 32, width=0.25)
    result = fit(model, benchmark.splits["train"], TrainHparams.from_dict({**HP, **hp}), device=torch.device("cpu"),
                 seed=seed, num_groups=4, val=benchmark.splits["val"], show_progress=False, resident=resident)
    return model, result


def test_same_seed_same_weights_on_cpu(toy_benchmark):
    a, ra = _train(toy_benchmark, seed=3)
    b, rb = _train(toy_benchmark, seed=3)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert ra.history == rb.history
    c, _ = _train(toy_benchmark, seed=4)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_streamed_inputs_train_exactly_as_resident_ones(toy_benchmark):
    """Inputs streamed batch by batch by the helper thread (``resident=False``: on the GPU, the path of a split
    too large for it) give bit for bit the weights and history of the plain fit, augmentation included."""
    a, ra = _train(toy_benchmark, seed=3)
    b, rb = _train(toy_benchmark, seed=3, resident=False)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert ra.history == rb.history


def test_selection_records_whether_val_group_labels_were_read(toy_benchmark):
    _, avg = _train(toy_benchmark, seed=0, selection="val_avg_acc")
    assert avg.selection["uses_val_group_labels"] is False
    assert all("val_worst_group_acc" not in e for e in avg.history)
    _, worst = _train(toy_benchmark, seed=0, selection="val_worst_group_acc")
    assert worst.selection["uses_val_group_labels"] is True
    best = max(worst.history, key=lambda e: e["val_worst_group_acc"])
    assert worst.selection["epoch"] == best["epoch"]


def test_class_balanced_selection_reads_class_labels_only(toy_benchmark):
    # Nine of ten val rows are class 0: predicting 0 everywhere scores 0.9 average but 0.5 balanced.
    assert class_balanced_accuracy(np.zeros(10, int), np.array([0] * 9 + [1])) == 0.5
    assert class_balanced_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])) == 0.75
    _, result = _train(toy_benchmark, seed=0, selection="val_class_balanced_acc", epochs=3)
    assert result.selection["uses_val_group_labels"] is False
    assert all("val_worst_group_acc" not in e for e in result.history)
    best = max(result.history, key=lambda e: e["val_class_balanced_acc"])
    assert result.selection["epoch"] == best["epoch"]


def test_selected_epoch_weights_are_restored(toy_benchmark):
    from harness.engine.evaluation import predict_logits

    model, result = _train(toy_benchmark, seed=1, epochs=3)
    val = toy_benchmark.splits["val"]
    acc = (predict_logits(model, val, torch.device("cpu")).argmax(1) == val.labels).float().mean().item()
    assert acc == pytest.approx(result.history[result.selection["epoch"] - 1]["val_avg_acc"])


def test_indices_with_repeats_define_the_epoch(toy_benchmark):
    idx = np.array([0, 0, 0, 5])
    model = create_model("resnet18", 2, 32, width=0.25)
    result = fit(model, toy_benchmark.splits["train"], TrainHparams.from_dict({**HP, "selection": "last"}),
                 device=torch.device("cpu"), seed=0, num_groups=4, indices=idx, show_progress=False)
    assert result.samples_seen == 2 * len(idx)


def test_on_batch_sees_every_training_batch_of_every_epoch(toy_benchmark):
    idx = np.array([0, 0, 0, 5, 7])
    seen = []
    model = create_model("resnet18", 2, 32, width=0.25)
    fit(model, toy_benchmark.splits["train"], TrainHparams.from_dict({**HP, "selection": "last", "batch_size": 2}),
        device=torch.device("cpu"), seed=0, num_groups=4, indices=idx, show_progress=False,
        on_batch=lambda epoch, rows, logits: seen.append((epoch, rows.clone(), logits)))
    assert [epoch for epoch, _, _ in seen] == [1, 1, 1, 2, 2, 2]  # batches of 2, 2 and 1 rows
    for epoch in (1, 2):
        rows = torch.cat([r for e, r, _ in seen if e == epoch]).tolist()
        assert sorted(rows) == sorted(idx)
    assert all(logits.shape == (len(rows), 2) and not logits.requires_grad for _, rows, logits in seen)


def test_group_balanced_sampler_equalises_groups():
    groups = torch.tensor([0] * 90 + [1] * 10)
    gen = torch.Generator().manual_seed(0)
    order = np.concatenate([_epoch_order(np.arange(100), groups, "group_balanced", 2, gen) for _ in range(50)])
    share = (groups.numpy()[order] == 1).mean()
    assert abs(share - 0.5) < 0.03  # 5000 draws: binomial sd 0.007
    shuffled = _epoch_order(np.arange(100), groups, "shuffle", 2, gen)
    assert sorted(shuffled) == list(range(100))


def test_augment_keeps_shape_and_content_range():
    x = torch.rand(8, 3, 32, 32)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert y.min() >= x.min() and y.max() <= x.max()
    # a constant image stays constant under crops with reflect padding and flips
    const = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(augment(const, torch.Generator().manual_seed(1)), const)


def test_bad_hparams_are_clear_errors(toy_benchmark):
    with pytest.raises(HarnessError, match="sampler"):
        TrainHparams.from_dict({**HP, "sampler": "magic"})
    with pytest.raises(HarnessError, match="selection"):
        TrainHparams.from_dict({**HP, "selection": "test_acc"})
    model = create_model("resnet18", 2, 32, width=0.25)
    with pytest.raises(HarnessError, match="empty"):
        fit(model, toy_benchmark.splits["train"], TrainHparams.from_dict(HP), device=torch.device("cpu"), seed=0,
            num_groups=4, indices=np.array([], dtype=int), val=toy_benchmark.splits["val"], show_progress=False)
