"""The tables of the methods that curate a subset on an attention budget (``Method.budgeted``, SLIM's):
paper Table 4 (their cost), Tables 7 and 8 (against the budget and the subset fraction) and the stage
diagnostics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from harness.reporting.tables.captions import column_notes, finish, heading, marking_note
from harness.reporting.tables.cells import Cell, Style, as_num, format_range, get_style, summarize, trim_number
from harness.reporting.tables.selection import (
    SWEEP_INDEX,
    CellStats,
    Record,
    accuracy_columns,
    approx_equal,
    budget_setting,
    check_records,
    dataset_name,
    dataset_rank,
    datasets_of,
    default_setting,
    in_setup,
    is_budgeted,
    latest_per_seed,
    main_rows,
    method_rank,
    ok_records,
    row_label,
    sweep_cells,
    variant_of,
)


def _attention_queries(rec: Record) -> int | None:
    """Queries a SLIM run asked: its details' count, else labels_used's."""
    queries = (rec.get("details") or {}).get("queries")
    if queries is None:
        queries = (rec.get("labels_used") or {}).get("attention_queries")
    return None if queries is None else int(queries)


def _queries_text(records: list[Record], style: Style) -> str:
    counts = [q for r in records if (q := _attention_queries(r)) is not None]
    if not counts:
        return style.missing
    text = format_range(counts, str)
    shares = [
        100 * float(f) for r in records if (f := (r.get("details") or {}).get("query_fraction")) is not None
    ]
    splits = sorted({s for r in records if (s := (r.get("labels_used") or {}).get("attention_split"))})
    if shares:
        of_split = f" of {style.escape('/'.join(splits))}" if splits else ""
        text += f" ({format_range(shares, trim_number)}{style.escape('%')}{of_split})"
    return text


def _subset_text(records: list[Record], style: Style) -> str:
    shares = [float(f) for r in records if (f := (r.get("details") or {}).get("subset_fraction")) is not None]
    return format_range(shares, lambda x: f"{trim_number(x)}{style.times}") if shares else style.missing


def table4(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 4 analogue: SLIM's attention queries (count, share of split) and curated subset size."""
    style = get_style(fmt)
    setup = [r for r in in_setup(check_records(records), arch, scale) if is_budgeted(r)]
    ok = ok_records(setup)
    datasets = datasets_of(ok)
    headers = ["Method"] + [f"{dataset_name(ds)} {col}" for ds in datasets for col in ("Att.", "Training")]
    rows: list[list[Cell]] = []
    for label, recs in main_rows(ok).items():
        texts = []
        for ds in datasets:
            own = latest_per_seed(r for r in recs if r["dataset"] == ds)
            texts += [_queries_text(own, style), _subset_text(own, style)]
        if any(t != style.missing for t in texts):
            rows.append([style.escape(label), *texts])
    if not rows:
        return None
    caption = (
        f"{heading(4, arch, scale, style)}: SLIM's cost at its default settings. Att.: attention queries "
        f"answered, as a count and a share of the split queried. Training: curated subset size as a multiple "
        f"of that split. Ranges show values that differ over seeds."
    )
    return finish(caption, headers, rows, [], setup, style)



def _sweep_table(records: Iterable[Record], arch: str, scale: str, fmt: str, vary: str) -> str | None:
    style = get_style(fmt)
    setup = [r for r in in_setup(check_records(records), arch, scale) if is_budgeted(r)]
    ok = ok_records(setup)
    cells_by = sweep_cells(ok, vary)
    datasets = sorted({ds for _, ds in cells_by}, key=dataset_rank)
    labels = list(dict.fromkeys(label for label, _ in cells_by))
    specs = {ds: accuracy_columns(ok, ds) for ds in datasets}
    value_header = "Amount" if vary == "budget" else "Prop%"
    headers = ["Method"] + [
        f"{dataset_name(ds)} {col}" for ds in datasets for col in (value_header, "Worst", "Avg")
    ]
    cells = CellStats()
    rows: list[list[Cell]] = []
    blocks: list[list[int]] = []
    for label in labels:
        per_dataset = {ds: sorted(cells_by.get((label, ds), {}).items()) for ds in datasets}
        block = []
        for depth in range(max(len(v) for v in per_dataset.values())):
            row: list[Cell] = [style.escape(label) if depth == 0 else ""]
            for ds in datasets:
                if depth >= len(per_dataset[ds]):
                    row += ["", "", ""]
                    continue
                value, recs = per_dataset[ds][depth]
                split, avg_key = specs[ds]
                is_default = approx_equal(value, default_setting(recs[0])[SWEEP_INDEX[vary]])
                shown = str(int(value)) if vary == "budget" else trim_number(100 * value)
                row += [
                    shown + (style.dagger if is_default else ""),
                    as_num(cells.stat(recs, split, "worst_group_acc"), "pct"),
                    as_num(cells.stat(recs, split, avg_key), "pct"),
                ]
            block.append(len(rows))
            rows.append(row)
        blocks.append(block)
    if not cells.counts:
        return None
    if vary == "budget":
        what = "the number of attention annotations (Amount), subset fraction at its default"
    else:
        what = "the curated subset size in percent of the split (Prop%), annotation budget at its default"
    caption = (
        f"{heading(7 if vary == 'budget' else 8, arch, scale, style)}: SLIM worst-group (Worst) and "
        f"average (Avg) accuracy in percent on the test split against {style.escape(what)}; "
        f"{cells.describe(style)}. {style.dagger}: the default used in Tables 2 and 3. "
        f"{marking_note(style, 'per column within each method')}."
        f"{column_notes(specs, style)}"
    )
    return finish(caption, headers, rows, blocks, setup, style)


