"""Sampling a preset's splits: group counts per split and scale, seeded rendering in fixed chunks, and the
balanced source task models are pretrained on (the "ImageNet stand-in", with shapes and background textures no
preset uses).

Everything is vectorised numpy over chunks of images; the output depends only on (name, scale, seed).
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import torch

from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.data.sizes import check_scale
from harness.data.synthetic.presets import Preset, get_preset, group_names, with_overrides
from harness.data.synthetic.render import SOURCE_SHAPES, Difficulty, Render, render_source

GENERATOR_VERSION = 4
IMAGE_SIZE = {"tiny": 32, "quick": 32, "paper": 64}  # the generator's default; see hparams_registry.default_image_size
# Fewest instances every val/test group of positive proportion gets, so worst-group accuracy is measurable.
EVAL_GROUP_FLOOR = {"tiny": 20, "quick": 25, "paper": 20}
_SMALL_SPLIT_SIZES = {
    "tiny": {"train": 800, "val": 240, "test": 480},
    "quick": {"train": 2500, "val": 600, "test": 1200},
}
_CHUNK = 2048  # images rendered at once; part of the output's definition (each chunk has its own RNG)
# Moderate rotation and texture contrast: with full rotation on busy textures a CNN from scratch is still
# near chance after the few epochs pretraining can afford on a CPU.
_SOURCE_DIFFICULTY = Difficulty(object_size=(0.26, 0.38), distinctness=1.0, shape_jitter=0.0, rotation=30.0,
                                colour_jitter=1.0, core_hue_gap=0.0, texture_contrast=0.35, noise=0.03,
                                object_pattern=0.0)


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HarnessError(f"seed must be a non-negative integer, got {seed!r}")


def _group_counts(shares: tuple[float, ...], total: int, floor: int) -> np.ndarray:
    """Largest-remainder split of ``total`` by ``shares``; groups of positive share raised to ``floor``."""
    exact = np.asarray(shares) * total
    counts = np.floor(exact).astype(np.int64)
    remainder = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
    positive = np.asarray(shares) > 0
    counts[positive] = np.maximum(counts[positive], floor)
    return counts


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _render_chunked(render: Render, labels: np.ndarray, spurious: np.ndarray, size: int, d: Difficulty,
                    seq: np.random.SeedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Render in chunks of _CHUNK images (each with its own child RNG), add pixel noise, quantise to uint8."""
    n = len(labels)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    masks = torch.empty((n, size, size), dtype=torch.bool)
    starts = range(0, n, _CHUNK)
    for start, child in zip(starts, seq.spawn(len(starts)), strict=True):
        rng = np.random.default_rng(child)
        rows = slice(start, start + _CHUNK)
        canvas, mask = render(labels[rows], spurious[rows], rng, size, d)
        if d.noise > 0:
            canvas += d.noise * rng.standard_normal(canvas.shape, dtype=np.float32)
        canvas *= 255.0
        canvas += 0.5
        pixels = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
        images[rows] = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
        masks[rows] = torch.from_numpy(mask)
    return images, masks


def _make_split(preset: Preset, counts: np.ndarray, size: int, d: Difficulty,
                seq: np.random.SeedSequence) -> Split:
    attribute_seq, render_seq = seq.spawn(2)
    rng = np.random.default_rng(attribute_seq)
    groups = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    labels = np.array([label for _, label, _ in preset.groups], dtype=np.int64)[groups]
    spurious = np.empty(len(groups), dtype=np.int64)
    for gid, (_, _, options) in enumerate(preset.groups):
        rows = np.flatnonzero(groups == gid)
        spurious[rows] = rng.choice(np.asarray(options, dtype=np.int64), len(rows))
    images, masks = _render_chunked(preset.render, labels, spurious, size, d, render_seq)
    return Split(images=images, labels=torch.from_numpy(labels), spurious=torch.from_numpy(spurious),
                 groups=torch.from_numpy(groups.astype(np.int64)), masks=masks)


def data_version(name: str) -> str:
    """The version of what preset ``name`` draws: the generator's, and a digest of the preset's definition
    (groups, proportions, sizes, object kinds, backgrounds, difficulty), so recalibrating one preset changes
    its runs' identity and no other's."""
    preset = get_preset(name)
    definition = json.dumps({**{f.name: getattr(preset, f.name) for f in fields(preset)
                                if f.name not in ("description", "paper_dataset", "render", "difficulty")},
                             "render": preset.render.__qualname__,
                             "difficulty": asdict(preset.difficulty)}, sort_keys=True, default=list)
    return f"{GENERATOR_VERSION}.{hashlib.sha256(definition.encode()).hexdigest()[:8]}"


