"""Procedurally generated stand-ins for the paper's five benchmarks (the harness's default data).

Real datasets cannot be downloaded, so every preset draws its images: a core object (whose exact
pixels are the ground-truth mask used for AIoU, paper Sec. 5.2) on a background, with a spurious
feature correlated with the class the way the paper's dataset has it (Sec. 5.1, group sizes from
shared/reference/method-facts.md). Each preset's difficulty is a small frozen set of knobs
(:class:`Difficulty`) so that the spurious feature is easier to learn than the core one while the core
stays learnable. :func:`make_source_task` is the balanced "ImageNet stand-in" models are pretrained on,
with shapes and background textures no preset uses.

Everything is vectorised numpy over chunks of images; the output depends only on (name, scale, seed).
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.data.facts import check_scale

GENERATOR_VERSION = 4
IMAGE_SIZE = {"tiny": 32, "quick": 32, "paper": 64}  # the generator's default; see hparams_registry.default_image_size
# Fewest instances every val/test group of positive proportion gets, so worst-group accuracy is measurable.
EVAL_GROUP_FLOOR = {"tiny": 20, "quick": 25, "paper": 20}
_SMALL_SPLIT_SIZES = {
    "tiny": {"train": 800, "val": 240, "test": 480},
    "quick": {"train": 2500, "val": 600, "test": 1200},
}
_CHUNK = 2048  # images rendered at once; part of the output's definition (each chunk has its own RNG)
_TAU = 2 * np.pi


@dataclass(frozen=True)
class Difficulty:
    """The knobs that set how hard a preset is (``python -m harness.experiments.calibration`` checks the result)."""

    object_size: tuple[float, float]  # object radius range, fraction of the image side (faces: a scale)
    distinctness: float  # 0: the classes' core features are identical, 1: fully separated
    shape_jitter: float  # per-image random variation of the object's outline
    rotation: float  # objects are rotated uniformly within +-rotation degrees
    colour_jitter: float  # spread of object hues around the preset's base hue (fraction of the hue circle)
    core_hue_gap: float  # hue offset between consecutive classes' object colours (a second core cue)
    texture_contrast: float  # strength of the background pattern (0: one flat colour)
    noise: float  # sd of per-pixel Gaussian noise, in units of the [0, 1] intensity range
    object_pattern: float  # strength of class-specific markings inside the object (0: flat fill)


# ----------------------------------------------------------------------------------------- colours


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; inputs of one shape (hue wraps), output (..., 3) float32 in [0, 1]."""
    h = np.mod(h, 1.0)
    s = np.clip(s, 0.0, 1.0)
    v = np.clip(v, 0.0, 1.0)
    k = np.mod(np.stack([5.0 + 6.0 * h, 3.0 + 6.0 * h, 1.0 + 6.0 * h], axis=-1), 6.0)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v[..., None] - v[..., None] * s[..., None] * ramp).astype(np.float32)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n).astype(np.float32)


def _object_colours(rng: np.random.Generator, labels: np.ndarray, base_hue: float, d: Difficulty,
                    sat: tuple[float, float] = (0.5, 0.9),
                    val: tuple[float, float] = (0.5, 0.95)) -> np.ndarray:
    """(n, 3) object colours: hue base + class * core_hue_gap, spread by colour_jitter."""
    n = len(labels)
    hue = base_hue + labels * d.core_hue_gap + d.colour_jitter * rng.uniform(-0.5, 0.5, n)
    return _hsv_to_rgb(hue, _uniform(rng, sat, n), _uniform(rng, val, n))


# ---------------------------------------------------------------------------------------- textures


@dataclass(frozen=True)
class _Texture:
    """A background family: colour ranges (HSV) and a pattern drawn in a second colour."""

    hue: tuple[float, float]  # centre, half-width
    sat: tuple[float, float]
    val: tuple[float, float]
    pattern: str  # key of _PATTERNS
    freq: tuple[float, float]  # pattern frequency in cycles per image side (blotch: grid cells)
    direction: tuple[float, float]  # direction the pattern varies along, degrees: centre, half-width
    second: tuple[float, float, float] | None  # HSV shift of the second colour; None: an unrelated hue


# Backgrounds of the presets (contexts, environments, skin, studio).
_PRESET_TEXTURES = {
    "forest": _Texture((0.30, 0.06), (0.45, 0.8), (0.25, 0.55), "blotch", (5, 5), (0, 0), (-0.18, 0.0, -0.1)),
    "water": _Texture((0.58, 0.04), (0.5, 0.85), (0.45, 0.8), "waves", (3, 6), (90, 10), (0.02, -0.35, 0.25)),
    "sand": _Texture((0.12, 0.02), (0.3, 0.5), (0.7, 0.9), "waves", (2, 4), (30, 25), (-0.02, 0.1, -0.2)),
    "snow": _Texture((0.6, 0.05), (0.0, 0.1), (0.85, 1.0), "speckle", (0, 0), (0, 0), (0.0, 0.1, -0.3)),
    "rock": _Texture((0.08, 0.05), (0.05, 0.2), (0.35, 0.6), "blotch", (8, 8), (0, 0), (0.0, 0.05, -0.25)),
    "grass": _Texture((0.25, 0.04), (0.5, 0.8), (0.45, 0.75), "stripes", (8, 14), (0, 15),
                      (0.05, 0.0, -0.25)),
    "sky": _Texture((0.55, 0.03), (0.2, 0.5), (0.8, 1.0), "gradient", (1, 1), (90, 20), (0.0, 0.3, -0.3)),
    "autumn": _Texture((0.06, 0.03), (0.6, 0.9), (0.55, 0.85), "blotch", (6, 6), (0, 0), (0.05, 0.0, -0.3)),
    "dim": _Texture((0.5, 0.5), (0.1, 0.4), (0.05, 0.25), "speckle", (0, 0), (0, 0), (0.0, 0.0, 0.15)),
    "skin": _Texture((0.065, 0.015), (0.2, 0.4), (0.75, 0.92), "blotch", (4, 4), (0, 0), (-0.01, 0.1, -0.12)),
    "studio": _Texture((0.5, 0.5), (0.05, 0.3), (0.55, 0.9), "gradient", (1, 1), (0, 180), (0.0, 0.0, -0.35)),
}
# Backgrounds of the source (pretraining) task: other patterns, any hue, an unrelated second colour.
_SOURCE_TEXTURES = {
    name: _Texture((0.5, 0.5), (0.3, 0.9), (0.3, 0.95), name, freq, (0, 180), None)
    for name, freq in (("checker", (3, 6)), ("dots", (3, 6)), ("rings", (2, 5)), ("plaid", (3, 6)),
                       ("zigzag", (3, 6)))
}
SOURCE_TEXTURES = tuple(_SOURCE_TEXTURES)


