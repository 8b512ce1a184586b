"""A reproduction against the committed results: per table cell, the committed mean, the reproduced mean,
and whether their difference is within seed noise.

A cell is a (dataset, method row, arch, scale, SLIM budget and subset fraction) combination; its numbers
are the test worst-group and average accuracy over seeds. The difference counts as seed noise when it is
at most ``NOISE_SIGMAS`` standard errors of the difference of two means (each seed set's own spread), and
never less than ``NOISE_FLOOR`` (identical code on one machine reproduces to the bit; the floor only
absorbs rounding). A cell whose synthetic preset changed between the two (its records' ``data_version``
differs) is a different experiment: it is shown, marked, and left out of the count of agreeing cells.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from statistics import mean, stdev
from typing import Any

from harness.tables import SLIM_METHODS, dataset_rank, method_rank, metric_value, ok_records, row_label, slim_setting

Record = dict[str, Any]
METRICS = (("worst_group_acc", "worst"), ("avg_acc", "avg"))
NOISE_SIGMAS = 2.0
NOISE_FLOOR = 0.005  # half a point


def cell_key(rec: Record) -> tuple:
    setting = slim_setting(rec) if rec["method"] in SLIM_METHODS else None
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
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (accuracies in %, mean +- std over seeds)."""
    def fmt(stat: tuple[float, float, int] | None) -> str:
        return "–" if stat is None else f"{100 * stat[0]:.1f} ± {100 * stat[1]:.1f} (n={stat[2]})"

    def verdict(flag: bool | None) -> str:
        return {True: "yes", False: "**no**", None: "–"}[flag]

    lines = ["| dataset | method | arch | SLIM setting | worst: committed | worst: reproduced | within noise "
             "| avg: committed | avg: reproduced | within noise | same data |", "|" + "---|" * 11]
    for r in rows:
        setting = "" if r["setting"] is None else f"{r['setting'][0]} / {r['setting'][1]:g}"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['arch']} | {setting} | {fmt(r['committed_worst'])} | "
                     f"{fmt(r['reproduced_worst'])} | {verdict(r['worst_within_noise'])} | "
                     f"{fmt(r['committed_avg'])} | {fmt(r['reproduced_avg'])} | {verdict(r['avg_within_noise'])} | "
                     f"{'**no**' if r['data_changed'] else 'yes'} |")
    both = [r for r in rows if r["worst_within_noise"] is not None]
    compared = [r for r in both if not r["data_changed"]]
    agree = sum(r["worst_within_noise"] and r["avg_within_noise"] for r in compared)
    only, changed = len(rows) - len(both), len(both) - len(compared)
    lines.append("")
    lines.append(f"{agree} of {len(compared)} cells agree within seed noise on both columns"
                 + (f"; {changed} cells are on a preset whose data changed (another data version), not counted"
                    if changed else "")
                 + (f"; {only} cells exist on one side only" if only else "") + ".")
    return "\n".join(lines)
