"""The CI regression: summaries and tolerances by hand, the comparison, and a broken method caught."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from baselines.erm import ERM
from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.engine.context import RunContext
from harness.engine.methods import MethodResult
from harness.experiments.regression import (
    BASELINE_PATH,
    blind_spots,
    compare,
    failures,
    load_baseline,
    render,
    run_regression,
    summarize,
    tolerances,
)


def record(method: str, seed: int, worst: float, avg: float, dataset: str = "waterbirds-synth",
           status: str = "ok") -> dict:
    metrics = {"test": {"worst_group_acc": worst, "avg_acc": avg}} if status == "ok" else {}
    return {"run_id": f"{dataset}-{method}-{seed}", "status": status, "dataset": dataset, "method": method,
            "seed": seed, "metrics": metrics}


GOOD = [
    record("erm", 0, 0.60, 0.90), record("erm", 1, 0.64, 0.92), record("erm", 2, 0.62, 0.91),
    record("slim-tr", 0, 0.80, 0.88), record("slim-tr", 1, 0.84, 0.90), record("slim-tr", 2, 0.82, 0.89),
]


def baseline_of(records: list[dict], sigmas: float = 2.0, floor: float = 0.01) -> dict:
    summary = summarize(records)
    return {"tolerances": tolerances(summary, sigmas, floor),
            "cells": [{"dataset": d, "method": m, **stats} for (d, m), stats in summary.items()]}


def test_summary_and_tolerance_by_hand():
    summary = summarize(GOOD + [record("jtt", 0, 0.0, 0.0, status="failed")])
    # the failed run is left out
    assert set(summary) == {("waterbirds-synth", "erm"), ("waterbirds-synth", "slim-tr")}
    erm = summary[("waterbirds-synth", "erm")]
    assert erm["seeds"] == [0, 1, 2]
    assert erm["worst_group_acc"]["mean"] == pytest.approx(0.62)
    assert erm["worst_group_acc"]["std"] == pytest.approx(0.02)  # deviations -.02, .02, 0 -> sqrt(.0008 / 2)
    assert erm["avg_acc"]["std"] == pytest.approx(0.01)
    tol = tolerances(summary, sigmas=2.0, floor=0.01)
    # each method's cell: worst std .02 -> 2 * .02 / sqrt(3) = .0231; avg std .01 -> .0115
    for method in ("erm", "slim-tr"):
        assert tol[method]["worst_group_acc"] == pytest.approx(2 * 0.02 / math.sqrt(3), abs=1e-4)
        assert tol[method]["avg_acc"] == pytest.approx(2 * 0.01 / math.sqrt(3), abs=1e-4)
    assert tolerances(summary, sigmas=2.0, floor=0.05)["erm"] == {"worst_group_acc": 0.05, "avg_acc": 0.05}


def test_blind_spots_by_hand():
    # ERM worst 0.62 on waterbirds; GroupDRO 0.64 (+2 points) with a tolerance of 2.31 points: blind there
    near = GOOD + [record("gdro", s, w, 0.9) for s, w in enumerate((0.62, 0.66, 0.64))]
    summary = summarize(near)
    (line,) = blind_spots(summary, tolerances(summary))
    assert line.startswith("waterbirds-synth: no group-aware method") and "gdro +2.0" in line
    # DFR 8 points ahead on isic-synth, where ERM's worst group is 0: the first check fires, the second not
    isic = [record(m, s, w, 0.9, dataset="isic-synth") for m, w in (("erm", 0.0), ("dfr", 0.08)) for s in range(3)]
    summary = summarize(isic)
    assert blind_spots(summary, tolerances(summary)) == ["isic-synth: ERM's worst-group accuracy is 0"]
    far = GOOD + [record("dfr", s, 0.75, 0.9) for s in range(3)]
    assert blind_spots(summarize(far), tolerances(summarize(far))) == []


def test_the_committed_baseline_can_see_a_worst_group_regression():
    """On every preset of CI's grid ERM's worst group is above 0 and GroupDRO or DFR leads it by more than
    its tolerance, so a group-aware method that broke would show (issue 14)."""
    baseline = load_baseline(BASELINE_PATH)
    summary = {(c["dataset"], c["method"]): c for c in baseline["cells"]}
    assert blind_spots(summary, baseline["tolerances"]) == []


def test_tolerance_is_pooled_per_method_over_its_datasets():
    # jtt: worst-group stds .02 (waterbirds) and .14 (isic, values .5 .7 .78 -> deviations -.16 .04 .12)
    noisy = [record("jtt", s, w, 0.9, dataset="isic-synth") for s, w in ((0, 0.50), (1, 0.70), (2, 0.78))]
    steady = [record("jtt", s, w, 0.9) for s, w in ((0, 0.60), (1, 0.64), (2, 0.62))]
    tol = tolerances(summarize(GOOD + noisy + steady), sigmas=2.0, floor=0.01)
    isic_std = math.sqrt((0.16 ** 2 + 0.04 ** 2 + 0.12 ** 2) / 2)
    pooled = math.sqrt((0.02 ** 2 + isic_std ** 2) / 2)
    assert tol["jtt"]["worst_group_acc"] == pytest.approx(2 * pooled / math.sqrt(3), abs=1e-4)
    # ERM's tolerance is its own, not widened by JTT's noise; a constant metric gets the floor
    assert tol["erm"]["worst_group_acc"] == pytest.approx(2 * 0.02 / math.sqrt(3), abs=1e-4)
    assert tol["jtt"]["avg_acc"] == 0.01
    # an ERM drop of 3 points fails even though it is well inside JTT's tolerance
    baseline = baseline_of(GOOD + noisy + steady)
    worse_erm = [record("erm", r["seed"], r["metrics"]["test"]["worst_group_acc"] - 0.03, 0.91)
                 for r in GOOD[:3]]
    bad = failures(compare(baseline, summarize(worse_erm + GOOD[3:] + noisy + steady)))
    assert [(r.method, r.metric) for r in bad] == [("erm", "worst_group_acc")]


def test_a_method_that_ignores_its_curated_subset_is_named():
    baseline = baseline_of(GOOD)
    # slim-tr trained on the whole train set behaves like ERM: worst group .62 instead of .82
    like_erm = ((0, 0.60, 0.90), (1, 0.64, 0.92), (2, 0.62, 0.91))
    broken = GOOD[:3] + [record("slim-tr", s, w, a) for s, w, a in like_erm]
    rows = compare(baseline, summarize(broken))
    bad = failures(rows)
    assert [(r.method, r.metric) for r in bad] == [("slim-tr", "worst_group_acc")]
    assert bad[0].difference == pytest.approx(-0.20)
    text = render(rows)
    assert "slim-tr" in text and "FAIL" in text and "-20.0" in text and "82.0" in text and "62.0" in text
    # its average rose by 2 points, beyond the 1.2-point tolerance: reported, not failed
    assert {(r.method, r.metric): r.verdict for r in rows}[("slim-tr", "avg_acc")] == "improved"


def test_drops_within_tolerance_pass_and_missing_cells_fail():
    baseline = baseline_of(GOOD)
    slightly_worse = [record(r["method"], r["seed"], r["metrics"]["test"]["worst_group_acc"] - 0.01,
                             r["metrics"]["test"]["avg_acc"] - 0.005) for r in GOOD]
    assert failures(compare(baseline, summarize(slightly_worse))) == []
    without_slim = summarize(GOOD[:3] + [record("dfr", 0, 0.7, 0.9)])
    rows = compare(baseline, without_slim)
    assert {(r.method, r.verdict) for r in failures(rows)} == {("slim-tr", "missing")}
    assert {r.verdict for r in rows if r.method == "dfr"} == {"new"}  # new cells are reported only


def test_missing_or_foreign_baseline_fails_clearly(tmp_path):
    with pytest.raises(HarnessError, match="create one with `python -m harness regression --update-base"):
        load_baseline(tmp_path / "none.json")
    (tmp_path / "old.json").write_text(json.dumps({"cells": []}))
    with pytest.raises(HarnessError, match="not a schema-2 baseline"):
        load_baseline(tmp_path / "old.json")


class ConstantERM(ERM):
    """A deliberately broken ERM: an untrained network whose head predicts the rarest test class."""

    def fit(self, ctx: RunContext) -> MethodResult:
        labels = ctx.benchmark.splits["test"].labels
        rarest = int(torch.bincount(labels, minlength=ctx.benchmark.num_classes).argmin())
        model = ctx.new_model()
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(10 * nn.functional.one_hot(torch.tensor(rarest), ctx.benchmark.num_classes))
        selection = {"criterion": "last", "uses_val_group_labels": False, "epoch": 0}
        return MethodResult(model=model, selection=selection)


def test_end_to_end_deterministic_then_a_broken_method_fails(tmp_path, monkeypatch):
    grid = tmp_path / "grid.toml"
    grid.write_text('name = "mini"\nscale = "tiny"\ndatasets = ["waterbirds-synth"]\nmethods = ["erm"]\n'
                    'archs = ["resnet18"]\nseeds = [0]\n'
                    '[overrides]\nepochs = 1\npretrained = "none"\nwidth = 0.25\n'
                    '[regression]\nsigmas = 2.0\nfloor = 0.01\n')
    baseline_path = tmp_path / "baseline.json"
    lines: list[str] = []
    common = dict(config=str(grid), baseline_path=baseline_path, jobs=1, show_progress=False,
                  log=lines.append)
    assert run_regression(update=True, **common) == 0
    baseline = json.loads(baseline_path.read_text())
    assert {"git_commit", "created", "environment", "tolerances", "tolerance_rule"} <= set(baseline)
    assert set(baseline["tolerances"]) == {"erm"}
    assert baseline["cells"][0]["seeds"] == [0]
    lines.clear()
    assert run_regression(**common) == 0  # same code, same numbers
    assert "regression passed" in lines[-1]

    monkeypatch.setitem(METHODS._entries, "erm", ConstantERM)
    lines.clear()
    assert run_regression(**common) == 1
    assert "REGRESSION: erm on waterbirds-synth: avg_acc" in lines[-1]
    assert "FAIL" in "\n".join(lines)
