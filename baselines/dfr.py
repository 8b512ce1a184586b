"""DFR, Deep Feature Reweighting (Kirichenko et al., ICLR 2023), validation-set version DFR^Val_Tr.

Only the last layer of the reference ERM model is retrained, on its penultimate features of the val set,
with an L1 logistic regression (harness.engine.last_layer). Following the authors' code:

- tuning: val is shuffled (fixed seed) and halved; a group-balanced subsample of one half is
  standardised with its own mean/std, one fit per C in ``harness.engine.last_layer.C_GRID``, and the C with the
  best worst-group accuracy on the other half wins (the first in grid order on ties, like their argmax);
- final: ``dfr_num_retrains`` (20) group-balanced subsamples of the whole val set (every group present
  contributes the smallest group's count, drawn without replacement), each fit with that C, and the
  coefficients and intercepts averaged. Features are standardised with the mean/std of the *train*
  features, as the authors' final evaluation does (train images only; no train label of any kind).

Groups are those present in the split being subsampled. DFR reads val group labels (balancing and
tuning) and never train group labels. Its added training data (paper Table 2, "0.05x-0.3x") is one
balanced subsample, in train-set sizes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler

from harness.core.errors import HarnessError
from harness.engine.context import RunContext
from harness.engine.evaluation import group_metrics
from harness.engine.features import reference_features
from harness.engine.last_layer import C_GRID, LinearHead, fit_logistic, head_from, score_c_grid, with_head
from harness.engine.methods import Method, MethodResult, register
from harness.engine.settings import count


def balanced_subsample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of a group-balanced subsample: the smallest present group's count from every present
    group, without replacement, in group order."""
    present, counts = np.unique(groups, return_counts=True)
    if len(present) == 0:
        raise HarnessError("cannot draw a group-balanced subsample of an empty set")
    per_group = int(counts.min())
    draws = [rng.choice(np.flatnonzero(groups == g), per_group, replace=False) for g in present]
    return np.concatenate(draws)


def _check_classes(labels: np.ndarray, where: str) -> None:
    if len(np.unique(labels)) < 2:
        raise HarnessError(f"DFR needs at least two classes in {where}; found {np.unique(labels).tolist()}")


def tune_c(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, num_classes: int,
           rng: np.random.Generator, grid: tuple[float, ...] = C_GRID) -> tuple[float, dict[float, float]]:
    """Pick C: fit on a balanced subsample of one random half, score worst-group accuracy (paper eq. 2 of
    SLIM) on the other. Returns the chosen C (the first best in grid order) and {C: that accuracy}.
    """
    order = rng.permutation(len(labels))
    held_out, fit_half = order[:len(order) // 2], order[len(order) // 2:]
    subset = fit_half[balanced_subsample(groups[fit_half], rng)]
    _check_classes(labels[subset], "the balanced subsample of the tuning half of val")
    names = list(range(int(groups.max()) + 1))

    def worst_group(preds: np.ndarray, rows: np.ndarray) -> float:
        return group_metrics(preds, labels[rows], groups[rows], names)["worst_group_acc"]

    scores = score_c_grid(features, labels, subset, held_out, num_classes=num_classes, score=worst_group, grid=grid)
    return max(grid, key=lambda c: scores[c]), scores


def averaged_head(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, C: float, num_classes: int,
                  scaler: StandardScaler, num_fits: int, rng: np.random.Generator,
                  ) -> tuple[LinearHead, list[np.ndarray]]:
    """Mean coefficients and intercepts of ``num_fits`` logistic fits on fresh balanced subsamples.

    Returns the head and the subsamples' positions (one array per fit).
    """
    if num_fits < 1:
        raise HarnessError(f"dfr_num_retrains must be at least 1, got {num_fits}")
    subsets = [balanced_subsample(groups, rng) for _ in range(num_fits)]
    _check_classes(labels[subsets[0]], "the balanced subsample of val")
    fits = [fit_logistic(features[s], labels[s], C=C, num_classes=num_classes, scaler=scaler)
            for s in subsets]
    coef = np.mean([f[0] for f in fits], axis=0)
    intercept = np.mean([f[1] for f in fits], axis=0)
    return head_from(coef, intercept, scaler), subsets


@register
class DFR(Method):
    name = "dfr"
    title = "DFR"
    needs_val_group_labels = True
    settings_schema = {"dfr_num_retrains": count(1)}
    table_rank = 4

    @classmethod
    def default_hparams(cls, dataset: str, scale: str) -> dict[str, Any]:
        """Kirichenko et al. 2022: 20 balanced retrains averaged; the C grid is fixed (harness.engine.last_layer)."""
        return {"dfr_num_retrains": 20}

    def fit(self, ctx: RunContext) -> MethodResult:
        b = ctx.benchmark
        val = b.splits["val"]
        val_features = reference_features(ctx, "val").numpy()
        labels, groups = val.labels.numpy(), val.groups.numpy()
        tune_rng, fit_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(ctx.seed).spawn(2))
        best_c, scores = tune_c(val_features, labels, groups, num_classes=b.num_classes, rng=tune_rng)
        scaler = StandardScaler().fit(reference_features(ctx, "train").numpy())
        head, subsets = averaged_head(val_features, labels, groups, C=best_c, num_classes=b.num_classes,
                                      scaler=scaler, num_fits=int(self.hparams.get("dfr_num_retrains", 20)),
                                      rng=fit_rng)
        reference, reference_selection = ctx.reference_model()
        present, counts = np.unique(groups, return_counts=True)
        size = len(subsets[0])
        details: dict[str, Any] = {
            "C": best_c,
            "tuning_worst_group_acc": {str(c): acc for c, acc in scores.items()},
            "num_retrains": len(subsets),
            "subsample_size": size,
            "subsample_per_group": int(counts.min()),
            "groups_balanced": [b.group_names[g] for g in present],
            "val_instances_used": int(len(np.unique(np.concatenate(subsets)))),
            "scaler": "train features",
        }
        selection = {"criterion": "dfr_c_by_val_half_worst_group_acc", "uses_val_group_labels": True,
                     "epoch": reference_selection.get("epoch"), "reference": reference_selection}
        return MethodResult(model=with_head(reference, head), selection=selection,
                            extra_training_fraction=size / len(b.splits["train"]), details=details)
