"""Where a sweep's runs execute: this machine's worker processes, or cluster jobs through submitit.

Both go through :func:`run_one`, a top-level (picklable) function taking a run config and the sweep's
folders: it runs the config with ``runner.execute`` and, when the run raises, writes a record with
status ``failed``, the error and a traceback summary under the same run id, so one failing run never
stops the sweep. Its records and the shared cache are written atomically, so a worker killed at any
moment leaves nothing that reads as finished.

This module imports neither torch nor the runner at its top: a spawned worker unpickles its functions
from here and must set CUDA_VISIBLE_DEVICES (``_init_worker``) before anything asks torch about CUDA, so
the runner, the models and torch are imported inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from harness.core.disk import DiskFull, as_disk_full, disk_full, is_disk_full
from harness.core.errors import HarnessError
from harness.core.records import SCHEMA_VERSION, atomic_write_json, environment, now_iso, record_path
from harness.core.tempfiles import process_alive
from harness.core.threads import RUN_THREADS
from harness.core.versions import code_version, current_version, record_version
from harness.data.facts import is_synthetic
from harness.data.sizes import REAL_IMAGE_SIZE

EXECUTORS = ("local", "submitit")
TRACEBACK_FRAMES = 8  # innermost frames kept in a failed run's record
PARENT_POLL_SECONDS = 0.2  # how often a watchdog without a pidfd checks that the sweep still lives
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    label: str
    status: str  # "ok" | "failed"
    seconds: float
    error: str | None = None
    disk_full: str | None = None  # the one-line DiskFull message when the run failed for a full disk


def describe(config: dict[str, Any]) -> str:
    """A short human name of a run: dataset/method/arch/seed, plus SLIM's budget and subset fraction."""
    text = f"{config['dataset']}/{config['method']}/{config['arch']}/seed{config['seed']}"
    hp = config["hparams"]
    if "budget" in hp:
        text += f" budget={hp['budget']} subset={hp['subset_frac']}"
    return text


