"""SLIM's stages measured against ground truth, where a split has it (the synthetic presets' masks).

The simulated oracle's noise-free answer ("AIoU >= threshold", NOT_SURE for an all-zero map) says for every
instance whether the reference model's attention is correct. :func:`stage_diagnostics` compares each stage's
output with it, and with the group and spurious labels, so a reader sees which stage limits SLIM:

- oracle: answer accuracy against the noise-free answers; the share of "yes" against the split's base rate
  of correct attention;
- expansion: AUROC of the propagated score against correct attention, beside a leave-one-out k-NN vote
  with every true label known (what the attention space allows at best);
- screening: the share of correct attention among kept instances against the base rate, and per true group
  the share kept beside the share whose attention is correct (does screening drop a whole group?);
- disentangling: purity and NMI of the environment clusters against the spurious attribute and of the core
  clusters against the class (cluster ids are made distinct across scopes, so with ``curation_scope=class``
  the core clusters are class-pure by construction);
- curation: the subset's true-group shares (rows and distinct instances) and its smallest group share,
  beside a uniform random subset of the split (in expectation: the split's group shares) and the
  group-balanced ideal (1 / number of groups present).

The diagnostics read ground truth to measure, never to decide: nothing here feeds back into a curation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors

from simulated_oracle import Answer, QueryLogEntry
from slim.curation import Curation


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``; None when one side is empty."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, np.asarray(scores, dtype=float)))


def knn_vote(points: np.ndarray, labels: np.ndarray, positive: np.ndarray, k: int) -> np.ndarray:
    """Leave-one-out vote: per instance, the share of ``positive`` among its k nearest other instances of
    its class (the point itself excluded)."""
    points, labels, positive = np.asarray(points, dtype=float), np.asarray(labels), np.asarray(positive, float)
    vote = np.zeros(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            vote[members] = positive[members]
            continue
        kk = min(k, len(members) - 1)
        neighbours = NearestNeighbors(n_neighbors=kk + 1).fit(points[members]).kneighbors(
            points[members], return_distance=False)
        vote[members] = positive[members][neighbours[:, 1:]].mean(1)
    return vote


def purity(clusters: np.ndarray, truth: np.ndarray) -> float:
    """Share of instances whose cluster's most common true value is theirs."""
    clusters, truth = np.asarray(clusters), np.asarray(truth)
    return float(sum(np.bincount(truth[clusters == c]).max() for c in np.unique(clusters)) / len(truth))


def group_shares(rows: np.ndarray, groups: np.ndarray, num_groups: int) -> list[float]:
    """Share of ``rows`` in each group 0..num_groups-1."""
    counts = np.bincount(np.asarray(groups)[rows], minlength=num_groups)
    return (counts / max(1, len(rows))).tolist()


def group_means(values: np.ndarray, groups: np.ndarray, num_groups: int) -> list[float | None]:
    """The mean of ``values`` over each group's rows (None for a group with no row)."""
    return [float(values[groups == g].mean()) if (groups == g).any() else None for g in range(num_groups)]


def noise_free_answer(entry: QueryLogEntry, correct: np.ndarray, empty: np.ndarray) -> Answer:
    """The answer a noise-free oracle gives: the log's own where it has one (a simulation), else from
    ground truth (a person's log): YES where attention is correct, NOT_SURE on an empty map, else NO."""
    if entry.true_answer is not None:
        return entry.true_answer
    i = entry.instance_id
    return Answer.YES if correct[i] else Answer.NOT_SURE if empty[i] else Answer.NO


def stage_diagnostics(curation: Curation, log: Sequence[QueryLogEntry], correct: np.ndarray,
                      labels: np.ndarray, spurious: np.ndarray, groups: np.ndarray, num_groups: int,
                      empty: np.ndarray | None = None) -> dict[str, Any]:
    """Every stage against ground truth (see the module docstring); JSON-ready. ``empty`` marks the split's
    all-zero maps (the oracle answers them "not sure"): counted, and left out of ``base_rate_nonempty``."""
    correct, labels = np.asarray(correct, dtype=bool), np.asarray(labels)
    empty = np.zeros(len(correct), dtype=bool) if empty is None else np.asarray(empty, dtype=bool)
    spurious, groups = np.asarray(spurious), np.asarray(groups)
    base_rate = float(correct.mean())
    answered = [e for e in log if e.answer is not Answer.NOT_SURE]
    k = int(curation.settings.get("spread_neighbors", 7))
    vote = knn_vote(curation.embedding, labels, correct, k)
    per_class = {str(int(c)): auroc(curation.scores[labels == c], correct[labels == c]) for c in np.unique(labels)}
    kept = curation.keep
    core_ids, env_ids, rows = _global_clusters(curation)
    present = np.unique(groups)
    subset = curation.indices
    distinct = np.unique(subset)
    split_shares = group_shares(np.arange(len(groups)), groups, num_groups)
    subset_shares = group_shares(subset, groups, num_groups)
    return {
        "oracle": {
            "answer_accuracy": float(np.mean([e.answer is noise_free_answer(e, correct, empty) for e in log]))
            if log else None,
            "yes_share": sum(e.answer is Answer.YES for e in log) / len(log) if log else None,
            "yes_share_answered": (sum(e.answer is Answer.YES for e in answered) / len(answered)
                                   if answered else None),
            "true_yes_share_queried": float(correct[[e.instance_id for e in log]].mean()) if log else None,
            "base_rate": base_rate,
            "empty_maps": int(empty.sum()),
            "base_rate_nonempty": float(correct[~empty].mean()) if (~empty).any() else None,
        },
        "expansion": {
            "auroc": auroc(curation.scores, correct),
            "auroc_per_class": per_class,
            "knn_vote_auroc": auroc(vote, correct),
            "knn_vote_k": k,
        },
        "screening": {
            "kept_correct": float(correct[kept].mean()) if kept.any() else None,
            "base_rate": base_rate,
            "kept_share": float(kept.mean()),
            "kept_share_by_group": group_means(kept, groups, num_groups),
            "correct_by_group": group_means(correct, groups, num_groups),
        },
        "disentangling": {
            "env_purity_spurious": purity(env_ids, spurious[rows]),
            "env_nmi_spurious": float(normalized_mutual_info_score(spurious[rows], env_ids)),
            "core_purity_class": purity(core_ids, labels[rows]),
            "core_nmi_class": float(normalized_mutual_info_score(labels[rows], core_ids)),
        },
        "curation": {
            "group_shares_rows": subset_shares,
            "group_shares_distinct": group_shares(distinct, groups, num_groups),
            "min_group_share": float(min(subset_shares[g] for g in present)),
            "min_group_share_distinct": float(min(group_shares(distinct, groups, num_groups)[g] for g in present)),
            "random_min_group_share": float(min(split_shares[g] for g in present)),
            "balanced_min_group_share": 1.0 / len(present),
            "subset_correct": float(correct[subset].mean()),
            "distinct": int(len(distinct)),
        },
    }


def _global_clusters(curation: Curation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core and environment cluster ids made distinct across scopes, over the rows they describe."""
    core, env, rows, offset_core, offset_env = [], [], [], 0, 0
    for scope, scope_rows in curation.scope_rows.items():
        core.append(curation.core[scope].labels + offset_core)
        env.append(curation.env[scope].labels + offset_env)
        rows.append(scope_rows)
        offset_core += curation.core[scope].k
        offset_env += curation.env[scope].k
    return np.concatenate(core), np.concatenate(env), np.concatenate(rows)
