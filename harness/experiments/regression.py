"""CI regression of worst-group and average accuracy against a committed baseline.

``python -m harness regression`` runs a pinned grid (harness/experiments/configs/regression.toml) at tiny scale on
the CPU with one torch thread per run, so its numbers are deterministic, averages each metric over the
seeds of every (dataset, method) cell and compares the means with results/regression/baseline.json.
A cell fails when a metric falls by more than that metric's tolerance; rises beyond it are reported as
improvements. The tolerance of a metric comes from the seed-to-seed spread measured when the baseline
was made, per method: ``max(floor, sigmas * pooled_std / sqrt(n_seeds))`` (the standard deviation over
seeds, pooled across that method's datasets), i.e. a drop larger than ``sigmas`` standard errors of a cell
mean. Per method because the methods' noise differs by an order of magnitude (SLIM's curation from a few
dozen answers swings far more from seed to seed than ERM), and one shared tolerance would be blind to the
stable methods' regressions.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.records import atomic_write_json, environment, git_commit, now_iso
from harness.experiments.executors import LocalExecutor
from harness.experiments.sweep_file import expand, load_sweep
from harness.experiments.sweeps import run_sweep, sweep_records

BASELINE_PATH = Path("results/regression/baseline.json")
BASELINE_SCHEMA = 2
METRICS = ("worst_group_acc", "avg_acc")
SPLIT = "test"
DEFAULT_SIGMAS = 2.0
DEFAULT_FLOOR = 0.01  # one accuracy point: smaller drops are never called regressions

Cell = tuple[str, str]  # (dataset, method)


@dataclass(frozen=True)
class Row:
    dataset: str
    method: str
    metric: str
    before: float | None
    after: float | None
    tolerance: float | None  # None for a cell the baseline does not have
    verdict: str  # "ok" | "improved" | "FAIL" | "missing" | "new"

    @property
    def difference(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before


def summarize(records: Iterable[dict[str, Any]]) -> dict[Cell, dict[str, Any]]:
    """Per (dataset, method): the seeds and each metric's per-seed values, mean and std (ddof=1)."""
    values: dict[Cell, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in records:
        if record.get("status") != "ok":
            continue
        metrics = record["metrics"].get(SPLIT, {})
        for metric in METRICS:
            if metric not in metrics:
                raise HarnessError(f"record {record['run_id']} has no {SPLIT} {metric}")
            cell = (record["dataset"], record["method"])
            values[cell][metric][int(record["seed"])] = float(metrics[metric])
    summary: dict[Cell, dict[str, Any]] = {}
    for cell, per_metric in sorted(values.items()):
        seeds = sorted(per_metric[METRICS[0]])
        summary[cell] = {"seeds": seeds}
        for metric in METRICS:
            vals = [per_metric[metric][s] for s in seeds]
            summary[cell][metric] = {"mean": _mean(vals), "std": _std(vals), "values": vals}
    return summary


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def tolerances(summary: dict[Cell, dict[str, Any]], sigmas: float = DEFAULT_SIGMAS,
               floor: float = DEFAULT_FLOOR) -> dict[str, dict[str, float]]:
    """{method: {metric: max(floor, sigmas * seed std pooled over the method's cells / sqrt(n_seeds))}}."""
    result: dict[str, dict[str, float]] = {}
    for method in sorted({m for _, m in summary}):
        cells = [c for (_, m), c in summary.items() if m == method and len(c["seeds"]) >= 2]
        result[method] = {}
        for metric in METRICS:
            if not cells:
                result[method][metric] = floor
                continue
            pooled = math.sqrt(_mean([c[metric]["std"] ** 2 for c in cells]))
            n_seeds = min(len(c["seeds"]) for c in cells)
            result[method][metric] = round(max(floor, sigmas * pooled / math.sqrt(n_seeds)), 4)
    return result


def compare(baseline: dict[str, Any], summary: dict[Cell, dict[str, Any]]) -> list[Row]:
    """One row per (dataset, method, metric) of the baseline or the current summary."""
    tol = baseline["tolerances"]
    before = {(c["dataset"], c["method"]): c for c in baseline["cells"]}
    rows = []
    for cell in sorted(set(before) | set(summary)):
        for metric in METRICS:
            old = before[cell][metric]["mean"] if cell in before else None
            new = summary[cell][metric]["mean"] if cell in summary else None
            limit = tol[cell[1]][metric] if old is not None else None
            if old is None:
                verdict = "new"
            elif new is None:
                verdict = "missing"
            elif new < old - limit:
                verdict = "FAIL"
            elif new > old + limit:
                verdict = "improved"
            else:
                verdict = "ok"
            rows.append(Row(cell[0], cell[1], metric, old, new, limit, verdict))
    return rows


def failures(rows: Iterable[Row]) -> list[Row]:
    """Rows that fail the regression: a drop beyond tolerance, or a baseline cell with no result now."""
    return [r for r in rows if r.verdict in ("FAIL", "missing")]


def render(rows: Iterable[Row]) -> str:
    """Before / after / difference table in accuracy points."""
    from tabulate import tabulate

    def pts(value: float | None, signed: bool = False) -> str:
        return "–" if value is None else f"{100 * value:{'+' if signed else ''}.1f}"

    table = [(r.dataset, r.method, r.metric, pts(r.before), pts(r.after), pts(r.difference, True),
              pts(r.tolerance), r.verdict) for r in rows]
    headers = ["dataset", "method", "metric", "before", "after", "difference", "tolerance", "verdict"]
    return (f"{SPLIT} accuracy in percent, mean over seeds (before: baseline, after: this run)\n"
            + tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True))