def run_record(out_dir: Path, rid: str) -> dict[str, Any] | None:
    """The run's record, or None when it is absent, unreadable or another run's (then the run is redone)."""
    try:
        record = json.loads(record_path(out_dir, rid).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") == rid else None


def record_status(out_dir: Path, rid: str) -> str | None:
    """The status of a run's record, or None when it is absent or unreadable (then the run is redone)."""
    record = run_record(out_dir, rid)
    return None if record is None else record.get("status")


def is_current(out_dir: Path, rid: str) -> bool:
    """True when the run's record says ``ok`` and was made by this code version (harness.core.versions)."""
    record = run_record(out_dir, rid)
    return record is not None and record.get("status") == "ok" and record_version(record) == current_version()


def record_failure(config: dict[str, Any], out_dir: Path, error: str, trace: str = "",
                   seconds: float = 0.0, cause: BaseException | None = None) -> RunOutcome:
    """Write a ``failed`` record for ``config`` (same run id as a success would have) and describe it. When
    the disk is full (the ``cause``, or this write) the outcome says so, with or without the record."""
    from harness.experiments.runner import run_id  # imports torch: see the module docstring

    rid = run_id(config)
    record = {
        "schema": SCHEMA_VERSION, "run_id": rid, "created": now_iso(), "status": "failed", "error": error,
        "traceback": trace, **{k: config[k] for k in ("dataset", "method", "arch", "seed", "scale")},
        "config": config, "metrics": {}, "cost": {"seconds": round(seconds, 2)},
        "environment": environment(str(config.get("device", "auto"))), "code_version": code_version(),
    }
    full = as_disk_full(cause, Path(out_dir)) if cause is not None else None
    try:
        atomic_write_json(record_path(out_dir, rid), record)
    except DiskFull as exc:  # no record: the run counts as not started on the next start
        return RunOutcome(rid, describe(config), "failed", seconds, f"{error} (its failed record: {exc})",
                          str(full or exc))
    return RunOutcome(rid, describe(config), "failed", seconds, error, None if full is None else str(full))


def run_one(config: dict[str, Any], out_dir: str, cache_dir: str, log_path: str | None = None,
            show_progress: bool = True, sweep_pid: int | None = None) -> RunOutcome:
    """Run one config (skipping it if its record is already ``ok`` and of this code version); never raises
    for a failing run.

    ``sweep_pid``: the process of the sweep on this machine; this one ends when that one does.
    """
    if sweep_pid is not None:
        die_with(sweep_pid)  # first: importing the runner (torch) takes minutes on a busy machine
    from harness.experiments.runner import execute, run_id  # imports torch: see the module docstring

    rid = run_id(config)
    if is_current(Path(out_dir), rid):
        return RunOutcome(rid, describe(config), "ok", 0.0)
    started = time.monotonic()
    try:
        with _output_to(log_path):
            try:
                execute(config, Path(out_dir), cache_dir=Path(cache_dir), show_progress=show_progress)
            except Exception as exc:  # noqa: BLE001  (any error of a run becomes its failed record)
                trace = "".join(traceback.format_exception(exc, limit=-TRACEBACK_FRAMES))
                if log_path is not None:
                    with contextlib.suppress(OSError):  # a full disk refuses the log too; the record holds it
                        print(trace, flush=True)
                return record_failure(config, Path(out_dir), f"{type(exc).__name__}: {exc}", trace,
                                      time.monotonic() - started, exc)
    except OSError as exc:  # the run's log could not be written (closing it flushes it)
        if not is_disk_full(exc):
            raise
        return record_failure(config, Path(out_dir), f"{type(exc).__name__}: {exc}", "",
                              time.monotonic() - started, disk_full(Path(log_path or out_dir)))
    return RunOutcome(rid, describe(config), "ok", time.monotonic() - started)


@contextlib.contextmanager
def _output_to(log_path: str | None) -> Iterator[None]:
    """Send the run's prints and progress lines to its log file (workers of a parallel sweep)."""
    if log_path is None:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def scratch_folder(path: Path) -> Path:
    """Create ``path`` with a .gitignore that ignores it all (caches, logs: regenerable, not results)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".gitignore").write_text("*\n")
    return path


def check_jobs(jobs: int | None) -> None:
    """``--jobs`` is a count of runs at a time: at least 1 (None: the executor's default)."""
    if jobs is not None and jobs < 1:
        raise HarnessError(f"--jobs must be at least 1, got {jobs}")


def die_with(pid: int) -> None:
    """End this process as soon as process ``pid`` (its sweep) ends, so no worker outlives a killed sweep.

    When ``pid`` is the parent (the local pool's workers), Linux's parent-death signal kills this process at
    once. Otherwise (submitit's local jobs run under a controller process) a watchdog process forked here
    waits for ``pid`` to end and kills this one. A thread of this process could not be relied on: while the
    job imports torch its main thread holds the interpreter lock for long stretches, and on a busy machine
    the jobs outlived their sweep by 90 s (docs/reliability.md).
    """
    if pid == os.getpid():
        return
    if sys.platform == "linux" and os.getppid() == pid:
        _parent_death_signal()
    elif hasattr(os, "fork"):
        _fork_watchdog(pid)
    else:  # no fork (Windows): a thread, which runs whenever this process lets it
        threading.Thread(target=_exit_when_gone, args=(pid,), daemon=True, name=f"watch-sweep-{pid}").start()


def _parent_death_signal() -> None:
    """The kernel kills this process when its parent (the thread that started it) ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _fork_watchdog(pid: int) -> None:
    """Fork a process that kills this one when ``pid`` ends, and ends with this one (parent-death signal on
    Linux; elsewhere it notices that its parent changed)."""
    job = os.getpid()
    if os.fork() != 0:
        return
    try:  # the watchdog: it only waits, and leaves with os._exit (none of the job's exit handlers)
        if sys.platform == "linux":
            _parent_death_signal()
        if os.getppid() == job:
            _wait_for_end(pid, job)
            if os.getppid() == job:
                os.kill(job, signal.SIGKILL)
    finally:
        os._exit(0)


def _wait_for_end(pid: int, job: int) -> None:
    """Return once process ``pid`` has ended (or this watchdog's job has): at once through a pidfd, which
    becomes readable when the process exits, else by polling every PARENT_POLL_SECONDS."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (not Linux, or Linux < 5.3)
        while process_alive(pid) and os.getppid() == job:
            time.sleep(PARENT_POLL_SECONDS)
        return
    select.select([handle], [], [])


def _exit_when_gone(pid: int) -> None:
    while process_alive(pid):
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


class Executor(Protocol):
    prepares_locally: bool  # shared stages (stand-in pretraining) can be made in this process first

    def prepare(self, configs: list[dict[str, Any]]) -> None: ...

    def map(self, configs: list[dict[str, Any]], out_dir: Path, cache_dir: Path) -> Iterator[RunOutcome]: ...

    def close(self) -> None: ...


def image_size(config: dict[str, Any]) -> int:
    """Size of a run's images as the runner loads them: the config's ``image_size`` if set, else the
    scale's for the synthetic presets and REAL_IMAGE_SIZE for real datasets."""
    if config.get("image_size"):
        return int(config["image_size"])
    if is_synthetic(config["dataset"]):
        from harness.data.synthetic import IMAGE_SIZE  # imports torch (see the module docstring)

        return IMAGE_SIZE[config["scale"]]
    return REAL_IMAGE_SIZE


class LocalExecutor:
    """Worker processes (spawn) on this machine: one run per GPU at a time, or ``jobs`` runs on the CPU.

    Every run uses the fixed thread count of :mod:`harness.core.threads` (same numbers on any machine), so
    ``jobs`` runs at a time is the parallelism on the CPU. A single worker runs in this process.
    Parallel workers write each run's output to ``OUT/logs/<run_id>.log``.
    """

    prepares_locally = True

    def __init__(self, *, jobs: int | None = None, device: str = "auto", threads: int | None = None,
                 show_progress: bool = True, log=print) -> None:
        import torch

        check_jobs(jobs)
        gpus = torch.cuda.device_count() if device != "cpu" else 0
        if device.startswith("cuda") and gpus == 0:
            raise HarnessError("--device cuda asked for, but no GPU is visible to torch")
        if gpus:
            self.workers = min(jobs or gpus, gpus)
            if jobs and jobs > gpus:
                log(f"--jobs {jobs}: only {gpus} GPU(s) visible, running {gpus} run(s) at a time "
                    "(one per GPU)")
        else:
            self.workers = jobs or 1
        self.gpus = gpus
        self.device = device
        self.threads = threads or RUN_THREADS
        self.show_progress = show_progress
        self._pool: ProcessPoolExecutor | None = None

    def prepare(self, configs: list[dict[str, Any]]) -> None:
        """Train the pretrained stand-ins the runs need, once each (machine-wide cache)."""
        from harness.engine.pretrain import resolve_input_size, standin_weights  # (torch, as below)
        from harness.experiments.runner import resolve_device  # imports torch: see the module docstring

        done = set()
        for config in configs:
            hp = config["hparams"]
            if hp.get("pretrained", "standin") != "standin":
                continue
            arch = config["arch"]
            size = resolve_input_size(hp.get("input_size", "auto"), arch, image_size(config))
            key = (arch, size, hp.get("width", 1.0), hp.get("depth"))
            if key not in done:
                done.add(key)
                standin_weights(arch, size, width=key[2], depth=key[3], device=resolve_device(self.device),
                                show_progress=self.show_progress)

    def map(self, configs: list[dict[str, Any]], out_dir: Path, cache_dir: Path) -> Iterator[RunOutcome]:
        if self.workers == 1:  # in this process: each run pins its threads (harness.core.threads)
            for config in configs:
                yield run_one(config, str(out_dir), str(cache_dir), None, self.show_progress)
            return
        pool = self._get_pool()
        scratch_folder(Path(out_dir) / "logs")
        futures = {
            pool.submit(run_one, config, str(out_dir), str(cache_dir),
                        str(Path(out_dir) / "logs" / f"{_run_id(config)}.log"), self.show_progress): config
            for config in configs
        }
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001  (the worker process itself died)
                    self._discard_pool()
                    config = futures[future]
                    if record_status(out_dir, _run_id(config)) == "ok":
                        continue
                    reason = f"worker process died ({type(exc).__name__}: {exc})"
                    yield record_failure(config, out_dir, reason, cause=exc)
        finally:
            for future in futures:
                future.cancel()

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = get_context("spawn")
            gpu_ids = None
            if self.gpus:
                gpu_ids = context.Queue()
                for gpu in visible_gpus(self.gpus)[:self.workers]:
                    gpu_ids.put(gpu)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                             initargs=(gpu_ids, self.threads, os.getpid()))
        return self._pool

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def visible_gpus(count: int) -> list[str]:
    """The ids to give workers' CUDA_VISIBLE_DEVICES: those this process may use, in order."""
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def limit_numba_threads(threads: int) -> None:
    """Give numba (UMAP's compiler, used by SLIM) the same thread count as torch, if not yet loaded.

    Otherwise numba's OpenMP layer sets the shared OpenMP runtime to all cores when UMAP runs, which
    changes torch's thread count behind its back; with more threads than free cores, every later
    training step in the process spins, waiting for threads that have no core.
    """
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)


def _init_worker(gpu_ids: Any, threads: int, sweep_pid: int) -> None:
    """Tie a worker's life to its sweep's, pin it to one GPU (before CUDA starts) and to its threads."""
    die_with(sweep_pid)
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids.get())
    limit_numba_threads(threads)
    import torch

    torch.set_num_threads(threads)


