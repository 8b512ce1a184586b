"""slim.analysis (paper Fig. 4): intra-cluster similarity and the consistency curves."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.core.errors import HarnessError
from slim.analysis import consistency_curves, figure4, intra_cluster_similarity


def brute_force_similarity(labels, signal) -> float:
    """Mean cosine similarity over every pair of distinct same-cluster instances, pair by pair."""
    sims = []
    for i, j in itertools.permutations(range(len(labels)), 2):
        if labels[i] == labels[j]:
            a, b = signal[i].ravel(), signal[j].ravel()
            sims.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.mean(sims))


def test_intra_cluster_similarity_by_hand():
    # cluster 0: identical vectors (1 pair: cos 1); cluster 1: orthogonal (cos 0); cluster 2 alone (no pair)
    labels = np.array([0, 0, 1, 1, 2])
    signal = np.array([[1.0, 0], [2.0, 0], [1.0, 0], [0, 3.0], [5.0, 5.0]])
    assert intra_cluster_similarity(labels, signal) == pytest.approx(0.5)  # (2 * 1 + 2 * 0) / 4 ordered pairs
    assert np.isnan(intra_cluster_similarity(np.arange(3), signal[:3]))


def test_intra_cluster_similarity_matches_brute_force_on_maps():
    rng = np.random.default_rng(0)
    labels, maps = rng.integers(0, 3, 25), rng.random((25, 4, 4))
    assert intra_cluster_similarity(labels, maps) == pytest.approx(brute_force_similarity(labels, maps))
    with pytest.raises(HarnessError, match="cluster labels"):
        intra_cluster_similarity(labels[:3], maps)


def test_a_space_that_groups_attention_patterns_is_more_attention_consistent():
    """Two attention patterns (left / right half); the 'aligned' space separates them, the 'random' one
    does not, so k-means clusters of the aligned space hold consistent attention."""
    rng = np.random.default_rng(1)
    pattern = rng.integers(0, 2, 120)
    maps = np.zeros((120, 4, 4))
    maps[pattern == 0, :, :2], maps[pattern == 1, :, 2:] = 1, 1
    maps += 0.05 * rng.random(maps.shape)
    aligned = np.column_stack([pattern * 10.0, np.zeros(120)]) + rng.normal(size=(120, 2))
    spaces = {"aligned": aligned, "random": rng.normal(size=(120, 2))}
    curves = consistency_curves(spaces, {"attention": maps}, ks=[2, 4, 8, 500], random_state=0)
    assert curves.ks == [2, 4, 8]  # k beyond the number of instances is dropped
    aligned_curve, random_curve = curves.values["aligned"]["attention"], curves.values["random"]["attention"]
    assert all(a > 0.95 for a in aligned_curve)
    assert all(a > r + 0.2 for a, r in zip(aligned_curve, random_curve, strict=True))
    fig = curves.figure()
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2


def test_figure4_projects_features_and_attention_weighted_features():
    rng = np.random.default_rng(2)
    pooled = rng.normal(size=(60, 8)).astype(np.float32)
    cams = rng.random((60, 3, 3)).astype(np.float32)
    fa = pooled * cams.mean((1, 2))[:, None]
    curves = figure4(cams, pooled, fa, ks=[2, 3])
    assert set(curves.values) == {"original feature space", "attention space"}
    assert all(len(v) == 2 and np.isfinite(v).all() for s in curves.values.values() for v in s.values())


def test_figure4_command_averages_the_curves_runs_saved(tmp_path):
    import json

    from harness.cli import main
    from slim.analysis import ConsistencyCurves

    runs = tmp_path / "runs"
    for i, (status, att) in enumerate((("ok", 0.2), ("ok", 0.4), ("failed", 0.9))):
        (runs / f"r{i}").mkdir(parents=True)
        record = {"status": status, "dataset": "waterbirds-synth", "arch": "resnet18", "scale": "tiny",
                  "labels_used": {"attention_split": "val"}}
        (runs / f"r{i}.json").write_text(json.dumps(record))
        curves = ConsistencyCurves(ks=[2, 5], values={"attention space": {"attention": [att, 1.0]}})
        (runs / f"r{i}" / "figure4.json").write_text(json.dumps(curves.to_json()))
    assert main(["figure4", "--runs", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    stem = tmp_path / "fig" / "figure4_waterbirds-synth_val_resnet18_tiny"
    mean = json.loads(stem.with_suffix(".json").read_text())
    # the failed run is left out: mean of 0.2 and 0.4, population std 0.1
    assert mean["runs"] == 2 and mean["values"]["attention space"]["attention"] == pytest.approx([0.3, 1.0])
    assert mean["spread"]["attention space"]["attention"] == pytest.approx([0.1, 0.0])
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert main(["figure4", "--runs", str(tmp_path / "fig")]) == 2  # no curves there: a one-line error