def make_baseline(summary: dict[Cell, dict[str, Any]], tol: dict[str, dict[str, float]], *, sigmas: float, floor: float,
                  config: str, run_ids: list[str], command: str) -> dict[str, Any]:
    """The baseline file's content: cell means, tolerances and where and how they were measured."""
    return {
        "schema": BASELINE_SCHEMA,
        "created": now_iso(),
        "git_commit": git_commit(),
        "command": command,
        "config": config,
        "split": SPLIT,
        "environment": environment("cpu"),
        "tolerances": tol,
        "tolerance_rule": f"max({floor}, {sigmas} * seed std pooled over the method's datasets / sqrt(n_seeds)) "
                          "per method and metric",
        "run_ids": sorted(run_ids),
        "cells": [{"dataset": d, "method": m, **stats} for (d, m), stats in summary.items()],
    }


def load_baseline(path: Path) -> dict[str, Any]:
    import json

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"no regression baseline at {path}; create one with "
                           "`python -m harness regression --update-baseline`")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"regression baseline {path} is not valid JSON: {exc}") from None
    if baseline.get("schema") != BASELINE_SCHEMA or "cells" not in baseline or "tolerances" not in baseline:
        raise HarnessError(f"regression baseline {path} is not a schema-{BASELINE_SCHEMA} baseline; "
                           "recreate it with --update-baseline")
    return baseline


