"""``python -m harness gpu-check``: its quick run on the CPU (what CI can run) and its parts: the agreement
tolerance worked by hand, the JUnit and bench-table readers, and its argument errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checks.agreement import Comparison, allowed_change, curation_rows, flip_model_rows, seed_envelope
from harness.checks.gpu_check import TARGETS, junit_outcomes, targets

ROOT = Path(__file__).resolve().parents[1]


def gpu_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLIM_HARNESS_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "harness", "gpu-check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_quick_check_on_the_cpu_runs_every_section_and_writes_its_report(tmp_path):
    """The CI-sized check on the CPU: the gpu tests run on the CPU (the CUDA-only ones skipped, with their
    reason), every bench part gives its table and the targets are shown but not judged, (c) says why it is
    left out; the report printed is the report written, and the exit status is 0."""
    out = tmp_path / "report.md"
    done = gpu_check("--quick", "--device", "cpu", "--budget", "3600", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    assert "Device: CPU only" in report and "Command: `python -m harness gpu-check --quick" in report
    assert "Software: python" in report and "Code: commit" in report
    tests = report.split("## (a) Tests marked gpu")[1].split("## ")[0]
    assert " passed, 0 failed, " in tests and "on the CPU (--gpu-tests-on-cpu)" in tests
    assert "- skipped: `test_compiled_training_matches_eager`: CUDA only" in tests
    assert "(c) Agreement with the CPU" in report and "Not run with --quick" in report
    bench = report.split("## (b) Bench at the quick sizes")[1]
    for part in ("### train", "### attention", "### stem", "### data", "### slim (in this process)"):
        assert part in bench, part
    assert "| resnet18 | grad-cam package GradCAM, batched" in bench
    assert "### targets (shown, not judged" in bench and "| real-data path vs GPU-resident" in bench
    assert "no failure" in report.split("## Summary")[1]
    assert report.split("\n")[0] in done.stdout  # what it printed is what it wrote


@pytest.mark.parametrize("args, message", [
    (["--sections", "tests,nope"], "error: unknown section(s) nope; choose from tests, agreement, bench"),
    (["--budget", "0"], "error: --budget must be positive, got 0"),
    (["--device", "tpu"], "error: unknown device 'tpu'; choose auto, cpu or cuda"),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    done = gpu_check(*args, tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == message and not done.stdout


# ---- the agreement tolerance ----------------------------------------------------------------------------------
def test_allowed_change_by_hand():
    """ceil(3 sqrt(n q)): the default preset's test groups (187, 187, 53, 53; 480 in all) under bf16's 5 %
    allow 3 sqrt(9.35) = 9.2 -> 10, 3 sqrt(2.65) = 4.9 -> 5 and 3 sqrt(24) = 14.7 -> 15 images; float32's
    0.5 % on 53 images 3 sqrt(0.265) = 1.5 -> 2; a tiny rate still allows one image, a zero rate none."""
    assert [allowed_change(n, 0.05) for n in (187, 53, 480)] == [10, 5, 15]
    assert allowed_change(53, 0.005) == 2
    assert allowed_change(1, 0.001) == 1
    assert allowed_change(480, 0.0) == 0


def record(correct: dict[str, int], counts: dict[str, int], **details) -> dict:
    """A run record's test metrics (and details) with the given correct counts per group."""
    return {"metrics": {"test": {"group_acc": {g: correct[g] / counts[g] for g in counts}, "group_count": counts}},
            "details": details}


COUNTS = {"a": 187, "b": 53}


def test_flip_model_rows_judge_each_group_and_the_total():
    """Against (150, 40): (141, 45) moves a by -9 (allowed 10) and b by +5 (allowed 5), the total by -4 (allowed
    ceil(3 sqrt(12)) = 11): all within; (139, 40) moves a by -11: outside."""
    reference = record({"a": 150, "b": 40}, COUNTS)
    rows = flip_model_rows(reference, record({"a": 141, "b": 45}, COUNTS), 0.05)
    judged = {r.what: (r.change, r.allowed, r.ok) for r in rows if r.allowed is not None}
    assert judged == {"test a correct": (-9, 10, True), "test b correct": (5, 5, True),
                      "test all correct (avg acc)": (-4, 11, True)}
    worst = next(r for r in rows if r.what == "test worst-group acc")  # min(80.2, 75.5) and min(75.4, 84.9)
    assert (worst.reference, worst.value, worst.ok) == ("75.5", "75.4", None)
    outside = flip_model_rows(reference, record({"a": 139, "b": 40}, COUNTS), 0.05)
    assert [r.ok for r in outside if r.allowed is not None] == [False, True, True]


