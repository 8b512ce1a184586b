"""Executors: failed-run records, the spawn worker pool, and the submitit path (its debug executor)."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from harness.core.errors import HarnessError
from harness.core.records import atomic_write_json, record_path
from harness.core.versions import code_version
from harness.experiments.executors import (
    LocalExecutor,
    SubmititExecutor,
    _init_worker,
    make_executor,
    run_one,
    visible_gpus,
)
from harness.experiments.runner import make_config, run_id

FAST = {"epochs": 1, "pretrained": "none", "width": 0.25}
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def config(seed: int = 0, **overrides) -> dict:
    return make_config(dataset="waterbirds-synth", method="erm", arch="resnet18", seed=seed,
                       overrides={**FAST, **overrides},
                       device="cpu")


def broken(folder: Path, seed: int = 0) -> dict:
    """A run that raises once it starts: its dataset folder exists but holds no dataset."""
    (folder / "empty").mkdir(exist_ok=True)
    return make_config(dataset="waterbirds", method="erm", seed=seed, data_root=str(folder / "empty"),
                       overrides=dict(FAST), device="cpu")


def test_a_raising_run_leaves_a_failed_record_under_its_run_id(tmp_path):
    bad = broken(tmp_path)
    outcome = run_one(bad, str(tmp_path), str(tmp_path / "cache"), show_progress=False)
    assert outcome.status == "failed" and outcome.run_id == run_id(bad)
    assert outcome.error == f"HarnessError: {tmp_path / 'empty' / 'metadata.csv'}: file not found"
    record = json.loads(record_path(tmp_path, run_id(bad)).read_text())
    assert record["status"] == "failed" and record["error"] == outcome.error
    assert "harness/data/real/" in record["traceback"] and record["config"] == bad
    assert (record["dataset"], record["method"], record["seed"]) == ("waterbirds", "erm", 0)


def test_a_finished_run_is_not_run_again(tmp_path):
    """Finished: ok and made by this code version (a record of another version is stale, see test_sweeps)."""
    good = config(seed=7)
    path = record_path(tmp_path, run_id(good))
    atomic_write_json(path, {"run_id": run_id(good), "status": "ok", "marker": 1, "code_version": code_version()})
    before = path.stat().st_mtime_ns
    outcome = run_one(good, str(tmp_path), str(tmp_path / "cache"), show_progress=False)
    assert outcome.status == "ok" and outcome.seconds == 0.0
    assert path.stat().st_mtime_ns == before and json.loads(path.read_text())["marker"] == 1


def test_worker_pool_runs_in_spawned_processes_with_a_log_per_run(tmp_path):
    configs = [config(seed=0), broken(tmp_path, seed=1)]
    executor = LocalExecutor(jobs=2, device="cpu", threads=1, show_progress=True)
    try:
        outcomes = {o.run_id: o for o in executor.map(configs, tmp_path, tmp_path / "cache")}
    finally:
        executor.close()
    good, bad = (run_id(c) for c in configs)
    assert outcomes[good].status == "ok" and outcomes[bad].status == "failed"
    assert json.loads(record_path(tmp_path, good).read_text())["status"] == "ok"
    assert "ERM reference resnet18 seed 0 1/1" in (tmp_path / "logs" / f"{good}.log").read_text()  # line progress
    assert "metadata.csv: file not found" in (tmp_path / "logs" / f"{bad}.log").read_text()
    assert (tmp_path / "logs" / ".gitignore").read_text() == "*\n"  # logs are not results


def test_submitit_path_through_its_debug_executor(tmp_path):
    # submitit's own job array and polling code, jobs run in this process (the worker-pool test above
    # shows run_one is picklable for processes that import it, as SLURM jobs do)
    good, bad = config(seed=0), broken(tmp_path)
    executor = make_executor("submitit", out_dir=tmp_path, submitit_options={
        "cluster": "debug", "poll_seconds": 0.01, "timeout_min": 10, "partition": "ignored-off-slurm"})
    assert isinstance(executor, SubmititExecutor) and not executor.prepares_locally
    outcomes = {o.run_id: o for o in executor.map([good, bad], tmp_path, tmp_path / "cache")}
    assert outcomes[run_id(good)].status == "ok" and outcomes[run_id(bad)].status == "failed"
    assert "metadata.csv: file not found" in outcomes[run_id(bad)].error
    assert json.loads(record_path(tmp_path, run_id(good)).read_text())["status"] == "ok"
    assert any((tmp_path / "submitit").iterdir())  # submitit's job folder


def test_bad_executor_settings_fail_clearly(tmp_path):
    with pytest.raises(HarnessError, match="submitit options .* rejected"):
        SubmititExecutor(tmp_path, {"cluster": "local", "colour": "blue"})
    with pytest.raises(HarnessError, match="unknown executor 'cloud'"):
        make_executor("cloud", out_dir=tmp_path)
    with pytest.raises(HarnessError, match="--jobs must be at least 1"):
        LocalExecutor(jobs=0)
    with pytest.raises(HarnessError, match="--jobs must be at least 1, got 0"):
        make_executor("submitit", out_dir=tmp_path, jobs=0, submitit_options={"cluster": "local"})
    if not torch.cuda.is_available():
        with pytest.raises(HarnessError, match="no GPU is visible"):
            LocalExecutor(device="cuda")


def test_worker_initializer_pins_one_gpu_and_the_thread_share(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    gpu_ids = queue.Queue()
    gpu_ids.put(2)
    _init_worker(gpu_ids, 1, os.getpid())  # its own pid: no parent watch in the test process
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2" and torch.get_num_threads() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert visible_gpus(2) == ["4", "6"]  # workers keep to the GPUs this process was given
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus(3) == ["0", "1", "2"]
    executor = LocalExecutor(jobs=3, device="cpu")
    assert executor.workers == 3 and executor.threads == 1  # one torch thread shared by three workers


def test_submitit_local_cluster_keeps_to_jobs_runs_at_a_time(tmp_path):
    configs = [config(seed=0), config(seed=1)]
    executor = make_executor("submitit", out_dir=tmp_path, jobs=1,
                             submitit_options={"cluster": "local", "poll_seconds": 0.2, "timeout_min": 10})
    outcomes = list(executor.map(configs, tmp_path, tmp_path / "cache"))
    assert [o.status for o in outcomes] == ["ok", "ok"]
    spans = []  # (start, end) of each run from its record: end = created (whole seconds), start = end - seconds
    for c in configs:
        record = json.loads(record_path(tmp_path, run_id(c)).read_text())
        end = datetime.fromisoformat(record["created"]).timestamp()
        spans.append((end - record["cost"]["seconds"], end))
    (first_start, first_end), (second_start, second_end) = sorted(spans)
    assert second_start >= first_end - 1.0  # one after the other (1 s: the records' time resolution)


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("executor", ["local", "submitit"])
def test_workers_die_when_the_sweep_is_killed(tmp_path, executor):
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(
        'name = "orphans"\nscale = "tiny"\ndatasets = ["waterbirds-synth"]\nmethods = ["erm"]\n'
        'archs = ["resnet18"]\nseeds = [0, 1]\n[overrides]\nepochs = 200\npretrained = "none"\nwidth = 0.25\n'
        '[submitit]\ncluster = "local"\npoll_seconds = 0.2\ntimeout_min = 30\n')
    command = [sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(tmp_path / "out"),
               "--device", "cpu", "--jobs", "2", "--executor", executor, "--quiet"]
    sweep = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # starting is not what is tested: a busy machine takes minutes to load torch
    while len(descendants(sweep.pid)) < 3 or not _two_runs_started(tmp_path / "out", executor):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep did not start two runs"
        time.sleep(0.2)
    workers = descendants(sweep.pid)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 20  # a submitit job still starting up finds the sweep gone when it starts
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = {pid for pid in workers if alive(pid)}
    for pid in survivors:  # leave nothing running whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} of {len(workers)} workers outlived the sweep"


def sleeping_sweep() -> subprocess.Popen:
    """A stand-in for a sweep: a process that lives until killed (not the job's parent, as under submitit)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def job(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)


def ended_within(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the watchdog is a forked process")
def test_a_job_holding_the_interpreter_lock_still_dies_with_its_sweep():
    """On a busy machine a submitit job spends minutes loading torch, its main thread holding the interpreter
    lock for long stretches: a watcher thread in the job then never ran, and the jobs outlived the sweep
    (issue 31: 4 of 4 after 20 s; measured 90 s). The watchdog is a process of its own."""
    sweep = sleeping_sweep()
    busy = job(f"from harness.experiments.executors import die_with\ndie_with({sweep.pid})\n"
               "print('watching', flush=True)\n"
               "sum(range(10**13))  # in C throughout: no other thread of this process runs meanwhile")
    assert busy.stdout.readline().strip() == "watching"
    time.sleep(0.5)
    sweep.kill()
    sweep.wait()
    assert ended_within(busy, 10), "the job outlived its sweep"
    assert busy.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the watchdog is a forked process")
def test_a_job_ties_itself_to_its_sweep_before_its_slow_imports():
    """run_one watched the sweep only after importing the runner (torch), which took 90 s on a machine with a
    load of 13 on 2 cores: a sweep killed meanwhile left its jobs running that long. Here the import sleeps
    15 s; the job must die at once with the sweep, without finishing it."""
    sweep = sleeping_sweep()
    code = ("import importlib.abc, sys, time\n"
            "class SlowRunner(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'harness.experiments.runner':\n"
            "            time.sleep(15)\n"
            "            print('runner imported', flush=True)\n"
            "sys.meta_path.insert(0, SlowRunner())\n"
            "from harness.experiments.executors import run_one\n"
            "print('starting', flush=True)\n"
            f"run_one({{}}, 'out', 'cache', sweep_pid={sweep.pid})\n")
    slow = job(code)
    assert slow.stdout.readline().strip() == "starting"
    time.sleep(1.0)
    started = time.monotonic()
    sweep.kill()
    sweep.wait()
    assert ended_within(slow, 10), "the job outlived its sweep"
    assert time.monotonic() - started < 10 and slow.returncode == -signal.SIGKILL
    assert slow.stdout.read() == ""  # killed inside the import


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_a_jobs_watchdog_ends_with_the_job():
    sweep = sleeping_sweep()
    try:
        finishing = job(f"from harness.experiments.executors import die_with\ndie_with({sweep.pid})\n"
                        "print('watching', flush=True)\nimport time\ntime.sleep(2)")
        assert finishing.stdout.readline().strip() == "watching"
        watchdogs = descendants(finishing.pid)
        assert len(watchdogs) == 1
        assert ended_within(finishing, 30) and finishing.returncode == 0  # the job ends on its own
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in watchdogs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in watchdogs) and sweep.poll() is None
    finally:
        sweep.kill()
        sweep.wait()


def _two_runs_started(out: Path, executor: str) -> bool:
    """Both runs are under way: the pool's per-run logs, or the job logs submitit opens as a job starts."""
    if executor == "local":
        return len(list((out / "logs").glob("*.log"))) == 2
    return len(list((out / "submitit").glob("*_0_log.out"))) == 2


def test_a_new_generator_version_is_a_new_run(monkeypatch):
    """Records drawn by an older generator, or before a preset was recalibrated, do not count as this
    configuration's: the preset's data version is in the config, so the run id changes with it, and
    recalibrating one preset leaves the other presets' runs as they were."""
    import dataclasses

    import harness.experiments.runner as runner
    from harness.data.synthetic import generate, presets

    config = runner.make_config(dataset="waterbirds-synth", method="erm")
    other = runner.make_config(dataset="isic-synth", method="erm")
    assert config["data_version"] == generate.data_version("waterbirds-synth")
    assert config["data_version"].startswith(f"{generate.GENERATOR_VERSION}.")
    monkeypatch.setattr(generate, "GENERATOR_VERSION", generate.GENERATOR_VERSION + 1)
    assert runner.run_id(runner.make_config(dataset="waterbirds-synth", method="erm")) != runner.run_id(config)
    monkeypatch.undo()
    preset = presets.PRESETS["waterbirds-synth"]
    recalibrated = dataclasses.replace(preset, difficulty=dataclasses.replace(preset.difficulty, noise=0.05))
    monkeypatch.setitem(presets.PRESETS, "waterbirds-synth", recalibrated)
    assert runner.run_id(runner.make_config(dataset="waterbirds-synth", method="erm")) != runner.run_id(config)
    assert runner.run_id(runner.make_config(dataset="isic-synth", method="erm")) == runner.run_id(other)
    # real datasets carry no generator version
    assert "data_version" not in runner.make_config(dataset="waterbirds", method="erm", data_root="/data/wb")
