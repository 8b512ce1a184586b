"""Every CUDA branch of the harness, run on a GPU: precision and layout, transfers, training (eager, compiled,
resident and streamed inputs, the memory-mapped image cache), attention extraction, the stem cache,
last-layer retraining and whole runs of ERM, GroupDRO and SLIM_Val (marker ``gpu``).

``python -m harness gpu-check`` runs them. Without CUDA they skip, unless pytest is given
``--gpu-tests-on-cpu``: then they run the same code on the CPU at the same small sizes, and what only means
something on a GPU (bf16 results, channels-last, pinned memory, the GPU-memory share) is checked there
alone, or skips with its reason.

Tolerances. On the GPU the networks run under bf16 autocast: each convolution or matrix product rounds its
inputs, weights and output to 8 significant bits (relative rounding u = 2^-8), accumulating in float32. The
rounding errors are independent, so after n roundings along a path the relative error of a result grows like
u sqrt(n); the networks here are at most about 60 layers deep, 3 roundings each, so sqrt(180) < 16 and GPU
results are held to the CPU's float32 ones within ``16 u`` = 6.25 % in relative (Frobenius) error. On the
CPU both sides are float32 on one thread: equal to ``CPU_RTOL``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark
from PIL import Image

import harness.engine.context
from harness.attention.cams import make_extractor
from harness.attention.passes import attention_key, extract
from harness.core.cache import ArtifactCache
from harness.data.containers import Split
from harness.data.image_cache import cached_images
from harness.engine.context import RunContext
from harness.engine.evaluation import batched_outputs, predict_logits
from harness.engine.features import penultimate_features
from harness.engine.hparams_registry import run_hparams
from harness.engine.last_layer import fit_logistic, head_from, with_head
from harness.engine.methods import get_method
from harness.engine.training import TrainHparams, batches, fit, place_inputs
from harness.experiments.predictions import collect_predictions
from harness.models.network import create_model
from harness.models.precision import autocast, forced_precision, precision, to_device, to_float
from harness.models.stem_cache import STORAGE, encode_split, stem_pass, with_stem_inputs

pytestmark = pytest.mark.gpu

U_BF16 = 2.0 ** -8
BF16_RTOL = 16 * U_BF16
CPU_RTOL = 1e-5
CPU = torch.device("cpu")


def rtol(device: torch.device) -> float:
    """How far a result on ``device`` may be from the CPU's float32 one (module docstring)."""
    return BF16_RTOL if precision(device) == "bf16" else CPU_RTOL


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return float((value - reference).norm() / reference.norm())


def cuda_only(device: torch.device, what: str) -> None:
    if device.type != "cuda":
        pytest.skip(f"CUDA only: {what}")


def small_model(arch: str = "resnet18", *, image_size: int = 32, num_classes: int = 2, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model(arch, num_classes, image_size, width=0.25, depth=2, **kwargs)


def state_on_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fit_toy(device: torch.device, *, epochs: int = 1, split: Split | None = None, **kwargs):
    """A small ResNet fit on the toy benchmark's train split; returns (model, result)."""
    benchmark = make_toy_benchmark()
    model = small_model()
    hp = TrainHparams(epochs=epochs, lr=0.05, weight_decay=1e-4, batch_size=32, selection="last",
                      **{k: kwargs.pop(k) for k in ("compile", "augment") if k in kwargs})
    result = fit(model, split or benchmark.splits["train"], hp, device=device, seed=0, num_groups=4,
                 show_progress=False, **kwargs)
    return model, result


# ---- precision, layout and transfers -----------------------------------------------------------------------
def test_precision_and_layout_follow_the_device(gpu_device):
    """bf16 autocast and channels-last on the GPU, float32 on the CPU; ``forced_precision`` overrides both
    ways (float32 on the GPU with TF32 off, restored after) and says so in ``precision``."""
    conv = torch.nn.Conv2d(3, 4, 3).to(gpu_device)
    x = to_float(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8).to(gpu_device))
    assert float(x.max()) <= 1.0
    with autocast(gpu_device):
        default = conv(x)
    if gpu_device.type == "cuda":
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert precision(gpu_device) == "bf16" and default.dtype == torch.bfloat16
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        with forced_precision("fp32"):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            with autocast(gpu_device):
                assert conv(x).dtype == torch.float32 and precision(gpu_device) == "fp32"
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == tf32
    else:
        assert precision(gpu_device) == "fp32" and default.dtype == torch.float32
    with forced_precision("bf16"), autocast(gpu_device):
        assert conv(x).dtype == torch.bfloat16 and precision(gpu_device) == "bf16"
    assert precision(gpu_device) == ("bf16" if gpu_device.type == "cuda" else "fp32")