def _run_id(config: dict[str, Any]) -> str:
    from harness.experiments.runner import run_id  # imports torch: see the module docstring

    return run_id(config)


class SubmititExecutor:
    """Each run as one job of a submitit job array (SLURM on a cluster; 'local' / 'debug' for testing).

    ``options`` is the sweep file's [submitit] table: ``cluster`` (slurm, local, debug; default: what
    submitit detects), ``poll_seconds``, and submitit's own parameters, e.g. timeout_min, gpus_per_node,
    cpus_per_task, mem_gb, slurm_partition, slurm_array_parallelism (``partition``, ``timeout`` and
    ``array_parallelism`` are accepted as short names). ``jobs`` caps the runs at a time: SLURM's array
    parallelism, or on the 'local' cluster (which would start every job at once) the jobs this executor
    keeps running; local jobs end with the sweep's process.
    """

    prepares_locally = False
    ALIASES = {"partition": "slurm_partition", "timeout": "timeout_min",
               "array_parallelism": "slurm_array_parallelism"}

    def __init__(self, folder: Path, options: dict[str, Any], *, jobs: int | None = None) -> None:
        import submitit  # only the cluster executor needs it (a slow import)

        check_jobs(jobs)
        self.jobs = jobs or 1
        options = dict(options)
        cluster = options.pop("cluster", None)
        self.poll_seconds = float(options.pop("poll_seconds", 10.0))
        parameters = {self.ALIASES.get(k, k): v for k, v in options.items()}
        if jobs is not None:
            parameters["slurm_array_parallelism"] = jobs
        try:
            self.executor = submitit.AutoExecutor(folder=scratch_folder(Path(folder)), cluster=cluster)
            self.executor.update_parameters(**parameters)
        except (AssertionError, NameError, RuntimeError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"submitit options {sorted(options)} rejected: {first_line}") from None

    def prepare(self, configs: list[dict[str, Any]]) -> None:
        """Nothing: the jobs make shared stages themselves (the cache's file locks keep it to once)."""

    def map(self, configs: list[dict[str, Any]], out_dir: Path, cache_dir: Path) -> Iterator[RunOutcome]:
        finished = (self._local_jobs if self.executor.cluster == "local" else self._array_jobs)(
            configs, str(out_dir), str(cache_dir))
        for job, config in finished:
            try:
                yield job.result()
            except Exception as exc:  # noqa: BLE001  (timeout, cancelled or killed job)
                if record_status(out_dir, _run_id(config)) == "ok":
                    continue
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                yield record_failure(config, out_dir, f"submitit job {job.job_id} did not finish: {reason}",
                                     cause=exc)

    def _array_jobs(self, configs: list[dict[str, Any]], out_dir: str, cache_dir: str) -> Iterator[tuple[Any, dict]]:
        """(job, config) pairs as the jobs of one array finish (the scheduler caps how many run at once)."""
        from submitit.helpers import as_completed as jobs_as_completed

        n = len(configs)
        jobs = self.executor.map_array(run_one, configs, [out_dir] * n, [cache_dir] * n)
        config_of = {id(job): config for job, config in zip(jobs, configs, strict=True)}
        for job in jobs_as_completed(jobs, poll_frequency=self.poll_seconds):
            yield job, config_of[id(job)]

    def _local_jobs(self, configs: list[dict[str, Any]], out_dir: str, cache_dir: str) -> Iterator[tuple[Any, dict]]:
        """(job, config) pairs as they finish, submitting a new job only while fewer than ``jobs`` run."""
        waiting, running = list(configs), []
        while waiting or running:
            while waiting and len(running) < self.jobs:
                config = waiting.pop(0)
                running.append((self.executor.submit(run_one, config, out_dir, cache_dir, None, True, os.getpid()),
                                config))
            done = [pair for pair in running if pair[0].done()]
            if not done:
                time.sleep(self.poll_seconds)
            for pair in done:
                running.remove(pair)
                yield pair

    def close(self) -> None:
        """Nothing to release: finished jobs hold no resources here."""


def make_executor(name: str, *, out_dir: Path, jobs: int | None = None, device: str = "auto",
                  threads: int | None = None, submitit_options: dict[str, Any] | None = None,
                  show_progress: bool = True, log=print) -> Executor:
    """The executor called ``name`` ('local' or 'submitit')."""
    if name == "local":
        return LocalExecutor(jobs=jobs, device=device, threads=threads, show_progress=show_progress, log=log)
    if name == "submitit":
        return SubmititExecutor(Path(out_dir) / "submitit", submitit_options or {}, jobs=jobs)
    raise HarnessError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
