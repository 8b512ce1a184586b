"""Decode-once cache of resized images and masks, memory-mapped from .npy files.

Images are decoded with PIL, converted to RGB and resized to ``image_size x image_size``
(bilinear); masks are rasterised at the source image's resolution and resized with
nearest-neighbour sampling. The results are stored as uint8 (N, 3, S, S) / bool (N, S, S)
arrays in ``cache_dir``; the file name carries a hash of every source file (absolute path, so
the dataset's root, size, mtime) in row order, the mask definitions and S, so any change to the
sources rebuilds the cache and two copies of a dataset keep one cache each. Files are written
under a temporary name (harness.core.tempfiles) and moved into place with ``os.replace``, after their content
digest (harness.core.digests, ``<file>.sha256``), which every open checks: an array that is truncated,
corrupted or has no digest is reported in one line and decoded again. The folder is kept under a size cap
($SLIM_HARNESS_IMAGE_CACHE_GB, default 100) by evicting the least recently used arrays. Cached arrays are
opened copy-on-write memory-mapped and wrapped with ``torch.from_numpy``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from harness.core import digests
from harness.core.disk import writing
from harness.core.errors import HarnessError
from harness.core.tempfiles import remove_stale_temps, temp_path
from harness.data.masks import box_mask

# only_fg pixels whose brightest channel exceeds this are foreground (the margin absorbs JPEG noise)
ONLY_FG_BLACK_LEVEL = 16
DECODE_CHUNK = 256  # images decoded per batch of threads
MAX_DECODE_THREADS = 8
MASK_KINDS = ("png", "npy", "nonblack", "boxes", "empty")
CAP_ENV = "SLIM_HARNESS_IMAGE_CACHE_GB"
DEFAULT_CAP_GB = 100.0


@dataclass(frozen=True)
class MaskSource:
    """Where one image's core-object mask comes from.

    kind: "png" (grey/colour image; pixels above ``threshold`` are object), "npy" (array,
    nonzero is object), "nonblack" (an image whose non-black pixels are the object, e.g.
    ImageNet-9 only_fg), "boxes" (union of pixel boxes (xmin, ymin, xmax, ymax), x = column,
    y = row, half-open) or "empty" (no object pixels).
    """

    kind: str
    path: Path | None = None
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    threshold: int = 0
    clip_boxes: bool = False  # clip boxes to the image (else a box reaching outside is an error)

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise HarnessError(f"unknown mask kind {self.kind!r}; expected one of {', '.join(MASK_KINDS)}")
        if (self.path is None) != (self.kind in ("boxes", "empty")):
            raise HarnessError(
                f"mask kind {self.kind!r} {'needs' if self.path is None else 'takes no'} a file path"
            )

    def fingerprint(self) -> str:
        """Identity of the mask for the cache key: file stamp or box coordinates."""
        file_part = file_stamp(self.path) if self.path is not None else ""
        return f"{self.kind}|{self.threshold}|{file_part}|{self.boxes}|{self.clip_boxes}"

    def render(self, image_path: Path, width: int, height: int) -> np.ndarray:
        """Bool (height, width) mask at the resolution of the image it belongs to."""
        if self.kind == "empty":
            return np.zeros((height, width), dtype=bool)
        if self.kind == "boxes":
            mask = np.zeros((height, width), dtype=bool)
            for xmin, ymin, xmax, ymax in self.boxes:
                if self.clip_boxes:
                    xmin, ymin, xmax, ymax = max(xmin, 0), max(ymin, 0), min(xmax, width), min(ymax, height)
                if not (0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height):
                    raise HarnessError(
                        f"{image_path}: box (xmin={xmin}, ymin={ymin}, xmax={xmax}, ymax={ymax}) is empty or "
                        f"outside the {width}x{height} (w x h) image"
                    )
                mask |= box_mask((height, width), xmin, ymin, xmax, ymax)
            return mask
        assert self.path is not None
        if self.kind == "npy":
            values = self._load_npy()
        else:
            values = self._load_image()
        threshold = ONLY_FG_BLACK_LEVEL if self.kind == "nonblack" else self.threshold
        if values.shape != (height, width):
            raise HarnessError(
                f"{self.path}: mask is {values.shape[1]}x{values.shape[0]} (w x h) "
                f"but its image {image_path} is {width}x{height}"
            )
        return values > threshold

    def _load_image(self) -> np.ndarray:
        """Grey values of a mask image (a colour image counts by its brightest channel)."""
        assert self.path is not None
        with _open_image(self.path) as img:
            try:
                if self.kind == "nonblack" or img.mode not in ("1", "L", "I", "I;16", "F"):
                    return np.asarray(img.convert("RGB")).max(axis=2)
                return np.asarray(img)
            except (OSError, ValueError, SyntaxError) as exc:
                raise HarnessError(f"{self.path}: cannot decode mask image ({exc})") from exc

    def _load_npy(self) -> np.ndarray:
        assert self.path is not None
        try:
            values = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{self.path}: cannot read mask array ({exc})") from exc
        if values.ndim == 3 and values.shape[2] in (1, 3, 4):
            values = values.any(axis=2)
        if values.ndim != 2:
            raise HarnessError(f"{self.path}: mask array must be (h, w), got shape {values.shape}")
        return values.astype(bool).astype(np.uint8)


def file_stamp(path: Path) -> str:
    """'absolute path|size|mtime_ns' of a file; a missing file is reported as a HarnessError."""
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:
        raise HarnessError(f"{path}: file not found") from exc
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def cached_images(
    paths: Sequence[Path], *, image_size: int, cache_dir: Path, label: str, progress: bool = True
) -> torch.Tensor:
    """uint8 (N, 3, S, S) tensor of the images at ``paths``, decoded once and memory-mapped after."""
    stamps = [file_stamp(p) for p in paths]

    def decode(index: int) -> np.ndarray:
        path = paths[index]
        with _open_image(path) as img:
            rgb = _decode_rgb(img, path)
        return np.asarray(rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)

    return _cached_array(
        cache_dir,
        f"{label}-{image_size}px-{root_tag(paths)}",
        "images",
        [image_size, stamps],
        len(paths),
        (3, image_size, image_size),
        np.uint8,
        decode,
        progress,
    )


def cached_masks(
    image_paths: Sequence[Path],
    sources: Sequence[MaskSource],
    *,
    image_size: int,
    cache_dir: Path,
    label: str,
    progress: bool = True,
) -> torch.Tensor:
    """bool (N, S, S) tensor of the masks of ``image_paths`` (one source each), cached like images."""
    if len(image_paths) != len(sources):
        raise HarnessError(f"{len(image_paths)} images but {len(sources)} mask sources")
    key = [
        image_size,
        [f"{file_stamp(p)}#{s.fingerprint()}" for p, s in zip(image_paths, sources, strict=True)],
    ]

    def rasterise(index: int) -> np.ndarray:
        path = image_paths[index]
        with _open_image(path) as img:
            width, height = img.size
        full = sources[index].render(path, width, height)
        small = Image.fromarray(full.astype(np.uint8) * 255).resize(
            (image_size, image_size), Image.Resampling.NEAREST
        )
        return np.asarray(small) > 0

    return _cached_array(
        cache_dir,
        f"{label}-{image_size}px-{root_tag(image_paths)}",
        "masks",
        key,
        len(image_paths),
        (image_size, image_size),
        np.bool_,
        rasterise,
        progress,
    )


def root_tag(paths: Sequence[Path]) -> str:
    """Short hash of the folder holding every source file: copies of a dataset get their own entries."""
    root = os.path.commonpath([os.path.abspath(p) for p in paths]) if len(paths) else ""
    return hashlib.sha256(root.encode()).hexdigest()[:8]


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError as exc:
        raise HarnessError(f"{path}: file not found") from exc
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise HarnessError(f"{path}: cannot decode image ({exc})") from exc


def _decode_rgb(img: Image.Image, path: Path) -> Image.Image:
    try:
        return img.convert("RGB")  # forces the full decode, so truncated files fail here
    except (OSError, ValueError, SyntaxError) as exc:
        raise HarnessError(f"{path}: cannot decode image ({exc})") from exc


def _cached_array(
    cache_dir: Path,
    prefix: str,
    kind: str,
    key: list,
    count: int,
    row_shape: tuple[int, ...],
    dtype: type,
    make_row: Callable[[int], np.ndarray],
    progress: bool,
) -> torch.Tensor:
    """Load ``<prefix>-<hash>.<kind>.npy`` from ``cache_dir`` or build it row by row, atomically.

    A new build replaces the older builds of its prefix (the same split and root, sources changed since);
    the folder is then trimmed to its size cap, least recently used first."""
    shape = (count, *row_shape)
    if count == 0:
        return torch.from_numpy(np.zeros(shape, dtype=dtype))
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{prefix}-{digest}.{kind}.npy"
    array = _open_cached(target, shape, dtype)
    if array is None:
        cap = cache_cap_bytes()
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(cache_dir)
        _build(target, shape, dtype, make_row, progress, f"{prefix} {kind}")
        for outdated in cache_dir.glob(f"{prefix}-*.{kind}.npy"):
            if outdated != target:
                digests.discard(outdated)
        evict_least_recently_used(cache_dir, cap, keep=target)
        array = _open_cached(target, shape, dtype)
        if array is None:
            raise HarnessError(f"{target}: cache file unreadable right after writing it")
    return torch.from_numpy(array)


def _open_cached(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
    """The cached array, copy-on-write mapped (writable for torch, file untouched), or None (absent, or
    unsound: then reported and removed).

    Opening it marks it used (its mtime), the order in which eviction spares files."""
    if not digests.sound(path):
        return None
    try:
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)
    return array


def cache_cap_bytes() -> int:
    """The image cache's size cap: $SLIM_HARNESS_IMAGE_CACHE_GB gigabytes (default 100)."""
    raw = os.environ.get(CAP_ENV, str(DEFAULT_CAP_GB))
    try:
        gigabytes = float(raw)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes > 0 or not math.isfinite(gigabytes):
        raise HarnessError(f"{CAP_ENV}={raw!r}: must be a number of gigabytes > 0")
    return int(gigabytes * 1e9)