class CornerPixels(torch.nn.Module):
    """Outputs each image's top-left pixel (3 values): exact in any precision, so outputs gathered from many
    batches copied without blocking can be compared exactly, order included."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0]


def test_copies_without_blocking_arrive_whole_and_in_order(gpu_device):
    """Inputs go to the device through pinned memory without blocking (a memory-mapped or ordinary host tensor
    alike); every batch's outputs hold its own images' values, in order (a copy read before it landed would
    not)."""
    images = torch.randint(0, 256, (700, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros(700, dtype=torch.long)
    split = Split(images=images, labels=zeros, spurious=zeros, groups=zeros)
    out = batched_outputs(CornerPixels().to(gpu_device), split, gpu_device, batch_size=64)
    assert torch.equal(out, images[:, :, 0, 0].float() / 255)
    moved = to_device(images, gpu_device)
    assert moved.device.type == gpu_device.type and torch.equal(moved.cpu(), images)
    if gpu_device.type == "cpu":
        assert moved is images  # nothing to copy


# ---- training -----------------------------------------------------------------------------------------------
def test_training_on_the_device_learns_and_starts_where_the_cpu_does(gpu_device):
    """Before training the model's logits on the device equal the CPU's within the precision's tolerance; a fit
    there keeps the weights on the device (channels-last on the GPU), lowers the loss and fits the toy task."""
    benchmark = make_toy_benchmark()
    model = small_model()
    reference = predict_logits(model, benchmark.splits["val"], CPU)
    on_device = predict_logits(model.to(gpu_device), benchmark.splits["val"], gpu_device)
    assert relative_error(on_device, reference) < rtol(gpu_device)
    model, result = fit_toy(gpu_device, epochs=3)
    weight = model.backbone.conv1.weight
    assert weight.device.type == gpu_device.type
    if gpu_device.type == "cuda":
        assert weight.is_contiguous(memory_format=torch.channels_last)
    losses = [entry["train_loss"] for entry in result.history]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    train = benchmark.splits["train"]
    accuracy = (predict_logits(model, train, gpu_device).argmax(1) == train.labels).float().mean()
    assert accuracy >= 0.75  # 90 % of the toy's train images follow the colour; a learner gets most of them


def memory_mapped_split(tmp_path, n: int = 96, size: int = 32) -> Split:
    """A split whose images come from the real-data loaders' cache: PNG files decoded once into a
    memory-mapped uint8 array (harness.data.image_cache)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size + 8, size + 8, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    images = cached_images(paths, image_size=size, cache_dir=tmp_path / "cache", label="gpu-test", progress=False)
    labels = torch.from_numpy(rng.integers(0, 2, n))
    return Split(images=images, labels=labels, spurious=labels.clone(), groups=labels.clone())


def test_streamed_batches_equal_resident_ones(gpu_device, tmp_path):
    """Inputs streamed from the memory-mapped cache by the helper thread arrive on the device as exactly the
    batches the resident path indexes there, rows included, in order, the last short batch too."""
    split = memory_mapped_split(tmp_path)
    order = np.random.default_rng(1).permutation(len(split))
    resident = list(batches(place_inputs(split, gpu_device, resident=True), order, 40, gpu_device))
    streamed_placement = place_inputs(split, gpu_device, resident=False)
    assert streamed_placement.streamed and streamed_placement.inputs.device.type == "cpu"
    streamed = list(batches(streamed_placement, order, 40, gpu_device))
    assert [len(rows) for rows, _ in streamed] == [40, 40, 16]
    for (rows_a, batch_a), (rows_b, batch_b) in zip(resident, streamed, strict=True):
        assert batch_b.device.type == gpu_device.type
        assert torch.equal(rows_a.cpu(), rows_b.cpu()) and torch.equal(batch_a.cpu(), batch_b.cpu())
        assert torch.equal(batch_b.cpu(), split.images[rows_b.cpu()])
    assert torch.equal(torch.cat([rows.cpu() for rows, _ in streamed]), torch.from_numpy(order))


def test_streamed_training_matches_resident_training(gpu_device, tmp_path):
    """A fit from the memory-mapped cache streamed batch by batch ends where the resident fit ends: the same
    weights on the CPU (deterministic), within bf16 rounding on the GPU (its kernels' sums are not ordered)."""
    split = memory_mapped_split(tmp_path)
    resident, _ = fit_toy(gpu_device, split=split, resident=True)
    streamed, _ = fit_toy(gpu_device, split=split, resident=False)
    for name, value in state_on_cpu(resident).items():
        if value.is_floating_point():
            assert relative_error(state_on_cpu(streamed)[name], value) <= (
                BF16_RTOL if gpu_device.type == "cuda" else 0.0), name


