"""Benchmark of attention extraction: CAMs per second, ours beside the grad-cam package.

    python -m harness.checks.bench_attention [--arch resnet18] [--image-size 32] [--batch 64] [--n 512]
                                      [--device cpu] [--width 1.0] [--classes 10] [--threads 1] [--repeats 3]

Same model (random weights), same uint8 inputs and the same classes for every variant:

- ours, CAM fast path: ``extract(method="cam")`` (ResNets only: one forward pass);
- ours, autograd GradCAM: ``extract(method="gradcam-autograd")`` (autograd stops at the target layer);
- the grad-cam package's GradCAM, batched as its README calls it (fp32, full backward, maps at input size);
- one image at a time: the package's GradCAM on batches of one (how the SLIM authors' code runs).

Ours time the whole pass the harness pays for (maps normalised, F_A / F_Abar, results on the CPU);
the package's time its call plus the uint8 -> float conversion. Each variant runs once on one batch to
warm up, then ``--repeats`` times over all images; the fastest run counts (shared machines are noisy).
Prints a markdown table; on CUDA it adds each variant's peak GPU memory.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable

import torch
from tabulate import tabulate

from harness.attention.passes import extract
from harness.data.containers import Split
from harness.models.network import create_model
from harness.models.precision import to_float


def package_gradcam(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int) -> None:
    """The grad-cam package's GradCAM over ``split`` in batches of ``batch_size``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.target_layer], reshape_transform=model.to_grid) as cam:
        for start in range(0, len(split), batch_size):
            images = to_float(split.images[start:start + batch_size].to(device))
            targets = [ClassifierOutputTarget(int(c)) for c in split.labels[start:start + batch_size]]
            cam(images, targets=targets)
    model.zero_grad(set_to_none=True)


def timed(run: Callable[[Split], None], split: Split, device: torch.device) -> tuple[float, float | None]:
    """Seconds of ``run(split)`` and its peak GPU memory in MiB (None on the CPU)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run(split)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n", type=int, default=512, help="images per variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=float, default=1.0, help="ResNet channel multiplier")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the fastest counts")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = create_model(args.arch, args.classes, args.image_size, width=args.width).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, args.image_size, args.image_size), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, args.classes, (args.n,), generator=generator)
    zeros = torch.zeros(args.n, dtype=torch.long)
    split = Split(images=images, labels=labels, spurious=zeros, groups=zeros)
    warmup = split.subset(range(min(args.batch, args.n)))

    def ours(method: str) -> Callable[[Split], None]:
        return lambda s: extract(model, s, device, batch_size=args.batch, method=method, show_progress=False)

    def package(batch_size: int) -> Callable[[Split], None]:
        return lambda s: package_gradcam(model, s, device, batch_size)

    variants: list[tuple[str, Callable[[Split], None]]] = []
    if model.cam_is_exact:
        variants.append((f"ours: CAM fast path, batch {args.batch}", ours("cam")))
    baseline = f"grad-cam package GradCAM, batch {args.batch}"
    variants += [
        (f"ours: autograd GradCAM to the target layer, batch {args.batch}", ours("gradcam-autograd")),
        (baseline, package(args.batch)),
        ("grad-cam package GradCAM, one image at a time", package(1)),
    ]
    cuda = device.type == "cuda"
    rows = []
    for name, run in variants:
        run(warmup)
        seconds, peak = min((timed(run, split, device) for _ in range(args.repeats)), key=lambda r: r[0])
        rows.append((name, seconds, args.n / seconds, peak))
    baseline_rate = next(rate for name, _, rate, _ in rows if name == baseline)
    table = [[name, f"{seconds:.2f}", f"{rate:,.0f}", f"{rate / baseline_rate:.2f}x"]
             + ([f"{peak:,.0f}"] if cuda else []) for name, seconds, rate, peak in rows]
    headers = ["variant", "seconds", "CAMs/s", "vs package batched"] + (["peak GPU MiB"] if cuda else [])

    latent = extract(model, split.subset([0]), device, show_progress=False).cams.shape[1:]
    command = " ".join(sys.argv[1:] if argv is None else argv)
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} torch thread(s)"
    print(f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"Command: `python -m harness.checks.bench_attention {command}`  ")
    print(f"Setup: {args.arch} (width {args.width}) at {args.image_size} px, {args.classes} classes, random "
          f"weights, {args.n} images, latent map {latent[0]}x{latent[1]}; {where}; "
          f"torch {torch.__version__}; best of {args.repeats} timed runs after a warm-up batch  ")
    print()
    print(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
