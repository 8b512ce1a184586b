"""Where SLIM wins (issue 33): every method's worst-group accuracy against the premise SLIM rests on.

SLIM's premise (paper Sec. 4.3): a biased reference model still attends to the core object on a diverse subset
of the data, so that dropping the instances it attends to wrongly leaves a subset from which a balanced one can
be drawn. Its measure here is read from the reference ERM model's record: the share of its test maps the
simulated oracle calls correct (``metrics.test.group_attention_correct``), averaged over the preset's minority
groups (:func:`harness.data.synthetic.minority_groups`, each group counted once). A sweep moves a synthetic preset
along a difficulty knob (``[data_levels]`` of a sweep file); the runs of one data setting form a level.
:func:`write_premise` reads the records alone and writes, per (arch, scale), a figure (worst-group test accuracy
of every row against ERM's minority share, beside SLIM's stage diagnostics along the same axis) and a markdown
table::

    python -m harness premise --runs out/premise/runs --out results/premise
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure
from tabulate import tabulate

from harness.core.errors import HarnessError
from harness.data.facts import is_synthetic, paper_dataset
from harness.data.synthetic import SIZE_OPTIONS, group_names, minority_groups, preset_difficulty
from harness.experiments.calibration import GAP_MIN, PAPER_ERM_AIOU
from harness.reporting.tables import budgeted, cells, selection
from harness.reporting.tables.cells import Stat, summarize
from harness.reporting.tables.selection import Record

SLIM_DIAGNOSED = ("slim-tr", "slim-val")  # whose stage diagnostics are drawn (the paper variant, no ablation)
PCT = 100.0
DFR_MARGIN = 0.03  # issue 33: does SLIM come "within 3 points of DFR"
RANDOM_ROW = "SLIM_Val: random subset"  # the reference row: a random subset of SLIM_Val's size (reads labels)


@dataclass
class Level:
    """One point of a dataset's axis: the ok runs made on one setting of its data options."""

    options: dict[str, Any]  # config.data_options of its runs ({}: the preset as it is)
    label: str
    records: list[Record] = field(default_factory=list)

    @property
    def knobs(self) -> dict[str, Any]:
        """Its difficulty knobs (the data options less the split sizes, which every level of a sweep shares)."""
        return {k: v for k, v in self.options.items() if k not in SIZE_OPTIONS.values()}

    @property
    def is_default(self) -> bool:
        """The preset's own difficulty (at whatever split sizes)."""
        return not self.knobs

    def runs(self, method: str, kind: tuple[str, str] = ("paper", "none")) -> list[Record]:
        """This level's runs of ``method`` (SLIM: of one (variant, ablation)), one per seed."""
        return selection.latest_per_seed(r for r in self.records if r["method"] == method
                                         and (not selection.is_budgeted(r) or selection.variant_of(r) == kind))

    def variants(self, method: str) -> list[str]:
        """The implementations of ``method`` this level ran without an ablation, the paper's first."""
        kinds = {selection.variant_of(r) for r in self.records if r["method"] == method and selection.is_budgeted(r)}
        return sorted({variant for variant, ablation in kinds if ablation == "none"}, key=lambda v: (v != "paper", v))

    def erm_stat(self, value) -> Stat | None:
        """A statistic over the seeds of this level's ERM runs (the reference models)."""
        return summarize([v for r in self.runs("erm") if (v := value(r)) is not None])


def minority_share(rec: Record) -> float | None:
    """Mean over the preset's minority groups of the share of the record's test maps the oracle calls
    correct; None when the record has no attention metrics for them."""
    correct = ((rec.get("metrics") or {}).get("test") or {}).get("group_attention_correct") or {}
    shares = [correct[g] for g in minority_groups(rec["dataset"], rec["scale"]) if g in correct]
    return float(np.mean(shares)) if shares else None


def erm_gap(rec: Record, split: str, avg_key: str) -> float | None:
    """ERM's table average minus its worst-group accuracy on ``split`` (the gap a method can win back)."""
    avg, worst = selection.metric_value(rec, split, avg_key), selection.metric_value(rec, split, "worst_group_acc")
    return None if avg is None or worst is None else avg - worst


class Kept(NamedTuple):
    """What screening kept of one run's val (or train) split, per true group."""

    minority: float | None  # the share kept, mean over the minority groups
    other: float | None  # mean over the other groups
    least: float | None  # of the group it kept least of
    dropped: int | None  # how many groups it kept none of


