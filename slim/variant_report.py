"""The paper variant against the authors' code, stage by stage, on identical inputs (docs/slim-variants.md).

For a case of the authors' golden format (``tests/golden/slim-authors/*.npz``: F_A, F_Abar, labels, the
noise-free answers ``truth`` and every stage the authors' code computed), each of the paper variant's stages
is fed the authors' output of the stage before and compared with the authors' own output of that stage; the
last rows run both pipelines end to end from the features. ``python -m slim.variant_report CASE.npz ...``
prints the table.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors

from simulated_oracle import Answer
from slim.annotation import AnnotationSampler
from slim.authors import curate
from slim.clustering import Disentangler
from slim.expansion import AttentionLabelSpreading, Screening, nearest_yes_distance
from slim.pipeline import SlimCurator, make_space, settings_from
from slim.sampling import SubgroupSampler, allocate


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|A & B| / |A | B| of two sets of rows (repeats ignored)."""
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def neighbour_overlap(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """The mean share of each point's k nearest neighbours in ``x`` that are also among them in ``y``."""
    def neighbours(points: np.ndarray) -> np.ndarray:
        return NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]
    nx, ny = neighbours(x), neighbours(y)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)]))


class _TruthOracle:
    """Answers row ids with the case's noise-free answers (the authors' cases inject these)."""

    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth
        self.log: list = []
        self.used = 0

    def query(self, ids: Sequence[int]) -> list[Answer]:
        self.used += len(ids)
        return [Answer.YES if self.truth[i] == 1 else Answer.NO for i in ids]


def compare_case(case: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """Every stage of the paper variant against the authors' on the case's inputs (see the module docstring)."""
    fa, fabar, labels, truth = case["fa"], case["fabar"], case["labels"], case["truth"]
    budgets = {int(c): int(n) for c, n in meta["budgets"].items()}
    size, seed = int(meta["subset_size"]), int(meta["seed"])
    att, op = case["att_emb"], case["op_emb"]
    settings = settings_from({})
    out: dict[str, Any] = {}
    paper_space = make_space(settings, seed).fit_transform(fa)
    out["space_neighbour_overlap"] = neighbour_overlap(paper_space, att)
    queries = AnnotationSampler(budgets, random_state=seed).fit(att, labels).query_ids_
    out["queries_jaccard"] = jaccard(queries, case["query_ids"])
    answers = truth[case["query_ids"]]
    spreading = AttentionLabelSpreading(n_neighbors=settings["spread_neighbors"], alpha=settings["spread_alpha"])
    scores = spreading.fit_transform(att, labels, case["query_ids"], answers)
    out["scores_spearman"] = float(spearmanr(scores, case["scores"]).statistic)
    out["scores_auroc_paper"] = _auroc(scores, truth)
    out["scores_auroc_authors"] = _auroc(case["scores"], truth)
    keep = Screening().fit_predict(case["scores"], labels,
                                   nearest_yes_distance(att, case["query_ids"], answers, labels))
    out["kept_jaccard"] = jaccard(np.flatnonzero(keep), case["kept"])
    out["kept_class_shares_paper"] = _class_shares(np.flatnonzero(keep), labels)
    out["kept_class_shares_authors"] = _class_shares(case["kept"], labels)
    out["kept_correct_share"] = (float(truth[keep].mean()), float(truth[case["kept"]].mean()))
    kept = case["kept"]
    core_labels = np.zeros(len(kept), dtype=np.int64)
    ks = []
    offset = 0
    for c in np.unique(labels[kept]):
        rows = np.flatnonzero(labels[kept] == c)
        d = Disentangler(k_range=(settings["cluster_k_min"], settings["cluster_k_max"]),
                         pca_dims=settings["cluster_pca_dims"], random_state=seed)
        d.fit(fa[kept][rows], fabar[kept][rows])
        core_labels[rows] = d.core_.labels + offset
        offset += d.core_.k
        ks.append((d.core_.k, d.env_.k))
    out["clusters_paper"] = ks
    out["clusters_authors"] = (int(case["k_core"]), int(case["k_env"]))
    out["core_ari"] = float(adjusted_rand_score(case["core_labels"], core_labels))
    core, env = case["core_labels"], case["env_labels"]
    core_dist = _distance_to_centre(att[kept], core)
    env_dist = _distance_to_centre(op[kept], env)
    quotas = allocate(core, core_dist, env, env_dist, size)
    k_env = int(case["k_env"])
    paper_sizes = np.array([quotas.get((c, e), 0) for c in range(int(case["k_core"])) for e in range(k_env)])
    out["sizes_total_paper"] = int(paper_sizes.sum())
    out["sizes_total_authors"] = int(case["sizes"].sum())
    out["sizes_l1"] = int(np.abs(paper_sizes - case["sizes"]).sum())
    sizes = {(c, e): int(case["sizes"][c * k_env + e]) for c in range(int(case["k_core"])) for e in range(k_env)
             if ((core == c) & (env == e)).any()}
    picks = SubgroupSampler(random_state=seed).fit(op[kept], core, env, sizes).indices_
    out["picks_jaccard"] = jaccard(kept[picks], case["constructed"])
    curation = SlimCurator(budgets, size, settings=settings, random_state=seed).curate(fa, fabar, labels,
                                                                                       _TruthOracle(truth))
    authors = curate(fa, fabar, labels, lambda rows: truth[rows], budgets=budgets, subset_size=size, seed=seed,
                     gamma=meta["gamma"])
    out["end_to_end_kept_jaccard"] = jaccard(np.flatnonzero(curation.keep), authors["kept"])
    out["end_to_end_kept_correct_share"] = (float(truth[curation.keep].mean()), float(truth[authors["kept"]].mean()))
    out["end_to_end_subset_jaccard"] = jaccard(curation.indices, authors["constructed"])
    out["subset_sizes"] = (int(len(curation.indices)), int(len(authors["constructed"])))
    out["subset_correct_share"] = (float(truth[curation.indices].mean()), float(truth[authors["constructed"]].mean()))
    return out


def _auroc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    return float(roc_auc_score(truth, scores)) if 0 < truth.mean() < 1 else None


def _class_shares(rows: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    return {int(c): float(np.mean(labels[rows] == c)) for c in np.unique(labels)}


def _distance_to_centre(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centres = {c: points[labels == c].mean(0) for c in np.unique(labels)}
    return np.array([np.linalg.norm(p - centres[c]) for p, c in zip(points, labels, strict=True)])


def load_case(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return dict(np.load(path)), json.loads(path.with_suffix(".json").read_text())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", type=Path, help="golden cases (.npz with a .json beside)")
    args = parser.parse_args(argv)
    for path in args.cases:
        result = compare_case(*load_case(path))
        print(f"## {path.stem}")
        for key, value in result.items():
            print(f"- {key}: {value if not isinstance(value, float) else round(value, 3)}")


if __name__ == "__main__":
    main()
