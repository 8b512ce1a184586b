"""Paper-style result tables built from run records alone (analogues of SLIM paper Tables 2-5, 7, 8).

Conventions (stated again in every table's caption):

- Accuracies are percentages with one decimal, AIoU scores are written ``.xx``.
- A cell is "mean ± std" over the seeds of its runs, with the population std (``ddof=0``, as numpy's
  default and most papers' tables); a cell backed by one seed shows the mean alone.
- When one cell holds several ok runs with the same seed (a rerun), only the newest (by ``created``) counts.
- Accuracy tables use the ``test`` split; ImageNet-9 uses ``test_mixed_rand`` when its records have it.
  Waterbirds' "Avg" is ``weighted_avg_acc`` (test group accuracies weighted by train group proportions)
  when its records have it, else the plain average.
- Best is bold and second best underlined per column (within each method for Tables 7 and 8), ranked by
  the mean as displayed, so values that look equal tie (ties are all bold).
- SLIM rows of Tables 2, 3 and 5 use only runs at ``default_hparams``' budget and subset fraction; Table 7
  varies the budget with the subset fraction at its default, Table 8 the reverse.
- Missing cells show as "–" (never 0); a table with no value at all is skipped; failed runs are left out
  of the numbers and listed in a footer line.
- The runs of one cell must come from one code version (``code_version``, harness.core.versions; records made
  before it existed count as one unknown version): :func:`write_tables` refuses a cell that mixes versions
  unless ``allow_mixed``, and then lists such cells in the index.
- Runs whose attention answers came from people (``details.oracle.kind`` "human") are rows of their own,
  marked ‡ and explained in a footer line.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.core.versions import describe as describe_version
from harness.core.versions import record_version
from harness.data.facts import FACTS, facts, is_synthetic, paper_dataset
from harness.engine.hparams_registry import budget_from_share, default_hparams

log = logging.getLogger(__name__)

Record = dict[str, Any]

SLIM_METHODS = ("slim-tr", "slim-val")
METHOD_ORDER = ("erm", "jtt", "slim-tr", "slim-val", "dfr", "gdro")  # the paper's row order, cheap to costly
FORMATS = ("markdown", "latex", "csv")
REQUIRED_KEYS = ("status", "dataset", "method", "arch", "seed", "scale")
SWEEP_INDEX = {"budget": 0, "subset_frac": 1}  # position in slim_setting()'s (budget, subset_frac)
HUMAN_MARK = "‡"  # after a row label: people answered the attention queries of its runs


# ----------------------------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Style:
    """How one output format writes symbols, emphasis and plain text."""

    tablefmt: str
    missing: str
    pm: str
    times: str
    diamond: str
    dagger: str
    bold: Callable[[str], str]
    underline: Callable[[str], str]
    escape: Callable[[str], str]


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    HUMAN_MARK: r"$^\ddagger$",
}


def latex_escape(text: str) -> str:
    """Text with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    """Text safe inside a pipe-table cell."""
    return text.replace("|", r"\|")


STYLES = {
    "markdown": Style(
        tablefmt="github",
        missing="–",
        pm=" ± ",
        times="×",
        diamond="◇",
        dagger="†",
        bold=lambda s: f"**{s}**",
        underline=lambda s: f"<u>{s}</u>",
        escape=markdown_escape,
    ),
    "latex": Style(
        tablefmt="latex_raw",
        missing="--",
        pm=r" $\pm$ ",
        times=r"$\times$",
        diamond=r"$\diamond$",
        dagger=r"$^\dagger$",
        bold=lambda s: rf"\textbf{{{s}}}",
        underline=lambda s: rf"\underline{{{s}}}",
        escape=latex_escape,
    ),
    "csv": Style(  # for analysis: no emphasis, numbers unrounded (see render_csv)
        tablefmt="csv",
        missing="",
        pm=" ± ",
        times="×",
        diamond="◇",
        dagger="†",
        bold=lambda s: s,
        underline=lambda s: s,
        escape=lambda s: s,
    ),
}


