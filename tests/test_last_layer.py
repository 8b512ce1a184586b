import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from harness.engine.last_layer import fit_logistic, head_from, with_head
from harness.models.network import create_model


def _data(num_classes, n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    features = rng.normal(size=(n, d)) + 2.0 * np.eye(d)[labels % d]
    return features, labels


def test_binary_fit_matches_sklearn_decision_function():
    x, y = _data(2)
    scaler = StandardScaler().fit(x)
    coef, intercept = fit_logistic(x, y, C=1.0, num_classes=2, scaler=scaler)
    ref = LogisticRegression(C=1.0, l1_ratio=1.0, solver="liblinear", random_state=0).fit(scaler.transform(x), y)
    logits = scaler.transform(x) @ coef.T + intercept
    assert np.allclose(logits[:, 1] - logits[:, 0], ref.decision_function(scaler.transform(x)))
    # symmetric logits: class 0's weights are the negation of class 1's, never a zero row (blank class-0 CAMs)
    assert np.allclose(coef[0], -coef[1]) and np.abs(coef[0]).sum() > 0
    assert np.allclose(logits.sum(axis=1), 0.0)


def test_multiclass_is_one_vs_rest_and_absent_classes_are_never_predicted():
    x, y = _data(4)
    y[y == 3] = 0  # class 3 absent
    scaler = StandardScaler().fit(x)
    coef, intercept = fit_logistic(x, y, C=1.0, num_classes=4, scaler=scaler)
    for k in (0, 1, 2):
        ref = LogisticRegression(C=1.0, l1_ratio=1.0, solver="liblinear", random_state=0)
        ref.fit(scaler.transform(x), (y == k).astype(int))
        assert np.allclose(coef[k], ref.coef_[0]) and np.isclose(intercept[k], ref.intercept_[0])
    preds = (scaler.transform(x) @ coef.T + intercept).argmax(1)
    assert 3 not in preds and (preds == y).mean() > 0.8


def test_single_present_class_is_always_predicted():
    x, _ = _data(3)
    coef, intercept = fit_logistic(x, np.full(len(x), 2), C=1.0, num_classes=3, scaler=StandardScaler().fit(x))
    assert ((x @ coef.T + intercept).argmax(1) == 2).all()


def test_with_head_folds_standardisation_into_the_linear_layer():
    torch.manual_seed(0)
    model = create_model("resnet18", 3, 32, width=0.25).eval()
    images = torch.rand(5, 3, 32, 32)
    feats = model.features(images).detach().numpy().astype(np.float64)
    scaler = StandardScaler().fit(np.vstack([feats, feats + 1.0]))
    head = head_from(np.arange(3 * feats.shape[1]).reshape(3, -1) / 100.0, np.array([0.1, -0.2, 0.3]), scaler)
    new = with_head(model, head)
    assert torch.allclose(new(images).double(), torch.from_numpy(head.logits(feats)), atol=1e-3)
    assert not torch.equal(new.head.weight, model.head.weight)  # the original model is untouched
