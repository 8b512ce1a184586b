"""Running a sweep's configs with resume: claims, stale-version policy, stages (ERM first) and progress.

Every run is identified by the hash of its config (``runner.run_id``, the device excluded), so a sweep
started again skips the runs whose record says ``ok`` and retries the failed ones. Records made by another
code version (harness.core.versions) are stale: a sweep that would add runs beside them stops before any work
unless told to rerun them (``stale="rerun"``) or keep them (``stale="keep"``). Runs go in stages,
ERM first: ERM's runs create the reference models (one per dataset, arch and seed) that DFR, JTT and
SLIM reuse from the sweep's shared cache (``OUT/cache``).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.disk import DiskFull
from harness.core.errors import HarnessError
from harness.core.progress import progress
from harness.core.records import atomic_write_json, load_records, now_iso
from harness.core.tempfiles import HOST, process_alive, remove_stale_temps, temp_path
from harness.core.versions import current_version, record_version
from harness.core.versions import describe as describe_version
from harness.experiments.executors import Executor, RunOutcome, is_current, record_status, run_record, scratch_folder
from harness.experiments.runner import check_writable, run_id

# ----------------------------------------------------------------------------------------- running


@dataclass
class SweepOutcome:
    run_ids: list[str]
    skipped: list[str]  # finished before this start
    completed: list[str]
    failed: list[RunOutcome]
    stage_seconds: dict[str, float]
    elsewhere: list[str] = field(default_factory=list)  # finished meanwhile by another sweep on this --out
    claimed: list[str] = field(default_factory=list)  # still held by a sweep on another host: not run here


def is_finished(out_dir: Path, rid: str) -> bool:
    """True when the run's record exists, reads as JSON, says ``ok`` and was made by this code version."""
    return is_current(out_dir, rid)


STALE_POLICIES = ("refuse", "rerun", "keep")


def stale_runs(out_dir: Path, run_ids: list[str]) -> dict[str, str | None]:
    """The ``ok`` runs of ``run_ids`` made by another code version than this one: run id -> their version."""
    current = current_version()
    versions = {rid: record_version(record) for rid in run_ids
                if (record := run_record(out_dir, rid)) is not None and record.get("status") == "ok"}
    return {rid: version for rid, version in versions.items() if version != current}


def _versions_text(versions: Iterable[str | None]) -> str:
    counts = Counter(describe_version(v) for v in versions)
    return ", ".join(f"{count} by {version}" for version, count in sorted(counts.items()))


def sweep_records(out_dir: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    """The records of ``run_ids`` that exist under ``out_dir/runs`` (ok and failed)."""
    return load_records(Path(out_dir) / "runs", run_ids)


# ------------------------------------------------------------------------------------------ claims
# A sweep claims each run before starting it: OUT/claims/<run_id>.claim names its host and pid. A second
# sweep on the same folder leaves claimed runs alone; a claim whose process is dead (on this host) is stale.

CLAIM_POLL_SECONDS = 2.0


def claim_path(out_dir: Path, rid: str) -> Path:
    return Path(out_dir) / "claims" / f"{rid}.claim"


def claim_owner(out_dir: Path, rid: str) -> dict[str, Any] | None:
    """Who holds the run's claim ({host, pid}), or None when nobody alive on this host does."""
    try:
        owner = json.loads(claim_path(out_dir, rid).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # no claim (a claim is linked into place whole, so it never reads half-written)
    if owner.get("host") == HOST and not process_alive(int(owner.get("pid", 0))):
        return None
    return owner


def claim_run(out_dir: Path, rid: str) -> bool:
    """Claim the run for this process; False when another live sweep holds it (a stale claim is taken)."""
    path = claim_path(out_dir, rid)
    scratch_folder(path.parent)
    mine = temp_path(path)
    mine.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "created": now_iso()}))
    try:
        for _ in range(2):
            try:
                os.link(mine, path)  # atomic: fails if a claim exists
                return True
            except FileExistsError:
                if claim_owner(out_dir, rid) is not None:
                    return False
                path.unlink(missing_ok=True)  # its sweep is dead: take it over
        return False
    finally:
        mine.unlink(missing_ok=True)


def _claim_unfinished(out_dir: Path, rid: str) -> bool:
    """Claim the run unless another sweep holds it or has finished it since this sweep started."""
    if not claim_run(out_dir, rid):
        return False
    if is_finished(out_dir, rid):
        release_run(out_dir, rid)
        return False
    return True


def release_run(out_dir: Path, rid: str) -> None:
    """Drop this process's claim on the run (another's is left alone)."""
    owner = claim_owner(out_dir, rid)
    if owner is not None and owner.get("host") == HOST and owner.get("pid") == os.getpid():
        claim_path(out_dir, rid).unlink(missing_ok=True)


