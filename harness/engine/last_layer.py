"""Last-layer retraining (DFR, Kirichenko et al. 2022), shared by DFR and SLIM_Val.

Features are standardised, an L1-regularised logistic regression (liblinear, one-vs-rest for more than two
classes) is fit, and the result is folded back into a copy of the model's linear head, so the retrained
model maps images to logits like any other.
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)  # inverse L1 strength, DFR authors' Waterbirds grid


@dataclass
class LinearHead:
    """Logits = ((x - mean) / scale) @ coef.T + intercept, with coef (K, D) even for K = 2."""

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, C: float, num_classes: int,
                 scaler: StandardScaler, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L1 logistic regression on standardised features; returns (coef (K, D), intercept (K,)).

    Two classes: one binary fit with decision value z, stored as logits (-z/2, z/2): the same softmax as
    (0, z), and each class keeps a weight vector (+-w/2), so a class-0 CAM or gradient is not identically
    zero (with (0, z) every class-0 attention map would be blank and its AIoU 0). More classes:
    one-vs-rest, class k's row from the binary fit "k vs the rest" (liblinear in scikit-learn >= 1.8 takes
    two classes only). A class absent from ``labels`` gets a zero row and a very negative intercept, so it
    is never predicted; if a single class is present, it is always predicted.
    """
    x = scaler.transform(features)
    present = np.unique(labels)
    coef, intercept = np.zeros((num_classes, x.shape[1])), np.full(num_classes, -1e4)
    if len(present) == 1:
        intercept[present[0]] = 0.0
    elif num_classes == 2:
        clf = l1_logistic_regression(C, random_state).fit(x, labels)
        coef[0], coef[1] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        intercept[0], intercept[1] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        for k in present:
            clf = l1_logistic_regression(C, random_state).fit(x, (labels == k).astype(np.int64))
            coef[k], intercept[k] = clf.coef_[0], clf.intercept_[0]
    return coef, intercept


def l1_logistic_regression(C: float, random_state: int = 0) -> LogisticRegression:
    """An L1 liblinear logistic regression; scikit-learn >= 1.8 spells L1 as ``l1_ratio=1``."""
    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        return LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", random_state=random_state)
    return LogisticRegression(penalty="l1", C=C, solver="liblinear", random_state=random_state)


def head_from(coef: np.ndarray, intercept: np.ndarray, scaler: StandardScaler) -> LinearHead:
    return LinearHead(coef=coef, intercept=intercept, mean=scaler.mean_, scale=scaler.scale_)


def with_head(model: nn.Module, head: LinearHead) -> nn.Module:
    """A copy of ``model`` whose linear head computes ``head`` (standardisation folded into the weights)."""
    new = copy.deepcopy(model)
    weight = head.coef / head.scale[None, :]
    bias = head.intercept - weight @ head.mean
    linear: nn.Linear = new.head
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))
    return new


def score_c_grid(features: np.ndarray, labels: np.ndarray, fit_rows: np.ndarray, test_rows: np.ndarray, *,
                 num_classes: int, score: Callable[[np.ndarray, np.ndarray], float],
                 grid: tuple[float, ...] = C_GRID, random_state: int = 0) -> dict[float, float]:
    """{C: ``score(predictions, test_rows)``} of one logistic fit per C of ``grid`` on ``fit_rows``
    (standardised with their own mean / std), predicting ``test_rows``: DFR's and SLIM_Val's tuning loop."""
    scaler = StandardScaler().fit(features[fit_rows])
    x, y = features[fit_rows], labels[fit_rows]
    scores = {}
    for c in grid:
        coef, intercept = fit_logistic(x, y, C=c, num_classes=num_classes, scaler=scaler, random_state=random_state)
        scores[c] = score(head_from(coef, intercept, scaler).logits(features[test_rows]).argmax(1), test_rows)
    return scores