def test_curation_rows_hold_queries_and_subset_exactly_and_accuracies_to_the_seed_envelope():
    """The envelope is the largest change between seed 0 and the other seeds: a by max(|160-150|, |145-150|) =
    10, b by max(|30-40|, |41-40|) = 10, the total by max(|190-190|, |186-190|) = 4."""
    seed0 = record({"a": 150, "b": 40}, COUNTS)
    envelope = seed_envelope(seed0, [record({"a": 160, "b": 30}, COUNTS), record({"a": 145, "b": 41}, COUNTS)])
    assert envelope == {"a": 10, "b": 10, "all": 4}
    reference = record({"a": 150, "b": 40}, COUNTS, queries=8, subset_size=24)
    rows = curation_rows(reference, record({"a": 156, "b": 37}, COUNTS, queries=8, subset_size=23), envelope, 0.05)
    verdicts = {r.what: r.ok for r in rows}
    assert verdicts == {"attention queries": True, "curated subset size": False, "test a correct": True,
                        "test b correct": True, "test all correct (avg acc)": True, "test worst-group acc": None}
    exact = curation_rows(reference, record({"a": 151, "b": 40}, COUNTS, queries=8, subset_size=24), None, 0.0)
    assert [r.ok for r in exact if r.what == "test a correct"] == [False]  # a CPU rerun must match exactly
    unjudged = curation_rows(reference, record({"a": 90, "b": 40}, COUNTS, queries=8, subset_size=24), None, 0.05)
    assert [r.ok for r in unjudged if r.what == "test a correct"] == [None]


def test_records_of_different_splits_are_refused():
    with pytest.raises(ValueError, match="different groups"):
        flip_model_rows(record({"a": 1, "b": 1}, COUNTS), record({"a": 1, "b": 1}, {"a": 187, "b": 54}), 0.05)


def test_comparison_ok_is_the_absolute_change_within_the_allowed():
    assert Comparison("x", "1", "2", -3, 3).ok and not Comparison("x", "1", "2", 4, 3).ok
    assert Comparison("x", "1", "2", 4, None).ok is None


# ---- the readers -------------------------------------------------------------------------------------------------
def test_junit_outcomes(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text("""<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="t" name="test_ok"/>
<testcase classname="t" name="test_bad"><failure message="assert 1 == 2&#10;more">trace</failure></testcase>
<testcase classname="t" name="test_broken"><error message="fixture failed">trace</error></testcase>
<testcase classname="t" name="test_skip"><skipped message="CUDA only: why"/></testcase>
</testsuite></testsuites>""")
    assert junit_outcomes(path) == [("test_ok", "passed", ""), ("test_bad", "failed", "assert 1 == 2"),
                                    ("test_broken", "failed", "fixture failed"),
                                    ("test_skip", "skipped", "CUDA only: why")]


def test_targets_are_read_from_the_bench_tables_and_judged_only_when_asked():
    tables = {
        "train": [["arch", "variant", "img/s", "vs plain (compiled if run)", "warm-up extra s", "peak GPU MiB"],
                  ["resnet50", "ours, eager", "3,000", "0.62x", "1", "2"],
                  ["resnet50", "plain timm loop, eager", "3,100", "0.65x", "1", "2"],
                  ["resnet50", "ours, torch.compile", "4,700", "0.97x", "40", "2"],
                  ["resnet50", "plain timm loop, torch.compile", "4,800", "1.00x", "40", "2"]],
        "attention": [["arch", "variant", "img/s", "ours / this"],
                      ["resnet50", "ours: extract (CAM, F, F_A, F_Abar)", "14,000", "1.00x"],
                      ["resnet50", "plain forward-only inference", "15,000", "0.93x"],
                      ["resnet50", "grad-cam package GradCAM, batched", "550", "25.45x"]],
        "slim": [["stage", "seconds", "note"], ["total", "41.5", "160,000 x 2048 features"]],
        "data": [["source", "img/s", "vs on the device", "peak GPU MiB"],
                 ["already on the device", "4,000", "1.00x", "1"],
                 ["memory-mapped uint8 cache, moved whole per fit", "3,600", "0.90x", "1"],
                 ["memory-mapped uint8 cache, streamed through pinned memory", "2,800", "0.70x", "1"]],
    }
    rows = targets(tables, judged=True)
    assert rows[0] == ["target", "case", "measured", "goal", "met"]
    got = {(row[0], row[1]): (row[2], row[4]) for row in rows[1:]}
    assert got == {
        (TARGETS["train"][0], "resnet50, the better of ours eager and compiled"): ("0.97", "yes"),
        (TARGETS["package"][0], "resnet50"): ("25.45", "yes"),
        (TARGETS["inference"][0], "resnet50"): ("0.93", "yes"),
        (TARGETS["slim"][0], "total"): ("41.5", "NO"),
        (TARGETS["data"][0], "moved whole"): ("0.9", "yes"),
        (TARGETS["data"][0], "streamed"): ("0.7", "NO"),
    }
    assert {row[4] for row in targets(tables, judged=False)[1:]} == {"-"}
