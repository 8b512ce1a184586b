"""Thread-count independence: the same records from processes given 1 and 2 CPU threads, every method."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from harness.core.threads import RUN_THREADS, pinned_threads

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("erm", "jtt", "gdro", "dfr", "slim-tr", "slim-val")
# ERM keeps its defaults (it is the shared reference model, trained once); the others train briefly.
SWEEP = """
name = "threads"
scale = "tiny"
datasets = ["waterbirds-synth"]
methods = [{methods}]
archs = ["resnet18"]
seeds = [0]
[overrides]
pretrained = "none"
width = 0.25
[overrides_by_method.jtt]
epochs = 1
jtt_epochs = 1
[overrides_by_method.gdro]
epochs = 1
[overrides_by_method.dfr]
dfr_num_retrains = 3
[overrides_by_method.slim-tr]
epochs = 1
figures = false
[overrides_by_method.slim-val]
figures = false
""".format(methods=", ".join(f'"{m}"' for m in METHODS))
TIMING = ("created", "environment")  # wall-clock facts, and the machine (threads available) itself


def comparable(record: dict) -> dict:
    """The record less its wall-clock times and machine facts (SLIM's simulated annotation time stays)."""
    record = json.loads(json.dumps({k: v for k, v in record.items() if k not in TIMING}))
    record["cost"].pop("seconds")
    record["details"].get("attention_space", {}).pop("seconds", None)
    return record


def test_every_method_gives_the_same_record_with_1_and_2_threads(tmp_path):
    sweep_file = tmp_path / "threads.toml"
    sweep_file.write_text(SWEEP)
    processes = {}
    for threads in (1, 2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads),
               "SLIM_HARNESS_CACHE": str(tmp_path / f"machine-cache{threads}")}
        command = [sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(tmp_path / f"t{threads}"),
                   "--device", "cpu", "--jobs", "1", "--quiet"]
        processes[threads] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)
    for process in processes.values():
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, output

    def records(threads: int) -> dict[str, dict]:
        runs = tmp_path / f"t{threads}" / "runs"
        return {r["method"]: r for r in (json.loads(p.read_text()) for p in runs.glob("*.json"))}

    one, two = records(1), records(2)
    assert sorted(one) == sorted(two) == sorted(METHODS)
    for method in METHODS:
        assert one[method]["status"] == "ok", one[method]["error"]
        assert one[method]["environment"]["threads"] == two[method]["environment"]["threads"] == RUN_THREADS
        assert comparable(one[method]) == comparable(two[method]), method


def test_pinned_threads_sets_and_restores_every_pool():
    from threadpoolctl import threadpool_info

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pinned_threads(1) as threads:
            assert threads == 1 and torch.get_num_threads() == 1
            assert os.environ["OMP_NUM_THREADS"] == "1"
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_numba_first_loaded_inside_a_run_still_compiles_after_it(tmp_path):
    """numba reads NUMBA_NUM_THREADS once; a pinned block that set it around numba's first import, then put
    it back, made every later compile fail ("Cannot set NUMBA_NUM_THREADS to a different value once the
    threads have been launched"), as happened on a fresh machine whose numba cache was empty."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from harness.core.threads import pinned_threads\n"
        "with pinned_threads(1):\n"
        "    import numba\n"
        "    @numba.njit(parallel=True)\n"
        "    def total(x):\n"
        "        s = 0.0\n"
        "        for i in numba.prange(len(x)):\n"
        "            s += x[i]\n"
        "        return s\n"
        "    total(np.ones(64))\n"
        "@numba.njit\n"
        "def plus_one(x):\n"
        "    return x + 1\n"
        "print(plus_one(1))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "2"
