"""Backgrounds and colours of the synthetic images: texture families (a colour range and a pattern drawn in a
second colour), the preset's and the source task's, and vectorised HSV colours."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TAU = 2 * np.pi


# ----------------------------------------------------------------------------------------- colours


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; inputs of one shape (hue wraps), output (..., 3) float32 in [0, 1]."""
    h = np.mod(h, 1.0)
    s = np.clip(s, 0.0, 1.0)
    v = np.clip(v, 0.0, 1.0)
    k = np.mod(np.stack([5.0 + 6.0 * h, 3.0 + 6.0 * h, 1.0 + 6.0 * h], axis=-1), 6.0)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v[..., None] - v[..., None] * s[..., None] * ramp).astype(np.float32)


def uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n).astype(np.float32)


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


def smooth_noise(rng: np.random.Generator, n: int, cells: int, size: int) -> np.ndarray:
    """(n, size, size) smooth random field in [0, 1]: a cells x cells random grid, bilinearly upsampled."""
    w = _interp_matrix(cells, size)
    grid = rng.random((n, cells, cells), dtype=np.float32)
    return np.einsum("ya,nab,xb->nyx", w, grid, w, optimize=True)


def coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]: x (1, 1, S) and y (1, S, 1), y pointing down."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, None, :], c[None, :, None]


def _along(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (n, S, S) along and across a random direction of the texture's range."""
    x, y = coords(size)
    angle = np.deg2rad(tex.direction[0] + tex.direction[1] * rng.uniform(-1, 1, n)).astype(np.float32)
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return x * c + y * s, -x * s + y * c


def _pattern_periodic(kind: str) -> Callable[[np.random.Generator, _Texture, int, int], np.ndarray]:
    def pattern(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
        a, b = _along(rng, tex, n, size)
        f = uniform(rng, tex.freq, n)[:, None, None]
        phase = rng.uniform(0, TAU, (2, n, 1, 1)).astype(np.float32)
        if kind == "waves":
            return 0.5 + 0.5 * np.sin(TAU * f * a + phase[0] + 1.2 * np.sin(TAU * 1.5 * b + phase[1]))
        if kind == "stripes":
            return (np.sin(TAU * f * a + phase[0]) > 0.3).astype(np.float32)
        if kind == "checker":
            return (np.mod(np.floor(f * a + phase[0]) + np.floor(f * b + phase[1]), 2) > 0).astype(np.float32)
        if kind == "dots":
            grid = np.cos(TAU * f * a + phase[0]) * np.cos(TAU * f * b + phase[1])
            return (grid > 0.5).astype(np.float32)
        if kind == "plaid":
            lines = np.maximum(np.cos(TAU * f * a + phase[0]), np.cos(TAU * f * b + phase[1]))
            return (lines > 0.8).astype(np.float32)
        if kind == "zigzag":
            tri = np.abs(np.mod(2 * f * b + phase[1], 2.0) - 1.0)
            return (np.sin(TAU * f * (a + 0.25 * tri / f) + phase[0]) > 0).astype(np.float32)
        if kind == "rings":
            x, y = coords(size)
            cx, cy = (rng.uniform(0.2, 0.8, (2, n, 1, 1))).astype(np.float32)
            return (np.sin(TAU * f * np.hypot(x - cx, y - cy) + phase[0]) > 0).astype(np.float32)
        raise AssertionError(kind)

    return pattern


def _pattern_blotch(rng: np.random.Generator, tex: _Texture, n: int, size: int) -> np.ndarray:
    return smooth_noise(rng, n, int(tex.freq[0]), size)


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


def backgrounds(rng: np.random.Generator, family: np.ndarray, names: tuple[str, ...], size: int,
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
        s, v = uniform(rng, tex.sat, m), uniform(rng, tex.val, m)
        first = hsv_to_rgb(h, s, v)
        if tex.second is None:
            second = hsv_to_rgb(h + rng.uniform(0.25, 0.75, m), s, 1.0 - 0.6 * v)
        else:
            second = hsv_to_rgb(h + tex.second[0], s + tex.second[1], v + tex.second[2])
        if contrast > 0:
            field = _PATTERNS[tex.pattern](rng, tex, m, size)
        else:
            field = np.zeros((m, size, size), np.float32)
        step = (second - first)[:, None, None, :]
        out[rows] = first[:, None, None, :] + (contrast * field)[..., None] * step
    return out

