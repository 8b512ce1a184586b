"""Loaders for the real benchmarks of the paper (Sec. 5.1), read in the layouts their authors publish.

Each loader turns a dataset on disk into a :class:`harness.data.Benchmark` (splits of uint8
images resized to ``image_size``, labels, spurious attribute, groups and, where known, core-object
masks). Images and masks are decoded once into a memory-mapped cache (:mod:`harness.image_cache`).
Any dataset also accepts user masks in the layout of docs/masks.md (option ``masks``).

Layouts (``expected`` of each :data:`REAL_DATASETS` entry lists them for users):

- waterbirds: ``metadata.csv`` (img_id, img_filename, y, split 0/1/2, place) beside the species
  folders; masks from CUB-200-2011 (option ``cub_root``): ``segmentations/<img_filename>.png``
  (grey levels of annotator agreement, object where > 127) or, without segmentations,
  ``images.txt`` + ``bounding_boxes.txt`` (img_id x y width height) as box masks.
- celeba: ``img_align_celeba/``, ``list_eval_partition.txt``, ``list_attr_celeba.txt``;
  target/spurious attributes by name (default Blond_Hair / Male); masks only from ``masks``.
- isic: the GEORGE-style layout ``labels.csv`` (Image Index, benign_malignant, patch, fold) and
  ``images/``; rows whose benign_malignant is empty, "unknown" or "indeterminate..." are left out
  (counted in info["excluded_rows"]). ``masks`` gives lesion masks (core), ``patch_masks`` the
  coloured-patch masks, exposed as info["patch_masks"][split] (attention there is wrong).
- nico: ``<context>/<class>/<image>`` (NICO++ DG); a long-tailed train split is drawn, see
  :func:`nico_split`.
- imagenet9: ``in9l/{train,val}/<NN_class>/`` and ``bg_challenge/<variant>/val/<NN_class>/``
  (Backgrounds Challenge release); see :func:`imagenet9_background`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from harness.data import Benchmark, Split
from harness.errors import HarnessError
from harness.image_cache import MaskSource, cached_images, cached_masks, file_stamp, round_box_outward

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # compared case-insensitively
SPLIT_NAMES = ("train", "val", "test")
SPLIT_CODES = {"0": 0, "1": 1, "2": 2}  # Waterbirds and CelebA split column: index into SPLIT_NAMES
BINARY = {"0": 0, "1": 1}
CUB_SEGMENTATION_THRESHOLD = 127  # CUB grey levels encode annotator agreement: object where most agree
MASKS_OPTION = "user masks in the docs/masks.md layout: a folder of PNGs or a boxes CSV"


@dataclass(frozen=True)
class RealDatasetInfo:
    """What a real dataset is, what must be on disk, and which options it takes."""

    name: str
    description: str
    expected: list[str]
    options: dict[str, str]


REAL_DATASETS: dict[str, RealDatasetInfo] = {
    "waterbirds": RealDatasetInfo(
        name="waterbirds",
        description="Waterbirds (waterbird_complete95_forest2water2): landbird vs waterbird on land/water",
        expected=[
            "metadata.csv with columns img_id, img_filename, y, split (0 train, 1 val, 2 test), place",
            "<species folder>/<image>.jpg for every img_filename",
        ],
        options={
            "cub_root": "CUB_200_2011 folder: segmentations/<species>/<image>.png, "
            "else images.txt + bounding_boxes.txt",
            "masks": MASKS_OPTION,
        },
    ),
    "celeba": RealDatasetInfo(
        name="celeba",
        description="CelebA: target attribute (default Blond_Hair) vs spurious attribute (default Male)",
        expected=[
            "img_align_celeba/<image>.jpg",
            "list_eval_partition.txt (image, split 0/1/2)",
            "list_attr_celeba.txt (count line, 40 attribute names, image + 40 values in {-1, 1})",
        ],
        options={
            "target": "attribute to predict (default Blond_Hair)",
            "spurious": "spurious attribute (default Male)",
            "masks": MASKS_OPTION,
        },
    ),
    "isic": RealDatasetInfo(
        name="isic",
        description="ISIC skin lesions: benign vs malignant; coloured patches (benign only) are spurious",
        expected=[
            "labels.csv with columns Image Index, benign_malignant (benign/malignant), patch (0/1), "
            "fold (train/val/test)",
            "images/<Image Index> (a name without extension means .jpg)",
        ],
        options={
            "masks": "lesion (core) masks: " + MASKS_OPTION,
            "patch_masks": "coloured-patch masks, same layout; an image without a patch may lack one",
        },
    ),
    "nico": RealDatasetInfo(
        name="nico",
        description="NICO++ (DG track): object classes in contexts, long-tailed context skew in train",
        expected=["<context>/<class>/<image>.jpg for contexts autumn, dim, grass, outdoor, rock, water"],
        options={
            "classes": "comma-separated class folders (default bird,cat,dog,horse,sheep,cow)",
            "contexts": "comma-separated context folders (default autumn,dim,grass,outdoor,rock,water)",
            "seed": "seed of the split (default 0)",
            "dominant_share": "share of a class's train images from its dominant context (default 0.9)",
            "masks": MASKS_OPTION,
        },
    ),
    "imagenet9": RealDatasetInfo(
        name="imagenet9",
        description="ImageNet-9 / Backgrounds Challenge: 9 classes, test variants with changed backgrounds",
        expected=[
            "in9l/train/<NN_class>/ and in9l/val/<NN_class>/ (e.g. 00_dog ... 08_fish)",
            "bg_challenge/original/val/<NN_class>/ (the test split)",
            "bg_challenge/<variant>/val/<NN_class>/ for the variants present among mixed_same, "
            "mixed_rand, mixed_next, only_fg, no_fg",
            "bg_challenge/fg_mask/val/<NN_class>/<image>.npy (optional foreground masks)",
        ],
        options={
            "variants": "comma-separated test variants to load (default all present)",
            "masks": MASKS_OPTION,
        },
    ),
}

NICO_CONTEXTS = ("autumn", "dim", "grass", "outdoor", "rock", "water")
NICO_DEFAULT_CLASSES = ("bird", "cat", "dog", "horse", "sheep", "cow")
NICO_EVAL_SHARE = 0.2  # val and test each take this share of the smallest (class, context) cell
NICO_DEFAULT_DOMINANT_SHARE = 0.9

IN9_VARIANTS = ("mixed_same", "mixed_rand", "mixed_next", "only_fg", "no_fg")
MIXED_NAME = re.compile(r"^fg_(?P<fg>.+)_bg_(?P<bg>.+)$")  # e.g. fg_n02497673_05944_bg_n02536864_02721


@dataclass
class _Record:
    """One image: where it is, its labels and where its masks come from (None: unknown)."""

    image: Path
    rel: str  # path relative to the data root, '/'-separated (user mask lookup)
    label: int
    spurious: int
    group: int
    mask: MaskSource | None = None
    patch_mask: MaskSource | None = None


@dataclass
class _Layout:
    class_names: list[str]
    spurious_names: list[str]
    group_names: list[str]
    splits: dict[str, list[_Record]]
    info: dict = field(default_factory=dict)


def load_real(
    name: str,
    data_root: str | Path,
    *,
    image_size: int,
    cache_dir: str | Path,
    options: dict | None = None,
    progress: bool = True,
) -> Benchmark:
    """Load real dataset ``name`` from ``data_root`` as a Benchmark (options are CLI strings)."""
    if name not in REAL_DATASETS:
        raise HarnessError(f"unknown real dataset {name!r}; choose one of {', '.join(REAL_DATASETS)}")
    valid = REAL_DATASETS[name].options
    options = {str(k): str(v) for k, v in (options or {}).items()}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise HarnessError(f"unknown option(s) {', '.join(unknown)} for {name}; valid: {', '.join(valid)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise HarnessError(f"image_size must be a positive integer, got {image_size!r}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise HarnessError(
            f"{root}: data root of {name} not found (expected {'; '.join(REAL_DATASETS[name].expected)})"
        )
    layout = _LOADERS[name](root, options)
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
    for line, row in _read_csv(path, ("image", "xmin", "ymin", "xmax", "ymax")):
        coords = [_parse_float(path, line, key, row[key]) for key in ("xmin", "ymin", "xmax", "ymax")]
        if not (coords[0] < coords[2] and coords[1] < coords[3]):
            raise HarnessError(
                f"{path}: line {line}: empty box (need xmin < xmax and ymin < ymax), got {coords}"
            )
        boxes.setdefault(str(PurePosixPath(row["image"].strip())), []).append(round_box_outward(*coords))
    return boxes


# ----------------------------------------------------------------------------- file parsing helpers


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a comma-separated file with a header, as (line number, {column: value})."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(number, row) for number, row in enumerate(csv.reader(f), start=1) if row]
    if not rows:
        raise HarnessError(f"{path}: empty file (expected a header with {', '.join(required)})")
    header = [name.strip() for name in rows[0][1]]
    missing = [name for name in required if name not in header]
    if missing:
        raise HarnessError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    parsed = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise HarnessError(f"{path}: line {number}: expected {len(header)} fields, got {len(row)}")
        parsed.append((number, dict(zip(header, row, strict=True))))
    return parsed


def _read_table(path: Path, n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated rows with exactly ``n_fields`` fields (blank lines skipped)."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != n_fields:
                raise HarnessError(f"{path}: line {number}: expected {n_fields} fields, got {len(fields)}")
            yield number, fields


def _parse_choice(path: Path, line: int, column: str, value: str, allowed: dict[str, int]) -> int:
    key = value.strip()
    if key not in allowed:
        raise HarnessError(
            f"{path}: line {line}: {column} is {value!r}, expected one of {', '.join(allowed)}"
        )
    return allowed[key]


def _parse_float(path: Path, line: int, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise HarnessError(f"{path}: line {line}: {column} is {value!r}, expected a number")
    return number


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise HarnessError(f"{folder}: folder not found")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


# ----------------------------------------------------------------------------- Waterbirds


def _load_waterbirds(root: Path, options: dict[str, str]) -> _Layout:
    metadata = root / "metadata.csv"
    cub_mask = _cub_masks(Path(options["cub_root"]).expanduser()) if "cub_root" in options else None
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, row in _read_csv(metadata, ("img_id", "img_filename", "y", "split", "place")):
        label = _parse_choice(metadata, line, "y", row["y"], BINARY)
        place = _parse_choice(metadata, line, "place", row["place"], BINARY)
        split = SPLIT_NAMES[_parse_choice(metadata, line, "split", row["split"], SPLIT_CODES)]
        rel = row["img_filename"].strip()
        if not rel:
            raise HarnessError(f"{metadata}: line {line}: empty img_filename")
        mask = cub_mask(rel) if cub_mask else None
        splits[split].append(_Record(root / rel, rel, label, place, 2 * label + place, mask))
    return _Layout(
        class_names=["landbird", "waterbird"],
        spurious_names=["land", "water"],
        group_names=["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"],
        splits=splits,
    )


def _cub_masks(cub_root: Path) -> Callable[[str], MaskSource | None]:
    """Mask lookup by image path relative to the species folders: segmentations, else boxes."""
    if not cub_root.is_dir():
        raise HarnessError(f"{cub_root}: cub_root folder not found")
    segmentations = cub_root / "segmentations"
    if segmentations.is_dir():

        def segmentation(rel: str) -> MaskSource | None:
            png = segmentations / PurePosixPath(rel).with_suffix(".png")
            return MaskSource("png", png, threshold=CUB_SEGMENTATION_THRESHOLD) if png.is_file() else None

        return segmentation
    images_txt, boxes_txt = cub_root / "images.txt", cub_root / "bounding_boxes.txt"
    if not (images_txt.is_file() and boxes_txt.is_file()):
        raise HarnessError(f"{cub_root}: has neither segmentations/ nor images.txt + bounding_boxes.txt")
    path_of = {fields[0]: fields[1] for _, fields in _read_table(images_txt, 2)}
    boxes: dict[str, MaskSource] = {}
    for line, (image_id, *numbers) in _read_table(boxes_txt, 5):
        x, y, width, height = (
            _parse_float(boxes_txt, line, name, v) for name, v in zip("xywh", numbers, strict=True)
        )
        if width <= 0 or height <= 0:
            raise HarnessError(f"{boxes_txt}: line {line}: box width and height must be positive")
        if image_id not in path_of:
            raise HarnessError(f"{boxes_txt}: line {line}: image id {image_id} is not in {images_txt}")
        box = round_box_outward(x, y, x + width, y + height)
        boxes[path_of[image_id]] = MaskSource("boxes", boxes=(box,), clip_boxes=True)
    return boxes.get


# ----------------------------------------------------------------------------- CelebA


def _load_celeba(root: Path, options: dict[str, str]) -> _Layout:
    partition, attributes = root / "list_eval_partition.txt", root / "list_attr_celeba.txt"
    names, row_of, values = _read_celeba_attributes(attributes)
    target, spurious = options.get("target", "Blond_Hair"), options.get("spurious", "Male")
    for role, attribute in (("target", target), ("spurious", spurious)):
        if attribute not in names:
            raise HarnessError(
                f"{attributes}: unknown {role} attribute {attribute!r}; valid: {', '.join(names)}"
            )
    if target == spurious:
        raise HarnessError(f"target and spurious attribute are both {target!r}; choose two different ones")
    target_col, spurious_col = names.index(target), names.index(spurious)
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, (image, code) in _read_table(partition, 2):
        split = SPLIT_NAMES[_parse_choice(partition, line, "split", code, SPLIT_CODES)]
        if image not in row_of:
            raise HarnessError(f"{partition}: line {line}: image {image} is not in {attributes}")
        row = values[row_of[image]]
        label, attr = int(row[target_col] == 1), int(row[spurious_col] == 1)
        rel = f"img_align_celeba/{image}"
        splits[split].append(_Record(root / rel, rel, label, attr, 2 * label + attr))
    class_names, spurious_names = [f"not_{target}", target], [f"not_{spurious}", spurious]
    return _Layout(
        class_names=class_names,
        spurious_names=spurious_names,
        group_names=[f"{c}/{s}" for c in class_names for s in spurious_names],
        splits=splits,
        info={"target": target, "spurious": spurious},
    )


def _read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Attribute names, row of each image and the (n, 40) matrix of values in {-1, 1}."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        count_line, header = f.readline().strip(), f.readline().split()
        if not count_line.isdigit() or not header:
            raise HarnessError(f"{path}: expected an image count on line 1 and attribute names on line 2")
        row_of: dict[str, int] = {}
        rows: list[list[int]] = []
        for number, text in enumerate(f, start=3):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != len(header) + 1:
                raise HarnessError(
                    f"{path}: line {number}: expected {len(header) + 1} fields, got {len(fields)}"
                )
            if any(v not in ("-1", "1") for v in fields[1:]):
                bad = next(v for v in fields[1:] if v not in ("-1", "1"))
                raise HarnessError(f"{path}: line {number}: attribute value {bad!r} is not -1 or 1")
            row_of[fields[0]] = len(rows)
            rows.append([int(v) for v in fields[1:]])
    if int(count_line) != len(rows):
        raise HarnessError(f"{path}: line 1 declares {count_line} images but the file lists {len(rows)}")
    return header, row_of, np.asarray(rows, dtype=np.int8).reshape(len(rows), len(header))


# ----------------------------------------------------------------------------- ISIC

ISIC_UNLABELLED = ("", "unknown", "nan")  # plus anything starting with "indeterminate"
ISIC_FOLDS = {"train": 0, "val": 1, "test": 2}
ISIC_PATCH = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def _load_isic(root: Path, options: dict[str, str]) -> _Layout:
    labels_csv = root / "labels.csv"
    patch_masks = UserMasks(Path(options["patch_masks"]).expanduser()) if "patch_masks" in options else None
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    excluded = 0
    for line, row in _read_csv(labels_csv, ("Image Index", "benign_malignant", "patch", "fold")):
        diagnosis = row["benign_malignant"].strip().lower()
        if diagnosis in ISIC_UNLABELLED or diagnosis.startswith("indeterminate"):
            excluded += 1
            continue
        label = _parse_choice(labels_csv, line, "benign_malignant", diagnosis, {"benign": 0, "malignant": 1})
        patch = _parse_choice(labels_csv, line, "patch", row["patch"], ISIC_PATCH)
        split = SPLIT_NAMES[_parse_choice(labels_csv, line, "fold", row["fold"], ISIC_FOLDS)]
        name = row["Image Index"].strip()
        rel = f"images/{name}" if PurePosixPath(name).suffix else f"images/{name}.jpg"
        patch_mask = None
        if patch_masks is not None:
            patch_mask = patch_masks.source(rel) or (MaskSource("empty") if patch == 0 else None)
        splits[split].append(_Record(root / rel, rel, label, patch, 2 * label + patch, patch_mask=patch_mask))
    # benign/no_patch, benign/patch, malignant/no_patch always; malignant/patch only when it occurs.
    group_names = ["benign/no_patch", "benign/patch", "malignant/no_patch"]
    if any(r.group == 3 for records in splits.values() for r in records):
        group_names.append("malignant/patch")
    return _Layout(
        class_names=["benign", "malignant"],
        spurious_names=["no_patch", "patch"],
        group_names=group_names,
        splits=splits,
        info={"excluded_rows": excluded},
    )


# ----------------------------------------------------------------------------- NICO++


def nico_split(
    cells: dict[tuple[str, str], list[Path]],
    classes: list[str],
    contexts: list[str],
    *,
    seed: int,
    dominant_share: float,
) -> tuple[dict[str, list[tuple[str, str, Path]]], dict]:
    """Long-tailed train and balanced val/test splits of NICO++ (class, context) cells.

    Class i's dominant context is ``contexts[i % len(contexts)]``. Every cell is shuffled with
    ``seed``; val and test each take k = floor(NICO_EVAL_SHARE * smallest cell) images of every
    cell (balanced). Of the rest, train keeps all of the dominant cell (n images) and
    max(1, round(n * (1 - share) / (share * (C - 1)))) of every other cell (fewer if the cell has
    fewer), so the dominant context makes up about ``dominant_share`` of the class in train.
    """
    if len(contexts) < 2 or len(classes) < 2:
        raise HarnessError("nico needs at least 2 classes and 2 contexts")
    if not 0.0 < dominant_share < 1.0:
        raise HarnessError(f"dominant_share must be in (0, 1), got {dominant_share}")
    rng = np.random.default_rng(seed)
    smallest = min(len(files) for files in cells.values())
    per_eval = math.floor(NICO_EVAL_SHARE * smallest)
    if per_eval < 1:
        cell = min(cells, key=lambda key: len(cells[key]))
        raise HarnessError(
            f"nico cell {cell[1]}/{cell[0]} has only {smallest} images; every (context, class) folder needs "
            f"at least {math.ceil(1 / NICO_EVAL_SHARE)} for balanced val/test splits"
        )
    minor_ratio = (1.0 - dominant_share) / (dominant_share * (len(contexts) - 1))
    splits: dict[str, list[tuple[str, str, Path]]] = {"train": [], "val": [], "test": []}
    dominant = {cls: contexts[i % len(contexts)] for i, cls in enumerate(classes)}
    train_counts: dict[str, int] = {}
    for cls in classes:
        shuffled = {
            ctx: [cells[cls, ctx][j] for j in rng.permutation(len(cells[cls, ctx]))] for ctx in contexts
        }
        n_dominant = len(shuffled[dominant[cls]]) - 2 * per_eval
        for ctx in contexts:
            files = shuffled[ctx]
            splits["val"] += [(cls, ctx, f) for f in files[:per_eval]]
            splits["test"] += [(cls, ctx, f) for f in files[per_eval : 2 * per_eval]]
            pool = files[2 * per_eval :]
            keep = (
                len(pool) if ctx == dominant[cls] else min(len(pool), max(1, round(n_dominant * minor_ratio)))
            )
            splits["train"] += [(cls, ctx, f) for f in pool[:keep]]
            train_counts[f"{cls}/{ctx}"] = keep
    info = {
        "seed": seed,
        "dominant_share": dominant_share,
        "dominant_context": dominant,
        "eval_per_group": per_eval,
        "train_counts": train_counts,
    }
    return splits, info


def _load_nico(root: Path, options: dict[str, str]) -> _Layout:
    classes = _comma_list(options.get("classes", ",".join(NICO_DEFAULT_CLASSES)))
    contexts = _comma_list(options.get("contexts", ",".join(NICO_CONTEXTS)))
    for what, names in (("classes", classes), ("contexts", contexts)):
        if len(set(names)) != len(names):
            raise HarnessError(f"nico option {what} lists a name twice: {','.join(names)}")
    try:
        seed = int(options.get("seed", "0"))
        dominant_share = float(options.get("dominant_share", str(NICO_DEFAULT_DOMINANT_SHARE)))
    except ValueError as exc:
        raise HarnessError(
            f"nico option seed must be an integer and dominant_share a number ({exc})"
        ) from exc
    available_contexts = _subfolders(root)
    cells: dict[tuple[str, str], list[Path]] = {}
    for ctx in contexts:
        if ctx not in available_contexts:
            raise HarnessError(
                f"{root / ctx}: context folder not found; present: {', '.join(available_contexts)}"
            )
        available_classes = _subfolders(root / ctx)
        for cls in classes:
            if cls not in available_classes:
                raise HarnessError(
                    f"{root / ctx / cls}: class folder not found; present: {', '.join(available_classes)}"
                )
            cells[cls, ctx] = _image_files(root / ctx / cls)
    drawn, info = nico_split(cells, classes, contexts, seed=seed, dominant_share=dominant_share)
    class_index, context_index = {c: i for i, c in enumerate(classes)}, {c: i for i, c in enumerate(contexts)}
    splits = {
        name: [
            _Record(
                path,
                f"{ctx}/{cls}/{path.name}",
                class_index[cls],
                context_index[ctx],
                class_index[cls] * len(contexts) + context_index[ctx],
            )
            for cls, ctx, path in items
        ]
        for name, items in drawn.items()
    }
    return _Layout(
        class_names=classes,
        spurious_names=contexts,
        group_names=[f"{cls}/{ctx}" for cls in classes for ctx in contexts],
        splits=splits,
        info=info,
    )


# ----------------------------------------------------------------------------- ImageNet-9


def imagenet9_background(
    variant: str, label: int, num_classes: int, background_stem: str | None, class_of_stem: dict[str, int]
) -> int | None:
    """Class of an ImageNet-9 test image's background, or None when it cannot be known.

    original, only_fg, no_fg: the image's own background (its class). Mixed variants name their
    background image (``fg_<stem>_bg_<stem>``); when that image is in bg_challenge/original its
    class is used. Otherwise mixed_same means the same class, mixed_next the next class
    (label + 1 mod 9) and mixed_rand a random class: unknown (grouped as mismatch).
    """
    if background_stem is not None and background_stem in class_of_stem:
        return class_of_stem[background_stem]
    if variant in ("original", "only_fg", "no_fg", "mixed_same"):
        return label
    if variant == "mixed_next":
        return (label + 1) % num_classes
    return None


def _load_imagenet9(root: Path, options: dict[str, str]) -> _Layout:
    in9l, bg = root / "in9l", root / "bg_challenge"
    folders = _subfolders(in9l / "train")
    if not folders:
        raise HarnessError(f"{in9l / 'train'}: no class folders (expected e.g. 00_dog ... 08_fish)")
    class_names = [re.sub(r"^\d+_", "", folder) for folder in folders]
    present = [v for v in IN9_VARIANTS if (bg / v / "val").is_dir()]
    variants = _comma_list(options["variants"]) if "variants" in options else present
    for variant in variants:
        if variant not in IN9_VARIANTS:
            raise HarnessError(f"unknown ImageNet-9 variant {variant!r}; valid: {', '.join(IN9_VARIANTS)}")
        if variant not in present:
            raise HarnessError(f"{bg / variant / 'val'}: variant folder not found")

    def listing(split_dir: Path) -> list[tuple[int, Path]]:
        items = []
        for folder in _subfolders(split_dir):
            if folder not in folders:
                raise HarnessError(
                    f"{split_dir / folder}: class folder not in {in9l / 'train'} ({', '.join(folders)})"
                )
            items += [(folders.index(folder), path) for path in _image_files(split_dir / folder)]
        return items

    def record(label: int, path: Path, background: int | None, mask: MaskSource | None) -> _Record:
        spurious = len(class_names) if background is None else background
        return _Record(
            path,
            path.relative_to(root).as_posix(),
            label,
            spurious,
            2 * label + int(background != label),
            mask,
        )

    original = listing(bg / "original" / "val")
    class_of_stem = {path.stem: label for label, path in original}
    foreground_mask = _in9_foreground_masks(bg, folders)
    splits = {
        name: [record(label, path, label, None) for label, path in listing(in9l / name)]
        for name in ("train", "val")
    }
    for variant in ["original", *variants]:
        items = []
        for label, path in original if variant == "original" else listing(bg / variant / "val"):
            mixed = MIXED_NAME.match(path.stem)
            fg_stem, bg_stem = (mixed["fg"], mixed["bg"]) if mixed else (path.stem, None)
            background = imagenet9_background(variant, label, len(class_names), bg_stem, class_of_stem)
            items.append(record(label, path, background, foreground_mask(folders[label], fg_stem)))
        splits["test" if variant == "original" else f"test_{variant}"] = items
    return _Layout(
        class_names=class_names,
        spurious_names=[*class_names, "unknown"],
        group_names=[f"{name}/{kind}" for name in class_names for kind in ("match", "mismatch")],
        splits=splits,
        info={"variants": ["original", *variants], "class_folders": folders},
    )


def _in9_foreground_masks(bg: Path, folders: list[str]) -> Callable[[str, str], MaskSource | None]:
    """Foreground mask of (class folder, foreground stem): fg_mask .npy, else only_fg non-black pixels."""
    arrays = bg / "fg_mask" / "val"
    only_fg = bg / "only_fg" / "val"
    only_fg_files = {
        (folder, path.stem): path
        for folder in folders
        if (only_fg / folder).is_dir()
        for path in _image_files(only_fg / folder)
    }

    def lookup(folder: str, stem: str) -> MaskSource | None:
        array = arrays / folder / f"{stem}.npy"
        if array.is_file():
            return MaskSource("npy", array)
        image = only_fg_files.get((folder, stem))
        return MaskSource("nonblack", image) if image is not None else None

    return lookup


_LOADERS: dict[str, Callable[[Path, dict[str, str]], _Layout]] = {
    "waterbirds": _load_waterbirds,
    "celeba": _load_celeba,
    "isic": _load_isic,
    "nico": _load_nico,
    "imagenet9": _load_imagenet9,
}


# ----------------------------------------------------------------------------- assembly


def _apply_user_masks(name: str, layout: _Layout, user_masks: UserMasks) -> None:
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
    layout: _Layout,
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


def content_hash(layout: _Layout, image_size: int, options: dict[str, str]) -> str:
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
