"""A run's per-example predictions and weights: what its metrics are computed from, ``evaluate`` computing
them again equal to the record (on real tiny runs), and the Python API."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import harness
from harness.cli import main
from harness.core.errors import HarnessError
from harness.data.catalog import load_benchmark
from harness.data.containers import Benchmark, Split
from harness.engine.evaluation import predict_logits
from harness.experiments.predictions import Predictions, collect_predictions, recompute

FAST = {"pretrained": "none", "width": 0.25, "depth": 2, "epochs": 2}


class FirstPixel(nn.Module):
    """Predicts class 1 exactly for images whose top-left pixel is bright."""

    def forward(self, x):
        bright = (x[:, 0, 0, 0] > 0.5).float()
        return torch.stack([1 - bright, bright], 1)


def hand_split(labels, groups, bright) -> Split:
    images = torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = 255 * torch.tensor(bright, dtype=torch.uint8)
    return Split(images=images, labels=torch.tensor(labels), spurious=torch.tensor(groups),
                 groups=torch.tensor(groups))


def test_predictions_and_their_metrics_by_hand(tmp_path):
    """Train groups 3:1 (weights 3/4, 1/4; waterbirds-synth weights its Avg). val: predictions 0, 1, 0 for
    labels 0, 1, 1 -> group a 1/1, b 1/2: worst .5, average 2/3, weighted 3/4 * 1 + 1/4 * 1/2 = .875.
    test: predictions 1, 0, 1, 1 for labels 0, 0, 1, 1 -> a 1/2, b 2/2: worst .5, average .75, weighted .625."""
    bench = Benchmark(name="waterbirds-synth", class_names=["0", "1"], spurious_names=["x", "y"],
                      group_names=["a", "b"], splits={
                          "train": hand_split([0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]),
                          "val": hand_split([0, 1, 1], [0, 1, 1], [0, 1, 0]),
                          "test": hand_split([0, 0, 1, 1], [0, 0, 1, 1], [1, 0, 1, 1])})
    predictions = collect_predictions(FirstPixel(), bench, torch.device("cpu"))
    assert predictions.split.tolist() == ["val"] * 3 + ["test"] * 4
    assert predictions.index.tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert predictions.label.tolist() == [0, 1, 1, 0, 0, 1, 1] and predictions.group.tolist() == [0, 1, 1, 0, 0, 1, 1]
    assert predictions.prediction.tolist() == [0, 1, 0, 1, 0, 1, 1]
    assert predictions.logits.tolist() == [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1], [0, 1]]
    assert np.isnan(predictions.aiou).all()  # no masks: no attention accuracy
    metrics = predictions.metrics()
    assert metrics["val"] == {"worst_group_acc": 0.5, "avg_acc": 2 / 3, "group_acc": {"a": 1.0, "b": 0.5},
                              "group_count": {"a": 1, "b": 2}, "weighted_avg_acc": 0.875}
    assert metrics["test"] == {"worst_group_acc": 0.5, "avg_acc": 0.75, "group_acc": {"a": 0.5, "b": 1.0},
                               "group_count": {"a": 2, "b": 2}, "weighted_avg_acc": 0.625}

    predictions.save(tmp_path / "p.npz")
    loaded = Predictions.load(tmp_path / "p.npz")
    for name in ("split", "index", "label", "group", "prediction", "logits", "aiou", "train_group_proportions"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(predictions, name))
    assert loaded.group_names == ["a", "b"] and loaded.metrics() == metrics


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real tiny run through the command line (ERM on waterbirds-synth: masks, weighted average), its
    weights saved, its progress written as to a log; (record path, stdout, stderr)."""
    out = tmp_path_factory.mktemp("run")
    argv = ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--arch", "resnet18", "--device", "cpu",
            "--out", str(out), "--save-model", *(f"--set={k}={v}" for k, v in FAST.items())]
    stdout, stderr = io.StringIO(), io.StringIO()  # no terminal
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(argv) == 0
    return out / "runs" / stdout.getvalue().splitlines()[-1].rsplit("/", 1)[-1], stdout.getvalue(), stderr.getvalue()


def test_run_prints_a_summary_and_the_record_path_last(tiny_run):
    path, stdout, _ = tiny_run
    record = json.loads(path.read_text())
    *summary, last = stdout.splitlines()
    assert last.endswith(f"runs/{record['run_id']}.json")
    val, test = record["metrics"]["val"], record["metrics"]["test"]
    assert summary[0] == (f"val:  worst-group {100 * val['worst_group_acc']:.1f} %, "
                          f"average {100 * val['avg_acc']:.1f} % "
                          f"(weighted by train groups {100 * val['weighted_avg_acc']:.1f} %)")
    assert summary[1].startswith(f"test: worst-group {100 * test['worst_group_acc']:.1f} %")
    assert summary[2] == (f"selected epoch {record['model_selection']['epoch']} by val_avg_acc; "
                          f"{record['cost']['seconds']:.1f} s")


