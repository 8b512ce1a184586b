"""Whether training has converged: each trained method's val curve, read from its records' epoch history."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from harness.reporting.tables.captions import finish
from harness.reporting.tables.cells import Cell, as_num, format_range, get_style, summarize
from harness.reporting.tables.selection import (
    Record,
    check_records,
    dataset_name,
    datasets_of,
    in_setup,
    main_rows,
    ok_records,
)


def table_convergence(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Per dataset and trained method (a run with an epoch history): epochs, the epoch model selection took,
    the train loss of the first and last epoch, and the selection criterion on val at its best epoch, at the
    last epoch and over the last three; None when no run trained by epochs."""
    style = get_style(fmt)
    setup = in_setup(check_records(records), arch, scale)
    ok = ok_records(setup)
    rows: list[list[Cell]] = []
    for ds in datasets_of(ok):
        for label, recs in main_rows([r for r in ok if r["dataset"] == ds]).items():
            curves = [(r, r["details"]["history"]) for r in recs if (r.get("details") or {}).get("history")]
            criterion = {r["model_selection"]["criterion"] for r, _ in curves}
            if not curves or len(criterion) != 1 or not all(next(iter(criterion)) in h[-1] for _, h in curves):
                continue
            key = next(iter(criterion))
            chosen = [r["model_selection"]["epoch"] for r, _ in curves if r["model_selection"].get("epoch")]
            rows.append([
                style.escape(dataset_name(ds)), style.escape(label), style.escape(key),
                format_range([len(h) for _, h in curves], str),
                format_range(chosen, str) if chosen else None,
                f"{np.mean([h[0]['train_loss'] for _, h in curves]):.3f}",
                f"{np.mean([h[-1]['train_loss'] for _, h in curves]):.3f}",
                as_num(summarize([max(e[key] for e in h) for _, h in curves]), "pct"),
                as_num(summarize([h[-1][key] for _, h in curves]), "pct"),
                as_num(summarize([max(e[key] for e in h[-3:]) - min(e[key] for e in h[-3:]) for _, h in curves]),
                       "pct"),
            ])
    if not rows:
        return None
    headers = ["Dataset", "Method", "Selection on val", "Epochs", "Selected epoch", "Train loss, first epoch",
               "Train loss, last epoch", "Val: best epoch", "Val: last epoch", "Val: spread over the last 3"]
    caption = (
        f"Training curves (arch {style.escape(arch)}, scale {style.escape(scale)}): for every method that trains "
        f"by epochs, the epochs run (min-max over seeds), the epoch its model selection took, the mean train "
        f"loss of the first and last epoch, and its selection criterion on val (percent, mean{style.pm}std over "
        f"seeds) at the best epoch, the last epoch, and as the range over the last three epochs. A curve that "
        f"has converged ends with a small train loss, a last epoch near the best, and a small range."
    )
    return finish(caption, headers, rows, [], setup, style)