def minority_groups(name: str, scale: str) -> tuple[str, ...]:
    """The groups of preset ``name`` that its train split holds less often than an even split of their class
    among the class's groups would: the counter-examples to the spurious correlation (waterbirds-synth:
    landbird/water and waterbird/land; nico-synth: every class outside its dominant context)."""
    train = split_sizes(name, scale)["train"]
    labels = np.array([label for _, label, _ in get_preset(name).groups])
    return tuple(group for g, group in enumerate(group_names(name))
                 if train[g] * (labels == labels[g]).sum() < train[labels == labels[g]].sum())


def split_sizes(name: str, scale: str, sizes: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Per split, the number of instances of each group make_benchmark(name, scale, ...) draws; ``sizes``
    ({split: n}) replaces the scale's size of some splits (their groups keep the preset's proportions, val
    and test groups at least the scale's floor)."""
    wanted = dict(sizes or {})
    preset = get_preset(name)
    check_scale(scale)
    counts = {}
    for split, shares in preset.proportions.items():
        if split in wanted:
            total = int(wanted[split])
        elif scale == "paper":
            total = preset.paper_sizes[split]
        else:
            small = _SMALL_SPLIT_SIZES[scale]
            total = small.get(split, small["test"])
        counts[split] = _group_counts(shares, total, 1 if split == "train" else EVAL_GROUP_FLOOR[scale])
    return counts


def make_benchmark(name: str, scale: str, seed: int, difficulty: Mapping[str, Any] | None = None,
                   image_size: int | None = None, sizes: Mapping[str, int] | None = None) -> Benchmark:
    """Draw preset ``name`` at ``scale``; the same (name, scale, seed, difficulty, sizes) gives the same bytes.

    ``difficulty`` optionally overrides some of the preset's knobs (calibration and tests); ``image_size``
    renders at another size than the scale's (``IMAGE_SIZE``), e.g. 32 px for the stand-in ResNet grids;
    ``sizes`` ({split: n}) draws those splits at those sizes (the others stay the scale's).
    """
    preset = get_preset(name)
    _check_seed(seed)
    counts = split_sizes(name, scale, sizes)
    knobs = with_overrides(preset.difficulty, difficulty)
    size = IMAGE_SIZE[scale] if image_size is None else int(image_size)
    if size < 16:
        raise HarnessError(f"synthetic presets render at 16 px or more, got --image-size {size}")
    splits = {
        split: _make_split(preset, group_counts, size, knobs,
                           np.random.SeedSequence([int(seed), _crc(name), _crc(scale), _crc(split)]))
        for split, group_counts in counts.items()
    }
    info = {"scale": scale, "seed": int(seed), "image_size": size, "synthetic": True,
            "generator_version": GENERATOR_VERSION, "difficulty": asdict(knobs),
            "difficulty_id": json.dumps(asdict(knobs), sort_keys=True)}  # a string, so cache keys see it
    for split, n in sorted((sizes or {}).items()):  # absent otherwise: the caches of runs without them stay valid
        info[f"{split}_size"] = int(n)
    return Benchmark(name=name, class_names=list(preset.class_names),
                     spurious_names=list(preset.spurious_names), group_names=[g[0] for g in preset.groups],
                     splits=splits, info=info)


def make_source_task(n: int, image_size: int, seed: int,
                     num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced pretraining task (the ImageNet stand-in): uint8 images (n, 3, H, W) and int64 labels.

    Class k is source shape SOURCE_SHAPES[k] on a random source texture, neither used by any preset, and
    class counts differ by at most one.
    """
    _check_seed(seed)
    if not 2 <= num_classes <= len(SOURCE_SHAPES):
        raise HarnessError(f"num_classes must be in 2..{len(SOURCE_SHAPES)}, got {num_classes}")
    if n < num_classes:
        raise HarnessError(
            f"source task needs at least one image per class: n={n} < num_classes={num_classes}")
    if image_size < 8:
        raise HarnessError(f"image_size must be at least 8 pixels, got {image_size}")
    seq = np.random.SeedSequence([int(seed), _crc("source-task"), int(image_size), int(num_classes)])
    label_seq, render_seq = seq.spawn(2)
    labels = np.random.default_rng(label_seq).permutation(np.arange(n) % num_classes).astype(np.int64)
    images, _ = _render_chunked(render_source, labels, np.zeros(n, dtype=np.int64), image_size,
                                _SOURCE_DIFFICULTY, render_seq)
    return images, torch.from_numpy(labels)