def test_a_logged_run_writes_a_line_per_epoch_and_per_stage(tiny_run):
    """Two epochs, each a line with the time left but the last; the attention passes over val (one batch)
    and test (two batches) a line each, not one per batch."""
    stderr = tiny_run[2]
    assert "\r" not in stderr
    epochs = [line for line in stderr.splitlines() if line.startswith("ERM reference resnet18 seed 0 ")]
    assert [line.split()[5] for line in epochs] == ["1/2", "2/2"]
    assert "left]" in epochs[0] and "left" not in epochs[1]
    attention = [line.split()[2] for line in stderr.splitlines() if line.startswith("attention (gradcam) ")]
    assert attention == ["1/1", "2/2"]


def test_evaluate_recomputes_every_metric_of_a_real_run_equal_to_its_record(tiny_run, capsys):
    path, *_ = tiny_run
    record = json.loads(path.read_text())
    metrics, differing = recompute(path)
    assert differing == [] and metrics == record["metrics"]
    assert {"weighted_avg_acc", "aiou_worst", "aiou_avg", "group_aiou", "group_attention_correct"} <= set(
        metrics["test"])  # every kind of metric field is recomputed, not only the accuracies
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"every metric equals the record's ({path})"
    assert "landbird/water" in out and "weighted avg %" in out


def test_the_saved_rows_are_the_benchmark_and_the_saved_weights_give_the_saved_logits(tiny_run):
    path, *_ = tiny_run
    record = json.loads(path.read_text())
    predictions = harness.load_predictions(path)
    config = record["config"]
    bench = load_benchmark(config["dataset"], scale=config["scale"], data_seed=config["data_seed"],
                           image_size=config.get("image_size"), show_progress=False)
    model = harness.load_model(path)
    for name in ("val", "test"):
        rows = predictions.split == name
        split = bench.splits[name]
        assert predictions.index[rows].tolist() == list(range(len(split)))
        assert predictions.label[rows].tolist() == split.labels.tolist()
        assert predictions.group[rows].tolist() == split.groups.tolist()
        np.testing.assert_array_equal(predictions.prediction[rows], predictions.logits[rows].argmax(1))
        torch.testing.assert_close(predict_logits(model, split, torch.device("cpu")),
                                   torch.from_numpy(predictions.logits[rows]), rtol=0, atol=0)


def test_evaluate_refuses_changed_predictions_and_reports_changed_metrics(tiny_run, tmp_path, capsys):
    path, *_ = tiny_run
    runs = tmp_path / "runs"
    shutil.copytree(path.parent, runs)
    copy = runs / path.name
    record = json.loads(copy.read_text())

    record["metrics"]["test"]["group_acc"]["landbird/land"] += 0.5
    copy.write_text(json.dumps(record))
    assert main(["evaluate", str(copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 1 metric value(s) recomputed from the saved predictions differ from the record: "
                          "metrics.test.group_acc.landbird/land: ") and "\n" not in err

    predictions = runs / record["outputs"]["predictions"]["file"]
    predictions.write_bytes(predictions.read_bytes()[:-1])
    assert main(["evaluate", str(copy)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: predictions file {predictions} is not the one record {copy} "
                                               "saved (sha256 differs)")

    del record["outputs"]
    copy.write_text(json.dumps(record))
    assert main(["evaluate", str(copy)]) == 2
    assert "has no saved predictions" in capsys.readouterr().err
    with pytest.raises(HarnessError, match="has no saved model"):
        harness.load_model(copy)


def test_the_python_api_runs_and_evaluates(tmp_path):
    """A second real tiny run, through ``harness.run``: a multi-class preset with an extra test split."""
    record = harness.run("imagenet9-synth", "erm", arch="resnet18", settings=FAST, device="cpu", out=tmp_path,
                         show_progress=False)
    assert record.path == tmp_path / "runs" / f"{record['run_id']}.json"
    assert record == json.loads(record.path.read_text())
    assert harness.evaluate(record) == record["metrics"]
    assert set(record["metrics"]) == {"val", "test", "test_mixed_rand"}
    assert set(harness.load_predictions(record).split_names()) == {"val", "test", "test_mixed_rand"}


def test_importing_the_harness_imports_no_torch():
    code = "import sys, harness; print('torch' in sys.modules, callable(harness.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's block as written: its per-group error counts are the record's test group accuracies."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Outputs to analyse, and the Python API"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(block, {})  # noqa: S102  (the README's own example)
    first, *groups = capsys.readouterr().out.splitlines()
    (path,) = (tmp_path / "out" / "runs").glob("*.json")
    test = json.loads(path.read_text())["metrics"]["test"]
    assert first == f"{test['worst_group_acc']} {path.relative_to(tmp_path)}"
    for line in groups:
        name, errors, _, count = line.split()
        assert int(count) == test["group_count"][name]
        assert (int(count) - int(errors)) / int(count) == test["group_acc"][name]  # as group_metrics divides
    assert len(groups) == 4 and (tmp_path / "out" / "runs" / f"{path.stem}.model.safetensors").is_file()
