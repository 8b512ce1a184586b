"""Paper Tables 2 and 3 beside ours: every row of our accuracy tables with the paper's own number next to it."""

from __future__ import annotations

from collections.abc import Iterable

from harness.data.facts import facts
from harness.reporting.tables.captions import finish
from harness.reporting.tables.cells import Cell, Num, Stat, as_num, get_style
from harness.reporting.tables.selection import (
    CellStats,
    Record,
    accuracy_columns,
    check_records,
    dataset_name,
    datasets_of,
    in_setup,
    main_rows,
    ok_records,
)

PAPER_RUNS = 5  # "five independent runs" (paper Sec. 5)


def table_versus_paper(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Our worst-group and average accuracy of every method row beside paper Table 2 or 3's for the same
    method on the paper's dataset (blank where the paper has no such row); None without a dataset the paper
    reports."""
    style = get_style(fmt)
    setup = in_setup(check_records(records), arch, scale)
    ok = ok_records(setup)
    datasets = [ds for ds in datasets_of(ok) if getattr(facts(ds), "paper_accuracy", None)]
    cells = CellStats()
    rows: list[list[Cell]] = []
    for ds in datasets:
        split, avg_key = accuracy_columns(ok, ds)
        paper = facts(ds).paper_accuracy
        for label, recs in main_rows([r for r in ok if r["dataset"] == ds]).items():
            worst, avg = cells.stat(recs, split, "worst_group_acc"), cells.stat(recs, split, avg_key)
            if worst is None:
                continue
            published = paper.get(label)
            rows.append([style.escape(dataset_name(ds)), style.escape(label), as_num(worst, "pct"),
                         _paper_num(published, 0), _difference(worst, published, 0), as_num(avg, "pct"),
                         _paper_num(published, 2), _difference(avg, published, 2)])
    if not rows:
        return None
    headers = ["Dataset", "Method", "Worst", "Worst (paper)", "Worst: ours - paper", "Avg", "Avg (paper)",
               "Avg: ours - paper"]
    caption = (
        f"Tables 2 and 3 beside the paper's (arch {style.escape(arch)}, scale {style.escape(scale)}): "
        f"worst-group and average accuracy in percent on each dataset's test split; ours {cells.describe(style)}; "
        f"the paper's mean{style.pm}std over its {PAPER_RUNS} runs on the real dataset, for the methods it "
        f"reports (blank: no such row in the paper; our variant and reference rows have none). Differences in "
        f"points, from the means as shown. Our datasets are synthetic stand-ins with the real splits' group "
        f"structure, our backbone EfficientNet-Lite0 with its upper part trained: the columns say how far each "
        f"method lands from the paper's, not whether the paper holds on its data."
    )
    return finish(caption, headers, rows, [], setup, style)


def _paper_num(published: tuple[float, float, float, float] | None, at: int) -> Num | None:
    if published is None:
        return None
    return Num(Stat(published[at] / 100, published[at + 1] / 100, PAPER_RUNS), "pct")


def _difference(ours: Stat | None, published: tuple[float, float, float, float] | None, at: int) -> str | None:
    if ours is None or published is None:
        return None
    return f"{round(100 * ours.mean, 1) - published[at]:+.1f}"