def evict_least_recently_used(cache_dir: Path, cap: int, keep: Path) -> list[Path]:
    """Delete the least recently used arrays until the folder holds at most ``cap`` bytes (``keep``
    stays, even alone above the cap); one line says what went."""
    entries = []
    for path in Path(cache_dir).glob("*.npy"):
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            entries.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    evicted, freed = [], 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total - freed <= cap:
            break
        if path == keep:
            continue
        digests.discard(path)
        evicted.append(path)
        freed += size
    if evicted:
        print(f"image cache {cache_dir}: evicted {len(evicted)} least recently used file(s) "
              f"({freed / 1e6:.1f} MB) to stay under {cap / 1e9:g} GB (${CAP_ENV})", file=sys.stderr)
    return evicted


def _build(
    target: Path,
    shape: tuple[int, ...],
    dtype: type,
    make_row: Callable[[int], np.ndarray],
    progress: bool,
    description: str,
) -> None:
    tmp = temp_path(target)
    try:
        with writing(target, math.prod(shape) * np.dtype(dtype).itemsize):
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            _reserve(tmp)
        threads = max(1, min(MAX_DECODE_THREADS, os.cpu_count() or 1))
        with (
            ThreadPoolExecutor(max_workers=threads) as pool,
            tqdm(total=shape[0], desc=f"decoding {description}", unit="img", disable=not progress) as bar,
        ):
            for start in range(0, shape[0], DECODE_CHUNK):
                chunk = range(start, min(start + DECODE_CHUNK, shape[0]))
                for index, row in zip(chunk, pool.map(make_row, chunk), strict=True):
                    out[index] = row
                bar.update(len(chunk))
        out.flush()
        del out
        digests.write_digest(target, contents=tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _reserve(path: Path) -> None:
    """Allocate the whole (sparse) array file on disk before decoding into its memory map: a page written
    through a map into a full disk kills the process (SIGBUS); reserved now, a full disk is an OSError
    (a DiskFull naming the cache file and its size) before any decoding."""
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, path.stat().st_size)


def round_box_outward(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[int, int, int, int]:
    """Integer half-open pixel box covering a box given in (possibly fractional) pixel coordinates."""
    return math.floor(xmin), math.floor(ymin), math.ceil(xmax), math.ceil(ymax)
