"""The accuracy tables of every method: paper Tables 2 (binary tasks), 3 (multi-class tasks) and 5 (attention
accuracy)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.data.facts import facts
from harness.reporting.tables.captions import column_notes, finish, heading, marking_note
from harness.reporting.tables.cells import Cell, as_num, get_style
from harness.reporting.tables.selection import (
    CellStats,
    Record,
    accuracy_columns,
    aiou_split,
    check_records,
    dataset_name,
    datasets_of,
    in_setup,
    label_requirement,
    main_rows,
    ok_records,
    training_cost,
)


def _accuracy_table(
    records: Iterable[Record],
    arch: str,
    scale: str,
    fmt: str,
    number: int,
    family: str,
    kind_text: str,
) -> str | None:
    style = get_style(fmt)
    setup = [r for r in in_setup(check_records(records), arch, scale)
             if getattr(facts(r["dataset"]), "family", None) == family]
    ok = ok_records(setup)
    datasets = datasets_of(ok)
    specs = {ds: accuracy_columns(ok, ds) for ds in datasets}
    cells = CellStats()
    headers = ["Method", "Spuriousness label", "Add. training cost"]
    headers += [f"{dataset_name(ds)} {col}" for ds in datasets for col in ("Worst", "Avg")]
    rows: list[list[Cell]] = []
    for label, recs in main_rows(ok).items():
        nums: list[Cell] = []
        for ds in datasets:
            split, avg_key = specs[ds]
            own = [r for r in recs if r["dataset"] == ds]
            nums += [
                as_num(cells.stat(own, split, "worst_group_acc"), "pct"),
                as_num(cells.stat(own, split, avg_key), "pct"),
            ]
        if any(n is not None for n in nums):
            rows.append(
                [style.escape(label), label_requirement(recs, style), training_cost(recs, style), *nums]
            )
    if not rows:
        return None
    caption = (
        f"{heading(number, arch, scale, style)}: worst-group (Worst) and average (Avg) accuracy in "
        f"percent on {kind_text} tasks, test split; {cells.describe(style)}. "
        f"{marking_note(style, 'per column')}.{column_notes(specs, style)} Spuriousness label: group "
        f"labels the method used (training set, validation set or none); {style.diamond}: uses attention "
        f"labels. Add. training cost: extra training data as a multiple of the training set size, min-max "
        f"over datasets. SLIM rows: default budget and subset fraction."
    )
    return finish(caption, headers, rows, [list(range(len(rows)))], setup, style)



def table2(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 2 analogue: binary tasks (Waterbirds, CelebA, ISIC); None when it has no value."""
    return _accuracy_table(records, arch, scale, fmt, 2, "binary", "binary classification")


def table3(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 3 analogue: multi-class tasks (NICO, ImageNet-9 on test_mixed_rand when present)."""
    return _accuracy_table(records, arch, scale, fmt, 3, "multi-class", "multi-class classification")



def table5(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 5 (right) analogue: worst-group and average attention accuracy (AIoU) per method."""
    style = get_style(fmt)
    setup = in_setup(check_records(records), arch, scale)
    ok = ok_records(setup)
    splits = {ds: split for ds in datasets_of(ok) if (split := aiou_split(ok, ds)) is not None}
    cells = CellStats()
    headers = ["Method"] + [f"{dataset_name(ds)} AIoU {col}" for ds in splits for col in ("Worst", "Avg")]
    rows: list[list[Cell]] = []
    for label, recs in main_rows(ok).items():
        nums: list[Cell] = []
        for ds, split in splits.items():
            own = [r for r in recs if r["dataset"] == ds]
            nums += [
                as_num(cells.stat(own, split, "aiou_worst"), "aiou"),
                as_num(cells.stat(own, split, "aiou_avg"), "aiou"),
            ]
        if any(n is not None for n in nums):
            rows.append([style.escape(label), *nums])
    if not rows:
        return None
    split_notes = "; ".join(
        f"{style.escape(dataset_name(ds))}: {style.escape(s)} split" for ds, s in splits.items()
    )
    caption = (
        f"{heading(5, arch, scale, style)}: attention accuracy (AIoU, 0 to 1) of the worst group and "
        f"averaged over the split ({split_notes}); {cells.describe(style)}. "
        f"{marking_note(style, 'per column')}. "
        f"SLIM rows: default budget and subset fraction."
    )
    return finish(caption, headers, rows, [list(range(len(rows)))], setup, style)

