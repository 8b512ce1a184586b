"""Attention extraction: GradCAM against pytorch-grad-cam, the exact CAM path, F_A / F_Abar, caching, AIoU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as PackageGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import harness.attention.passes as attention
from harness.attention.accuracy import attention_metrics
from harness.attention.cams import make_extractor
from harness.attention.cams.cam import CAM
from harness.attention.cams.gradcam import GradCAM
from harness.attention.maps import iter_upsampled, minmax_normalize, upsample
from harness.attention.passes import cached_attention, extract
from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.engine.evaluation import predict_logits
from harness.models.network import create_model


def tiny(arch: str, num_classes: int = 2, image_size: int = 32, depth: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, num_classes, image_size, width=0.25, depth=depth).eval()


def random_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def plain_split(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None) -> Split:
    zeros = torch.zeros(len(labels), dtype=torch.long)
    return Split(images=images, labels=labels, spurious=zeros, groups=zeros, masks=masks)


class ColorCellNet(nn.Module):
    """A model whose attention we know: the target layer averages each colour over cell x cell blocks,
    the head is global average pooling + a linear layer we set, so CAM is exact."""

    cam_is_exact = True

    def __init__(self, cell: int, weight: torch.Tensor) -> None:
        super().__init__()
        self.target_layer = nn.AvgPool2d(cell)
        self.head = nn.Linear(3, weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.zero_()

    def to_grid(self, activation: torch.Tensor) -> torch.Tensor:
        return activation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.target_layer(images).mean(dim=(2, 3)))


RED = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # both classes' logits read the red channel


def cells_image(cell_colours: np.ndarray, cell: int) -> torch.Tensor:
    """uint8 (3, h*cell, w*cell) image whose cell (i, j) has the colour cell_colours[:, i, j] (in 0..255)."""
    return torch.from_numpy(np.kron(cell_colours, np.ones((cell, cell))).astype(np.uint8))


@pytest.fixture
def small_toy(toy_benchmark) -> Benchmark:
    """The toy benchmark with 8 images per split (fast passes)."""
    toy_benchmark.splits = {name: split.subset(np.arange(8)) for name, split in toy_benchmark.splits.items()}
    return toy_benchmark


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


# ---- agreement with pytorch-grad-cam -----------------------------------------------------------------
@pytest.mark.parametrize("arch, image_size, depth", [
    ("resnet18", 32, None),  # layer4, 4x4 map
    ("vit_tiny", 32, 2),  # average-pooled ViT: last block, 4x4 token grid
    ("vit_tiny", 112, 1),  # class-token ViT: last block's norm1, 7x7 grid after dropping the class token
])
def test_gradcam_matches_pytorch_grad_cam(arch, image_size, depth):
    """Compared at latent resolution on the same model, inputs, target layer and classes:
    (1) our target feature grid == the package's captured activation (after reshape_transform=to_grid);
    (2) our unnormalised map == ReLU(sum_c mean_ij(grad) A_c) from the package's captured activation and
        gradient (its ActivationsAndGradients after a call);
    (3) our min-max normalised map == the package's output with its target size set to the latent size
        (so its cv2 resize is the identity; its scaling divides by max + 1e-7, hence atol 1e-5)."""
    model = tiny(arch, num_classes=3, image_size=image_size, depth=depth)
    images, labels = random_images(6, image_size), torch.tensor([0, 1, 2, 0, 1, 2])
    ours = GradCAM(model)(images, labels)
    height, width = ours.cams.shape[-2:]

    package = PackageGradCAM(model=model, target_layers=[model.target_layer], reshape_transform=model.to_grid)
    package.get_target_width_height = lambda _input: (width, height)
    try:
        theirs = package(images, targets=[ClassifierOutputTarget(int(c)) for c in labels])
        activation = package.activations_and_grads.activations[0]
        gradient = package.activations_and_grads.gradients[0]
    finally:
        package.activations_and_grads.release()

    torch.testing.assert_close(ours.grid, activation, rtol=1e-5, atol=1e-6)
    raw = torch.relu((gradient.mean(dim=(2, 3))[:, :, None, None] * activation).sum(1))
    torch.testing.assert_close(ours.cams, raw, rtol=1e-4, atol=1e-7 * float(raw.abs().max()))
    normalised = minmax_normalize(ours.cams)
    assert (normalised.flatten(1).max(1).values == 1).sum() >= 3  # not a vacuous comparison of zero maps
    np.testing.assert_allclose(normalised.numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny"])
def test_package_wrapper_equals_our_gradcam(arch):
    """method='gradcam-package' (the package through our wrapper, ViT tokens reshaped) == method='gradcam'."""
    model = tiny(arch)
    split = plain_split((random_images(8) * 255).to(torch.uint8), torch.tensor([0, 1] * 4))
    ours = extract(model, split, "cpu", show_progress=False)
    theirs = extract(model, split, "cpu", method="gradcam-package", show_progress=False)
    torch.testing.assert_close(theirs.cams, ours.cams, rtol=0, atol=1e-5)
    torch.testing.assert_close(theirs.pooled, ours.pooled)
    assert all(p.grad is None for p in model.parameters())  # the package's backward left no gradients


def test_other_package_method_at_latent_resolution():
    model = tiny("vit_tiny")
    split = plain_split((random_images(3) * 255).to(torch.uint8), torch.tensor([0, 1, 0]))
    result = extract(model, split, "cpu", method="eigencam", show_progress=False)
    assert result.cams.shape == (3, 4, 4)
    assert result.cams.min() >= 0 and torch.allclose(result.cams.flatten(1).max(1).values, torch.ones(3))


# ---- the exact CAM path -------------------------------------------------------------------------------
def test_cam_fast_path_equals_autograd_gradcam():
    model = tiny("resnet18", num_classes=5, seed=3)
    images = random_images(10, seed=1)
    labels = torch.arange(10) % 5
    autograd_maps = GradCAM(model)(images, labels).cams
    cam_maps = CAM(model)(images, labels).cams
    assert autograd_maps.abs().max() > 0
    scale = float(autograd_maps.abs().max())
    torch.testing.assert_close(cam_maps, autograd_maps, rtol=1e-5, atol=1e-6 * scale)
    assert isinstance(make_extractor(model, "gradcam"), CAM)
    assert isinstance(make_extractor(tiny("vit_tiny"), "gradcam"), GradCAM)


def test_cam_refuses_a_vit():
    with pytest.raises(HarnessError, match="global-average-pooling"):
        CAM(tiny("vit_tiny"))


# ---- F, F_A, F_Abar ----------------------------------------------------------------------------------
def test_attention_weighted_features_by_hand():
    """2x2 cells of 8 px. Red [[1, .2], [0, 0]], green [[0, .6], [1, .4]], blue .5 everywhere; the head reads
    red, so A = normalised red = [[1, .2], [0, 0]].
    F_A = sum F A = (1 + .04, .12, .5 * 1.2); F_Abar = sum F (1 - A) = (.16, .48 + 1.4, .5 * 2.8)."""
    colours = np.array([[[255, 51], [0, 0]], [[0, 153], [255, 102]], [[127, 127], [127, 127]]])
    image = cells_image(colours, 8)
    blue = 127 / 255  # uint8 cannot hold .5 exactly
    split = plain_split(image[None], torch.tensor([0]))
    result = extract(ColorCellNet(8, RED), split, "cpu", show_progress=False)
    torch.testing.assert_close(result.cams[0], torch.tensor([[1.0, 0.2], [0.0, 0.0]]))
    torch.testing.assert_close(result.fa[0], torch.tensor([1.04, 0.12, blue * 1.2]))
    torch.testing.assert_close(result.fabar[0], torch.tensor([0.16, 1.88, blue * 2.8]))
    torch.testing.assert_close(result.pooled[0], torch.tensor([0.3, 0.5, blue]))


def test_fa_plus_fabar_is_the_feature_sum():
    model = tiny("resnet18")
    split = plain_split((random_images(8) * 255).to(torch.uint8), torch.tensor([0, 1] * 4))
    result = extract(model, split, "cpu", show_progress=False)
    h, w = result.cams.shape[1:]
    torch.testing.assert_close(result.fa + result.fabar, result.pooled * h * w)
    torch.testing.assert_close(result.pooled, model.features(split.images.float() / 255).detach())
    assert result.cams.min() >= 0 and result.cams.max() <= 1


def test_constant_map_normalises_to_zeros():
    maps = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 3.0), torch.tensor([[1.0, 3.0], [2.0, 5.0]])])
    torch.testing.assert_close(minmax_normalize(maps), torch.stack(
        [torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([[0.0, 0.5], [0.25, 1.0]])]))


# ---- targets, hooks, gradients -----------------------------------------------------------------------
def test_prediction_target_versus_label():
    model = tiny("resnet18", num_classes=3, seed=1)
    images = (random_images(12, seed=2) * 255).to(torch.uint8)
    predicted = predict_logits(model, plain_split(images, torch.zeros(12, dtype=torch.long)), "cpu").argmax(1)
    labels = torch.where(torch.arange(12) % 2 == 0, predicted, (predicted + 1) % 3)
    split = plain_split(images, labels)
    by_label = extract(model, split, "cpu", show_progress=False)
    by_prediction = extract(model, split, "cpu", target="prediction", show_progress=False)
    assert torch.equal(by_label.targets, labels)
    assert torch.equal(by_prediction.targets, predicted)
    same = labels == predicted
    torch.testing.assert_close(by_prediction.cams[same], by_label.cams[same])
    differs = (by_prediction.cams[~same] - by_label.cams[~same]).flatten(1).abs().max(1).values > 1e-3
    assert differs.any()
    torch.testing.assert_close(by_prediction.logits, by_label.logits)


def test_gradient_stops_at_the_target_layer_and_no_hook_is_left():
    model = tiny("resnet18").train()
    below = []
    probe = model.backbone.layer3.register_forward_hook(lambda m, i, out: below.append(out.requires_grad))
    GradCAM(model)(random_images(4), torch.tensor([0, 1, 0, 1]))
    probe.remove()
    assert below == [False]  # no autograd graph below the target layer
    assert all(p.grad is None for p in model.parameters())  # nor any parameter gradient
    assert hooks_left(model) == 0 and model.training and torch.is_grad_enabled()


def test_no_hook_left_after_an_exception():
    model = tiny("resnet18").train()
    failing = model.head.register_forward_hook(lambda m, i, out: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(model)(random_images(2), torch.tensor([0, 1]))
    failing.remove()
    assert hooks_left(model) == 0 and model.training and torch.is_grad_enabled()
    with pytest.raises(HarnessError, match=r"classes must lie in \[0, 2\)"):
        GradCAM(model)(random_images(2), torch.tensor([0, 2]))
    assert hooks_left(model) == 0 and model.training and torch.is_grad_enabled()


# ---- upsampling ----------------------------------------------------------------------------------------
def test_upsample_bilinear_by_hand_and_chunked():
    """[[0, 1], [0, 1]] to 4x4 with half-pixel centres: source columns -.25, .25, .75, 1.25 (clamped)."""
    up = upsample(torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]), 4)
    torch.testing.assert_close(up[0], torch.tensor([[0.0, 0.25, 0.75, 1.0]] * 4))
    cams = torch.rand(7, 4, 4, generator=torch.Generator().manual_seed(0))
    ids = np.array([5, 0, 3, 6, 1])
    chunks = list(iter_upsampled(cams, 16, ids=ids, chunk_size=2))
    assert [len(c) for c, _ in chunks] == [2, 2, 1] and max(m.shape[0] for _, m in chunks) == 2
    torch.testing.assert_close(torch.cat([m for _, m in chunks]), upsample(cams[ids], 16))
    for _, maps in chunks:
        assert torch.allclose(maps.flatten(1).max(1).values, torch.ones(len(maps))) and maps.min() == 0


# ---- cache --------------------------------------------------------------------------------------------
def test_cache_hit_and_invalidation(make_context, small_toy, monkeypatch):
    ctx = make_context(benchmark=small_toy)
    calls = []
    real_extract = attention.extract
    monkeypatch.setattr(attention, "extract", lambda *a, **k: calls.append(k) or real_extract(*a, **k))
    model = tiny("resnet18")

    first = cached_attention(ctx, "val", model=model)
    again = cached_attention(ctx, "val", model=model)
    assert len(calls) == 1 and torch.equal(first.cams, again.cams) and torch.equal(first.fa, again.fa)
    assert (again.method, again.target) == ("gradcam", "label")

    with torch.no_grad():
        model.head.bias.add_(1.0)  # a changed checkpoint
    changed = cached_attention(ctx, "val", model=model)
    assert len(calls) == 2 and not torch.equal(changed.logits, first.logits)
    cached_attention(ctx, "val", model=model, target="prediction")
    assert len(calls) == 3

    ctx.reference_model = lambda: (model, {})
    reference = cached_attention(ctx, "val")
    cached_attention(ctx, "val")
    assert len(calls) == 4 and torch.equal(reference.logits, changed.logits)
    keys = [json.loads(p.read_text()) for p in (ctx.cache.root / "attention").glob("*.key.json")]
    reference_key = json.loads(json.dumps(ctx.reference_key(), default=str))
    assert {"reference": reference_key} in [k["model"] for k in keys]


# ---- attention accuracy ---------------------------------------------------------------------------------
def test_attention_metrics_hand_built():
    """A red 16x16 object on cells (1..2, 1..2) of a 4x4 grid of 8 px cells; the model attends to red.
    Group 0's mask is the whole object: the upsampled map's >= .8 region lies inside it, AIoU 1. Group 1's
    mask is the object's left half: the map is left-right symmetric about the object, AIoU .5."""
    colours = np.zeros((3, 4, 4))
    colours[0, 1:3, 1:3] = 255
    images = cells_image(colours, 8)[None].repeat(4, 1, 1, 1)
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    masks[2:, :, 16:] = False
    groups = torch.tensor([0, 0, 1, 1])
    labels = torch.tensor([0, 1, 0, 1])
    split = Split(images=images, labels=labels, spurious=groups, groups=groups, masks=masks)
    benchmark = Benchmark(name="cells", class_names=["a", "b"], spurious_names=["x", "y"],
                          group_names=["whole", "half"], splits={"train": split, "val": split, "test": split})
    metrics = attention_metrics(ColorCellNet(8, RED), benchmark, "cpu")
    assert set(metrics) == {"val", "test"}
    assert metrics["test"]["aiou_worst"] == pytest.approx(0.5)
    assert metrics["test"]["aiou_avg"] == pytest.approx(0.75)