def kept_shares(rec: Record) -> Kept:
    """The share screening kept, from SLIM's ``details.diagnostics.screening.kept_share_by_group`` (group-id
    order; a group absent from the split is None). A group screening keeps none of cannot be drawn by curation,
    however balanced."""
    screening = ((rec.get("details") or {}).get("diagnostics") or {}).get("screening") or {}
    by_group = screening.get("kept_share_by_group")
    if by_group is None:
        return Kept(None, None, None, None)
    minority = set(minority_groups(rec["dataset"], rec["scale"]))
    names = group_names(rec["dataset"])
    present = [(name in minority, v) for name, v in zip(names, by_group, strict=True) if v is not None]
    inside = [v for is_minority, v in present if is_minority]
    outside = [v for is_minority, v in present if not is_minority]
    values = inside + outside
    return Kept(float(np.mean(inside)) if inside else None, float(np.mean(outside)) if outside else None,
                min(values) if values else None, sum(v == 0 for v in values) if values else None)


def row_label(rec: Record) -> str:
    """A row: the method, and for SLIM its variant and ablation where they are not the paper's and none."""
    label = selection.method_label(rec)
    if not selection.is_budgeted(rec):
        return label
    variant, ablation = selection.variant_of(rec)
    return label + (f" ({variant})" if variant != "paper" else "") + (
        f": {ablation.replace('_', ' ')}" if ablation != "none" else "")


def _knob_text(value: Any) -> str:
    """A knob's value as the sweep file gives it (0.165 stays 0.165: levels may differ in the third decimal)."""
    if isinstance(value, (list, tuple)):
        return ",".join(f"{float(v):g}" for v in value)
    return f"{float(value):g}"


def dataset_levels(records: Iterable[Record], dataset: str) -> list[Level]:
    """The levels of ``dataset`` among ``records`` (ok runs of one arch and scale), each labelled by the knobs
    any level sets (a knob a level leaves out has the preset's value), in order of ERM's minority share."""
    by_options: dict[str, Level] = {}
    for rec in records:
        if rec["dataset"] != dataset:
            continue
        options = (rec.get("config") or {}).get("data_options") or {}
        key = json.dumps(options, sort_keys=True)
        by_options.setdefault(key, Level(options, "")).records.append(rec)
    knobs = sorted({k for level in by_options.values() for k in level.knobs})
    preset = asdict(preset_difficulty(dataset))
    for level in by_options.values():
        text = ", ".join(f"{k}={_knob_text(level.knobs.get(k, preset[k]))}" for k in knobs) or "preset"
        level.label = text + (" (preset)" if level.is_default and knobs else "")
    levels = [level for level in by_options.values() if level.erm_stat(minority_share) is not None]
    return sorted(levels, key=lambda level: level.erm_stat(minority_share).mean)


def paper_crossing(levels: list[Level], dataset: str) -> tuple[float | None, str]:
    """Where along the axis ERM's worst-group AIoU equals the paper's ERM on the real dataset (Table 5): the
    minority share, linearly interpolated between the first two neighbouring levels that straddle it, or None;
    and a sentence saying so."""
    paper = PAPER_ERM_AIOU.get(paper_dataset(dataset))
    if paper is None:
        return None, ""
    points = [(s.mean, a.mean) for level in levels
              if (s := level.erm_stat(minority_share)) and (a := level.erm_stat(_aiou_worst))]
    what = (f"the paper's ERM on {paper_dataset(dataset).capitalize()} (Table 5: AIoU worst {paper[0]:.2f} / avg "
            f"{paper[1]:.2f})")
    for (x0, a0), (x1, a1) in zip(points, points[1:], strict=False):
        if (a0 - paper[0]) * (a1 - paper[0]) <= 0 and a0 != a1:
            share = x0 + (paper[0] - a0) / (a1 - a0) * (x1 - x0)
            return share, (f"{what}: our ERM's worst-group AIoU reaches {paper[0]:.2f} at a minority share of "
                           f"{PCT * share:.0f} % (interpolated between neighbouring levels).")
    spread = [a for _, a in points]
    span = f"{min(spread):.2f}-{max(spread):.2f}" if spread else "no value"
    return None, f"{what}: outside the swept range (our ERM's worst-group AIoU spans {span})."


def _aiou_worst(rec: Record) -> float | None:
    return selection.metric_value(rec, "test", "aiou_worst")