def get_style(fmt: str) -> Style:
    if fmt not in STYLES:
        raise HarnessError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    return STYLES[fmt]


# ------------------------------------------------------------------------------------------------ numbers


@dataclass(frozen=True)
class Stat:
    """Mean and population std (ddof=0) of one cell's values over seeds."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Stat | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return Stat(float(arr.mean()), float(arr.std(ddof=0)), len(arr))


def format_number(value: float, kind: str) -> str:
    """A fraction as a percentage with one decimal (kind 'pct') or as an AIoU score '.xx' (kind 'aiou')."""
    if kind == "pct":
        return f"{100 * value:.1f}"
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def format_stat(stat: Stat, kind: str, style: Style) -> str:
    mean = format_number(stat.mean, kind)
    return mean if stat.n == 1 else f"{mean}{style.pm}{format_number(stat.std, kind)}"


def trim_number(value: float) -> str:
    """At most two decimals, trailing zeros dropped: 0.10 -> '0.1', 2.0 -> '2'."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_range(values: Iterable[float], fmt: Callable[[float], str]) -> str:
    """'a' when every value formats alike, else 'min-max'."""
    vals = list(values)
    low, high = fmt(min(vals)), fmt(max(vals))
    return low if low == high else f"{low}-{high}"


@dataclass(frozen=True)
class Num:
    """A numeric table cell; ranked for bold / underline by its mean as displayed."""

    stat: Stat
    kind: str

    def shown_mean(self) -> float:
        return float(format_number(self.stat.mean, self.kind))


def as_num(stat: Stat | None, kind: str) -> Num | None:
    return None if stat is None else Num(stat, kind)


# ------------------------------------------------------------------------------------------------ records


def check_records(records: Iterable[Record]) -> list[Record]:
    """The records as a list, or a HarnessError naming the first one that lacks a schema key."""
    checked = list(records)
    for rec in checked:
        missing = [k for k in REQUIRED_KEYS if rec.get(k) is None]
        if missing:
            raise HarnessError(f"run record {rec.get('run_id', '?')} lacks {', '.join(missing)}")
    return checked


def ok_records(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r["status"] == "ok"]


def setups(records: Iterable[Record]) -> list[tuple[str, str]]:
    """The (arch, scale) pairs present; every table and figure is drawn for one pair."""
    return sorted({(str(r["arch"]), str(r["scale"])) for r in records})


def in_setup(records: Iterable[Record], arch: str, scale: str) -> list[Record]:
    return [r for r in records if str(r["arch"]) == arch and str(r["scale"]) == scale]


def method_label(rec: Record) -> str:
    """Row name: the record's ``method_label`` if set, else the method's display name."""
    method = rec["method"]
    return rec.get("method_label") or (METHODS.get(method).title if method in METHODS else method)


def annotators(rec: Record) -> list[str] | None:
    """Who answered a run's attention queries when people did (``details.oracle.kind`` "human"), else None."""
    oracle = (rec.get("details") or {}).get("oracle") or {}
    return list(oracle.get("annotators") or []) if oracle.get("kind") == "human" else None


def row_label(rec: Record) -> str:
    """The accuracy tables' row of a run: the record's ``method_label`` if set, else what its method calls a
    run with its settings (a method with variants, e.g. SLIM's, names one row for each); marked with
    HUMAN_MARK when people gave the answers."""
    method, hp = rec["method"], (rec.get("config") or {}).get("hparams") or {}
    label = rec.get("method_label") or (METHODS.get(method).row_label(hp) if method in METHODS else method)
    return label + (HUMAN_MARK if annotators(rec) is not None else "")


def method_rank(rec: Record) -> tuple[int, str]:
    method = rec["method"]
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method_label(rec))