def table7(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 7 analogue: SLIM against its annotation budget, one row per budget."""
    return _sweep_table(records, arch, scale, fmt, "budget")


def table8(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 8 analogue: SLIM against its curated subset fraction, one row per fraction."""
    return _sweep_table(records, arch, scale, fmt, "subset_frac")


# The stage diagnostics table: (header, path into details.diagnostics, number kind).
DIAGNOSTIC_COLUMNS = (
    ("Oracle acc", ("oracle", "answer_accuracy"), "pct"),
    ("Yes", ("oracle", "yes_share"), "pct"),
    ("Base", ("oracle", "base_rate"), "pct"),
    ("Exp. AUROC", ("expansion", "auroc"), "aiou"),
    ("kNN AUROC", ("expansion", "knn_vote_auroc"), "aiou"),
    ("Kept corr.", ("screening", "kept_correct"), "pct"),
    ("Env NMI", ("disentangling", "env_nmi_spurious"), "aiou"),
    ("Env pur.", ("disentangling", "env_purity_spurious"), "pct"),
    ("Min grp", ("curation", "min_group_share"), "pct"),
    ("Min grp dist.", ("curation", "min_group_share_distinct"), "pct"),
    ("Random", ("curation", "random_min_group_share"), "pct"),
    ("Balanced", ("curation", "balanced_min_group_share"), "pct"),
)


def diagnostic_value(rec: Record, path: tuple[str, ...]) -> float | None:
    value: Any = (rec.get("details") or {}).get("diagnostics")
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def table_diagnostics(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """SLIM's stages measured against ground truth (``details.diagnostics``, slim.diagnostics), one row per
    dataset, method, variant and ablation, at the default budget and subset fraction."""
    style = get_style(fmt)
    setup = [r for r in in_setup(check_records(records), arch, scale) if is_budgeted(r)]
    ok = [r for r in ok_records(setup) if (r.get("details") or {}).get("diagnostics")
          and all(approx_equal(a, b) for a, b in zip(budget_setting(r), default_setting(r), strict=True))]
    cells: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for rec in sorted(ok, key=lambda r: (dataset_rank(r["dataset"]), method_rank(r), variant_of(r))):
        cells[(rec["dataset"], row_label(rec), *variant_of(rec))].append(rec)
    stats = CellStats()
    rows: list[list[Cell]] = []
    for (dataset, label, variant, ablation), recs in cells.items():
        runs = latest_per_seed(recs)
        nums: list[Cell] = []
        for _, path, kind in DIAGNOSTIC_COLUMNS:
            values = [v for r in runs if (v := diagnostic_value(r, path)) is not None]
            nums.append(as_num(summarize(values), kind))
        split, _ = accuracy_columns(runs, dataset)
        nums.append(as_num(stats.stat(runs, split, "worst_group_acc"), "pct"))
        rows.append([style.escape(dataset_name(dataset)), style.escape(label), style.escape(variant),
                     style.escape(ablation), *nums])
    if not rows:
        return None
    headers = ["Dataset", "Method", "Variant", "Ablation", *(h for h, _, _ in DIAGNOSTIC_COLUMNS), "Worst"]
    caption = (
        f"SLIM stage diagnostics (arch {style.escape(arch)}, scale {style.escape(scale)}): each stage against "
        f"the ground truth of the split SLIM curates; {stats.describe(style)}. Oracle acc: answers equal to "
        f"the noise-free ones; Yes: share of yes answers, Base: share of the split whose attention is correct "
        f"(AIoU at least the oracle's threshold). Exp. AUROC: the propagated score against correct attention; "
        f"kNN AUROC: a leave-one-out k-NN vote with every true label known (the space's ceiling). Kept corr.: "
        f"correct attention among kept instances (against Base). Env NMI / pur.: environment clusters against "
        f"the spurious attribute. Min grp (dist.): the curated subset's smallest true-group share, rows "
        f"(distinct instances); Random: the same for a uniform random subset (in expectation), Balanced: the "
        f"group-balanced ideal. Worst: worst-group test accuracy. Shares in percent, AUROC and NMI as .xx. "
        f"Ablations (see labels_used for what each reads): noise_free_oracle, true_screening, "
        f"random_subset, uniform_pick, uniform_kept, group_balanced_subset."
    )
    return finish(caption, headers, rows, [], setup, style)