def _aiou_avg(rec: Record) -> float | None:
    return selection.metric_value(rec, "test", "aiou_avg")


def row_labels(records: Iterable[Record]) -> list[str]:
    """Every row present, ERM first and the paper's order after it; within a SLIM method the paper variant,
    then the others, then its reference rows (ablations)."""
    def order(rec: Record) -> tuple:
        variant, ablation = selection.variant_of(rec)
        return selection.method_rank(rec), ablation != "none", variant != "paper", variant, ablation

    return list(dict.fromkeys(row_label(r) for r in sorted(records, key=order)))


def _worst_by_row(level: Level, split: str) -> dict[str, Stat]:
    rows: dict[str, list[Record]] = defaultdict(list)
    for rec in level.records:
        rows[row_label(rec)].append(rec)
    return {label: stat for label, recs in rows.items()
            if (stat := selection.CellStats().stat(recs, split, "worst_group_acc")) is not None}


def _worst_by_seed(level: Level, label: str, split: str) -> dict[Any, float]:
    runs = selection.latest_per_seed(r for r in level.records if row_label(r) == label)
    return {r["seed"]: v for r in runs if (v := selection.metric_value(r, split, "worst_group_acc")) is not None}


def paired_difference(level: Level, label: str, reference: str, split: str) -> tuple[Stat | None, list[float]]:
    """Row ``label``'s worst-group accuracy minus ``reference``'s on the seeds both ran (they share the level's
    data and reference ERM model): its mean ± std, and the per-seed differences."""
    ours, theirs = _worst_by_seed(level, label, split), _worst_by_seed(level, reference, split)
    diffs = [ours[seed] - theirs[seed] for seed in sorted(ours.keys() & theirs.keys(), key=str)]
    return summarize(diffs), diffs


def wins_from(shares: list[float], diffs: list[Stat | None], margin: float) -> float | None:
    """The lowest minority share from which on the row wins every level compared (mean difference above
    ``-margin``): None when it loses the highest level compared or none was compared."""
    compared = [(share, d.mean > -margin) for share, d in zip(shares, diffs, strict=True) if d is not None]
    threshold = None
    for share, won in reversed(compared):
        if not won:
            break
        threshold = share
    return threshold


def _comparisons(levels: list[Level], labels: list[str], split: str) -> tuple[list[str], list[list[str]],
                                                                             list[str]]:
    """Each SLIM row (no ablation) against the random subset of SLIM_Val's size and against DFR, level by level
    (paired over seeds): the table's headers and rows, and a sentence per pair saying from which share on it
    wins."""
    references = [(label, margin, what) for label, margin, what in (
        (RANDOM_ROW, 0.0, "beats"), ("DFR", DFR_MARGIN, f"comes within {PCT * DFR_MARGIN:.0f} points of"))
        if label in labels]
    shares = [level.erm_stat(minority_share).mean for level in levels]
    headers, columns, sentences = [], [], []
    for row in (label for label in labels if label.startswith("SLIM") and ":" not in label):
        for reference, margin, what in references:
            per_level = [paired_difference(level, row, reference, split) for level in levels]
            diffs = [d for d, _ in per_level]
            compared = [share for share, d in zip(shares, diffs, strict=True) if d is not None]
            if not compared:
                continue
            headers.append(f"{row} − {reference}")
            columns.append(["–" if d is None else
                            f"{PCT * d.mean:+.1f} ± {PCT * d.std:.1f} ({sum(x > -margin for x in xs)}/{len(xs)})"
                            for d, xs in per_level])
            won = sum(d is not None and d.mean > -margin for d in diffs)
            threshold = wins_from(shares, diffs, margin)
            where = ("at no level compared" if won == 0
                     else f"at {won} of {len(compared)} levels, not at the highest share compared" if threshold is None
                     else f"at every level compared ({len(compared)})" if threshold == compared[0]
                     else f"at every level from a minority share of {PCT * threshold:.0f} % on "
                          f"({won} of {len(compared)} levels)")
            sentences.append(f"{row} {what} {reference} {where}.")
    rows = [[level.label, _pct(level.erm_stat(minority_share)), *(column[i] for column in columns)]
            for i, level in enumerate(levels)]
    return headers, rows, sentences


