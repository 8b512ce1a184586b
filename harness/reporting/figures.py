"""Figures built from run records: SLIM's sweeps (paper Tables 7 and 8 as plots) and accuracy bars.

Row selection, splits and seed statistics are those of :mod:`harness.reporting.tables` (std over seeds, ddof=0).
Figures are drawn on matplotlib's Agg canvas without pyplot, so nothing global is touched.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from harness.core.errors import HarnessError
from harness.core.records import read_record
from harness.reporting.tables import selection
from harness.reporting.tables.cells import Stat, slug
from harness.reporting.tables.selection import Record

log = logging.getLogger(__name__)

SWEEP_AXIS = {"budget": "attention annotations (queries)", "subset_frac": "curated subset (% of the split)"}
SWEEP_TITLE = {"budget": "annotation budget", "subset_frac": "subset fraction"}
BAR_PANELS_PER_ROW = 3


def _percent_stat(stat: Stat) -> tuple[float, float]:
    return 100 * stat.mean, 100 * stat.std


def baseline_levels(records: Iterable[Record], dataset: str) -> dict[str, Stat]:
    """Worst-group accuracy of each row of a method that is not budgeted on ``dataset`` (the reference lines of
    the sweeps)."""
    records = list(records)
    split, _ = selection.accuracy_columns(records, dataset)
    levels = {}
    for label, recs in selection.main_rows(records).items():
        if selection.is_budgeted(recs[0]):
            continue
        stat = selection.CellStats().stat([r for r in recs if r["dataset"] == dataset], split, "worst_group_acc")
        if stat is not None:
            levels[label] = stat
    return levels


def sweep_figure(records: Iterable[Record], arch: str, scale: str, dataset: str, vary: str) -> Figure | None:
    """Worst-group accuracy against ``vary`` ('budget' or 'subset_frac'), one panel per SLIM method.

    Error bars are the std over seeds; dashed lines are the baselines on the same dataset and arch; the
    default setting is ringed. None when no SLIM run varies ``vary`` on this dataset.
    """
    ok = selection.ok_records(selection.in_setup(selection.check_records(records), arch, scale))
    ok = [r for r in ok if r["dataset"] == dataset]
    cells = {label: points for (label, ds), points in selection.sweep_cells(ok, vary).items() if ds == dataset}
    if not cells:
        return None
    split, _ = selection.accuracy_columns(ok, dataset)
    baselines = baseline_levels(ok, dataset)
    fig = Figure(figsize=(5.2 * len(cells), 4.0), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    for ax, (label, points) in zip(axes, cells.items(), strict=True):
        series = []
        for value, recs in sorted(points.items()):
            stat = selection.CellStats().stat(recs, split, "worst_group_acc")
            if stat is not None:
                default = selection.default_setting(recs[0])[selection.SWEEP_INDEX[vary]]
                series.append(
                    (
                        value if vary == "budget" else 100 * value,
                        *_percent_stat(stat),
                        selection.approx_equal(value, default),
                    )
                )
        if series:
            xs, means, stds, defaults = zip(*series, strict=True)
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, color="tab:blue", label=label)
            ringed = [(x, m) for x, m, d in zip(xs, means, defaults, strict=True) if d]
            if ringed:
                ax.scatter(
                    *zip(*ringed, strict=True),
                    s=160,
                    facecolors="none",
                    edgecolors="tab:red",
                    zorder=3,
                    label="default setting",
                )
        for i, (name, stat) in enumerate(baselines.items()):
            ax.axhline(
                100 * stat.mean,
                linestyle="--",
                linewidth=1.2,
                color=f"C{i + 1}",
                label=f"{name} ({100 * stat.mean:.1f})",
            )
        ax.set_title(label)
        ax.set_xlabel(SWEEP_AXIS[vary])
        ax.set_ylabel(f"worst-group accuracy on {split} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{selection.dataset_name(dataset)} ({arch}, {scale}): SLIM vs {SWEEP_TITLE[vary]}")
    return fig


def accuracy_bars_figure(records: Iterable[Record], arch: str, scale: str) -> Figure | None:
    """Worst-group and average accuracy per method, one panel per dataset (SLIM at its defaults)."""
    ok = selection.ok_records(selection.in_setup(selection.check_records(records), arch, scale))
    panels = []
    for dataset in selection.datasets_of(ok):
        split, avg_key = selection.accuracy_columns(ok, dataset)
        bars = []
        for label, recs in selection.main_rows(r for r in ok if r["dataset"] == dataset).items():
            worst = selection.CellStats().stat(recs, split, "worst_group_acc")
            avg = selection.CellStats().stat(recs, split, avg_key)
            if worst is not None or avg is not None:
                bars.append((label, worst, avg))
        if bars:
            panels.append((dataset, split, avg_key, bars))
    if not panels:
        return None
    ncols = min(len(panels), BAR_PANELS_PER_ROW)
    nrows = math.ceil(len(panels) / ncols)
    panel_width = max(4.5, 0.9 * max(len(p[3]) for p in panels) + 1.5)
    fig = Figure(figsize=(panel_width * ncols, 4.2 * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for unused in axes[len(panels) :]:
        unused.remove()
    width = 0.38
    for ax, (dataset, split, avg_key, bars) in zip(axes, panels, strict=False):
        xs = range(len(bars))
        for offset, index, name, color in (
            (-width / 2, 1, "worst-group", "tab:red"),
            (width / 2, 2, "weighted average" if avg_key == "weighted_avg_acc" else "average", "tab:blue"),
        ):
            stats = [bar[index] for bar in bars]
            ax.bar(
                [x + offset for x in xs],
                [100 * s.mean if s else math.nan for s in stats],
                width,
                yerr=[100 * s.std if s else math.nan for s in stats],
                capsize=3,
                color=color,
                label=name,
            )
        ax.set_xticks(list(xs), [bar[0] for bar in bars], rotation=30, ha="right")
        ax.set_xlim(-0.7, len(bars) - 0.3)
        ax.set_ylim(0, 115)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel(f"accuracy on {split} (%)")
        ax.set_title(selection.dataset_name(dataset))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", ncols=2)
    fig.suptitle(f"Worst-group vs average accuracy ({arch}, {scale})")
    return fig


def _save(fig: Figure | None, path: Path, written: list[Path]) -> None:
    if fig is None:
        log.info("figure %s skipped: no data", path.name)
        return
    fig.savefig(path, dpi=110)
    written.append(path)


def write_figures(records: Iterable[Record], out_dir: Path) -> list[Path]:
    """Write the sweep plots (per dataset, arch, scale) and accuracy bars (per arch, scale) that have data."""
    records = selection.check_records(records)
    out_dir = Path(out_dir)
    written: list[Path] = []
    for arch, scale in selection.setups(selection.ok_records(records)):
        out_dir.mkdir(parents=True, exist_ok=True)
        setup = selection.in_setup(records, arch, scale)
        tag = f"{slug(arch)}_{slug(scale)}"
        for dataset in selection.datasets_of(r for r in setup if selection.is_budgeted(r)):
            for vary in selection.SWEEP_INDEX:
                name = f"{vary}_sweep_{slug(dataset)}_{tag}.png"
                _save(sweep_figure(setup, arch, scale, dataset, vary), out_dir / name, written)
        _save(accuracy_bars_figure(setup, arch, scale), out_dir / f"accuracy_bars_{tag}.png", written)
    return written


def collect_run_figures(runs_dir: Path, out_dir: Path) -> list[Path]:
    """Copy the PNGs runs saved beside their records (``runs_dir/<run_id>/*.png``) into ``out_dir/runs/``.

    One run per (dataset, method, arch, scale) is shown: the lowest finished seed at the main setting (SLIM at
    its default budget and subset fraction); the other runs' figures, failed runs' among them, stay beside
    their records.
    ``runs_dir`` is the folder of the ``<run_id>.json`` records; copies are named
    ``<dataset>_<method>_<arch>_seed<seed>_<run id prefix>_<original name>.png``.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise HarnessError(f"runs directory {runs_dir} does not exist")
    shown: dict[tuple[str, ...], tuple[int, Path, dict]] = {}
    for record_path in sorted(runs_dir.glob("*.json")):
        if not any((runs_dir / record_path.stem).glob("*.png")):
            continue
        rec = selection.check_records([read_record(record_path) or {}])[0]  # a non-object fails the check
        if rec["status"] != "ok" or not selection.is_main_setting(rec):  # a failed run's figures show no result
            continue
        cell = (rec["dataset"], rec.get("method_label") or rec["method"], rec["arch"], rec["scale"])
        if cell not in shown or int(rec["seed"]) < shown[cell][0]:
            shown[cell] = (int(rec["seed"]), record_path, rec)
    dest = Path(out_dir) / "runs"
    copied: list[Path] = []
    for _, record_path, rec in sorted(shown.values(), key=lambda item: item[1]):
        parts = (rec["dataset"], rec.get("method_label") or rec["method"], rec["arch"], f"seed{rec['seed']}",
                 record_path.stem[:8])
        prefix = "_".join(slug(str(p)) for p in parts)
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted((runs_dir / record_path.stem).glob("*.png")):
            target = dest / f"{prefix}_{slug(png.stem)}.png"
            shutil.copyfile(png, target)
            copied.append(target)
    return copied
