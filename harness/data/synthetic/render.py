"""Drawing the synthetic images: the difficulty knobs, object shapes, and one renderer per preset family
(birds, faces, lesions, blobs on contexts) plus the source task's.

The preset renderers keep their names: :func:`harness.data.synthetic.generate.data_version` hashes a preset's
renderer by its qualified name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.synthetic.textures import SOURCE_TEXTURES, TAU, backgrounds, coords, hsv_to_rgb, smooth_noise, uniform


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


def _object_colours(rng: np.random.Generator, labels: np.ndarray, base_hue: float, d: Difficulty,
                    sat: tuple[float, float] = (0.5, 0.9),
                    val: tuple[float, float] = (0.5, 0.95)) -> np.ndarray:
    """(n, 3) object colours: hue base + class * core_hue_gap, spread by colour_jitter."""
    n = len(labels)
    hue = base_hue + labels * d.core_hue_gap + d.colour_jitter * rng.uniform(-0.5, 0.5, n)
    return hsv_to_rgb(hue, uniform(rng, sat, n), uniform(rng, val, n))


# ------------------------------------------------------------------------------------------ shapes


def _frame(size: int, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
           angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object coordinates (u, v), each (n, S, S): centred, rotated by angle, in units of radius; v down."""
    x, y = coords(size)
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
    wedge = TAU / sides
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
    wobble = d.shape_jitter * rng.standard_normal((n, 4)) * np.exp(1j * rng.uniform(0, TAU, (n, 4)))
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


# --------------------------------------------------------------------------------------- renderers

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
    canvas = backgrounds(rng, spurious, ("forest", "water"), size, d.texture_contrast)
    sign = np.where(labels == 1, 1.0, -1.0)  # towards the waterbird (+) or the landbird (-) body plan
    p = {}
    for key, (land, water) in _BIRD_PARTS.items():
        mid, half = (land + water) / 2, (water - land) / 2
        value = mid + d.distinctness * half * sign + d.shape_jitter * rng.standard_normal(n)
        p[key] = value.astype(np.float32)
    for key in ("body_w", "body_h", "head_r", "neck_w", "tail_w", "tail_len"):
        p[key] = np.maximum(p[key], 0.06)
    radius = uniform(rng, d.object_size, n)
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
    canvas = backgrounds(rng, np.zeros(n, dtype=np.int64), ("studio",), size, d.texture_contrast)
    scale = uniform(rng, d.object_size, n)
    half_height = 0.26 * scale
    cx, cy = _placement(rng, n, half_height, 1.45)  # the hair reaches about 1.45 half-heights up
    u, v = _frame(size, cx, cy, half_height, _angles(rng, n, d))  # units: the face's half-height
    face_w = 0.77
    face = _ellipse(u, v, 0.0, 0.0, face_w, 1.0)
    hair_w = (face_w * (1.2 + 0.1 * rng.random(n))).astype(np.float32)
    hair_h = (1.12 + 0.08 * rng.random(n)).astype(np.float32)
    hair_length = uniform(rng, (-0.2, 0.9), n)  # how far down the sides the hair falls
    hair = _ellipse(u, v, 0.0, -0.22, hair_w, hair_h) & ~face & (v <= _col(hair_length))
    beard_top = uniform(rng, (0.25, 0.45), n)
    beard = face & (v >= _col(beard_top)) & _col(spurious == 1)
    eyes = _ellipse(np.abs(u), v, 0.32, -0.12, 0.12, 0.12)

    # Hair lightness: blond in [1 - w, 1], not blond in [0, w]; w = 1 - distinctness / 2 sets the overlap.
    width = 1.0 - d.distinctness / 2
    light = np.where(labels == 1, 1.0 - width * rng.random(n), width * rng.random(n))
    hair_colour = hsv_to_rgb(0.07 + 0.06 * light + d.colour_jitter * rng.uniform(-0.5, 0.5, n),
                              0.55 + 0.1 * rng.uniform(-1, 1, n), 0.12 + 0.8 * light)
    skin = hsv_to_rgb(rng.uniform(0.04, 0.09, n), rng.uniform(0.25, 0.55, n), rng.uniform(0.55, 0.95, n))
    beard_colour = hsv_to_rgb(rng.uniform(0.03, 0.1, n), rng.uniform(0.2, 0.5, n), rng.uniform(0.1, 0.3, n))
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
    canvas = backgrounds(rng, np.zeros(n, dtype=np.int64), ("skin",), size, d.texture_contrast)
    coeffs = np.zeros((n, _HARMONICS), dtype=np.complex64)
    coeffs[:, 1] = 0.12 * np.exp(1j * rng.uniform(0, TAU, n))  # benign and malignant: slightly oval
    irregular = 0.1 * d.distinctness * np.exp(1j * rng.uniform(0, TAU, (n, 6)))  # harmonics 1 and 3..7
    coeffs[malignant, 0] += irregular[malignant, 0]
    coeffs[malignant, 2:7] += irregular[malignant, 1:]
    coeffs[:, 1:5] += d.shape_jitter * rng.standard_normal((n, 4)) * np.exp(1j * rng.uniform(0, TAU, (n, 4)))
    coeffs = _cap_wobble(coeffs)
    radius = uniform(rng, d.object_size, n)
    cx, cy = _placement(rng, n, radius, 1.0 + _MAX_WOBBLE)
    u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
    lesion = _blob_mask(u, v, coeffs)

    brown = hsv_to_rgb(0.07 + d.colour_jitter * rng.uniform(-0.5, 0.5, n) + labels * d.core_hue_gap,
                        rng.uniform(0.45, 0.75, n),
                        rng.uniform(0.35, 0.65, n) - 0.1 * d.distinctness * labels)
    dark = hsv_to_rgb(rng.uniform(0.55, 0.7, n), rng.uniform(0.2, 0.4, n), rng.uniform(0.12, 0.25, n))
    mottling = d.object_pattern * smooth_noise(rng, n, 4, size) * _col(malignant.astype(np.float32))
    fill = brown[:, None, None, :] + mottling[..., None] * (dark - brown)[:, None, None, :]
    _paint(canvas, lesion, fill)

    corner = rng.integers(0, 4, n)
    inset = uniform(rng, (0.12, 0.2), n)
    px = np.where(corner % 2 == 0, inset, 1 - inset).astype(np.float32)
    top_inset, bottom_inset = uniform(rng, (0.12, 0.2), n), uniform(rng, (0.12, 0.2), n)
    py = np.where(corner < 2, top_inset, 1 - bottom_inset).astype(np.float32)
    x, y = coords(size)
    patch_r = uniform(rng, (0.07, 0.1), n)
    patch = ((x - _col(px)) ** 2 + (y - _col(py)) ** 2 <= _col(patch_r) ** 2) & _col(spurious == 1) & ~lesion
    patch_hue = rng.choice(np.array([0.15, 0.33, 0.6, 0.83]), n) + rng.uniform(-0.03, 0.03, n)
    _paint(canvas, patch, hsv_to_rgb(patch_hue, rng.uniform(0.7, 1.0, n), rng.uniform(0.7, 1.0, n)))
    return canvas, lesion