def test_attention_metrics_needs_masks(small_toy):
    toy_benchmark = small_toy
    toy_benchmark.splits["test"].masks = None
    model = tiny("resnet18")
    with pytest.raises(HarnessError, match=r"split 'test' .* no core-object masks: provide masks"):
        attention_metrics(model, toy_benchmark, "cpu", splits=["val", "test"])
    assert set(attention_metrics(model, toy_benchmark, "cpu")) == {"val"}
    toy_benchmark.splits["val"].masks = None
    with pytest.raises(HarnessError, match="no core-object masks in its evaluation splits"):
        attention_metrics(model, toy_benchmark, "cpu")


# ---- bad input ----------------------------------------------------------------------------------------
def test_bad_input_errors(toy_benchmark):
    split = toy_benchmark.splits["val"]
    with pytest.raises(HarnessError, match="has no target_layer / to_grid"):
        extract(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)), split, "cpu")
    model = tiny("resnet18")
    with pytest.raises(HarnessError, match="unknown attention method 'gradcamm'"):
        extract(model, split, "cpu", method="gradcamm")
    with pytest.raises(HarnessError, match="unknown attention target 'truth'"):
        extract(model, split, "cpu", target="truth")
    with pytest.raises(HarnessError, match="needs the images' labels"):
        GradCAM(model)(random_images(2))
    with pytest.raises(HarnessError, match="must be \\(k, h, w\\)"):
        upsample(torch.zeros(4, 4), 8)


def test_bench_prints_a_row_per_variant(capsys):
    from harness.checks.bench_attention import main

    main(["--n", "4", "--batch", "2", "--width", "0.25", "--classes", "2", "--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4 and "CAMs/s" in rows[0]  # header, CAM, autograd, package batched, one by one
    assert rows[3].split("|")[4].strip() == "1.00x"  # the package's batched GradCAM is the baseline