def _wait_for_claims(configs: list[dict[str, Any]], out_dir: Path, log: Callable[[str], None]) -> dict[str, list]:
    """Wait while sweeps on this host run ``configs``; sort them into 'done' (ok records), 'remote'
    (claims of other hosts, which cannot be checked) and 'rerun' (their sweep died or failed them)."""
    def owners() -> dict[str, dict]:
        return {rid: owner for rid in map(run_id, configs) if (owner := claim_owner(out_dir, rid)) is not None}

    held = owners()
    local = {rid for rid, owner in held.items() if owner["host"] == HOST}
    if local:
        pids = sorted({held[rid]["pid"] for rid in local})
        log(f"waiting for {len(local)} run(s) that another sweep on this folder is running (pid "
            f"{', '.join(map(str, pids))})")
    while local & set(held := owners()):
        time.sleep(CLAIM_POLL_SECONDS)
    sorted_runs: dict[str, list] = {"done": [], "remote": [], "rerun": []}
    for config in configs:
        rid = run_id(config)
        kind = "remote" if rid in held else "done" if is_finished(out_dir, rid) else "rerun"
        sorted_runs[kind].append(config if kind == "rerun" else rid)
    for rid in sorted_runs["remote"]:
        log(f"  claimed by a sweep on host {held[rid]['host']} (pid {held[rid]['pid']}), not run here: {rid} "
            f"(delete {claim_path(out_dir, rid)} if that sweep is gone)")
    return sorted_runs


# ----------------------------------------------------------------------------------------- running


def run_sweep(configs: list[dict[str, Any]], out_dir: Path, executor: Executor, *, name: str = "sweep",
              log: Callable[[str], None] = print, show_progress: bool = True, stale: str = "refuse") -> SweepOutcome:
    """Run every config whose record is not ``ok`` yet, stage by stage; never stop at a failing run, except
    for a full disk: that run's failure is recorded where the disk still allows and the sweep ends with a
    DiskFull naming the file and the space (no later run starts; starting again resumes).

    Runs another sweep on the same folder has claimed are left to it; this one waits for them at the end
    and runs those that sweep did not finish. ``stale`` says what to do with finished runs of another code
    version when there are runs to make beside them: "refuse" (a HarnessError before any work: their table
    cells would mix versions), "rerun" them, or "keep" them (the tables then need ``allow_mixed``).
    """
    if stale not in STALE_POLICIES:
        raise HarnessError(f"stale={stale!r}: choose from {', '.join(STALE_POLICIES)}")
    out_dir = Path(out_dir)
    check_writable(out_dir)
    remove_stale_temps(out_dir)
    run_ids = [run_id(c) for c in configs]
    statuses = {rid: record_status(out_dir, rid) for rid in run_ids}
    old = stale_runs(out_dir, run_ids)
    rerun = list(old) if stale == "rerun" else []
    statuses.update(dict.fromkeys(rerun, "stale"))
    skipped = [rid for rid in run_ids if statuses[rid] == "ok"]
    retried = [rid for rid in run_ids if statuses[rid] == "failed"]
    pending = [c for c, rid in zip(configs, run_ids, strict=True) if statuses[rid] != "ok"]
    if old:
        what = (f"{name}: {len(old)} finished run(s) were made by another code version "
                f"({_versions_text(old.values())}; this is {describe_version(current_version())})")
        if stale == "refuse" and pending:
            raise HarnessError(f"{what}, and {len(pending)} run(s) would be made beside them: start again with "
                               "--rerun-stale to rerun them, or --allow-mixed to keep them and mix versions")
        log(f"{what}: {'rerun (--rerun-stale)' if stale == 'rerun' else 'kept'}")
    cache_dir = scratch_folder(out_dir / "cache")  # models and features: regenerable, never committed
    atomic_write_json(out_dir / "sweep.json", {"name": name, "created": now_iso(), "run_ids": run_ids})
    log(f"{name}: {len(run_ids)} runs; {len(skipped)} finished earlier (skipped), "
        f"{len(retried)} failed earlier (retried), "
        + (f"{len(rerun)} of another code version (rerun), " if rerun else "")
        + f"{len(pending) - len(retried) - len(rerun)} new")

    stage_seconds: dict[str, float] = {}
    if pending and executor.prepares_locally:
        started = time.monotonic()
        executor.prepare(pending)
        stage_seconds["pretraining (stand-in weights)"] = time.monotonic() - started
    outcome = SweepOutcome(run_ids, skipped, [], [], stage_seconds)
    time_left = TimeLeft(pending)
    full_disk = None  # a run that found the disk full stops the sweep: the runs after it would too
    while pending and full_disk is None:
        deferred: list[dict[str, Any]] = []
        results = _outcomes(_stages(pending), executor, out_dir, cache_dir, stage_seconds, deferred)
        with contextlib.closing(results):  # stopping early releases this sweep's claims
            for result in progress(results, desc=f"{name} runs", total=len(pending), enabled=show_progress):
                (outcome.completed.append(result.run_id) if result.status == "ok" else outcome.failed.append(result))
                log(f"  {result.status:6s} {result.label} ({result.seconds:.0f} s) {result.run_id}"
                    + (f": {result.error}" if result.error else "") + f" [{time_left.finished(result)}]")
                if result.disk_full:
                    full_disk = result.disk_full
                    break
        if full_disk is not None:
            break
        waited = _wait_for_claims(deferred, out_dir, log) if deferred else {"done": [], "remote": [], "rerun": []}
        outcome.elsewhere += waited["done"]
        outcome.claimed += waited["remote"]
        pending = waited["rerun"]
    if outcome.elsewhere:
        log(f"{len(outcome.elsewhere)} run(s) were run by another sweep on this folder")
    if outcome.failed:
        log(f"{len(outcome.failed)} run(s) failed (records with status 'failed'; "
            "they are retried on the next start):")
        for failed in outcome.failed:
            log(f"  {failed.label} {failed.run_id}: {failed.error}")
    if full_disk is not None:
        left = len(run_ids) - len(skipped) - len(outcome.completed) - len(outcome.failed)
        raise DiskFull(f"{name} stopped, {left} run(s) not started: {full_disk}")
    return outcome