def dataset_name(dataset: str) -> str:
    """Display name: 'waterbirds-synth' -> 'Waterbirds (synth)'."""
    known = facts(dataset)
    name = known.title if known else paper_dataset(dataset)
    return f"{name} (synth)" if is_synthetic(dataset) else name


def dataset_rank(dataset: str) -> tuple[int, bool, str]:
    known = list(FACTS)
    base = paper_dataset(dataset)
    return (known.index(base) if base in known else len(known), is_synthetic(dataset), dataset)


def datasets_of(records: Iterable[Record]) -> list[str]:
    return sorted({r["dataset"] for r in records}, key=dataset_rank)


def slim_setting(rec: Record) -> tuple[int, float]:
    """A SLIM run's (annotation budget, curated subset fraction): the budget from its config, or when that
    is None (a share of the split) the queries it asked."""
    config = (rec.get("config") or {}).get("hparams") or {}
    budget = config.get("budget")
    if budget is None:
        budget = (rec.get("details") or {}).get("queries")
    if budget is None or config.get("subset_frac") is None:
        raise HarnessError(f"SLIM run record {rec.get('run_id', '?')} lacks config.hparams budget or subset_frac")
    return int(budget), float(config["subset_frac"])


def default_setting(rec: Record) -> tuple[int, float]:
    """The registry's default (budget, subset_frac) for the record's method, dataset and scale; a default
    that is a share of the split is resolved on the split the record curated."""
    hp = default_hparams(rec["method"], rec["dataset"], rec["scale"])
    budget = hp["budget"]
    if budget is None:  # the curated split's size is queries / query_fraction (records of every schema)
        details = rec.get("details") or {}
        classes = len(details.get("class_budgets") or {})
        if not details.get("query_fraction") or not classes:
            raise HarnessError(f"SLIM run record {rec.get('run_id', '?')} lacks details.query_fraction or "
                               "class_budgets")
        split_size = round(details["queries"] / details["query_fraction"])
        budget = budget_from_share(hp["budget_share"], split_size, classes)
    return int(budget), float(hp["subset_frac"])


def slim_kind(rec: Record) -> tuple[str, str]:
    """A SLIM run's (variant, ablation); ("paper", "none") for runs before both existed."""
    hp = (rec.get("config") or {}).get("hparams") or {}
    return str(hp.get("slim_variant", "paper")), str(hp.get("slim_ablation", "none"))


def approx_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def is_main_setting(rec: Record) -> bool:
    """True for the runs of the accuracy tables: every run its method puts there (SLIM: both variants and the
    subsets that replace its curation), SLIM's at the default budget and subset fraction."""
    method = rec["method"]
    hp = (rec.get("config") or {}).get("hparams") or {}
    if method in METHODS and not METHODS.get(method).in_accuracy_tables(hp):
        return False
    if method not in SLIM_METHODS:
        return True
    return all(approx_equal(a, b) for a, b in zip(slim_setting(rec), default_setting(rec), strict=True))


def main_rows(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Runs at the main setting grouped by row label, in the paper's row order."""
    rows: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: (method_rank(r), row_label(r))):
        if is_main_setting(rec):
            rows[row_label(rec)].append(rec)
    return dict(rows)