def run_regression(*, config: str = "regression", baseline_path: Path = BASELINE_PATH, update: bool = False,
                   out_dir: Path | None = None, jobs: int | None = None, show_progress: bool = True,
                   log: Callable[[str], None] = print, command: str = "python -m harness regression") -> int:
    """Run the pinned grid and compare it with (or, with ``update``, write) the baseline; the exit status."""
    spec = load_sweep(config)
    settings = dict(spec.regression)
    stray = sorted(set(settings) - {"sigmas", "floor"})
    if stray:
        raise HarnessError(f"{spec.source}: [regression] has unknown key(s) {', '.join(stray)}; "
                           "known: sigmas, floor")
    if not update:
        baseline = load_baseline(baseline_path)  # fail before the runs, not after
    configs = expand(spec, device="cpu")
    scratch = out_dir is None
    work = Path(tempfile.mkdtemp(prefix="slim-regression-")) if scratch else Path(out_dir)
    try:
        # One torch thread per run: the numbers do not depend on how many runs share the machine.
        executor = LocalExecutor(jobs=jobs or min(len(configs), _cores()), device="cpu", threads=1,
                                 show_progress=show_progress, log=log)
        try:
            # it checks this code: runs another code version left in --out are made again
            outcome = run_sweep(configs, work, executor, name=f"regression ({spec.name})", log=log,
                                show_progress=show_progress, stale="rerun")
        finally:
            executor.close()
        summary = summarize(sweep_records(work, outcome.run_ids))
    finally:
        if scratch:
            shutil.rmtree(work, ignore_errors=True)
    if outcome.failed:
        log(f"regression: {len(outcome.failed)} run(s) failed: "
            + "; ".join(f"{o.label}: {o.error}" for o in outcome.failed))
    if update:
        if outcome.failed:
            log("baseline not written: every run must succeed")
            return 1
        sigmas = float(settings.get("sigmas", DEFAULT_SIGMAS))
        floor = float(settings.get("floor", DEFAULT_FLOOR))
        tol = tolerances(summary, sigmas, floor)
        baseline = make_baseline(summary, tol, sigmas=sigmas, floor=floor, config=spec.name,
                                 run_ids=outcome.run_ids, command=command)
        atomic_write_json(Path(baseline_path), baseline)
        log(render(compare(baseline, summary)))
        for problem in blind_spots(summary, tol):
            log(f"warning: the grid is blind to worst-group regressions on {problem}")
        log(f"baseline written to {baseline_path}; tolerances in points (worst-group / average): "
            + ", ".join(f"{method} {100 * t['worst_group_acc']:.1f} / {100 * t['avg_acc']:.1f}"
                        for method, t in tol.items()))
        return 0
    if sorted(outcome.run_ids) != baseline.get("run_ids"):
        log("note: the grid's run configs differ from the baseline's (hyperparameter defaults or the config "
            "changed); differences may come from that")
    rows = compare(baseline, summary)
    log(render(rows))
    bad = failures(rows)
    improved = [r for r in rows if r.verdict == "improved"]
    if improved:
        log("improved: " + ", ".join(f"{r.method} on {r.dataset} ({r.metric} {100 * r.difference:+.1f})"
                                     for r in improved))
    if bad or outcome.failed:
        reasons = [_failure_text(r) for r in bad] + [f"{o.label} failed" for o in outcome.failed]
        log("REGRESSION: " + "; ".join(reasons))
        return 1
    log("regression passed: no metric fell by more than its tolerance")
    return 0


GROUP_AWARE = ("gdro", "dfr")  # methods that read group labels to fix the worst group


def blind_spots(summary: dict[Cell, dict[str, Any]], tol: dict[str, dict[str, float]]) -> list[str]:
    """Datasets of the grid on which it could not see a regression of the worst group: ERM's worst-group
    accuracy is 0 (nothing below it to fall to), or no group-aware method is ahead of ERM by more than that
    method's tolerance (a fix that stopped working would go unnoticed). One line per dataset; empty when
    the grid sees everything."""
    problems = []
    for dataset in sorted({d for d, _ in summary}):
        erm = summary.get((dataset, "erm"))
        if erm is None:
            continue
        worst = erm["worst_group_acc"]["mean"]
        if worst <= 0:
            problems.append(f"{dataset}: ERM's worst-group accuracy is 0")
        leads = {m: summary[dataset, m]["worst_group_acc"]["mean"] - worst for m in GROUP_AWARE
                 if (dataset, m) in summary}
        if leads and not any(lead > tol.get(m, {}).get("worst_group_acc", DEFAULT_FLOOR)
                             for m, lead in leads.items()):
            problems.append(f"{dataset}: no group-aware method is ahead of ERM's worst group by more than its "
                            "tolerance (" + ", ".join(f"{m} {100 * lead:+.1f}" for m, lead in leads.items()) + ")")
    return problems


def _failure_text(row: Row) -> str:
    if row.verdict == "missing":
        return f"{row.method} on {row.dataset} has no result"
    return (f"{row.method} on {row.dataset}: {row.metric} {100 * row.before:.1f} -> {100 * row.after:.1f} "
            f"({100 * row.difference:+.1f} points, tolerance {100 * row.tolerance:.1f})")


def _cores() -> int:
    import os

    return os.cpu_count() or 1