def test_a_split_over_the_gpu_share_is_streamed_and_trains(gpu_device, tmp_path, monkeypatch):
    """A split whose inputs take more than a third of the GPU's free memory (counted in bytes: float16 stem
    activations take two per value) stays on the host and is streamed, and trains: the path every large split
    takes (it used to index host images with device rows, which torch refuses)."""
    cuda_only(gpu_device, "the share of GPU memory a split may take")
    split = memory_mapped_split(tmp_path)
    stem = dataclasses.replace(split, stem=torch.zeros(len(split), 8, 4, 4, dtype=torch.float16))
    for data in (split, stem):
        size = data.inputs.numel() * data.inputs.element_size()
        for free, streamed in ((3 * size - 3, True), (3 * size, False)):
            monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 10 * free))
            placed = place_inputs(data, gpu_device)
            assert placed.streamed == streamed and placed.inputs.is_cuda != streamed and placed.labels.is_cuda
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (0, 1))
    model, result = fit_toy(gpu_device, split=split)
    assert math.isfinite(result.history[-1]["train_loss"]) and next(model.parameters()).is_cuda


def test_compiled_training_matches_eager(gpu_device):
    """``compile=true`` trains the same model as eager execution, within the precision's rounding."""
    cuda_only(gpu_device, "torch.compile's CPU backend needs minutes of C++ compilation on a small machine")
    eager, _ = fit_toy(gpu_device, augment=False)
    compiled, _ = fit_toy(gpu_device, augment=False, compile=True)
    reference = state_on_cpu(eager)
    for name, value in state_on_cpu(compiled).items():
        if value.is_floating_point() and reference[name].norm() > 0:
            assert relative_error(value, reference[name]) < BF16_RTOL, name


# ---- attention, stem cache, last layer ----------------------------------------------------------------------
@pytest.mark.parametrize("arch, method", [("resnet18", "gradcam"), ("resnet18", "gradcam-autograd"),
                                          ("vit_tiny", "gradcam"), ("resnet18", "gradcam-package")])
def test_attention_on_the_device_matches_the_cpu(gpu_device, arch, method):
    """The attention pass on the device (CAM fast path, autograd GradCAM, the ViT's token grid, the grad-cam
    package) gives the CPU's features, logits and maps within the precision's tolerance, and its F_A and
    F_Abar still add up to h w times the pooled features (the same normalised map weights both)."""
    benchmark = make_toy_benchmark()
    split = benchmark.splits["val"]
    model = small_model(arch).eval()
    reference = extract(model, split, CPU, method=method, batch_size=24, show_progress=False)
    ours = extract(model.to(gpu_device), split, gpu_device, method=method, batch_size=24, show_progress=False)
    assert ours.cams.device.type == "cpu" and ours.cams.shape == reference.cams.shape
    for name in ("pooled", "fa", "logits"):
        assert relative_error(getattr(ours, name), getattr(reference, name)) < rtol(gpu_device), name
    # maps are min-max normalised per image, which divides by each map's range: allow twice the tolerance
    assert relative_error(ours.cams, reference.cams) < 2 * rtol(gpu_device)
    assert torch.equal(ours.targets, reference.targets)
    h, w = ours.cams.shape[1:]
    assert relative_error(ours.fa + ours.fabar, h * w * ours.pooled) < 1e-5


def test_cam_equals_autograd_gradcam_on_the_device(gpu_device):
    """For a GAP + linear head GradCAM is CAM; on the device both come from the same bf16 activation, so
    they agree to within one rounding of the head's weights."""
    model = small_model().eval().to(gpu_device)
    images = to_float(to_device(make_toy_benchmark().splits["val"].images[:16], gpu_device))
    labels = to_device(torch.arange(16) % 2, gpu_device)
    cam = make_extractor(model, "cam")(images, labels)
    autograd = make_extractor(model, "gradcam-autograd")(images, labels)
    assert relative_error(cam.cams, autograd.cams) < (4 * U_BF16 if gpu_device.type == "cuda" else 1e-5)


