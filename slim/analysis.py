"""Paper Fig. 4 (Sec. 5.3, "Attention Consistency"): how consistent neighbours are in a space.

k-means partitions a 2-D space into k clusters; a signal's intra-cluster consistency is the mean cosine
similarity of its vectors over all pairs of instances that share a cluster (:func:`intra_cluster_similarity`).
Fig. 4 compares the "original feature space" (a projection of the penultimate features F) with SLIM's
attention space (the same projection of F_A), for the model's attention maps (left panel) and for the
features (right panel).
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from harness.core.errors import HarnessError
from slim.clustering import kmeans
from slim.space import AttentionSpace

FIG4_KS = (2, 5, 10, 20, 40, 80, 120, 160, 200)
FIG4_TITLES = {"attention": "model attention", "features": "data features"}


def intra_cluster_similarity(labels: np.ndarray, signal: np.ndarray) -> float:
    """Mean cosine similarity of ``signal`` rows over all pairs of distinct instances sharing a cluster.

    Per cluster of n members with unit vectors u_i, the sum over ordered pairs i != j of u_i . u_j is
    |sum_i u_i|^2 - n, so the whole computation is linear in the number of instances. Clusters of one
    instance have no pair and do not count; with no pair at all the result is NaN. Zero vectors count as
    similarity 0 with everything.
    """
    labels, signal = np.asarray(labels), np.asarray(signal, dtype=np.float64)
    if len(labels) != len(signal):
        raise HarnessError(f"{len(labels)} cluster labels for {len(signal)} signal rows")
    flat = signal.reshape(len(signal), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    units = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    total, pairs = 0.0, 0
    for c in np.unique(labels):
        members = units[labels == c]
        n = len(members)
        summed = members.sum(0)
        total += float(summed @ summed - (np.linalg.norm(members, axis=1) ** 2).sum())
        pairs += n * (n - 1)
    return total / pairs if pairs else float("nan")


@dataclass
class ConsistencyCurves:
    """values[space][signal] = intra-cluster similarity for each k of ``ks``."""

    ks: list[int]
    values: dict[str, dict[str, list[float]]]
    spread: dict[str, dict[str, list[float]]] | None = None  # std over runs, for averaged curves

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def mean_of(cls, curves: Sequence[ConsistencyCurves]) -> ConsistencyCurves:
        """The mean (and population std) over runs of curves with the same ks, spaces and signals."""
        if not curves or any(c.ks != curves[0].ks or c.values.keys() != curves[0].values.keys() for c in curves):
            raise HarnessError("Fig. 4 curves to average must share their ks and spaces")
        stack = {space: {signal: np.array([c.values[space][signal] for c in curves], dtype=float)
                         for signal in signals} for space, signals in curves[0].values.items()}
        return cls(ks=list(curves[0].ks),
                   values={sp: {sg: a.mean(0).tolist() for sg, a in by.items()} for sp, by in stack.items()},
                   spread={sp: {sg: a.std(0).tolist() for sg, a in by.items()} for sp, by in stack.items()})

    def figure(self, titles: Mapping[str, str] = FIG4_TITLES, title: str | None = None) -> Figure:
        """One panel per signal, one line per space (paper Fig. 4 layout); error bars: ``spread``."""
        signals = list(next(iter(self.values.values())))
        fig = Figure(figsize=(4.6 * len(signals), 3.8), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(signals)))
        if title:
            fig.suptitle(title)
        for ax, signal in zip(axes, signals, strict=True):
            for space, by_signal in self.values.items():
                err = self.spread[space][signal] if self.spread else None
                ax.errorbar(self.ks, by_signal[signal], yerr=err, fmt="o-", capsize=2, label=space)
            ax.set_xlabel("number of clusters k")
            ax.set_ylabel("intra-cluster similarity")
            ax.set_title(titles.get(signal, signal))
            ax.legend()
        return fig


def consistency_curves(spaces: Mapping[str, np.ndarray], signals: Mapping[str, np.ndarray],
                       ks: Sequence[int], *, n_init: int = 2, random_state: int = 0) -> ConsistencyCurves:
    """Intra-cluster similarity of every signal under k-means of every space, for each k (capped at N)."""
    n = {len(x) for x in [*spaces.values(), *signals.values()]}
    if len(n) != 1:
        raise HarnessError(f"spaces and signals must have the same number of rows, got {sorted(n)}")
    rows = n.pop()
    usable = [int(k) for k in ks if 1 <= k <= rows]
    if not usable:
        raise HarnessError(f"no k in {list(ks)} fits {rows} instances")
    values: dict[str, dict[str, list[float]]] = {}
    for space, coords in spaces.items():
        coords = np.asarray(coords, dtype=np.float64)
        partitions = [kmeans(coords, k, n_init=n_init, random_state=random_state).labels_ for k in usable]
        values[space] = {name: [intra_cluster_similarity(p, signal) for p in partitions]
                         for name, signal in signals.items()}
    return ConsistencyCurves(ks=usable, values=values)


def figure4(cams: np.ndarray, pooled: np.ndarray, fa: np.ndarray, *, ks: Sequence[int] = FIG4_KS,
            space: AttentionSpace | None = None) -> ConsistencyCurves:
    """Fig. 4 from an attention pass: the original feature space is ``space`` (default: SLIM's UMAP
    settings) applied to the pooled features F, the attention space the same applied to F_A; the signals
    are the attention maps (latent resolution) and the features F."""
    space = space or AttentionSpace()
    projections = {"original feature space": space.fit_transform(pooled),
                   "attention space": space.fit_transform(fa)}
    signals = {"attention": np.asarray(cams), "features": np.asarray(pooled)}
    return consistency_curves(projections, signals, ks, random_state=space.random_state)


FIG4_FILE = "figure4.json"  # a SLIM run's curves, saved beside its record


def write_figure4(runs_dir: Path, out_dir: Path) -> list[Path]:
    """Paper Fig. 4 from the curves SLIM runs saved (``runs_dir/<run_id>/figure4.json``): one figure per
    (dataset, curated split, arch, scale), the mean over its runs with the std as error bars, and the
    numbers as JSON beside it. Returns the files written (none when no run saved curves)."""
    groups: dict[tuple[str, ...], list[ConsistencyCurves]] = defaultdict(list)
    for path in sorted(Path(runs_dir).glob(f"*/{FIG4_FILE}")):
        record = path.parent.with_suffix(".json")
        if not record.is_file():
            continue
        try:
            rec, data = json.loads(record.read_text()), json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path} or its record is not valid JSON: {exc}") from None
        if rec.get("status") != "ok":
            continue
        split = (rec.get("labels_used") or {}).get("attention_split") or "?"
        key = tuple(str(rec[k]) for k in ("dataset", "arch", "scale")) + (split,)
        groups[key].append(ConsistencyCurves(ks=data["ks"], values=data["values"]))
    written: list[Path] = []
    for (dataset, arch, scale, split), curves in sorted(groups.items()):
        mean = ConsistencyCurves.mean_of(curves)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = "_".join(part.replace("/", "-") for part in ("figure4", dataset, split, arch, scale))
        title = f"Fig. 4: {dataset} {split}, {arch} {scale} ({len(curves)} runs, mean +- std)"
        mean.figure(title=title).savefig(out / f"{stem}.png", dpi=110)
        (out / f"{stem}.json").write_text(json.dumps({**mean.to_json(), "runs": len(curves)}, indent=1))
        written += [out / f"{stem}.png", out / f"{stem}.json"]
    return written