def _diagnostics(level: Level, method: str, variant: str = "paper") -> dict[str, Stat | None]:
    runs = level.runs(method, (variant, "none"))
    kept = [kept_shares(r) for r in runs]

    def over_seeds(*path: str) -> Stat | None:
        return summarize([v for r in runs if (v := budgeted.diagnostic_value(r, path)) is not None])

    def over_kept(field_name: str) -> Stat | None:
        return summarize([float(v) for k in kept if (v := getattr(k, field_name)) is not None])

    return {
        "auroc": over_seeds("expansion", "auroc"),
        **{f"kept_{name}": over_kept(name) for name in Kept._fields},
        "env_nmi": over_seeds("disentangling", "env_nmi_spurious"),
        "min_group": over_seeds("curation", "min_group_share"),
        "subset_size": summarize([float(r["details"]["subset_size"]) for r in runs
                                  if (r.get("details") or {}).get("subset_size") is not None]),
    }


def _pct(stat: Stat | None) -> str:
    return "–" if stat is None else cells.format_stat(stat, "pct", cells.STYLES["markdown"])


def _count(stat: Stat | None) -> str:
    return "–" if stat is None else f"{stat.mean:.1f} ± {stat.std:.1f}"


def _score(stat: Stat | None) -> str:
    return "–" if stat is None else cells.format_stat(stat, "aiou", cells.STYLES["markdown"])


def premise_markdown(records: list[Record], arch: str, scale: str) -> str | None:
    """The premise table of one (arch, scale): per dataset and level, ERM's minority share, AIoU and gap beside
    every row's worst-group accuracy, then SLIM's stage diagnostics."""
    ok = selection.ok_records(selection.in_setup(records, arch, scale))
    datasets = [d for d in selection.datasets_of(ok) if is_synthetic(d)]
    parts = [f"# Where SLIM wins: worst-group accuracy against SLIM's premise (arch {arch}, scale {scale})", "",
             "'ERM minority attn' is the share of the reference ERM model's test maps the simulated oracle calls "
             "correct (AIoU >= 0.5), averaged over the preset's minority groups (rarer in train than an even "
             "split of their class: " + "; ".join(f"{d}: {', '.join(minority_groups(d, scale)[:4])}"
                                                  + (" ..." if len(minority_groups(d, scale)) > 4 else "")
                                                  for d in datasets) + "). Levels in order of that share; "
             f"cells are mean ± std over seeds (population std), accuracies and shares in percent. 'gap' is ERM's "
             f"table average minus its worst group on the accuracy split (Waterbirds: train-weighted average; "
             f"ImageNet-9: test_mixed_rand); † marks a level where it is under {PCT * GAP_MIN:.0f} points.", ""]
    drawn = False
    for dataset in datasets:
        levels = dataset_levels(ok, dataset)
        if not levels:
            continue
        drawn = True
        split, avg_key = selection.accuracy_columns(ok, dataset)
        labels = row_labels(r for level in levels for r in level.records)
        accuracy_rows, diagnostic_rows = [], []
        for level in levels:
            gap = level.erm_stat(lambda r, s=split, k=avg_key: erm_gap(r, s, k))
            worst = _worst_by_row(level, split)
            accuracy_rows.append([level.label, _pct(level.erm_stat(minority_share)),
                                  f"{_score(level.erm_stat(_aiou_worst))} / {_score(level.erm_stat(_aiou_avg))}",
                                  _pct(gap) + (" †" if gap is not None and gap.mean < GAP_MIN else ""),
                                  *(_pct(worst.get(label)) for label in labels)])
            for method in SLIM_DIAGNOSED:
                for variant in level.variants(method):
                    diag = _diagnostics(level, method, variant)
                    if any(v is not None for v in diag.values()):
                        size = diag["subset_size"]
                        diagnostic_rows.append([
                            level.label, method + (f" ({variant})" if variant != "paper" else ""),
                            _score(diag["auroc"]), _pct(diag["kept_minority"]), _pct(diag["kept_other"]),
                            _pct(diag["kept_least"]), _count(diag["kept_dropped"]),
                            _score(diag["env_nmi"]), _pct(diag["min_group"]),
                            "–" if size is None else f"{size.mean:.0f}"])
        _, paper_text = paper_crossing(levels, dataset)
        parts += [f"## {selection.dataset_name(dataset)}", "",
                  tabulate(accuracy_rows, headers=["level", "ERM minority attn", "ERM AIoU worst / avg", "ERM gap",
                                                   *(f"{label} worst" for label in labels)],
                           tablefmt="github", disable_numparse=True), ""]
        if paper_text:
            parts += [paper_text[0].upper() + paper_text[1:], ""]
        headers, rows, sentences = _comparisons(levels, labels, split)
        if headers:
            parts += ["Where each SLIM row wins: its worst-group accuracy minus the reference row's, paired over the "
                      "seeds both ran (mean ± std, points), with the seeds where it wins in brackets (against DFR: "
                      f"where it is within {PCT * DFR_MARGIN:.0f} points).", "",
                      tabulate(rows, headers=["level", "ERM minority attn", *headers], tablefmt="github",
                               disable_numparse=True), "", *(f"- {sentence}" for sentence in sentences), ""]
        if diagnostic_rows:
            parts += ["SLIM's stages along the axis (both variants, no ablation; from `details.diagnostics`): "
                      "Exp. AUROC, the propagated score against correct attention; Kept, the share of the "
                      "minority groups' and of the other groups' instances screening keeps (mean over groups) "
                      "and of the group it keeps least of; Dropped, how many groups it keeps none of; Env. NMI, "
                      "the environment clusters' normalised mutual information with the true spurious attribute; "
                      "Smallest group, the curated subset's smallest true-group share (a balanced subset: "
                      f"{PCT / len(group_names(dataset)):.0f} %); Subset, its size.", "",
                      tabulate(diagnostic_rows, headers=["level", "method", "Exp. AUROC", "Kept: minority",
                                                         "Kept: other", "Kept: least", "Dropped", "Env. NMI",
                                                         "Smallest group", "Subset"],
                               tablefmt="github", disable_numparse=True), ""]
    return "\n".join(parts) if drawn else None


