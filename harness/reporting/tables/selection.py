"""Which runs fill which row and cell of a table: records checked and grouped, rows ranked, the setting of a
budgeted method's run, seeds and metrics read."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.core.versions import describe as describe_version
from harness.core.versions import record_version
from harness.data.facts import FACTS, facts, is_synthetic, paper_dataset
from harness.engine.hparams_registry import budget_from_share, default_hparams
from harness.engine.methods import Method
from harness.reporting.tables.cells import HUMAN_MARK, Stat, Style, format_range, summarize, trim_number

Record = dict[str, Any]

REQUIRED_KEYS = ("status", "dataset", "method", "arch", "seed", "scale")
SWEEP_INDEX = {"budget": 0, "subset_frac": 1}  # position in budget_setting()'s (budget, subset_frac)


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


def method_of(rec: Record) -> type[Method] | None:
    """The registered method of a record (None: a method no plug-in registered here)."""
    return METHODS.get(rec["method"]) if rec["method"] in METHODS else None


def hparams_of(rec: Record) -> dict[str, Any]:
    return (rec.get("config") or {}).get("hparams") or {}


def is_budgeted(rec: Record) -> bool:
    """Whether the record's method curates on an attention budget (``Method.budgeted``, SLIM's)."""
    method = method_of(rec)
    return method is not None and method.budgeted


def method_label(rec: Record) -> str:
    """Row name: the record's ``method_label`` if set, else the method's display name."""
    method = method_of(rec)
    return rec.get("method_label") or (method.title if method is not None else rec["method"])


def annotators(rec: Record) -> list[str] | None:
    """Who answered a run's attention queries when people did (``details.oracle.kind`` "human"), else None."""
    oracle = (rec.get("details") or {}).get("oracle") or {}
    return list(oracle.get("annotators") or []) if oracle.get("kind") == "human" else None


def row_label(rec: Record) -> str:
    """The accuracy tables' row of a run: the record's ``method_label`` if set, else what its method calls a
    run with its settings (a method with variants, e.g. SLIM's, names one row for each); marked with
    HUMAN_MARK when people gave the answers."""
    method = method_of(rec)
    label = rec.get("method_label") or (method.row_label(hparams_of(rec)) if method is not None else rec["method"])
    return label + (HUMAN_MARK if annotators(rec) is not None else "")


def method_rank(rec: Record) -> tuple[float, str]:
    """Where a run's row goes: its method's ``table_rank`` (the paper's order), unranked methods last, by name."""
    method = method_of(rec)
    return (method.table_rank if method is not None else math.inf, method_label(rec))


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


def budget_setting(rec: Record) -> tuple[int, float]:
    """A budgeted run's (annotation budget, curated subset fraction): the budget from its config, or when that
    is None (a share of the split) the queries it asked."""
    config = hparams_of(rec)
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


def variant_of(rec: Record) -> tuple[str, str]:
    """A run's (implementation, ablation), as its method names them (``Method.variant``; the base class's
    for a method no plug-in registered here)."""
    return (method_of(rec) or Method).variant(hparams_of(rec))


def approx_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def is_main_setting(rec: Record) -> bool:
    """True for the runs of the accuracy tables: every run its method puts there (SLIM: both variants and the
    subsets that replace its curation), a budgeted method's at the default budget and subset fraction."""
    method = method_of(rec)
    if method is not None and not method.in_accuracy_tables(hparams_of(rec)):
        return False
    if not is_budgeted(rec):
        return True
    return all(approx_equal(a, b) for a, b in zip(budget_setting(rec), default_setting(rec), strict=True))


def main_rows(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Runs at the main setting grouped by row label, in the paper's row order."""
    rows: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: (method_rank(r), row_label(r))):
        if is_main_setting(rec):
            rows[row_label(rec)].append(rec)
    return dict(rows)


def sweep_cells(records: Iterable[Record], vary: str) -> dict[tuple[str, str], dict[float, list[Record]]]:
    """Budgeted runs with ``vary`` ('budget' or 'subset_frac') changed and the other setting at its default.

    Keyed by (row label, dataset), then by the varied value.
    """
    varied = SWEEP_INDEX[vary]
    cells: dict[tuple[str, str], dict[float, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for rec in sorted(records, key=method_rank):
        if not is_budgeted(rec) or variant_of(rec) != ("paper", "none"):
            continue
        setting, default = budget_setting(rec), default_setting(rec)
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
    """What puts runs into one table cell apart from their seed: setup, dataset, row and, for a budgeted
    method, its variant and setting."""
    key: tuple = (str(rec["arch"]), str(rec["scale"]), rec["dataset"], method_label(rec))
    return key + (variant_of(rec), budget_setting(rec)) if is_budgeted(rec) else key


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