class TimeLeft:
    """How many runs are left and about how long they will take: each pending run is assumed to take what
    the finished runs of its method took in this start, their median (all finished runs' median for a method
    not seen yet), divided by the parallelism observed so far (compute seconds per wall second). The median,
    since the first runs on a dataset also build what the others then read (its frozen-stem pass, the
    reference model): at the paper's sizes they take four times as long."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        self.pending = {run_id(c): c["method"] for c in configs}
        self.total = len(configs)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.started = time.monotonic()

    def finished(self, result: RunOutcome) -> str:
        """Account for ``result``; '12/162 done, 150 left, about 35 min'."""
        method = self.pending.pop(result.run_id, None)
        if method is not None:
            self.seconds[method].append(result.seconds)
        done = self.total - len(self.pending)
        text = f"{done}/{self.total} done, {len(self.pending)} left"
        finished = [s for values in self.seconds.values() for s in values]
        if not self.pending or not finished:
            return text
        wall = max(time.monotonic() - self.started, 1e-9)
        parallel = max(1.0, sum(finished) / wall)
        overall = np.median(finished)
        need = sum(np.median(self.seconds[m]) if self.seconds.get(m) else overall for m in self.pending.values())
        return f"{text}, about {format_duration(need / parallel)} to go"


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '2.3 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _stages(configs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive runs of one method form a stage; stages run one after the other."""
    stages: list[tuple[str, list[dict[str, Any]]]] = []
    for config in configs:
        if not stages or stages[-1][0] != config["method"]:
            stages.append((config["method"], []))
        stages[-1][1].append(config)
    return stages


def _outcomes(stages: list[tuple[str, list[dict[str, Any]]]], executor: Executor, out_dir: Path,
              cache_dir: Path, stage_seconds: dict[str, float], deferred: list[dict[str, Any]]) -> Iterator[RunOutcome]:
    """Each stage's runs this sweep could claim, through the executor; the others go to ``deferred``."""
    for method, configs in stages:
        started = time.monotonic()
        mine = [c for c in configs if _claim_unfinished(out_dir, run_id(c))]
        deferred += [c for c in configs if not any(c is m for m in mine)]
        try:
            for result in executor.map(mine, out_dir, cache_dir) if mine else ():
                release_run(out_dir, result.run_id)
                yield result
        finally:
            for config in mine:
                release_run(out_dir, run_id(config))
        label = f"{method} (shared reference models)" if method == "erm" else method
        stage_seconds[label] = stage_seconds.get(label, 0.0) + time.monotonic() - started


def stage_report(stage_seconds: dict[str, float]) -> str:
    """Lines 'stage: seconds' with a total, for the console and the reproduction README."""
    width = max((len(s) for s in stage_seconds), default=5)
    lines = [f"  {stage:<{width}}  {seconds:8.1f} s" for stage, seconds in stage_seconds.items()]
    lines.append(f"  {'total':<{width}}  {sum(stage_seconds.values()):8.1f} s")
    return "\n".join(lines)