def premise_figure(records: list[Record], arch: str, scale: str) -> Figure | None:
    """One row per dataset: worst-group test accuracy of every row against ERM's minority share (seed std as
    error bars, ERM's average dotted, the preset's own level and the paper's Waterbirds level marked) and, where
    SLIM ran, its spreading AUROC and what screening keeps and curation draws, along the same axis."""
    ok = selection.ok_records(selection.in_setup(records, arch, scale))
    axes_by_dataset = {d: levels for d in selection.datasets_of(ok) if is_synthetic(d)
                       if (levels := dataset_levels(ok, d))}
    if not axes_by_dataset:
        return None
    diagnosed = any(r["method"] in SLIM_DIAGNOSED for r in ok)
    fig = Figure(figsize=(17 if diagnosed else 7, 5.4 * len(axes_by_dataset)), layout="constrained")
    grid = fig.subplots(len(axes_by_dataset), 3 if diagnosed else 1, squeeze=False, sharex="row")  # one axis
    colours = row_colours(ok)
    for (dataset, levels), axes in zip(axes_by_dataset.items(), grid, strict=True):
        shares = [PCT * level.erm_stat(minority_share).mean for level in levels]
        _accuracy_panel(axes[0], levels, shares, *selection.accuracy_columns(ok, dataset), dataset, colours)
        if diagnosed:
            _diagnostic_panels(axes[1], axes[2], levels, shares, dataset)
        for ax in axes:
            _mark_levels(ax, levels, shares, dataset)
            ax.set_xlabel("ERM: correct attention on minority groups (%)")
            if ax.get_legend_handles_labels()[0]:  # below the panel: the lines are where a legend would sit
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.suptitle(f"Where SLIM wins (arch {arch}, scale {scale}); error bars: std over seeds", fontsize=11)
    return fig


def row_colours(records: Iterable[Record]) -> dict[str, str]:
    """One colour per row label, the same in every dataset's panel."""
    palette = [f"C{i}" for i in range(10)] + ["navy", "gold", "lime", "teal", "maroon"]
    return {label: palette[i % len(palette)] for i, label in enumerate(row_labels(records))}