def _blobs_on_contexts(shapes: tuple[str, ...], contexts: tuple[str, ...]) -> Render:
    """NICO / ImageNet-9 stand-in renderer: class = blob kind, spurious = background family."""

    def render(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
               d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
        n = len(labels)
        canvas = backgrounds(rng, spurious, contexts, size, d.texture_contrast)
        coeffs = _blob_coeffs(rng, labels, shapes, d)
        radius = uniform(rng, d.object_size, n)
        cx, cy = _placement(rng, n, radius, 1.0 + _MAX_WOBBLE)
        u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
        mask = _blob_mask(u, v, coeffs)
        _paint(canvas, mask, _object_colours(rng, labels, 0.0, d))
        return canvas, mask

    return render


def render_source(labels: np.ndarray, spurious: np.ndarray, rng: np.random.Generator, size: int,
                   d: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """Source task: one of the ten source shapes on a source texture; no correlation between the two."""
    n = len(labels)
    canvas = backgrounds(rng, rng.integers(0, len(SOURCE_TEXTURES), n), SOURCE_TEXTURES, size,
                          d.texture_contrast)
    radius = uniform(rng, d.object_size, n)
    cx, cy = _placement(rng, n, radius, 1.0)
    u, v = _frame(size, cx, cy, radius, _angles(rng, n, d))
    mask = np.zeros((n, size, size), dtype=bool)
    for index, shape in enumerate(SOURCE_SHAPES):
        rows = np.flatnonzero(labels == index)
        if len(rows):
            mask[rows] = _SOURCE_SHAPES[shape](u[rows], v[rows])
    _paint(canvas, mask, _object_colours(rng, labels, 0.0, d, sat=(0.4, 1.0), val=(0.4, 1.0)))
    return canvas, mask