def test_stem_cache_on_the_device(gpu_device, tmp_path):
    """The frozen-stem pass on the device equals the CPU's within the precision's tolerance, comes back as
    float16 on the CPU, leaves the model channels-last, and is cached under the device's own key (a bf16 GPU
    stem is never read by a float32 CPU run); the upper protocol then trains on it on the device."""
    benchmark = make_toy_benchmark()
    encoder = small_model().eval()
    reference = encode_split(encoder, benchmark.splits["val"], CPU, show_progress=False)
    ours = encode_split(encoder, benchmark.splits["val"], gpu_device, show_progress=False)
    assert ours.dtype == STORAGE and ours.device.type == "cpu"
    assert relative_error(ours, reference) < rtol(gpu_device)
    assert encoder.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    if gpu_device.type == "cuda":
        assert stem_pass(gpu_device) == {"batch_size": 128, "memory_format": "channels_last", "precision": "bf16"}
    assert "precision" not in stem_pass(CPU)  # float32 keys are those written before precision was recorded
    cache = ArtifactCache(tmp_path)
    staged = with_stem_inputs(benchmark, encoder, cache, {"k": 1}, gpu_device, show_progress=False)
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, CPU, show_progress=False)
    expected = 3 if gpu_device.type == "cpu" else 6  # one entry per split and device
    assert len(list((tmp_path / "stem").glob("*.safetensors"))) == expected
    upper = small_model(inputs="stem")
    upper.load_state_dict(encoder.state_dict())
    result = fit(upper, staged.splits["train"], TrainHparams(epochs=1, lr=0.05, weight_decay=0.0, batch_size=32,
                                                           selection="last"),
                 device=gpu_device, seed=0, num_groups=4, show_progress=False)
    assert math.isfinite(result.history[0]["train_loss"])


def test_last_layer_retraining_on_the_device(gpu_device):
    """Penultimate features on the device equal the CPU's within tolerance; a logistic head fit on them and
    folded into the device model gives the logits the fit computes from the features."""
    benchmark = make_toy_benchmark()
    val, test = benchmark.splits["val"], benchmark.splits["test"]
    model = small_model().eval()
    reference = penultimate_features(model, val, CPU)
    features = penultimate_features(model.to(gpu_device), val, gpu_device)
    assert relative_error(features, reference) < rtol(gpu_device)
    from sklearn.preprocessing import StandardScaler

    x, y = features.numpy().astype(np.float64), val.labels.numpy()
    scaler = StandardScaler().fit(x)
    coef, intercept = fit_logistic(x, y, C=1.0, num_classes=2, scaler=scaler)
    head = head_from(coef, intercept, scaler)
    retrained = with_head(model, head)
    assert next(retrained.parameters()).device.type == gpu_device.type
    logits = predict_logits(retrained, test, gpu_device)
    expected = head.logits(penultimate_features(model, test, gpu_device).numpy().astype(np.float64))
    assert relative_error(logits, torch.from_numpy(expected)) < rtol(gpu_device)


# ---- whole runs ---------------------------------------------------------------------------------------------
def run_on(device: torch.device, method: str, cache, run_dir, **settings):
    """``method`` fitted and evaluated on the toy benchmark on ``device`` (what harness.experiments.runner does)."""
    benchmark = make_toy_benchmark(n_train=64)
    hp = run_hparams(method, benchmark.name, "tiny", "resnet18", {"epochs": 2, **FAST_MODEL, **settings})
    ctx = RunContext(benchmark=benchmark, arch="resnet18", seed=0, scale="tiny", device=device, hparams=hp,
                     method=method, cache=ArtifactCache(cache), run_dir=run_dir, show_progress=False)
    result = get_method(method)(hp).fit(ctx)
    return ctx, result, collect_predictions(result.model, ctx.benchmark, device).metrics()


@pytest.mark.parametrize("method, settings", [
    ("erm", {}),
    ("gdro", {"gdro_l2_search": "none", "gdro_eta_search": "none"}),
    ("slim-val", {"figures": False}),
])
def test_methods_run_on_the_device(gpu_device, tmp_path, monkeypatch, method, settings):
    """ERM, GroupDRO (its q updated on the device) and SLIM_Val (reference model, attention pass and features
    on the device; SLIM's stages on their outputs) run end to end on the device. SLIM_Val asks its whole
    budget and curates a subset of the planned size, and its attention is cached under the device's
    precision."""
    erm_defaults = harness.engine.context.run_hparams  # the shared reference model: one epoch
    monkeypatch.setattr(harness.engine.context, "run_hparams", lambda *a: dict(erm_defaults(*a), epochs=1))
    ctx, result, metrics = run_on(gpu_device, method, tmp_path / "cache", tmp_path / "run", **settings)
    assert set(metrics) == {"val", "test"}
    assert all(0.0 <= metrics[s]["avg_acc"] <= 1.0 for s in metrics)
    assert next(result.model.parameters()).device.type == gpu_device.type
    if method == "gdro":
        q = result.details["history"][-1]["q"]
        assert len(q) == 4 and min(q) >= 0 and sum(q) == pytest.approx(1.0, rel=1e-5)
    if method == "slim-val":
        size, hp = len(ctx.benchmark.splits["val"]), ctx.hparams
        assert result.attention_queries == max(2 * 2, round(hp["budget_share"] * size))  # 2 classes, >= 2 each
        assert result.details["subset_size"] == round(hp["subset_frac"] * size)
        assert attention_key(ctx, "val")["precision"] == precision(gpu_device)