def _accuracy_panel(ax, levels: list[Level], shares: list[float], split: str, avg_key: str, dataset: str,
                    colours: dict[str, str]) -> None:
    share_std = [PCT * level.erm_stat(minority_share).std for level in levels]
    worst = [_worst_by_row(level, split) for level in levels]
    for label in row_labels(r for level in levels for r in level.records):
        points = [(x, dx, PCT * w[label].mean, PCT * w[label].std)
                  for x, dx, w in zip(shares, share_std, worst, strict=True) if label in w]
        xs, dxs, ys, dys = zip(*points, strict=True)
        ax.errorbar(xs, ys, xerr=dxs, yerr=dys, marker="o", capsize=3, color=colours[label], label=label)
    erm_avg = [level.erm_stat(lambda r, s=split, k=avg_key: selection.metric_value(r, s, k)) for level in levels]
    ax.plot(shares, [PCT * a.mean if a else np.nan for a in erm_avg], ":", color="grey", label="ERM average")
    ax.set_ylabel(f"worst-group accuracy, {split} (%)")
    ax.set_title(f"{selection.dataset_name(dataset)}: accuracy along the premise axis", fontsize=10)


def _diagnostic_panels(auroc_ax, kept_ax, levels: list[Level], shares: list[float], dataset: str) -> None:
    for method, style, colour in zip(SLIM_DIAGNOSED, ("--", "-"), ("C0", "C1"), strict=True):
        diag = [_diagnostics(level, method) for level in levels]
        _diagnostic_line(auroc_ax, shares, [d["auroc"] for d in diag], 1.0, f"{method}: spreading AUROC", style,
                         colour)
        _diagnostic_line(kept_ax, shares, [d["kept_minority"] for d in diag], PCT,
                         f"{method}: kept, minority groups", style, "tab:red")
        _diagnostic_line(kept_ax, shares, [d["kept_other"] for d in diag], PCT,
                         f"{method}: kept, other groups", style, "tab:blue")
        _diagnostic_line(kept_ax, shares, [d["kept_least"] for d in diag], PCT,
                         f"{method}: kept, the group kept least", style, "tab:orange")
        _diagnostic_line(kept_ax, shares, [d["min_group"] for d in diag], PCT,
                         f"{method}: subset's smallest group", style, "tab:green")
    auroc_ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    auroc_ax.set_ylim(0, 1)
    auroc_ax.set_ylabel("AUROC of the propagated score")
    auroc_ax.set_title("expansion: spreading AUROC", fontsize=10)
    kept_ax.axhline(PCT / len(group_names(dataset)), color="tab:green", lw=0.8, ls=":",
                    label="balanced subset's smallest group")
    kept_ax.set_ylim(0, 105)
    kept_ax.set_ylabel("%")
    kept_ax.set_title("screening: share kept; curation: smallest group", fontsize=10)


def _mark_levels(ax, levels: list[Level], shares: list[float], dataset: str) -> None:
    """The preset's own level (dashed) and the paper's Waterbirds level (dash-dot), where the axis has them."""
    for level, share in zip(levels, shares, strict=True):
        if level.is_default:
            ax.axvline(share, color="black", lw=0.8, ls="--", label="this preset as shipped")
    crossing, _ = paper_crossing(levels, dataset)
    if crossing is not None:
        ax.axvline(PCT * crossing, color="tab:purple", lw=1.0, ls="-.",
                   label="paper's ERM AIoU (Table 5), on this axis")


def _diagnostic_line(ax, shares: list[float], stats: list[Stat | None], scale: float, label: str, style: str,
                     colour: str | None = None) -> None:
    points = [(x, scale * s.mean, scale * s.std) for x, s in zip(shares, stats, strict=True) if s is not None]
    if points:
        xs, ys, dys = zip(*points, strict=True)
        ax.errorbar(xs, ys, yerr=dys, marker="o", ls=style, capsize=3, color=colour, label=label)


def write_premise(records: Iterable[Record], out_dir: Path) -> list[Path]:
    """premise_<arch>_<scale>.png and .md per (arch, scale) of ``records``; a HarnessError when none has a
    synthetic preset's ERM run with attention metrics (nothing to place on the axis)."""
    records = selection.check_records(records)
    out_dir = Path(out_dir)
    written: list[Path] = []
    for arch, scale in selection.setups(records):
        text = premise_markdown(records, arch, scale)
        if text is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"premise_{cells.slug(arch)}_{cells.slug(scale)}"
        stem.with_suffix(".md").write_text(text)
        fig = premise_figure(records, arch, scale)
        fig.savefig(stem.with_suffix(".png"), dpi=110)
        written += [stem.with_suffix(".png"), stem.with_suffix(".md")]
    if not written:
        raise HarnessError("no ERM run of a synthetic preset with attention metrics among the records: nothing "
                           "to place on the premise axis (run harness/experiments/configs/premise.toml)")
    return written
