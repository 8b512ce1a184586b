"""``python -m harness bench``: ours beside a plain reference, timed in one run on the same inputs and device.

Sections (each prints a markdown table with rates and ratios):

- ``train``: the harness's training loop (``harness.engine.training.fit``: augmentation on tensors, bf16 autocast
  and channels-last on the GPU) against a plain timm loop on the same device-resident batch stream, eager and
  ``torch.compile``d (compile time printed apart). Target on the GPU: >= 0.95x of the plain compiled loop.
- ``attention``: ``harness.attention.passes.extract`` (CAM, F, F_A, F_Abar) against the grad-cam package's GradCAM
  (batched), a one-image-at-a-time loop, and plain forward-only inference. Targets: >= 20x the package,
  >= 0.9x inference.
- ``slim``: SLIM's stages after attention (UMAP attention space, annotation sampling, label spreading,
  screening, k-means disentangling, sampling) on clustered random features of the given size. Target at
  CelebA scale (160k x 2048) on the GPU machine: < 30 s in all.
- ``stem``: the ``upper`` protocol's frozen-stem pass (``harness.models.stem_cache.encode_split``: small batches
  and channels-last on the CPU) against a plain batched ``Network.encode`` in the default layout, on
  EfficientNet-Lite0 seeing 64 px images at 256 px (the synthetic presets' default).
- ``data``: one training epoch from a memory-mapped uint8 image cache (what the real-data loaders produce),
  moved to the GPU whole and streamed through pinned memory, against the same images already on the GPU.
  Target: >= 0.8x.
- ``generated``: loading a synthetic preset as a run does (``harness.data.catalog.load_benchmark``): drawn by
  the generator (every run before the store) against read back from the sweep's cache (every run but the
  first), on waterbirds-synth at the paper's split sizes (11,788 images at 64 px).
- ``cache``: the cost of checking cache entries against their digests (harness.core.digests): a read of every
  byte of a memory-mapped image-cache array and of a loaded safetensors artifact, each with the check and
  without, from the page cache (the file read once before timing).

On the CPU the defaults are small so the bench can be tried anywhere; ``--size paper`` uses the paper's
sizes (ResNet-50 / ViT-B/16 at 224 px, 160k x 2048 features) and is meant for a GPU.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tabulate import tabulate

from harness.attention.passes import extract
from harness.checks.bench_attention import package_gradcam
from harness.core import digests
from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.data.catalog import load_benchmark
from harness.data.containers import Split
from harness.engine.training import TrainHparams, fit
from harness.experiments.runner import resolve_device
from harness.models.network import create_model
from harness.models.precision import autocast, to_float
from harness.models.stem_cache import encode_split, stem_pass
from simulated_oracle import SimulatedOracle
from slim.pipeline import SlimCurator, make_space, settings_from

SIZES = {
    # arch list, image size, width, batch, images per timed pass, SLIM features (N, D)
    "small": dict(archs=("resnet18", "vit_tiny"), image_size=32, width=0.5, depth=6, batch=64, n=512,
                  slim=(5000, 256), cache_mb=256),
    "paper": dict(archs=("resnet50", "vit_base"), image_size=224, width=1.0, depth=None, batch=256, n=256 * 20,
                  slim=(160_000, 2048), cache_mb=4096),
}
SECTIONS = ("train", "attention", "slim", "stem", "data", "generated", "cache")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> str:
    """Peak GPU memory since the last :func:`reset_peak`, in MiB ("-" on the CPU)."""
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}" if device.type == "cuda" else "-"


def random_split(n: int, size: int, classes: int, seed: int = 0) -> Split:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return Split(images=images, labels=labels, spurious=torch.zeros_like(labels), groups=torch.zeros_like(labels))


def plain_train_loop(model: torch.nn.Module, split: Split, device: torch.device, batch: int, steps: int) -> None:
    """The reference: a bare timm training loop (SGD, bf16 autocast on the GPU), no augmentation."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = split.images.to(device)
    labels = split.labels.to(device)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(split), (batch,), device=device)
        with autocast(device):
            loss = F.cross_entropy(model(to_float(images[idx])).float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_train(cfg: dict, device: torch.device, compile_too: bool) -> list[list[str]]:
    rows = []
    for arch in cfg["archs"]:
        split = random_split(cfg["n"], cfg["image_size"], 10)
        steps = cfg["n"] // cfg["batch"]

        def model() -> torch.nn.Module:
            torch.manual_seed(0)
            m = create_model(arch, 10, cfg["image_size"], width=cfg["width"], depth=cfg["depth"]).to(device)
            return m.to(memory_format=torch.channels_last) if device.type == "cuda" else m

        def ours(compiled: bool) -> Callable[[], object]:
            hp = TrainHparams(epochs=1, lr=1e-3, weight_decay=0.0, batch_size=cfg["batch"], selection="last",
                              compile=compiled)
            net = model()
            return lambda: fit(net, split, hp, device=device, seed=0, num_groups=1, show_progress=False)

        def plain(compiled: bool) -> Callable[[], object]:
            net = model()
            run_net = torch.compile(net) if compiled else net
            return lambda: plain_train_loop(run_net, split, device, cfg["batch"], steps)

        variants = [("ours, eager", ours(False)), ("plain timm loop, eager", plain(False))]
        if compile_too:
            variants += [("ours, torch.compile", ours(True)), ("plain timm loop, torch.compile", plain(True))]
        rates = {}
        for name, run in variants:
            reset_peak(device)
            first = timed(run, device)  # warm-up epoch: includes compilation when compiled
            seconds = timed(run, device)
            rates[name] = cfg["n"] / seconds
            rows.append([arch, name, f"{rates[name]:,.0f}", f"{first - seconds:.1f}", peak_mib(device)])
        reference = "plain timm loop, torch.compile" if compile_too else "plain timm loop, eager"
        for row in rows[-len(variants):]:
            row.insert(3, f"{rates[row[1]] / rates[reference]:.2f}x")
    return [["arch", "variant", "img/s", "vs plain (compiled if run)", "warm-up extra s", "peak GPU MiB"], *rows]


def bench_attention(cfg: dict, device: torch.device) -> list[list[str]]:

    rows = []
    for arch in cfg["archs"]:
        torch.manual_seed(0)
        model = create_model(arch, 10, cfg["image_size"], width=cfg["width"], depth=cfg["depth"]).to(device).eval()
        split = random_split(cfg["n"], cfg["image_size"], 10)
        few = split.subset(np.arange(min(len(split), 64)))

        @torch.no_grad()
        def inference(s: Split) -> None:
            for start in range(0, len(s), cfg["batch"]):
                with autocast(device):
                    model(to_float(s.images[start:start + cfg["batch"]].to(device)))

        variants = [
            ("ours: extract (CAM, F, F_A, F_Abar)", split,
             lambda s: extract(model, s, device, batch_size=cfg["batch"], show_progress=False)),
            ("plain forward-only inference", split, inference),
            ("grad-cam package GradCAM, batched", split, lambda s: package_gradcam(model, s, device, cfg["batch"])),
            ("grad-cam package, one image at a time", few, lambda s: package_gradcam(model, s, device, 1)),
        ]
        rates = {}
        for name, data, run in variants:
            run(data.subset(np.arange(min(len(data), cfg["batch"]))))  # warm-up
            rates[name] = len(data) / timed(lambda: run(data), device)
        ours = rates[variants[0][0]]
        for name, _, _ in variants:
            rows.append([arch, name, f"{rates[name]:,.0f}", f"{ours / rates[name]:.2f}x"])
    return [["arch", "variant", "img/s", "ours / this"], *rows]


def bench_slim(cfg: dict) -> list[list[str]]:

    n, d = cfg["slim"]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    centres = rng.normal(size=(8, d)).astype(np.float32) * 3
    cluster = rng.integers(0, 8, n)
    fa = centres[cluster] + rng.normal(size=(n, d)).astype(np.float32)
    fabar = centres[(cluster + 3) % 8] + rng.normal(size=(n, d)).astype(np.float32)
    # attention maps and masks for the simulated oracle: right attention for half of the clusters
    maps = np.zeros((n, 4, 4), np.float32)
    maps[np.arange(n), 1 + (cluster % 2), 1] = 1.0
    masks = np.zeros((n, 4, 4), bool)
    masks[:, 1, 1] = True
    oracle = SimulatedOracle(lambda ids: maps[ids], masks, budget=200, random_state=0)

    settings = settings_from({})
    space = make_space(settings, 0)
    rows = []
    start = time.perf_counter()
    embedding = space.fit_transform(fa)
    rows.append(["attention space (UMAP)", f"{time.perf_counter() - start:.1f}", str(space.mode_)])
    start = time.perf_counter()
    curation = SlimCurator(200, n // 10, settings=settings).curate(fa, fabar, labels, oracle, embedding=embedding,
                                                                     space_mode=space.mode_)
    rows.append(["sampling, spreading, screening, disentangling, allocation",
                 f"{time.perf_counter() - start:.1f}",
                 "clusters (core x env) " + ", ".join(f"{scope}: {core.k} x {curation.env[scope].k}"
                                                      for scope, core in curation.core.items())])
    rows.append(["total", f"{sum(float(r[1]) for r in rows):.1f}", f"{n:,} x {d} features"])
    return [["stage", "seconds", "note"], *rows]


def bench_stem(cfg: dict, device: torch.device) -> list[list[str]]:

    split = random_split(cfg["n"] // 4, 64, 2)
    model = create_model("efficientnet_lite0", 2, 64, input_size=256).eval().to(device)
    ours_batch = stem_pass(device)["batch_size"]

    def plain() -> None:
        with torch.no_grad():
            for start in range(0, len(split), 128):
                with autocast(device):
                    model.encode(to_float(split.images[start:start + 128].to(device)))

    with torch.no_grad():
        model.encode(to_float(split.images[:2].to(device)))
    rates = {"plain: Network.encode, batch 128, default layout": len(split) / timed(plain, device)}
    run = lambda: encode_split(model, split, device, show_progress=False)
    run()
    rates[f"ours: encode_split, batch {ours_batch}, channels-last"] = len(split) / timed(run, device)
    first = next(iter(rates.values()))
    return [["variant", "img/s", "vs plain"], *[[k, f"{v:,.1f}", f"{v / first:.2f}x"] for k, v in rates.items()]]


def bench_data(cfg: dict, device: torch.device) -> list[list[str]]:
    """One training epoch from the real-data layout (a memory-mapped uint8 cache) against the same images
    already where the model is (on the GPU: GPU-resident). The cache is read two ways: moved to the device
    whole at the start of the fit (what a split that fits a third of the GPU's free memory gets) and
    streamed batch by batch through pinned memory (what a larger one gets)."""
    split = random_split(cfg["n"], cfg["image_size"], 10)
    arch = cfg["archs"][0]
    hp = TrainHparams(epochs=1, lr=1e-3, weight_decay=0.0, batch_size=cfg["batch"], selection="last")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        np.save(path, split.images.numpy())
        mapped = Split(images=torch.from_numpy(np.load(path, mmap_mode="r+")), labels=split.labels,
                       spurious=split.spurious, groups=split.groups)
        resident = Split(**{name: getattr(split, name).to(device) for name in ("images", "labels", "spurious",
                                                                               "groups")})
        rows = []
        for name, data, placement in (
                ("already on the device (GPU-resident on the GPU)", resident, None),
                ("memory-mapped uint8 cache, moved whole per fit", mapped, True),
                ("memory-mapped uint8 cache, streamed through pinned memory", mapped, False)):
            torch.manual_seed(0)
            model = create_model(arch, 10, cfg["image_size"], width=cfg["width"], depth=cfg["depth"])
            run = lambda: fit(model, data, hp, device=device, seed=0, num_groups=1, show_progress=False,
                              resident=placement)
            run()
            reset_peak(device)
            rows.append([name, cfg["n"] / timed(run, device), peak_mib(device)])
    first = rows[0][1]
    return [["source", "img/s", "vs on the device", "peak GPU MiB"],
            *[[name, f"{rate:,.0f}", f"{rate / first:.2f}x", peak] for name, rate, peak in rows]]


def bench_generated(preset: str = "waterbirds-synth", scale: str = "paper", image_size: int = 64) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactCache(Path(tmp))
        load = lambda cache: load_benchmark(preset, scale=scale, image_size=image_size, show_progress=False,
                                            store=cache)
        n = sum(len(split) for split in load(store).splits.values())  # the first run draws and stores it
        drawn, read = best_of(lambda: load(None), repeats=2), best_of(lambda: load(store))
    return [["source", "s per load", "images/s", "vs drawn"],
            ["drawn by the generator", f"{drawn:.2f}", f"{n / drawn:,.0f}", "1.00x"],
            ["read back from the store (digest checked)", f"{read:.2f}", f"{n / read:,.0f}", f"{drawn / read:.1f}x"]]


def best_of(run: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls (the others paid for page-cache misses or a busy machine)."""
    return min(timed(run, torch.device("cpu")) for _ in range(repeats))


def bench_cache(cfg: dict) -> list[list[str]]:

    size = cfg["cache_mb"] * 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        array_path = Path(tmp) / "images.npy"
        rng = np.random.default_rng(0)
        side = 224
        images = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8,
                                           shape=(size // (3 * side * side), 3, side, side))
        for start in range(0, len(images), 256):
            images[start:start + 256] = rng.integers(0, 256, images[start:start + 256].shape, dtype=np.uint8)
        images.flush()
        del images
        digests.write_digest(array_path)

        def read_array() -> int:  # every byte, as an epoch over the memory-mapped cache reads them
            return int(np.load(array_path, mmap_mode="c").max())

        def checked_array() -> int:
            assert digests.sound(array_path)
            return read_array()

        cache = ArtifactCache(Path(tmp) / "artifacts")
        weights = {"w": torch.from_numpy(rng.standard_normal(size // 4, dtype=np.float32))}
        artifact = cache.get_or_create("reference", {"bench": 1}, "safetensors",
                                       lambda path: save_tensors(path, weights))

        def read_artifact(path: Path) -> float:  # every byte (safetensors maps the file: touch it all)
            return max(float(t.numpy().max()) for t in load_tensors(path)[0].values())

        def checked_artifact() -> float:
            return read_artifact(cache.get_or_create("reference", {"bench": 1}, "safetensors", lambda _: None))

        variants = (("image-cache array (memory-mapped uint8)", array_path, read_array, checked_array),
                    ("artifact (safetensors, load_tensors)", artifact, lambda: read_artifact(artifact),
                     checked_artifact))
        for name, path, plain, checked in variants:
            plain()  # into the page cache
            without, with_check = best_of(plain), best_of(checked)
            check_only = best_of(lambda: digests.problem(path))
            megabytes = path.stat().st_size / 1e6
            rows.append([name, f"{megabytes:,.0f}", f"{without:.3f}", f"{with_check:.3f}",
                         f"{with_check / without:.2f}x", f"{megabytes / 1e3 / check_only:.2f}"])
    threads = min(digests.MAX_THREADS, os.cpu_count() or 1)
    return [["entry", "MB", "s without check", "s with check", "with / without",
             f"check alone GB/s ({threads} threads)"], *rows]


def run_bench(args: argparse.Namespace) -> int:
    """``python -m harness bench``: its options are parsed by harness.cli (so ``--help`` needs no torch)."""

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise HarnessError(f"unknown bench section(s) {', '.join(map(repr, unknown))}; choose from "
                           f"{', '.join(SECTIONS)}")
    device = resolve_device(args.device)
    cfg = SIZES[args.size or ("paper" if device.type == "cuda" else "small")]
    lines = [f"# Bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"Command: `{args.command_line}`  ",
             f"Device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; "
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU threads  ",
             f"Sizes: {cfg}", ""]
    print("\n".join(lines), flush=True)
    for section in sections:
        if section == "train":
            table = bench_train(cfg, device, args.compile or device.type == "cuda")
        elif section == "attention":
            table = bench_attention(cfg, device)
        elif section == "slim":
            table = bench_slim(cfg)
        elif section == "stem":
            table = bench_stem(cfg, device)
        elif section == "data":
            table = bench_data(cfg, device)
        elif section == "generated":
            table = bench_generated()
        else:
            table = bench_cache(cfg)
        text = f"## {section}\n\n" + tabulate(table[1:], headers=table[0], tablefmt="github",
                                               disable_numparse=True) + "\n"
        print(text, flush=True)
        lines.append(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0