def _interp_matrix(cells: int, size: int) -> np.ndarray:
    """(size, cells) bilinear weights from a coarse grid (cell centres) to pixel centres."""
    pos = np.clip((np.arange(size) + 0.5) / size * cells - 0.5, 0, cells - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    frac = pos - lo
    w = np.zeros((size, cells), dtype=np.float32)
    w[np.arange(size), lo] += 1 - frac
    w[np.arange(size), hi] += frac
    return w


def _smooth_noise(rng: np.random.Generator, n: int, cells: int, size: int) -> np.ndarray:
    """(n, size, size) smooth random field in [0, 1]: a cells x cells random grid, bilinearly upsampled."""
    w = _interp_matrix(cells, size)
    grid = rng.random((n, cells, cells), dtype=np.float32)
    return np.einsum("ya,nab,xb->nyx", w, grid, w, optimize=True)


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]: x (1, 1, S) and y (1, S, 1), y pointing down."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, None, :], c[None, :, None]


def _along(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (n, S, S) along and across a random direction of the texture's range."""
    x, y = _coords(size)
    angle = np.deg2rad(tex.direction[0] + tex.direction[1] * rng.uniform(-1, 1, n)).astype(np.float32)
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return x * c + y * s, -x * s + y * c


def _pattern_periodic(kind: str) -> Callable[[np.random.Generator, _Texture, int, int], np.ndarray]:
    def pattern(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
        a, b = _along(rng, tex, n, size)
        f = _uniform(rng, tex.freq, n)[:, None, None]
        phase = rng.uniform(0, _TAU, (2, n, 1, 1)).astype(np.float32)
        if kind == "waves":
            return 0.5 + 0.5 * np.sin(_TAU * f * a + phase[0] + 1.2 * np.sin(_TAU * 1.5 * b + phase[1]))
        if kind == "stripes":
            return (np.sin(_TAU * f * a + phase[0]) > 0.3).astype(np.float32)
        if kind == "checker":
            return (np.mod(np.floor(f * a + phase[0]) + np.floor(f * b + phase[1]), 2) > 0).astype(np.float32)
        if kind == "dots":
            grid = np.cos(_TAU * f * a + phase[0]) * np.cos(_TAU * f * b + phase[1])
            return (grid > 0.5).astype(np.float32)
        if kind == "plaid":
            lines = np.maximum(np.cos(_TAU * f * a + phase[0]), np.cos(_TAU * f * b + phase[1]))
            return (lines > 0.8).astype(np.float32)
        if kind == "zigzag":
            tri = np.abs(np.mod(2 * f * b + phase[1], 2.0) - 1.0)
            return (np.sin(_TAU * f * (a + 0.25 * tri / f) + phase[0]) > 0).astype(np.float32)
        if kind == "rings":
            x, y = _coords(size)
            cx, cy = (rng.uniform(0.2, 0.8, (2, n, 1, 1))).astype(np.float32)
            return (np.sin(_TAU * f * np.hypot(x - cx, y - cy) + phase[0]) > 0).astype(np.float32)
        raise AssertionError(kind)

    return pattern


def _pattern_blotch(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
    return _smooth_noise(rng, n, int(tex.freq[0]), size)


def _pattern_speckle(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
    return rng.random((n, size, size), dtype=np.float32)


def _pattern_gradient(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
    a, _ = _along(rng, tex, n, size)
    return np.clip(a - a.mean(axis=(1, 2), keepdims=True) + 0.5, 0, 1)


_PATTERNS: dict[str, Callable[[np.random.Generator, _Texture, int, int], np.ndarray]] = {
    "blotch": _pattern_blotch,
    "speckle": _pattern_speckle,
    "gradient": _pattern_gradient,
    **{k: _pattern_periodic(k) for k in ("waves", "stripes", "checker", "dots", "plaid", "zigzag", "rings")},
}


def _backgrounds(rng: np.random.Generator, family: np.ndarray, names: tuple[str, ...], size: int,
                 contrast: float) -> np.ndarray:
    """(n, S, S, 3) backgrounds; image i is drawn from the texture family names[family[i]]."""
    out = np.empty((len(family), size, size, 3), dtype=np.float32)
    for index, name in enumerate(names):
        rows = np.flatnonzero(family == index)
        if len(rows) == 0:
            continue
        tex = _PRESET_TEXTURES.get(name) or _SOURCE_TEXTURES[name]
        m = len(rows)
        h = tex.hue[0] + tex.hue[1] * rng.uniform(-1, 1, m)
        s, v = _uniform(rng, tex.sat, m), _uniform(rng, tex.val, m)
        first = _hsv_to_rgb(h, s, v)
        if tex.second is None:
            second = _hsv_to_rgb(h + rng.uniform(0.25, 0.75, m), s, 1.0 - 0.6 * v)
        else:
            second = _hsv_to_rgb(h + tex.second[0], s + tex.second[1], v + tex.second[2])
        if contrast > 0:
            field = _PATTERNS[tex.pattern](rng, tex, m, size)
        else:
            field = np.zeros((m, size, size), np.float32)
        step = (second - first)[:, None, None, :]
        out[rows] = first[:, None, None, :] + (contrast * field)[..., None] * step
    return out


# ------------------------------------------------------------------------------------------ shapes


def _frame(size: int, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
           angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object coordinates (u, v), each (n, S, S): centred, rotated by angle, in units of radius; v down."""
    x, y = _coords(size)
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    return (dx * c + dy * s) / r, (-dx * s + dy * c) / r


def _ellipse(u: np.ndarray, v: np.ndarray, cx: Any, cy: Any, a: Any, b: Any) -> np.ndarray:
    return ((u - _col(cx)) / _col(a)) ** 2 + ((v - _col(cy)) / _col(b)) ** 2 <= 1.0


def _capsule(u: np.ndarray, v: np.ndarray, a: tuple[Any, Any], b: tuple[Any, Any], width: Any) -> np.ndarray:
    """Points within ``width`` of the segment a-b (a thick line with round ends)."""
    ax, ay, bx, by = (_col(t) for t in (*a, *b))
    ex, ey = bx - ax, by - ay
    t = np.clip(((u - ax) * ex + (v - ay) * ey) / np.maximum(ex * ex + ey * ey, 1e-9), 0.0, 1.0)
    return (u - ax - t * ex) ** 2 + (v - ay - t * ey) ** 2 <= _col(width) ** 2


def _box(u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _col(value: Any) -> Any:
    """Per-image arrays (n,) broadcast against (n, S, S); scalars pass through."""
    return value[:, None, None] if isinstance(value, np.ndarray) else value


def _regular_polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    wedge = _TAU / sides
    theta = np.mod(np.arctan2(v, u), wedge) - wedge / 2
    return np.hypot(u, v) * np.cos(theta) <= np.cos(wedge / 2)


# The source task's ten shape kinds (implicit shapes with corners or holes), in unit-radius coordinates.
_SOURCE_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "triangle": lambda u, v: _regular_polygon(u, v, 3),
    "square": lambda u, v: _box(u, v, -0.72, 0.72, -0.72, 0.72),
    "bar": lambda u, v: _box(u, v, -1.0, 1.0, -0.3, 0.3),
    "plus": lambda u, v: _box(u, v, -0.95, 0.95, -0.3, 0.3) | _box(u, v, -0.3, 0.3, -0.95, 0.95),
    "ring": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u, v) >= 0.55),
    "crescent": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u - 0.45, v) > 0.8),
    "l_shape": lambda u, v: _box(u, v, -0.8, -0.25, -0.9, 0.9) | _box(u, v, -0.8, 0.8, 0.35, 0.9),
    "t_shape": lambda u, v: _box(u, v, -0.9, 0.9, -0.9, -0.35) | _box(u, v, -0.28, 0.28, -0.9, 0.9),
    "arrow": lambda u, v: (_box(u, v, -0.95, 0.1, -0.22, 0.22)
                           | ((u >= 0.1) & (np.abs(v) <= 0.9 * (0.95 - u)))),
    "semicircle": lambda u, v: (np.hypot(u, v - 0.45) <= 1.1) & (v <= 0.45),
}
SOURCE_SHAPES = tuple(_SOURCE_SHAPES)

# Smooth radial blobs of the multi-class presets: r(theta) = 1 + sum_k a_k cos(k theta + p_k),
# given as {k: (a_k, p_k)}.
_BLOBS: dict[str, dict[int, tuple[float, float]]] = {
    "oval": {2: (0.30, 0.0)},
    "trefoil": {3: (0.30, 0.0)},
    "quatrefoil": {4: (0.25, 0.0)},
    "star": {5: (0.32, 0.0)},
    "egg": {1: (0.25, 0.0), 2: (0.12, 0.0)},
    "gear": {8: (0.15, 0.0)},
    "heart": {1: (0.28, 0.0), 2: (0.15, np.pi), 3: (0.08, 0.0)},
    "peanut": {2: (0.45, 0.0), 4: (0.10, np.pi)},
    "shell": {1: (0.25, 0.0), 4: (0.15, 0.0)},
}
_HARMONICS = 8  # highest harmonic a blob outline uses
_MAX_WOBBLE = 0.7  # cap on sum |a_k| so the outline's inner radius stays >= 0.3 radius


def _blob_mask(u: np.ndarray, v: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Radial blob: rho <= 1 + Re(sum_k c_k e^{i k theta}); coeffs (n, _HARMONICS) complex, index k - 1."""
    theta = np.arctan2(v, u)
    radius = np.ones_like(u)
    for k in range(1, coeffs.shape[1] + 1):
        c = coeffs[:, k - 1]
        if np.any(c != 0):
            amplitude, phase = np.abs(c).astype(np.float32), np.angle(c).astype(np.float32)
            radius += _col(amplitude) * np.cos(k * theta + _col(phase))
    return np.hypot(u, v) <= radius


def _blob_coeffs(rng: np.random.Generator, kinds: np.ndarray, names: tuple[str, ...],
                 d: Difficulty) -> np.ndarray:
    """Outline harmonics: the class's signature scaled by distinctness plus random low-order wobble."""
    n = len(kinds)
    coeffs = np.zeros((n, _HARMONICS), dtype=np.complex64)
    for index, name in enumerate(names):
        for k, (amp, phase) in _BLOBS[name].items():
            coeffs[kinds == index, k - 1] += d.distinctness * amp * np.exp(1j * phase)
    wobble = d.shape_jitter * rng.standard_normal((n, 4)) * np.exp(1j * rng.uniform(0, _TAU, (n, 4)))
    coeffs[:, 1:5] += wobble.astype(np.complex64)
    return _cap_wobble(coeffs)


def _cap_wobble(coeffs: np.ndarray) -> np.ndarray:
    total = np.abs(coeffs).sum(axis=1, keepdims=True)
    return coeffs * np.minimum(1.0, _MAX_WOBBLE / np.maximum(total, 1e-9))


def _placement(rng: np.random.Generator, n: int, radius: np.ndarray, extent: float,
               centre: tuple[float, float] = (0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """Object centres that keep an object reaching ``extent * radius`` from its centre inside the image."""
    room = np.maximum(0.0, 0.5 - extent * radius)
    cx = centre[0] + room * rng.uniform(-1, 1, n)
    cy = centre[1] + room * rng.uniform(-1, 1, n)
    return cx.astype(np.float32), cy.astype(np.float32)


def _angles(rng: np.random.Generator, n: int, d: Difficulty) -> np.ndarray:
    return np.deg2rad(d.rotation * rng.uniform(-1, 1, n)).astype(np.float32)


def _paint(canvas: np.ndarray, region: np.ndarray, colour: np.ndarray) -> None:
    """Paint per-image colours (n, 3) (or per-pixel (n, S, S, 3)) onto canvas where region is True."""
    fill = colour if colour.ndim == 4 else np.broadcast_to(colour[:, None, None, :], canvas.shape)
    np.copyto(canvas, fill, where=region[..., None])


# ----------------------------------------------------------------------------------------- presets

# (labels, spurious, rng, image size, knobs) -> (float canvas (n, S, S, 3) in [0, 1], core masks (n, S, S))
Render = Callable[[np.ndarray, np.ndarray, np.random.Generator, int, Difficulty],
                  tuple[np.ndarray, np.ndarray]]


# Bird outline parameters (landbird, waterbird) in body-radius units, y pointing up: a compact bird with a
# short neck and a raised tail against a flat long-bodied bird with a long neck and a low tail.
_BIRD_PARTS = {
    "body_w": (0.62, 0.9), "body_h": (0.52, 0.32),
    "head_x": (0.5, 0.8), "head_y": (0.5, 1.05), "head_r": (0.3, 0.22),
    "neck_w": (0.16, 0.09), "tail_len": (0.55, 0.3), "tail_y": (0.45, 0.0), "tail_w": (0.13, 0.1),
}


def _render_birds(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
                  d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """Waterbirds stand-in: a bird silhouette (class = body plan) on a land or water texture (spurious)."""
    n = len(labels)
    canvas = _backgrounds(rng, spurious, ("forest", "water"), size, d.texture_contrast)
    sign = np.where(labels == 1, 1.0, -1.0)  # towards the waterbird (+) or the landbird (-) body plan
    p = {}
    for key, (land, water) in _BIRD_PARTS.items():
        mid, half = (land + water) / 2, (water - land) / 2
        value = mid + d.distinctness * half * sign + d.shape_jitter * rng.standard_normal(n)
        p[key] = value.astype(np.float32)
    for key in ("body_w", "body_h", "head_r", "neck_w", "tail_w", "tail_len"):
        p[key] = np.maximum(p[key], 0.06)
    radius = _uniform(rng, d.object_size, n)
    cx, cy = _placement(rng, n, radius, 1.4)
    u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
    u = u * _col(np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32))  # face left or right
    v = -v
    body = _ellipse(u, v, 0.0, 0.0, p["body_w"], p["body_h"])
    head = _ellipse(u, v, p["head_x"], p["head_y"], p["head_r"], p["head_r"])
    neck = _capsule(u, v, (0.5 * p["head_x"], 0.5 * p["body_h"]), (p["head_x"], p["head_y"]), p["neck_w"])
    tail = _capsule(u, v, (-0.6 * p["body_w"], 0.0), (-p["body_w"] - p["tail_len"], p["tail_y"]), p["tail_w"])
    mask = body | head | neck | tail
    _paint(canvas, mask, _object_colours(rng, labels, 0.05, d))
    return canvas, mask


def _render_faces(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
                  d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """CelebA stand-in: a face whose hair (the core, and the mask) is blond or not; males wear a beard."""
    n = len(labels)
    canvas = _backgrounds(rng, np.zeros(n, dtype=np.int64), ("studio",), size, d.texture_contrast)
    scale = _uniform(rng, d.object_size, n)
    half_height = 0.26 * scale
    cx, cy = _placement(rng, n, half_height, 1.45)  # the hair reaches about 1.45 half-heights up
    u, v = _frame(size, cx, cy, half_height, _angles(rng, n, d))  # units: the face's half-height
    face_w = 0.77
    face = _ellipse(u, v, 0.0, 0.0, face_w, 1.0)
    hair_w = (face_w * (1.2 + 0.1 * rng.random(n))).astype(np.float32)
    hair_h = (1.12 + 0.08 * rng.random(n)).astype(np.float32)
    hair_length = _uniform(rng, (-0.2, 0.9), n)  # how far down the sides the hair falls
    hair = _ellipse(u, v, 0.0, -0.22, hair_w, hair_h) & ~face & (v <= _col(hair_length))
    beard_top = _uniform(rng, (0.25, 0.45), n)
    beard = face & (v >= _col(beard_top)) & _col(spurious == 1)
    eyes = _ellipse(np.abs(u), v, 0.32, -0.12, 0.12, 0.12)

    # Hair lightness: blond in [1 - w, 1], not blond in [0, w]; w = 1 - distinctness / 2 sets the overlap.
    width = 1.0 - d.distinctness / 2
    light = np.where(labels == 1, 1.0 - width * rng.random(n), width * rng.random(n))
    hair_colour = _hsv_to_rgb(0.07 + 0.06 * light + d.colour_jitter * rng.uniform(-0.5, 0.5, n),
                              0.55 + 0.1 * rng.uniform(-1, 1, n), 0.12 + 0.8 * light)
    skin = _hsv_to_rgb(rng.uniform(0.04, 0.09, n), rng.uniform(0.25, 0.55, n), rng.uniform(0.55, 0.95, n))
    beard_colour = _hsv_to_rgb(rng.uniform(0.03, 0.1, n), rng.uniform(0.2, 0.5, n), rng.uniform(0.1, 0.3, n))
    _paint(canvas, hair, hair_colour)
    _paint(canvas, face, skin)
    _paint(canvas, beard, beard_colour)
    _paint(canvas, eyes, np.full((n, 3), 0.08, dtype=np.float32))
    return canvas, hair


def _render_lesions(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
                    d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """ISIC stand-in: a smooth even lesion (benign) or an irregular mottled one (malignant) on skin;
    spurious = 1 adds a small coloured patch in a corner, never painted over the lesion."""
    n = len(labels)
    malignant = labels == 1
    canvas = _backgrounds(rng, np.zeros(n, dtype=np.int64), ("skin",), size, d.texture_contrast)
    coeffs = np.zeros((n, _HARMONICS), dtype=np.complex64)
    coeffs[:, 1] = 0.12 * np.exp(1j * rng.uniform(0, _TAU, n))  # benign and malignant: slightly oval
    irregular = 0.1 * d.distinctness * np.exp(1j * rng.uniform(0, _TAU, (n, 6)))  # harmonics 1 and 3..7
    coeffs[malignant, 0] += irregular[malignant, 0]
    coeffs[malignant, 2:7] += irregular[malignant, 1:]
    coeffs[:, 1:5] += d.shape_jitter * rng.standard_normal((n, 4)) * np.exp(1j * rng.uniform(0, _TAU, (n, 4)))
    coeffs = _cap_wobble(coeffs)
    radius = _uniform(rng, d.object_size, n)
    cx, cy = _placement(rng, n, radius, 1.0 + _MAX_WOBBLE)
    u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
    lesion = _blob_mask(u, v, coeffs)

    brown = _hsv_to_rgb(0.07 + d.colour_jitter * rng.uniform(-0.5, 0.5, n) + labels * d.core_hue_gap,
                        rng.uniform(0.45, 0.75, n),
                        rng.uniform(0.35, 0.65, n) - 0.1 * d.distinctness * labels)
    dark = _hsv_to_rgb(rng.uniform(0.55, 0.7, n), rng.uniform(0.2, 0.4, n), rng.uniform(0.12, 0.25, n))
    mottling = d.object_pattern * _smooth_noise(rng, n, 4, size) * _col(malignant.astype(np.float32))
    fill = brown[:, None, None, :] + mottling[..., None] * (dark - brown)[:, None, None, :]
    _paint(canvas, lesion, fill)

    corner = rng.integers(0, 4, n)
    inset = _uniform(rng, (0.12, 0.2), n)
    px = np.where(corner % 2 == 0, inset, 1 - inset).astype(np.float32)
    top_inset, bottom_inset = _uniform(rng, (0.12, 0.2), n), _uniform(rng, (0.12, 0.2), n)
    py = np.where(corner < 2, top_inset, 1 - bottom_inset).astype(np.float32)
    x, y = _coords(size)
    patch_r = _uniform(rng, (0.07, 0.1), n)
    patch = ((x - _col(px)) ** 2 + (y - _col(py)) ** 2 <= _col(patch_r) ** 2) & _col(spurious == 1) & ~lesion
    patch_hue = rng.choice(np.array([0.15, 0.33, 0.6, 0.83]), n) + rng.uniform(-0.03, 0.03, n)
    _paint(canvas, patch, _hsv_to_rgb(patch_hue, rng.uniform(0.7, 1.0, n), rng.uniform(0.7, 1.0, n)))
    return canvas, lesion


def _blobs_on_contexts(shapes: tuple[str, ...], contexts: tuple[str, ...]) -> Render:
    """NICO / ImageNet-9 stand-in renderer: class = blob kind, spurious = background family."""

    def render(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
               d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
        n = len(labels)
        canvas = _backgrounds(rng, spurious, contexts, size, d.texture_contrast)
        coeffs = _blob_coeffs(rng, labels, shapes, d)
        radius = _uniform(rng, d.object_size, n)
        cx, cy = _placement(rng, n, radius, 1.0 + _MAX_WOBBLE)
        u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
        mask = _blob_mask(u, v, coeffs)
        _paint(canvas, mask, _object_colours(rng, labels, 0.0, d))
        return canvas, mask

    return render


def _render_source(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
                   d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """Source task: one of the ten source shapes on a source texture; no correlation between the two."""
    n = len(labels)
    canvas = _backgrounds(rng, rng.integers(0, len(SOURCE_TEXTURES), n), SOURCE_TEXTURES, size,
                          d.texture_contrast)
    radius = _uniform(rng, d.object_size, n)
    cx, cy = _placement(rng, n, radius, 1.0)
    u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
    mask = np.zeros((n, size, size), dtype=bool)
    for index, shape in enumerate(SOURCE_SHAPES):
        rows = np.flatnonzero(labels == index)
        if len(rows):
            mask[rows] = _SOURCE_SHAPES[shape](u[rows], v[rows])
    _paint(canvas, mask, _object_colours(rng, labels, 0.0, d, sat=(0.4, 1.0), val=(0.4, 1.0)))
    return canvas, mask


@dataclass(frozen=True)
class _Preset:
    description: str
    class_names: tuple[str, ...]
    spurious_names: tuple[str, ...]
    groups: tuple[tuple[str, int, tuple[int, ...]], ...]  # (name, label, spurious values drawn uniformly)
    proportions: Mapping[str, tuple[float, ...]]  # split -> share of each group
    paper_sizes: Mapping[str, int]  # split -> size at the "paper" scale (the real dataset's)
    render: Render
    shapes: tuple[str, ...]  # object kinds drawn (disjoint from SOURCE_SHAPES)
    textures: tuple[str, ...]  # background families drawn (disjoint from SOURCE_TEXTURES)
    difficulty: Difficulty


def _shares(counts: tuple[float, ...]) -> tuple[float, ...]:
    total = float(sum(counts))
    return tuple(c / total for c in counts)


def _crossed_groups(class_names: tuple[str, ...], spurious_names: tuple[str, ...]):
    """Groups label x spurious, id = label * n_spurious + spurious, named 'class/spurious'."""
    return tuple((f"{c}/{s}", y, (a,))
                 for y, c in enumerate(class_names) for a, s in enumerate(spurious_names))


_NICO_CLASSES = ("trefoil", "quatrefoil", "star", "egg", "gear", "peanut")
_NICO_CONTEXTS = ("autumn", "dim", "grass", "sky", "rock", "water")
_NICO_DOMINANCE = (0.70, 0.12, 0.08, 0.05, 0.03, 0.02)  # class c's share in context c, c+1, ... (mod 6)
_IN9_SHAPES = ("oval", "trefoil", "quatrefoil", "star", "egg", "gear", "heart", "peanut", "shell")
_IN9_BACKGROUNDS = ("forest", "water", "sand", "snow", "rock", "grass", "sky", "autumn", "dim")
# Class c's share of train/val/test images on its own background: classes lean on their backgrounds to
# different degrees, as the real ImageNet-9 classes do (mean 0.85; calibration).
_IN9_MATCH = (0.9, 0.8, 0.88, 0.82, 0.85, 0.9, 0.8, 0.88, 0.82)


def _nico_train_shares() -> tuple[float, ...]:
    shares = np.zeros(36)
    for c in range(6):
        for offset, share in enumerate(_NICO_DOMINANCE):
            shares[c * 6 + (c + offset) % 6] = share / 6
    return tuple(shares)


def _in9_groups():
    return tuple(
        (f"class{c}/{kind}", c, (c,) if kind == "match" else tuple(b for b in range(9) if b != c))
        for c in range(9) for kind in ("match", "mismatch")
    )


_PRESETS: dict[str, _Preset] = {
    "waterbirds-synth": _Preset(
        description="Waterbirds stand-in: landbird vs waterbird silhouettes on land (forest) or water "
                    "backgrounds, train groups 3498/184/56/1057 of 4795",
        class_names=("landbird", "waterbird"),
        spurious_names=("land", "water"),
        groups=_crossed_groups(("landbird", "waterbird"), ("land", "water")),
        proportions={"train": _shares((3498, 184, 56, 1057)), "val": _shares((467, 466, 133, 133)),
                     "test": _shares((2255, 2255, 642, 642))},
        paper_sizes={"train": 4795, "val": 1199, "test": 5794},
        render=_render_birds,
        shapes=("landbird", "waterbird"),
        textures=("forest", "water"),
        # Core: the body plan, and a hue that only leans (landbirds 0.05 +- 0.3, waterbirds -0.2 +- 0.3:
        # the ranges overlap). Small birds anywhere in the frame, so no fixed map finds them (calibration).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=1.0, shape_jitter=0.06, rotation=15.0,
                              colour_jitter=0.6, core_hue_gap=0.75, texture_contrast=0.5, noise=0.04,
                              object_pattern=0.0),
    ),
    "celeba-synth": _Preset(
        description="CelebA stand-in: faces with blond or non-blond hair (core, masked); the spurious "
                    "'male' wears a beard; blond males ~1% of train",
        class_names=("not_blond", "blond"),
        spurious_names=("female", "male"),
        groups=_crossed_groups(("not_blond", "blond"), ("female", "male")),
        proportions={"train": _shares((71629, 66874, 22880, 1387)), "val": _shares((8535, 8276, 2874, 182)),
                     "test": _shares((9767, 7535, 2480, 180))},
        paper_sizes={"train": 162770, "val": 19867, "test": 19962},
        render=_render_faces,
        shapes=("face_hair",),
        textures=("studio",),
        difficulty=Difficulty(object_size=(0.6, 0.95), distinctness=1.0, shape_jitter=0.0, rotation=8.0,
                              colour_jitter=0.02, core_hue_gap=0.0, texture_contrast=0.4, noise=0.04,
                              object_pattern=0.0),
    ),
    "isic-synth": _Preset(
        description="ISIC stand-in: smooth even (benign) vs irregular mottled (malignant) lesions on skin; "
                    "a coloured patch on 47 % of the benign images, never on malignant ones; groups "
                    "9210/10525/2557 as in ISIC 2019",
        class_names=("benign", "malignant"),
        spurious_names=("no_patch", "patch"),
        groups=(("benign/patch", 0, (1,)), ("benign/no_patch", 0, (0,)), ("malignant/no_patch", 1, (0,))),
        # The real composition: in the ISIC 2019 benign/malignant images with patch annotations (a published
        # factsheet of that setup), 9210 of 19735 benign images carry a patch and none of 2557 malignant
        # ones; a random split keeps these shares in every split.
        proportions={split: _shares((9210, 10525, 2557)) for split in ("train", "val", "test")},
        paper_sizes={"train": 17000, "val": 2000, "test": 4000},
        render=_render_lesions,
        shapes=("smooth_lesion", "irregular_lesion", "patch_disc"),
        textures=("skin",),
        # ImageNet features tell mottled from smooth at a glance: the malignant lesions are only mildly
        # irregular and faintly mottled, so the patch is the easier cue (calibration).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=0.5, shape_jitter=0.05, rotation=180.0,
                              colour_jitter=0.03, core_hue_gap=0.0, texture_contrast=0.4, noise=0.03,
                              object_pattern=0.3),
    ),
    "nico-synth": _Preset(
        description="NICO stand-in: 6 blob kinds x 6 contexts; each class mostly in its own context in "
                    "train (long tail over the rest), val/test balanced over contexts",
        class_names=_NICO_CLASSES,
        spurious_names=_NICO_CONTEXTS,
        groups=_crossed_groups(_NICO_CLASSES, _NICO_CONTEXTS),
        proportions={"train": _nico_train_shares(), "val": (1 / 36,) * 36, "test": (1 / 36,) * 36},
        paper_sizes={"train": 2220, "val": 740, "test": 1480},
        render=_blobs_on_contexts(_NICO_CLASSES, _NICO_CONTEXTS),
        shapes=_NICO_CLASSES,
        textures=_NICO_CONTEXTS,
        # Class c's objects: blob kind c and hue c / 6 +- 0.075 (neighbouring classes' hues do not overlap).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=0.8, shape_jitter=0.04, rotation=180.0,
                              colour_jitter=0.15, core_hue_gap=1 / 6, texture_contrast=0.5, noise=0.04,
                              object_pattern=0.0),
    ),
    "imagenet9-synth": _Preset(
        description="ImageNet-9 stand-in: 9 blob kinds, background i mostly with class i; extra split "
                    "test_mixed_rand puts every object on another class's background",
        class_names=tuple(f"class{c}" for c in range(9)),
        spurious_names=_IN9_BACKGROUNDS,
        groups=_in9_groups(),
        proportions={**{split: tuple(share for m in _IN9_MATCH for share in (m / 9, (1 - m) / 9))
                        for split in ("train", "val", "test")},
                     "test_mixed_rand": (0.0, 1 / 9) * 9},
        paper_sizes={"train": 45405, "val": 4185, "test": 4050, "test_mixed_rand": 4050},
        render=_blobs_on_contexts(_IN9_SHAPES, _IN9_BACKGROUNDS),
        shapes=_IN9_SHAPES,
        textures=_IN9_BACKGROUNDS,
        # Class c's objects: blob kind c and hue c / 9 +- 0.025 (the classes' hues are well apart).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=1.0, shape_jitter=0.04, rotation=180.0,
                              colour_jitter=0.05, core_hue_gap=1 / 9, texture_contrast=0.3, noise=0.04,
                              object_pattern=0.0),
    ),
}
PRESETS: dict[str, str] = {name: preset.description for name, preset in _PRESETS.items()}
# name -> (object kinds, background families) each preset draws; the source task uses none of them.
PRESET_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (preset.shapes, preset.textures) for name, preset in _PRESETS.items()
}
# Moderate rotation and texture contrast: with full rotation on busy textures a CNN from scratch is still
# near chance after the few epochs pretraining can afford on a CPU.
_SOURCE_DIFFICULTY = Difficulty(object_size=(0.26, 0.38), distinctness=1.0, shape_jitter=0.0, rotation=30.0,
                                colour_jitter=1.0, core_hue_gap=0.0, texture_contrast=0.35, noise=0.03,
                                object_pattern=0.0)


# -------------------------------------------------------------------------------------- generation


def preset_difficulty(name: str) -> Difficulty:
    """The frozen difficulty knobs of preset ``name``."""
    return _preset(name).difficulty


def _preset(name: str) -> _Preset:
    if name not in _PRESETS:
        raise HarnessError(f"unknown synthetic preset {name!r}; choose from {', '.join(_PRESETS)}")
    return _PRESETS[name]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HarnessError(f"seed must be a non-negative integer, got {seed!r}")


def knob_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's data options for preset ``name`` (``--data-option knob=value``, a sweep's data levels) as
    difficulty overrides in one canonical form: floats, and ``object_size`` as [low, high] (given as
    "low,high" or a pair), so the command line and a sweep file name the same run. A knob set to the
    preset's own value is left out: that run is the preset's. Checked against the knobs and their ranges
    here, before any work."""
    preset = _preset(name)
    canonical = {key: _knob_value(name, key, value) for key, value in (options or {}).items()}
    try:
        _with_overrides(preset.difficulty, canonical)
    except HarnessError as exc:
        raise HarnessError(f"--data-option for {name}: {exc}") from None
    own = asdict(preset.difficulty)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in sorted(canonical.items())
            if value != own[key]}


def _knob_value(name: str, key: str, value: Any) -> Any:
    """One data option's value as a float (object_size: a pair of floats); unknown knobs are refused."""
    known = [f.name for f in fields(Difficulty)]
    if key not in known:
        raise HarnessError(f"--data-option {key}: {name} is generated and takes only its difficulty knobs "
                           f"({', '.join(known)})")
    if isinstance(value, str):
        parts = value.split(",")
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        numbers = [float(p) for p in parts if not isinstance(p, bool)]
    except (TypeError, ValueError):
        numbers = []
    wanted = 2 if key == "object_size" else 1
    if len(numbers) != wanted or len(parts) != wanted or not all(np.isfinite(numbers)):
        form = "two numbers low,high" if wanted == 2 else "a number"
        raise HarnessError(f"--data-option {key}={value!r}: must be {form}")
    return tuple(numbers) if wanted == 2 else numbers[0]


def _with_overrides(base: Difficulty, overrides: Mapping[str, Any] | None) -> Difficulty:
    """``base`` with some knobs replaced; unknown knobs and negative values are errors."""
    if not overrides:
        return base
    known = {f.name for f in fields(Difficulty)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise HarnessError(f"unknown difficulty knob(s) {unknown}; known: {', '.join(sorted(known))}")
    values = dict(overrides)
    if "object_size" in values:
        size = tuple(float(x) for x in values["object_size"])
        if len(size) != 2 or not 0 < size[0] <= size[1]:
            raise HarnessError(
                f"object_size must be (low, high) with 0 < low <= high, got {values['object_size']!r}")
        values["object_size"] = size
    for key, value in values.items():
        if key != "object_size" and (not isinstance(value, (int, float)) or value < 0):
            raise HarnessError(f"difficulty knob {key!r} must be a non-negative number, got {value!r}")
    return replace(base, **values)


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


def _make_split(preset: _Preset, counts: np.ndarray, size: int, d: Difficulty,
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
    preset = _preset(name)
    definition = json.dumps({**{f.name: getattr(preset, f.name) for f in fields(preset)
                                if f.name not in ("description", "render", "difficulty")},
                             "render": preset.render.__qualname__,
                             "difficulty": asdict(preset.difficulty)}, sort_keys=True, default=list)
    return f"{GENERATOR_VERSION}.{hashlib.sha256(definition.encode()).hexdigest()[:8]}"


def group_names(name: str) -> tuple[str, ...]:
    """Preset ``name``'s group names in group-id order."""
    return tuple(group for group, _, _ in _preset(name).groups)


def minority_groups(name: str, scale: str) -> tuple[str, ...]:
    """The groups of preset ``name`` that its train split holds less often than an even split of their class
    among the class's groups would: the counter-examples to the spurious correlation (waterbirds-synth:
    landbird/water and waterbird/land; nico-synth: every class outside its dominant context)."""
    train = split_sizes(name, scale)["train"]
    labels = np.array([label for _, label, _ in _preset(name).groups])
    return tuple(group for g, group in enumerate(group_names(name))
                 if train[g] * (labels == labels[g]).sum() < train[labels == labels[g]].sum())


def split_sizes(name: str, scale: str) -> dict[str, np.ndarray]:
    """Per split, the number of instances of each group make_benchmark(name, scale, ...) draws."""
    preset = _preset(name)
    check_scale(scale)
    sizes = {}
    for split, shares in preset.proportions.items():
        if scale == "paper":
            total = preset.paper_sizes[split]
        else:
            small = _SMALL_SPLIT_SIZES[scale]
            total = small.get(split, small["test"])
        sizes[split] = _group_counts(shares, total, 1 if split == "train" else EVAL_GROUP_FLOOR[scale])
    return sizes


def make_benchmark(name: str, scale: str, seed: int, difficulty: Mapping[str, Any] | None = None,
                   image_size: int | None = None) -> Benchmark:
    """Draw preset ``name`` at ``scale``; the same (name, scale, seed, difficulty, size) gives the same bytes.

    ``difficulty`` optionally overrides some of the preset's knobs (calibration and tests); ``image_size``
    renders at another size than the scale's (``IMAGE_SIZE``), e.g. 32 px for the stand-in ResNet grids.
    """
    preset = _preset(name)
    _check_seed(seed)
    counts = split_sizes(name, scale)
    knobs = _with_overrides(preset.difficulty, difficulty)
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
    images, _ = _render_chunked(_render_source, labels, np.zeros(n, dtype=np.int64), image_size,
                                _SOURCE_DIFFICULTY, render_seq)
    return images, torch.from_numpy(labels)
