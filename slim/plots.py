"""Figures of one SLIM curation, saved beside the run record (matplotlib's Agg canvas, no pyplot).

``attention_space.png``: the attention space coloured by true group, by oracle answer and by propagated
score, queried instances marked. The group colouring reads the split's group labels, for this figure
only: nothing the pipeline decides depends on it. ``elbow.png``: the core and environment elbow curves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from slim.annotation import NO, NOT_SURE, YES
from slim.curation import Curation

ANSWER_STYLE = {YES: ("yes", "tab:green"), NO: ("no", "tab:red"), NOT_SURE: ("not sure", "tab:orange")}


def point_size(n: int) -> float:
    """Marker area shrinking with the number of points, so large splits stay readable."""
    return float(np.clip(400 / np.sqrt(max(n, 1)), 1, 20))


def attention_space_figure(curation: Curation, groups: np.ndarray, group_names: list[str]) -> Figure:
    xy, queried = curation.embedding, curation.query_ids
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    size = point_size(len(xy))
    ax = axes[0]
    cmap = colormaps["tab10" if len(group_names) <= 10 else "tab20"]
    for g, name in enumerate(group_names):
        rows = groups == g
        if rows.any():
            ax.scatter(*xy[rows].T, s=size, color=cmap(g % cmap.N), label=name, linewidths=0)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_title("true group (figure only)")
    ax = axes[1]
    ax.scatter(*xy.T, s=size, color="lightgrey", linewidths=0)
    for code, (label, colour) in ANSWER_STYLE.items():
        rows = queried[curation.answers == code]
        if len(rows):
            ax.scatter(*xy[rows].T, s=36, color=colour, edgecolors="black", linewidths=0.6, label=label)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"oracle answers ({len(queried)} queries)")
    ax = axes[2]
    points = ax.scatter(*xy.T, s=size, c=curation.scores, cmap="viridis", vmin=0, vmax=1, linewidths=0)
    ax.scatter(*xy[queried].T, s=36, facecolors="none", edgecolors="black", linewidths=0.8)
    fig.colorbar(points, ax=ax, label="P(attention correct)")
    ax.set_title(f"propagated score (kept {int(curation.keep.sum())} of {len(xy)})")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def elbow_figure(curation: Curation) -> Figure:
    scopes = list(curation.core)
    fig = Figure(figsize=(9, 3.6 * len(scopes)), layout="constrained")
    axes = fig.subplots(len(scopes), 2, squeeze=False).ravel()
    panels = [(f"{scope}: {kind}", clusters[scope]) for scope in scopes
              for kind, clusters in (("core (F_A)", curation.core), ("environment (F_Abar)", curation.env))]
    for ax, (title, clustering) in zip(axes, panels, strict=True):
        ks = sorted(clustering.curve)
        ax.plot(ks, [clustering.curve[k] for k in ks], "o-", color="tab:blue")
        ax.plot([clustering.k], [clustering.curve[clustering.k]], "o", color="tab:red", markersize=10,
                label=f"elbow k = {clustering.k}")
        ax.set_xticks(ks)
        ax.set_xlabel("k")
        ax.set_ylabel("k-means inertia")
        ax.set_title(title)
        ax.legend()
    return fig


def save_figures(run_dir: Path, curation: Curation, groups: np.ndarray, group_names: list[str]) -> list[Path]:
    """Write both figures into ``run_dir``; returns their paths."""
    run_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in (("attention_space.png", attention_space_figure(curation, groups, group_names)),
                      ("elbow.png", elbow_figure(curation))):
        fig.savefig(run_dir / name, dpi=110)
        written.append(run_dir / name)
    return written
