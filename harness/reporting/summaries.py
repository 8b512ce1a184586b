"""What the command line prints about one run: ``run``'s few lines, ``evaluate``'s metric tables.

Text from a record's dicts alone (no torch), accuracies in percent, AIoU as a score in [0, 1].
"""
from __future__ import annotations

import math
from typing import Any

from tabulate import tabulate

SPLIT_COLUMNS = (  # metric key, header, whether it is an accuracy (percent) or an AIoU score
    ("worst_group_acc", "worst-group %", True), ("avg_acc", "average %", True),
    ("weighted_avg_acc", "weighted avg %", True), ("aiou_worst", "AIoU worst", False), ("aiou_avg", "AIoU avg", False),
)
GROUP_COLUMNS = (  # per-group dict, header, percent or score
    ("group_count", "examples", None), ("group_acc", "accuracy %", True), ("group_aiou", "AIoU", False),
    ("group_attention_correct", "attention correct %", True),
)


def percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.1f}"


def _cell(value: Any, is_percent: bool | None) -> str:
    if value is None:
        return "–"
    if is_percent is None:
        return str(value)
    return percent(value) if is_percent else f"{value:.3f}"


def run_summary(record: dict[str, Any]) -> str:
    """A few lines on a finished run: val and test worst-group and average accuracy, the selected epoch,
    the wall time."""
    lines = []
    for split in ("val", "test"):
        metrics = record["metrics"].get(split)
        if metrics is None:
            continue
        weighted = metrics.get("weighted_avg_acc")
        lines.append(f"{split + ':':5s} worst-group {percent(metrics['worst_group_acc'])} %, "
                     f"average {percent(metrics['avg_acc'])} %"
                     + (f" (weighted by train groups {percent(weighted)} %)" if weighted is not None else ""))
    selection = record.get("model_selection") or {}
    lines.append(f"selected epoch {selection.get('epoch')} by {selection.get('criterion')}; "
                 f"{record['cost']['seconds']:.1f} s")
    return "\n".join(lines)


def metrics_report(metrics: dict[str, dict[str, Any]]) -> str:
    """Every metric of a record: one table over the splits, then one per split over its groups."""
    columns = [c for c in SPLIT_COLUMNS if any(c[0] in m for m in metrics.values())]
    rows = [[split, *(_cell(m.get(key), is_percent) for key, _, is_percent in columns)] for split, m in metrics.items()]
    parts = [tabulate(rows, headers=["split", *(header for _, header, _ in columns)], tablefmt="simple",
                      disable_numparse=True)]
    for split, m in metrics.items():
        group_columns = [c for c in GROUP_COLUMNS if c[0] in m]
        groups = list(m["group_count"])
        rows = [[group, *(_cell(m[key].get(group), is_percent) for key, _, is_percent in group_columns)]
                for group in groups]
        parts.append(f"{split} by group:\n" + tabulate(
            rows, headers=["group", *(header for _, header, _ in group_columns)], tablefmt="simple",
            disable_numparse=True))
    return "\n\n".join(parts)
