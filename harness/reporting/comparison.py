"""A reproduction against the committed results: per table cell, the committed mean, the reproduced mean,
and whether their difference is within seed noise.

A cell is a (dataset, method row, arch, scale, and for a budgeted method such as SLIM its budget and subset
fraction) combination; its numbers are the test worst-group and average accuracy over seeds. The difference
counts as seed noise when it is at most ``NOISE_SIGMAS`` standard errors of the difference of two means (each
seed set's own spread), and never less than ``NOISE_FLOOR`` (identical code on one machine reproduces to the
bit; the floor only absorbs rounding). A cell whose synthetic preset changed between the two (its records'
``data_version`` differs) is a different experiment: it is shown, marked, and left out of the count of
agreeing cells.

Means that agree can hide records that do not: SLIM's seed spread is 20-40 points, so a cell whose every
record changed still agrees within seed noise. Each reproduced record is therefore also paired with the
committed one of its cell and seed and called identical when its results are equal to the bit: its metrics
and its details (for SLIM the queries, answers, kept set, clusters, quotas and the curated subset's
digest), less wall-clock times, comparing the details both records have. The comparison counts identical
records and names every cell whose records differ although its means agree.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from statistics import mean, stdev
from typing import Any

from harness.reporting.tables.selection import (
    budget_setting,
    dataset_rank,
    is_budgeted,
    method_rank,
    metric_value,
    ok_records,
    row_label,
)

Record = dict[str, Any]
METRICS = (("worst_group_acc", "worst"), ("avg_acc", "avg"))
NOISE_SIGMAS = 2.0
NOISE_FLOOR = 0.005  # half a point


def cell_key(rec: Record) -> tuple:
    setting = budget_setting(rec) if is_budgeted(rec) else None
    return (rec["dataset"], row_label(rec), rec["arch"], rec["scale"], setting)


def _cells(records: Iterable[Record]) -> dict[tuple, list[Record]]:
    cells: dict[tuple, list[Record]] = defaultdict(list)
    for rec in ok_records(records):
        cells[cell_key(rec)].append(rec)
    return cells


def _stats(records: list[Record], key: str) -> tuple[float, float, int] | None:
    values = [v for v in (metric_value(r, "test", key) for r in records) if v is not None]
    if not values:
        return None
    return mean(values), (stdev(values) if len(values) > 1 else 0.0), len(values)


def _results(rec: Record) -> tuple[dict, dict]:
    """What a record computed: its metrics and its details, less wall-clock times."""
    details = json.loads(json.dumps(rec.get("details") or {}))
    (details.get("attention_space") or {}).pop("seconds", None)
    return rec.get("metrics") or {}, details


def identical(a: Record, b: Record) -> bool:
    """The two records computed the same to the bit: equal metrics, and equal details where both have them
    (a detail one code version adds is not a difference in results)."""
    (metrics_a, details_a), (metrics_b, details_b) = _results(a), _results(b)
    return metrics_a == metrics_b and all(details_a[k] == details_b[k] for k in details_a.keys() & details_b.keys())


def _differing_seeds(old: list[Record], new: list[Record]) -> tuple[int, list[int]]:
    """(records paired by seed, the seeds whose reproduced record is not identical to the committed one)."""
    committed = {rec["seed"]: rec for rec in old}
    pairs = [(committed[rec["seed"]], rec) for rec in new if rec["seed"] in committed]
    return len(pairs), sorted(b["seed"] for a, b in pairs if not identical(a, b))


def within_noise(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    """|mean_a - mean_b| <= max(floor, NOISE_SIGMAS * sqrt(s_a^2 / n_a + s_b^2 / n_b))."""
    (ma, sa, na), (mb, sb, nb) = a, b
    tolerance = max(NOISE_FLOOR, NOISE_SIGMAS * math.sqrt(sa ** 2 / na + sb ** 2 / nb))
    return abs(ma - mb) <= tolerance


def _data_versions(records: list[Record]) -> set[str]:
    return {v for v in (r.get("config", {}).get("data_version") for r in records) if v is not None}


def compare(committed: Iterable[Record], reproduced: Iterable[Record]) -> list[dict[str, Any]]:
    """One row per cell found in either set: committed and reproduced means, the noise verdict, and whether
    the preset's data changed between the two."""
    old, new = _cells(committed), _cells(reproduced)

    def order(key: tuple) -> tuple:
        records = new.get(key) or old[key]
        return (dataset_rank(key[0]), method_rank(records[0]), key[2], key[3], str(key[4]))

    rows = []
    for key in sorted(set(old) | set(new), key=order):
        before, after = _data_versions(old.get(key, [])), _data_versions(new.get(key, []))
        row: dict[str, Any] = {"dataset": key[0], "method": key[1], "arch": key[2], "scale": key[3],
                               "setting": key[4], "data_changed": bool(before and after and before != after)}
        for metric, short in METRICS:
            a = _stats(old.get(key, []), metric)
            b = _stats(new.get(key, []), metric)
            row[f"committed_{short}"] = a
            row[f"reproduced_{short}"] = b
            row[f"{short}_within_noise"] = None if a is None or b is None else within_noise(a, b)
        row["records_paired"], row["differing_seeds"] = _differing_seeds(old.get(key, []), new.get(key, []))
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (accuracies in %, mean +- std over seeds)."""
    def fmt(stat: tuple[float, float, int] | None) -> str:
        return "–" if stat is None else f"{100 * stat[0]:.1f} ± {100 * stat[1]:.1f} (n={stat[2]})"

    def verdict(flag: bool | None) -> str:
        return {True: "yes", False: "**no**", None: "–"}[flag]

    def identical_records(r: dict[str, Any]) -> str:
        paired = r["records_paired"]
        return f"{paired - len(r['differing_seeds'])} / {paired}" if paired else "–"

    lines = ["| dataset | method | arch | SLIM setting | worst: committed | worst: reproduced | within noise "
             "| avg: committed | avg: reproduced | within noise | same data | identical records |", "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['arch']} | {_setting(r)} | {fmt(r['committed_worst'])} | "
                     f"{fmt(r['reproduced_worst'])} | {verdict(r['worst_within_noise'])} | "
                     f"{fmt(r['committed_avg'])} | {fmt(r['reproduced_avg'])} | {verdict(r['avg_within_noise'])} | "
                     f"{'**no**' if r['data_changed'] else 'yes'} | {identical_records(r)} |")
    both = [r for r in rows if r["worst_within_noise"] is not None]
    compared = [r for r in both if not r["data_changed"]]
    agreeing = [r for r in compared if r["worst_within_noise"] and r["avg_within_noise"]]
    only, changed = len(rows) - len(both), len(both) - len(compared)
    hidden = [r for r in agreeing if r["differing_seeds"]]
    if hidden:
        lines += ["", "Cells that agree within seed noise although their records differ from the committed ones:", ""]
        lines += [f"- {r['dataset']} / {r['method']} / {r['arch']}{' / ' + _setting(r) if _setting(r) else ''}: "
                  f"seeds {', '.join(map(str, r['differing_seeds']))} ({len(r['differing_seeds'])} of "
                  f"{r['records_paired']} records)" for r in hidden]
    paired = sum(r["records_paired"] for r in compared)
    same = paired - sum(len(r["differing_seeds"]) for r in compared)
    lines.append("")
    lines.append(f"{len(agreeing)} of {len(compared)} cells agree within seed noise on both columns"
                 + (f"; {changed} cells are on a preset whose data changed (another data version), not counted"
                    if changed else "")
                 + (f"; {only} cells exist on one side only" if only else "")
                 + f"; {same} of {paired} records are identical to the committed ones"
                 + (f" ({len(hidden)} agreeing cells hold records that differ)" if hidden else "") + ".")
    return "\n".join(lines)


def _setting(row: dict[str, Any]) -> str:
    return "" if row["setting"] is None else f"{row['setting'][0]} / {row['setting'][1]:g}"