def sweep_cells(records: Iterable[Record], vary: str) -> dict[tuple[str, str], dict[float, list[Record]]]:
    """SLIM runs with ``vary`` ('budget' or 'subset_frac') changed and the other setting at its default.

    Keyed by (row label, dataset), then by the varied value.
    """
    varied = SWEEP_INDEX[vary]
    cells: dict[tuple[str, str], dict[float, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for rec in sorted(records, key=method_rank):
        if rec["method"] not in SLIM_METHODS or slim_kind(rec) != ("paper", "none"):
            continue
        setting, default = slim_setting(rec), default_setting(rec)
        if approx_equal(setting[1 - varied], default[1 - varied]):
            cells[(row_label(rec), rec["dataset"])][round(setting[varied], 9)].append(rec)
    return cells


def latest_per_seed(records: Iterable[Record]) -> list[Record]:
    """One run per seed: the newest (by ``created``) where a cell was run twice with one seed."""
    newest: dict[Any, Record] = {}
    for rec in records:
        seed = rec["seed"]
        if seed not in newest or str(rec.get("created", "")) > str(newest[seed].get("created", "")):
            newest[seed] = rec
    return [newest[s] for s in sorted(newest, key=str)]


def cell_key(rec: Record) -> tuple:
    """What puts runs into one table cell apart from their seed: setup, dataset, row and SLIM's setting."""
    key: tuple = (str(rec["arch"]), str(rec["scale"]), rec["dataset"], method_label(rec))
    return key + (slim_kind(rec), slim_setting(rec)) if rec["method"] in SLIM_METHODS else key


def mixed_version_cells(records: Iterable[Record]) -> list[str]:
    """One line per table cell whose runs (the newest per seed, as the tables count them) come from more
    than one code version, naming the cell and the seeds of each version."""
    cells: dict[tuple, list[Record]] = defaultdict(list)
    for rec in ok_records(records):
        cells[cell_key(rec)].append(rec)
    lines = []
    for key, recs in sorted(cells.items(), key=lambda item: str(item[0])):
        seeds_of: dict[str, list[str]] = defaultdict(list)
        for rec in latest_per_seed(recs):
            seeds_of[describe_version(record_version(rec))].append(str(rec["seed"]))
        if len(seeds_of) > 1:
            arch, scale, dataset, label = key[:4]
            setting = f" at budget {key[5][0]}, subset {trim_number(key[5][1])}" if len(key) > 4 else ""
            versions = "; ".join(f"{version} (seeds {', '.join(seeds)})" for version, seeds in sorted(seeds_of.items()))
            lines.append(f"{dataset}/{label}{setting} (arch {arch}, scale {scale}): {versions}")
    return lines


def metric_value(rec: Record, split: str, key: str) -> float | None:
    value = ((rec.get("metrics") or {}).get(split) or {}).get(key)
    return None if value is None else float(value)


def _has(records: Iterable[Record], split: str, key: str) -> bool:
    return any(metric_value(r, split, key) is not None for r in records)


def accuracy_columns(records: Iterable[Record], dataset: str) -> tuple[str, str]:
    """(split, average key) for a dataset's accuracy columns.

    ImageNet-9 prefers 'test_mixed_rand' (the paper's choice) when its records have it; Waterbirds uses
    'weighted_avg_acc' when its records have it.
    """
    own = [r for r in records if r["dataset"] == dataset]
    known = facts(dataset)
    preferred = known.test_splits if known else ("test",)
    split = next((s for s in preferred if _has(own, s, "worst_group_acc")), "test")
    weighted = known is not None and known.weighted_avg and _has(own, split, "weighted_avg_acc")
    return split, "weighted_avg_acc" if weighted else "avg_acc"


def aiou_split(records: Iterable[Record], dataset: str) -> str | None:
    """The split whose AIoU a dataset reports: 'test', else an extra test split, else 'val'; None if none."""
    own = [r for r in records if r["dataset"] == dataset]
    extra = sorted({s for r in own for s in (r.get("metrics") or {}) if s.startswith("test_")})
    return next((s for s in ["test", *extra, "val"] if _has(own, s, "aiou_worst")), None)


class CellStats:
    """Cell statistics of one table; remembers the seeds behind them for the caption."""

    def __init__(self) -> None:
        self.seeds: set[Any] = set()
        self.counts: list[int] = []

    def stat(self, records: Iterable[Record], split: str, key: str) -> Stat | None:
        values = [
            (r["seed"], v) for r in latest_per_seed(records) if (v := metric_value(r, split, key)) is not None
        ]
        if values:
            self.seeds.update(seed for seed, _ in values)
            self.counts.append(len(values))
        return summarize([v for _, v in values])

    def describe(self, style: Style) -> str:
        seeds = style.escape(", ".join(str(s) for s in sorted(self.seeds, key=str)))
        if max(self.counts, default=1) == 1:
            return f"one run per cell (seeds {seeds}), so no std"
        per_cell = format_range(self.counts, str)
        return f"mean{style.pm}std over seeds (population std, ddof=0), seeds {seeds} ({per_cell} per cell)"


def label_requirement(records: Iterable[Record], style: Style) -> str:
    """'none' / 'validation' / 'training' from labels_used, plus the attention-label marker."""
    records = list(records)
    levels = set()
    for rec in records:
        used = rec.get("labels_used") or {}
        if used.get("train_group_labels"):
            levels.add("training")
        elif used.get("val_group_labels"):
            levels.add("validation")
        else:
            levels.add("none")
    text = ", ".join(level for level in ("none", "validation", "training") if level in levels)
    if any((r.get("labels_used") or {}).get("attention_queries", 0) for r in records):
        text += f" {style.diamond}"
    return text


def training_cost(records: Iterable[Record], style: Style) -> str:
    """Extra training data as a multiple of the training set: one value or a range over datasets."""
    by_dataset: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        value = (rec.get("cost") or {}).get("extra_training_fraction")
        if value is not None:
            by_dataset[rec["dataset"]].append(float(value))
    if not by_dataset:
        return style.missing
    means = [float(np.mean(v)) for v in by_dataset.values()]
    return format_range(means, lambda x: f"{trim_number(x)}{style.times}")


# ----------------------------------------------------------------------------------------------- rendering

Cell = str | Num | None  # None: a missing value


@dataclass
class Table:
    """Headers and text cells are already written in the target format."""

    caption: str
    headers: list[str]
    rows: list[list[Cell]]
    rank_blocks: list[list[int]]  # row indices ranked together in every numeric column
    footer: list[str] = field(default_factory=list)


def rank_marks(table: Table) -> dict[tuple[int, int], str]:
    """(row, col) -> 'best' or 'second' by displayed mean, higher better; ties share a mark."""
    marks: dict[tuple[int, int], str] = {}
    for block in table.rank_blocks:
        for col in range(len(table.headers)):
            shown = {r: cell.shown_mean() for r in block if isinstance(cell := table.rows[r][col], Num)}
            levels = sorted(set(shown.values()), reverse=True)[:2]
            for row, value in shown.items():
                if value in levels:
                    marks[(row, col)] = "best" if value == levels[0] else "second"
    return marks


def render(table: Table, style: Style) -> str:
    if style.tablefmt == "csv":
        return render_csv(table)
    marks = rank_marks(table)

    def text(row: int, col: int, cell: Cell) -> str:
        if cell is None:
            return style.missing
        if isinstance(cell, str):
            return cell
        shown = format_stat(cell.stat, cell.kind, style)
        mark = marks.get((row, col))
        return style.bold(shown) if mark == "best" else style.underline(shown) if mark == "second" else shown

    body = [[text(r, c, cell) for c, cell in enumerate(row)] for r, row in enumerate(table.rows)]
    grid = tabulate(body, headers=table.headers, tablefmt=style.tablefmt, disable_numparse=True)
    if style.tablefmt == "github":
        footer = "".join(f"\n{line}\n" for line in table.footer)
        return f"{table.caption}\n\n{grid}\n{footer}"
    footer = "".join(f"\n\n{{\\footnotesize {line}}}" for line in table.footer)
    return (
        f"% {table.caption}\n\\begin{{table}}[ht]\n\\centering\n\\caption{{{table.caption}}}\n"
        f"{grid}{footer}\n\\end{{table}}\n"
    )


def render_csv(table: Table) -> str:
    """The table's rows as CSV, without caption or footer: a column of numbers becomes three, the mean, the
    std and the number of seeds (accuracies in percent, unrounded); a missing value is empty."""
    numeric = [any(isinstance(row[col], Num) for row in table.rows) for col in range(len(table.headers))]
    headers = [name for col, header in enumerate(table.headers)
               for name in ((header, f"{header} std", f"{header} seeds") if numeric[col] else (header,))]

    def cells(col: int, cell: Cell) -> list[str]:
        if isinstance(cell, Num):
            unit = 100 if cell.kind == "pct" else 1
            return [repr(unit * cell.stat.mean), repr(unit * cell.stat.std), str(cell.stat.n)]
        return [cell or ""] + (["", ""] if numeric[col] else [])

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([value for col, cell in enumerate(row) for value in cells(col, cell)] for row in table.rows)
    return buffer.getvalue()


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


def _marking_note(style: Style, scope: str) -> str:
    return f"{style.bold('bold')}: best, {style.underline('underlined')}: second best {scope} (by mean)"


def _column_notes(specs: dict[str, tuple[str, str]], style: Style) -> str:
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


def _heading(number: int, arch: str, scale: str, style: Style) -> str:
    return f"Table {number} analogue (arch {style.escape(arch)}, scale {style.escape(scale)})"


# ------------------------------------------------------------------------------------------------- tables


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
        f"{_heading(number, arch, scale, style)}: worst-group (Worst) and average (Avg) accuracy in "
        f"percent on {kind_text} tasks, test split; {cells.describe(style)}. "
        f"{_marking_note(style, 'per column')}.{_column_notes(specs, style)} Spuriousness label: group "
        f"labels the method used (training set, validation set or none); {style.diamond}: uses attention "
        f"labels. Add. training cost: extra training data as a multiple of the training set size, min-max "
        f"over datasets. SLIM rows: default budget and subset fraction."
    )
    return finish(caption, headers, rows, [list(range(len(rows)))], setup, style)


def finish(caption: str, headers: list[str], rows: list, blocks: list[list[int]], setup: list[Record],
           style: Style) -> str:
    """Render a table whose footer explains HUMAN_MARK where a row has it and lists the failed runs of ``setup``."""
    footer = human_footer(rows, setup, style) + failed_footer([r for r in setup if r["status"] != "ok"], style)
    return render(Table(caption, [style.escape(h) for h in headers], rows, blocks, footer), style)


def table2(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 2 analogue: binary tasks (Waterbirds, CelebA, ISIC); None when it has no value."""
    return _accuracy_table(records, arch, scale, fmt, 2, "binary", "binary classification")


def table3(records: Iterable[Record], arch: str, scale: str, fmt: str = "markdown") -> str | None:
    """Paper Table 3 analogue: multi-class tasks (NICO, ImageNet-9 on test_mixed_rand when present)."""
    return _accuracy_table(records, arch, scale, fmt, 3, "multi-class", "multi-class classification")


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
    setup = [r for r in in_setup(check_records(records), arch, scale) if r["method"] in SLIM_METHODS]
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
        f"{_heading(4, arch, scale, style)}: SLIM's cost at its default settings. Att.: attention queries "
        f"answered, as a count and a share of the split queried. Training: curated subset size as a multiple "
        f"of that split. Ranges show values that differ over seeds."
    )
    return finish(caption, headers, rows, [], setup, style)


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
        f"{_heading(5, arch, scale, style)}: attention accuracy (AIoU, 0 to 1) of the worst group and "
        f"averaged over the split ({split_notes}); {cells.describe(style)}. "
        f"{_marking_note(style, 'per column')}. "
        f"SLIM rows: default budget and subset fraction."
    )
    return finish(caption, headers, rows, [list(range(len(rows)))], setup, style)


def _sweep_table(records: Iterable[Record], arch: str, scale: str, fmt: str, vary: str) -> str | None:
    style = get_style(fmt)
    setup = [r for r in in_setup(check_records(records), arch, scale) if r["method"] in SLIM_METHODS]
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
        f"{_heading(7 if vary == 'budget' else 8, arch, scale, style)}: SLIM worst-group (Worst) and "
        f"average (Avg) accuracy in percent on the test split against {style.escape(what)}; "
        f"{cells.describe(style)}. {style.dagger}: the default used in Tables 2 and 3. "
        f"{_marking_note(style, 'per column within each method')}."
        f"{_column_notes(specs, style)}"
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
    setup = [r for r in in_setup(check_records(records), arch, scale) if r["method"] in SLIM_METHODS]
    ok = [r for r in ok_records(setup) if (r.get("details") or {}).get("diagnostics")
          and all(approx_equal(a, b) for a, b in zip(slim_setting(r), default_setting(r), strict=True))]
    cells: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for rec in sorted(ok, key=lambda r: (dataset_rank(r["dataset"]), method_rank(r), slim_kind(r))):
        cells[(rec["dataset"], row_label(rec), *slim_kind(rec))].append(rec)
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


TABLES: tuple[tuple[str, str, Callable[..., str | None]], ...] = (
    ("table2_binary", "Table 2 (binary tasks)", table2),
    ("table3_multiclass", "Table 3 (multi-class tasks)", table3),
    ("table4_slim_cost", "Table 4 (SLIM's cost)", table4),
    ("table5_aiou", "Table 5 (attention accuracy)", table5),
    ("table7_budget", "Table 7 (SLIM vs annotation budget)", table7),
    ("table8_subset_frac", "Table 8 (SLIM vs subset fraction)", table8),
    ("slim_diagnostics", "SLIM stage diagnostics", table_diagnostics),
)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def write_tables(records: Iterable[Record], out_dir: Path, fmt: str = "markdown", *,
                 allow_mixed: bool = False) -> list[Path]:
    """Write every table with data, one file per table and (arch, scale); markdown adds an index README.md.

    Tables without any value are skipped; the index (markdown) or the log (latex, csv) says which. A cell whose
    runs come from two code versions is a HarnessError before anything is written, unless ``allow_mixed``:
    then the index lists those cells and each is logged as a warning.
    """
    style = get_style(fmt)
    records = check_records(records)
    mixed = mixed_version_cells(records)
    if mixed and not allow_mixed:
        more = f" (and {len(mixed) - 1} more cell(s))" if len(mixed) > 1 else ""
        raise HarnessError(f"table cell {mixed[0]} mixes code versions{more}: rerun the stale runs (sweep "
                           "--rerun-stale) or pass --allow-mixed to average them anyway")
    for line in mixed:
        log.warning("cell of mixed code versions (--allow-mixed): %s", line)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = {"markdown": ".md", "latex": ".tex", "csv": ".csv"}[fmt]
    written: list[Path] = []
    index: list[str] = []
    for arch, scale in setups(records):
        for stem, title, build in TABLES:
            text = build(records, arch, scale, fmt)
            if text is None:
                note = f"{title}, arch {arch}, scale {scale}: skipped, no run gives it a value"
                log.info(note)
                index.append(f"- {markdown_escape(note)}")
                continue
            path = out_dir / f"{stem}_{slug(arch)}_{slug(scale)}{suffix}"
            path.write_text(text)
            written.append(path)
            index.append(
                f"- [{title}, arch {markdown_escape(arch)}, scale {markdown_escape(scale)}]({path.name})"
            )
    if fmt == "markdown":
        failed = failed_footer([r for r in records if r["status"] != "ok"], style)
        lines = [
            "# Result tables",
            "",
            f"Built from {len(records)} run records.",
            "",
            *(index or ["- no records"]),
            *(["", "Cells that average runs of different code versions (--allow-mixed):", ""]
              + [f"- {markdown_escape(line)}" for line in mixed] if mixed else []),
        ]
        readme = out_dir / "README.md"
        readme.write_text("\n".join(lines + ([""] + failed if failed else [])) + "\n")
        written.append(readme)
    return written
