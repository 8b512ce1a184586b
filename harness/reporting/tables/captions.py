"""What every table adds around its cells: the shared phrases of the captions, and the footers (people's
answers, failed runs)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.reporting.tables.cells import HUMAN_MARK, Cell, Style, Table, render
from harness.reporting.tables.selection import (
    Record,
    annotators,
    dataset_name,
    dataset_rank,
    method_label,
    method_rank,
    ok_records,
)


def failed_footer(records: Iterable[Record], style: Style) -> list[str]:
    """One line naming the failed runs a table leaves out (none: no line)."""
    items = []
    for rec in sorted(records, key=lambda r: (dataset_rank(r["dataset"]), method_rank(r), str(r["seed"]))):
        error = str(rec.get("error") or "").strip().splitlines()
        reason = f" ({error[0][:80]})" if error else ""
        items.append(f"{rec['dataset']}/{method_label(rec)}/seed {rec['seed']}{reason}")
    return [f"Failed runs (excluded): {style.escape('; '.join(items))}"] if items else []


def human_footer(rows: list[list[Cell]], setup: Iterable[Record], style: Style) -> list[str]:
    """One line explaining HUMAN_MARK when a row carries it (none: no line)."""
    mark = style.escape(HUMAN_MARK)
    if not any(isinstance(cell, str) and cell.endswith(mark) for row in rows for cell in row):
        return []
    people = sorted({name for rec in ok_records(setup) for name in annotators(rec) or []})
    return [f"{mark}: attention answers given by people (the records' details.oracle.kind is human), not the "
            f"simulated oracle; annotators: {style.escape(', '.join(people) or 'unnamed')}."]


def marking_note(style: Style, scope: str) -> str:
    return f"{style.bold('bold')}: best, {style.underline('underlined')}: second best {scope} (by mean)"


def column_notes(specs: dict[str, tuple[str, str]], style: Style) -> str:
    notes = []
    for dataset, (split, avg_key) in specs.items():
        if split != "test":
            notes.append(f"{style.escape(dataset_name(dataset))} uses the {style.escape(split)} split")
        if avg_key == "weighted_avg_acc":
            notes.append(
                f"{style.escape(dataset_name(dataset))} Avg is the test group accuracies weighted by "
                f"train group proportions"
            )
    return "".join(f" {note}." for note in notes)


def heading(number: int, arch: str, scale: str, style: Style) -> str:
    return f"Table {number} analogue (arch {style.escape(arch)}, scale {style.escape(scale)})"



def finish(caption: str, headers: list[str], rows: list, blocks: list[list[int]], setup: list[Record],
           style: Style) -> str:
    """Render a table whose footer explains HUMAN_MARK where a row has it and lists the failed runs of ``setup``."""
    footer = human_footer(rows, setup, style) + failed_footer([r for r in setup if r["status"] != "ok"], style)
    return render(Table(caption, [style.escape(h) for h in headers], rows, blocks, footer), style)

