"""A real dataset: read from ``--data-root`` in the layouts people have on disk, into a
:class:`harness.data.containers.Benchmark` (splits of uint8 images resized to ``image_size``, labels, spurious
attribute, groups and, where known, core-object masks).

Images and masks are decoded once into a memory-mapped cache (:mod:`harness.data.image_cache`). Any dataset
also accepts user masks in the layout of docs/masks.md (option ``masks``). Every file a metadata file names
must exist and lie inside the data root, symlinks resolved; a metadata file must be UTF-8.
"""
from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from pathlib import Path, PurePosixPath
from typing import ClassVar

import torch

from harness.core.cache import default_cache_root
from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.data.dataset import Dataset, DatasetEntry, needs_text
from harness.data.image_cache import MaskSource, cached_images, cached_masks, file_stamp
from harness.data.real.reading import BOX_COLUMNS, Layout, parse_box, read_csv
from harness.data.sizes import REAL_IMAGE_SIZE

MASKS_OPTION = "user masks in the docs/masks.md layout: a folder of PNGs or a boxes CSV"


class RealDataset(Dataset):
    """A dataset read from disk. Subclasses set ``name``, ``description``, ``expected`` (what must be on disk,
    in words for users), ``options`` (each ``--data-option`` key and what it means), ``facts`` where the paper
    has the dataset, and implement :meth:`read_layout`."""

    needs_data_root = True
    expected: ClassVar[tuple[str, ...]]
    options: ClassVar[dict[str, str]]

    @staticmethod
    @abstractmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        """The records of every split of the dataset in ``root`` (options are CLI strings)."""

    @classmethod
    def check_inputs(cls, data_root: str | Path | None, options: dict[str, str] | None) -> None:
        """Nothing before the data is read: :meth:`load` asks for the root and :meth:`read` checks the root and
        the options, so a run's settings are made before its data is looked at (a run that cannot read its data
        fails, and records why)."""

    @classmethod
    def entry(cls) -> DatasetEntry:
        description = f"{cls.description} (masks: {cls.facts.masks})" if cls.facts else cls.description
        return DatasetEntry(cls.name, description, needs_text("--data-root with " + ", ".join(cls.expected),
                                                              cls.options), False)

    def load(self, *, scale: str, data_seed: int, data_root: Path | None, image_size: int | None,
             options: dict[str, str], show_progress: bool) -> Benchmark:
        if data_root is None:
            raise HarnessError(f"dataset {self.name!r} is read from disk: give --data-root PATH")
        return self.read(data_root, image_size=image_size or REAL_IMAGE_SIZE,
                         cache_dir=default_cache_root() / "images", options=options, progress=show_progress)

    @classmethod
    def read(
        cls,
        data_root: str | Path,
        *,
        image_size: int,
        cache_dir: str | Path,
        options: dict | None = None,
        progress: bool = True,
    ) -> Benchmark:
        """The dataset in ``data_root`` as a Benchmark (options are CLI strings)."""
        name = cls.name
        options = {str(k): str(v) for k, v in (options or {}).items()}
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise HarnessError(f"unknown option(s) {', '.join(unknown)} for {name}; valid: {', '.join(cls.options)}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise HarnessError(f"image_size must be a positive integer, got {image_size!r}")
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise HarnessError(f"{root}: data root of {name} not found (expected {'; '.join(cls.expected)})")
        layout = cls.read_layout(root, options)
        empty = [split for split, records in layout.splits.items() if not records]
        if empty:
            raise HarnessError(f"{root}: {name} split(s) {', '.join(empty)} have no images")
        if "masks" in options:
            _apply_user_masks(name, layout, UserMasks(Path(options["masks"]).expanduser()))
        return _assemble(name, root, layout, image_size, Path(cache_dir), progress, options)


class UserMasks:
    """Masks in the documented user layout (docs/masks.md).

    A folder: ``<folder>/<image path relative to the data root, extension .png>``, single-channel,
    nonzero = core object, same size as the image. A CSV file: columns image, xmin, ymin, xmax, ymax
    in pixels of the original image (x = column, y = row, half-open, fractions rounded outward);
    several rows for one image are united.
    """

    def __init__(self, location: Path) -> None:
        self.location = location
        self.boxes: dict[str, list[tuple[int, int, int, int]]] | None = None
        if location.is_file():
            self.boxes = _read_boxes_csv(location)
        elif not location.is_dir():
            raise HarnessError(f"{location}: mask folder or boxes CSV not found")

    def source(self, rel: str) -> MaskSource | None:
        if self.boxes is not None:
            boxes = self.boxes.get(rel)
            return MaskSource("boxes", boxes=tuple(boxes)) if boxes else None
        png = self.location / PurePosixPath(rel).with_suffix(".png")
        return MaskSource("png", png) if png.is_file() else None


def _read_boxes_csv(path: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for line, row in read_csv(path, ("image", *BOX_COLUMNS)):
        boxes.setdefault(str(PurePosixPath(row["image"].strip())), []).append(parse_box(path, line, row))
    return boxes


def _apply_user_masks(name: str, layout: Layout, user_masks: UserMasks) -> None:
    """Give the user's masks precedence over built-in ones; a mask location matching nothing is an error."""
    hits = 0
    for records in layout.splits.values():
        for record in records:
            source = user_masks.source(record.rel)
            if source is not None:
                record.mask = source
                hits += 1
    if hits == 0:
        example = PurePosixPath(next(iter(layout.splits.values()))[0].rel).with_suffix(".png")
        raise HarnessError(
            f"{user_masks.location}: no mask matches any image of {name} (expected e.g. {example})"
        )


def _assemble(
    name: str,
    root: Path,
    layout: Layout,
    image_size: int,
    cache_dir: Path,
    progress: bool,
    options: dict[str, str],
) -> Benchmark:
    """Decode (or read from cache) every split and attach masks where every image of a split has one."""
    splits: dict[str, Split] = {}
    coverage: dict[str, str] = {}
    patch_masks: dict[str, torch.Tensor | None] = {}
    for split_name, records in layout.splits.items():
        paths = [r.image for r in records]
        label = f"{name}-{split_name}"
        images = cached_images(
            paths, image_size=image_size, cache_dir=cache_dir, label=label, progress=progress
        )
        sources = [r.mask for r in records]
        coverage[split_name] = f"{sum(s is not None for s in sources)}/{len(sources)}"
        masks = _complete_masks(paths, sources, image_size, cache_dir, label, progress)
        if "patch_masks" in options:
            patch_masks[split_name] = _complete_masks(
                paths, [r.patch_mask for r in records], image_size, cache_dir, f"{label}-patch", progress
            )
        splits[split_name] = Split(
            images=images,
            labels=torch.tensor([r.label for r in records], dtype=torch.int64),
            spurious=torch.tensor([r.spurious for r in records], dtype=torch.int64),
            groups=torch.tensor([r.group for r in records], dtype=torch.int64),
            masks=masks,
        )
    info = {
        "dataset": name,
        "source": str(root),
        "image_size": image_size,
        "options": dict(options),
        "content_hash": content_hash(layout, image_size, options),
        "mask_coverage": coverage,
        "files": {split: [r.rel for r in records] for split, records in layout.splits.items()},  # image identity
        **layout.info,
    }
    if patch_masks:
        info["patch_masks"] = patch_masks
    return Benchmark(
        name=name,
        class_names=layout.class_names,
        spurious_names=layout.spurious_names,
        group_names=layout.group_names,
        splits=splits,
        info=info,
    )


def _complete_masks(
    paths: list[Path],
    sources: list[MaskSource | None],
    image_size: int,
    cache_dir: Path,
    label: str,
    progress: bool,
) -> torch.Tensor | None:
    """Masks of a split when every image has a source; None otherwise (a split's masks are all or nothing)."""
    if any(source is None for source in sources):
        return None
    return cached_masks(
        paths, sources, image_size=image_size, cache_dir=cache_dir, label=label, progress=progress
    )


def content_hash(layout: Layout, image_size: int, options: dict[str, str]) -> str:
    """Short hash of everything a loaded benchmark depends on: options, size, and per row the image file
    (path, size, mtime), labels and mask source, so caches built on a benchmark can key on it."""
    rows = {
        split: [
            [file_stamp(r.image), r.label, r.spurious, r.group]
            + [None if m is None else m.fingerprint() for m in (r.mask, r.patch_mask)]
            for r in records
        ]
        for split, records in layout.splits.items()
    }
    blob = json.dumps([sorted(options.items()), image_size, rows]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
