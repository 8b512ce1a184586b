"""Loaders for the real benchmarks of the paper (Sec. 5.1), read in the layouts people have on disk, and for
a dataset of the user's own described by a metadata file (``csv``).

Each loader turns a dataset on disk into a :class:`harness.data.containers.Benchmark` (splits of uint8
images resized to ``image_size``, labels, spurious attribute, groups and, where known, core-object
masks). Images and masks are decoded once into a memory-mapped cache (:mod:`harness.data.image_cache`).
Any dataset also accepts user masks in the layout of docs/masks.md (option ``masks``). Every file a
metadata file names must exist and lie inside the data root, symlinks resolved; a metadata file must
be UTF-8.

Layouts (``expected`` of each :data:`REAL_DATASETS` entry lists them for users):

- waterbirds: ``metadata.csv`` (img_id, img_filename, y, split 0/1/2, place) beside the species
  folders; masks from CUB-200-2011 (option ``cub_root``): ``segmentations/<img_filename>.png``
  (grey levels of annotator agreement, object where > 127) or, without segmentations,
  ``images.txt`` + ``bounding_boxes.txt`` (img_id x y width height) as box masks.
- celeba: ``img_align_celeba/``, ``list_eval_partition.txt``, ``list_attr_celeba.txt``, or the CSV
  copies (Kaggle, WILDS' celebA_v1.0); target/spurious attributes by name (default Blond_Hair / Male);
  masks only from ``masks``.
- isic: the GEORGE-style layout ``labels.csv`` (Image Index, benign_malignant, patch, fold) and
  ``images/``, rows whose benign_malignant is empty, "unknown" or "indeterminate..." left out
  (counted in info["excluded_rows"]); or the SLIM authors' ``metadata.csv`` and ``img/``. ``masks``
  gives lesion masks (core), ``patch_masks`` the coloured-patch masks, exposed as
  info["patch_masks"][split] (attention there is wrong).
- nico: ``<context>/<class>/<image>`` (NICO++ DG), found below the release root too; a long-tailed
  train split is drawn, see :func:`nico_split`.
- imagenet9: ``in9l/{train,val}/<NN_class>/`` and ``bg_challenge/<variant>/val/<NN_class>/``
  (Backgrounds Challenge release; the root may be bg_challenge itself); see :func:`imagenet9_background`.
- csv: ``metadata.csv`` (filename, y, a, split; SubpopBench's convention), groups (y, a); masks from
  an optional mask or box column.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.data.image_cache import MaskSource, cached_images, cached_masks, file_stamp, round_box_outward

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # compared case-insensitively
SPLIT_NAMES = ("train", "val", "test")
SPLIT_CODES = {"0": 0, "1": 1, "2": 2}  # Waterbirds and CelebA split column: index into SPLIT_NAMES
BINARY = {"0": 0, "1": 1}
CUB_SEGMENTATION_THRESHOLD = 127  # CUB grey levels encode annotator agreement: object where most agree
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")  # pixels of the original image, x = column, y = row
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
            "img_align_celeba/<image>.jpg (or img_align_celeba/img_align_celeba/, as Kaggle's archive unpacks)",
            "list_eval_partition.txt (image, split 0/1/2) and list_attr_celeba.txt (count line, 40 attribute "
            "names, image + 40 values in {-1, 1}); or the CSV copies of Kaggle and WILDS' celebA_v1.0: "
            "list_eval_partition.csv (image_id, partition) and list_attr_celeba.csv (image_id, 40 attributes)",
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
            "GEORGE's layout: labels.csv with columns Image Index, benign_malignant (benign/malignant), "
            "patch (0/1), fold (train/val/test); images/<Image Index> (a name without extension means .jpg)",
            "or the SLIM authors' layout: metadata.csv with columns img_filename, y (0 benign, 1 malignant), "
            "split (0/1/2), place (1 = coloured patch); img/<img_filename>",
        ],
        options={
            "masks": "lesion (core) masks: " + MASKS_OPTION,
            "patch_masks": "coloured-patch masks, same layout; an image without a patch may lack one",
        },
    ),
    "nico": RealDatasetInfo(
        name="nico",
        description="NICO++ (DG track): object classes in contexts, long-tailed context skew in train",
        expected=[
            "<context>/<class>/<image>.jpg for contexts autumn, dim, grass, outdoor, rock, water: the folder "
            "holding them, or the release's track_1/public_dg_0416 (its train/), track_1 or the release root",
        ],
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
            "mixed_rand, mixed_next, only_fg, no_fg, only_bg_b, only_bg_t",
            "bg_challenge/fg_mask/val/<NN_class>/<image>.npy (optional foreground masks)",
            "the data root may also be the bg_challenge folder itself, with in9l/ beside it (or option in9l)",
        ],
        options={
            "variants": "comma-separated test variants to load (default all present)",
            "in9l": "the IN-9L folder (train/, val/) when it is not in or beside the data root",
            "masks": MASKS_OPTION,
        },
    ),
    "csv": RealDatasetInfo(
        name="csv",
        description="your own dataset from a metadata file (SubpopBench's convention): class y, attribute a, "
        "groups (y, a)",
        expected=[
            "metadata.csv with columns filename (path below the data root), y (class 0..K-1), a (attribute "
            "0..M-1), split (0/1/2 or train/val/test)",
            "optional columns: mask (a mask image per row, nonzero = object) or xmin, ymin, xmax, ymax (a box "
            "in pixels of the original image); y_name, a_name (names of the values)",
        ],
        options={"masks": MASKS_OPTION},
    ),
}

NICO_CONTEXTS = ("autumn", "dim", "grass", "outdoor", "rock", "water")
NICO_DEFAULT_CLASSES = ("bird", "cat", "dog", "horse", "sheep", "cow")
NICO_EVAL_SHARE = 0.2  # val and test each take this share of the smallest (class, context) cell
NICO_DEFAULT_DOMINANT_SHARE = 0.9
NICO_RELEASE_FOLDERS = (".", "train", "public_dg_0416/train", "track_1/public_dg_0416/train")

IN9_VARIANTS = ("mixed_same", "mixed_rand", "mixed_next", "only_fg", "no_fg", "only_bg_b", "only_bg_t")
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
    for line, row in _read_csv(path, ("image", *BOX_COLUMNS)):
        boxes.setdefault(str(PurePosixPath(row["image"].strip())), []).append(_parse_box(path, line, row))
    return boxes


def _parse_box(path: Path, line: int, row: dict[str, str]) -> tuple[int, int, int, int]:
    """The pixel box of a row's xmin, ymin, xmax, ymax (half-open, fractions rounded outward)."""
    coords = [_parse_float(path, line, key, row[key]) for key in BOX_COLUMNS]
    if not (coords[0] < coords[2] and coords[1] < coords[3]):
        raise HarnessError(f"{path}: line {line}: empty box (need xmin < xmax and ymin < ymax), got {coords}")
    return round_box_outward(*coords)


# ----------------------------------------------------------------------------- file parsing helpers


def _read_text(path: Path) -> str:
    """The text of a metadata file (a UTF-8 byte-order mark is dropped); one line when it is absent,
    unreadable or not UTF-8 (issue 31)."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HarnessError(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; save the file as UTF-8"
        ) from exc


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a comma-separated file with a header, as (line number, {column: value})."""
    return _read_csv_table(path, required)[1]


def _read_csv_table(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of a comma-separated file; the ``required`` columns must be there."""
    try:
        records = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    except csv.Error as exc:
        raise HarnessError(f"{path}: not a readable CSV file ({exc})") from exc
    rows = [(number, row) for number, row in enumerate(records, start=1) if row]
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
    return header, parsed


def _read_table(path: Path, n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated rows with exactly ``n_fields`` fields (blank lines skipped)."""
    for number, text in enumerate(_read_text(path).splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise HarnessError(f"{path}: line {number}: expected {n_fields} fields, got {len(fields)}")
        yield number, fields


class _DataRoot:
    """A data root and the files its metadata names: each must exist and stay inside the root once
    symlinks are resolved, so a row ``../elsewhere/img.jpg`` or a link out of the root is refused (issue 31)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.real = os.path.realpath(path)
        self._real_folders: dict[str, str] = {}

    def file(self, name: str, named_in: Path, line: int, column: str, folder: str = "") -> tuple[str, Path]:
        """(path relative to the root, path) of the file ``name`` that ``column`` gives on ``line``, in
        ``folder`` below the root."""
        name = name.strip()
        if not name:
            raise HarnessError(f"{named_in}: line {line}: empty {column}")
        rel = f"{folder}/{name}" if folder else name
        path = os.path.join(self.path, rel)
        real, mode = self._resolve(path)
        if real != self.real and not real.startswith(self.real + os.sep):
            below = f" (in {folder}/)" if folder else ""
            raise HarnessError(
                f"{named_in}: line {line}: {column} {name!r}{below} leads outside the data root {self.path}"
            )
        if mode is None or not stat.S_ISREG(mode):
            raise HarnessError(f"{path}: file not found (named on line {line} of {named_in})")
        return rel, Path(path)

    def _resolve(self, path: str) -> tuple[str, int | None]:
        """(real path, mode of the file there, None when absent). Each folder is resolved once and a file
        costs one lstat, so a 200,000-row metadata file is checked in seconds."""
        folder, base = os.path.split(path)
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, base)
        try:
            mode = os.lstat(real).st_mode
        except OSError:
            return os.path.realpath(real), None
        if base == ".." or stat.S_ISLNK(mode):
            real = os.path.realpath(real)
            try:
                mode = os.stat(real).st_mode
            except OSError:
                mode = None
        return real, mode


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


def _pick_layout(root: Path, name: str, layouts: tuple[tuple[str, Callable], ...]) -> Callable:
    """The reader of the first layout whose marker file is in ``root`` (a dataset several copies of which
    people have on disk, each in its own layout)."""
    for marker, reader in layouts:
        if (root / marker).is_file():
            return reader
    raise HarnessError(f"{root}: no {name} layout found (expected {' or '.join(m for m, _ in layouts)})")


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
    data_root = _DataRoot(root)
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, row in _read_csv(metadata, ("img_id", "img_filename", "y", "split", "place")):
        label = _parse_choice(metadata, line, "y", row["y"], BINARY)
        place = _parse_choice(metadata, line, "place", row["place"], BINARY)
        split = SPLIT_NAMES[_parse_choice(metadata, line, "split", row["split"], SPLIT_CODES)]
        rel, path = data_root.file(row["img_filename"], metadata, line, "img_filename")
        mask = cub_mask(rel) if cub_mask else None
        splits[split].append(_Record(path, rel, label, place, 2 * label + place, mask))
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


@dataclass
class _CelebaTables:
    """CelebA's attribute and partition tables, whichever files they were read from."""

    attributes_file: Path
    names: list[str]  # the attribute names in column order
    row_of: dict[str, int]  # image file name -> its row of ``values``
    values: np.ndarray  # (images, attributes), each -1 or 1
    partition_file: Path
    partition: list[tuple[int, str, str]]  # (line, image file name, split code)


def _celeba_text_tables(root: Path) -> _CelebaTables:
    """The original release: list_attr_celeba.txt (an image count, the attribute names, then an image and its
    values per line) and list_eval_partition.txt (an image and its split per line)."""
    attributes = root / "list_attr_celeba.txt"
    lines = _read_text(attributes).splitlines()
    count_line = lines[0].strip() if lines else ""
    names = lines[1].split() if len(lines) > 1 else []
    if not count_line.isdigit() or not names:
        raise HarnessError(f"{attributes}: expected an image count on line 1 and attribute names on line 2")
    rows = []
    for number, text in enumerate(lines[2:], start=3):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise HarnessError(
                f"{attributes}: line {number}: expected {len(names) + 1} fields, got {len(fields)}"
            )
        rows.append((number, fields[0], fields[1:]))
    row_of, values = _celeba_values(attributes, names, rows)
    if int(count_line) != len(values):
        raise HarnessError(
            f"{attributes}: line 1 declares {count_line} images but the file lists {len(values)}"
        )
    partition = root / "list_eval_partition.txt"
    return _CelebaTables(
        attributes, names, row_of, values, partition,
        [(line, image, code) for line, (image, code) in _read_table(partition, 2)],
    )


def _celeba_csv_tables(root: Path) -> _CelebaTables:
    """The CSV copies (Kaggle's, WILDS' celebA_v1.0): list_attr_celeba.csv with columns image_id and the
    attribute names, list_eval_partition.csv with columns image_id, partition."""
    attributes, partition = root / "list_attr_celeba.csv", root / "list_eval_partition.csv"
    header, rows = _read_csv_table(attributes, ("image_id",))
    names = [name for name in header if name != "image_id"]
    row_of, values = _celeba_values(
        attributes, names, [(line, row["image_id"].strip(), [row[name] for name in names]) for line, row in rows]
    )
    return _CelebaTables(
        attributes, names, row_of, values, partition,
        [(line, row["image_id"].strip(), row["partition"])
         for line, row in _read_csv(partition, ("image_id", "partition"))],
    )


def _celeba_values(
    path: Path, names: list[str], rows: list[tuple[int, str, list[str]]]
) -> tuple[dict[str, int], np.ndarray]:
    """Row of each image and the (images, attributes) matrix of (line, image, values) rows, values -1 or 1."""
    row_of: dict[str, int] = {}
    matrix: list[list[int]] = []
    for line, image, fields in rows:
        bad = next((value for value in fields if value.strip() not in ("-1", "1")), None)
        if bad is not None:
            raise HarnessError(f"{path}: line {line}: attribute value {bad!r} is not -1 or 1")
        row_of[image] = len(matrix)
        matrix.append([int(value) for value in fields])
    return row_of, np.asarray(matrix, dtype=np.int8).reshape(len(matrix), len(names))


CELEBA_LAYOUTS = (("list_attr_celeba.txt", _celeba_text_tables), ("list_attr_celeba.csv", _celeba_csv_tables))
CELEBA_NESTED_IMAGES = "img_align_celeba/img_align_celeba"  # how Kaggle's archive unpacks


def _load_celeba(root: Path, options: dict[str, str]) -> _Layout:
    tables = _pick_layout(root, "celeba", CELEBA_LAYOUTS)(root)
    target, spurious = options.get("target", "Blond_Hair"), options.get("spurious", "Male")
    for role, attribute in (("target", target), ("spurious", spurious)):
        if attribute not in tables.names:
            raise HarnessError(
                f"{tables.attributes_file}: unknown {role} attribute {attribute!r}; valid: {', '.join(tables.names)}"
            )
    if target == spurious:
        raise HarnessError(f"target and spurious attribute are both {target!r}; choose two different ones")
    target_col, spurious_col = tables.names.index(target), tables.names.index(spurious)
    images = CELEBA_NESTED_IMAGES if (root / CELEBA_NESTED_IMAGES).is_dir() else "img_align_celeba"
    data_root = _DataRoot(root)
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, image, code in tables.partition:
        split = SPLIT_NAMES[_parse_choice(tables.partition_file, line, "split", code, SPLIT_CODES)]
        if image not in tables.row_of:
            raise HarnessError(
                f"{tables.partition_file}: line {line}: image {image} is not in {tables.attributes_file}"
            )
        row = tables.values[tables.row_of[image]]
        label, attr = int(row[target_col] == 1), int(row[spurious_col] == 1)
        rel, path = data_root.file(image, tables.partition_file, line, "image", images)
        splits[split].append(_Record(path, rel, label, attr, 2 * label + attr))
    class_names, spurious_names = [f"not_{target}", target], [f"not_{spurious}", spurious]
    return _Layout(
        class_names=class_names,
        spurious_names=spurious_names,
        group_names=[f"{c}/{s}" for c in class_names for s in spurious_names],
        splits=splits,
        info={"target": target, "spurious": spurious},
    )


# ----------------------------------------------------------------------------- ISIC

ISIC_UNLABELLED = ("", "unknown", "nan")  # plus anything starting with "indeterminate"
ISIC_FOLDS = {"train": 0, "val": 1, "test": 2}
ISIC_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def _isic_george_records(root: Path) -> tuple[dict[str, list[_Record]], int]:
    """GEORGE's layout: labels.csv (Image Index, benign_malignant, patch, fold) and images/; rows without a
    diagnosis are left out and counted."""
    labels_csv = root / "labels.csv"
    data_root = _DataRoot(root)
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    excluded = 0
    for line, row in _read_csv(labels_csv, ("Image Index", "benign_malignant", "patch", "fold")):
        diagnosis = row["benign_malignant"].strip().lower()
        if diagnosis in ISIC_UNLABELLED or diagnosis.startswith("indeterminate"):
            excluded += 1
            continue
        label = _parse_choice(labels_csv, line, "benign_malignant", diagnosis, {"benign": 0, "malignant": 1})
        patch = _parse_choice(labels_csv, line, "patch", row["patch"], ISIC_BINARY)
        split = SPLIT_NAMES[_parse_choice(labels_csv, line, "fold", row["fold"], ISIC_FOLDS)]
        name = row["Image Index"].strip()
        name = name if PurePosixPath(name).suffix else f"{name}.jpg"
        rel, path = data_root.file(name, labels_csv, line, "Image Index", "images")
        splits[split].append(_Record(path, rel, label, patch, 2 * label + patch))
    return splits, excluded


def _isic_authors_records(root: Path) -> tuple[dict[str, list[_Record]], int]:
    """The SLIM authors' layout: metadata.csv (img_filename, y 0 benign / 1 malignant, split 0/1/2, place
    0/1 = coloured patch) and the images in img/."""
    metadata = root / "metadata.csv"
    data_root = _DataRoot(root)
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, row in _read_csv(metadata, ("img_filename", "y", "split", "place")):
        label = _parse_choice(metadata, line, "y", row["y"], ISIC_BINARY)
        patch = _parse_choice(metadata, line, "place", row["place"], ISIC_BINARY)
        split = SPLIT_NAMES[_parse_choice(metadata, line, "split", row["split"], SPLIT_CODES)]
        rel, path = data_root.file(row["img_filename"], metadata, line, "img_filename", "img")
        splits[split].append(_Record(path, rel, label, patch, 2 * label + patch))
    return splits, 0


ISIC_LAYOUTS = (("labels.csv", _isic_george_records), ("metadata.csv", _isic_authors_records))


def _load_isic(root: Path, options: dict[str, str]) -> _Layout:
    read = _pick_layout(root, "isic", ISIC_LAYOUTS)
    patch_masks = UserMasks(Path(options["patch_masks"]).expanduser()) if "patch_masks" in options else None
    splits, excluded = read(root)
    records = [r for split in splits.values() for r in split]
    if patch_masks is not None:
        for r in records:  # an image labelled without a patch and without a patch mask has an empty one
            r.patch_mask = patch_masks.source(r.rel) or (MaskSource("empty") if r.spurious == 0 else None)
    # benign/no_patch, benign/patch, malignant/no_patch always; malignant/patch only when it occurs.
    group_names = ["benign/no_patch", "benign/patch", "malignant/no_patch"]
    if any(r.group == 3 for r in records):
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


def _nico_images_folder(root: Path, contexts: list[str]) -> Path:
    """The folder holding the context folders: the root itself, or train/ of the release's public_dg_0416
    when the root is that folder, track_1 or the release root (the first of these holding a context)."""
    for below in NICO_RELEASE_FOLDERS:
        if any((root / below / ctx).is_dir() for ctx in contexts):
            return root / below
    return root


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
    images = _nico_images_folder(root, contexts)
    available_contexts = _subfolders(images)
    cells: dict[tuple[str, str], list[Path]] = {}
    for ctx in contexts:
        if ctx not in available_contexts:
            raise HarnessError(
                f"{images / ctx}: context folder not found; present: {', '.join(available_contexts)}"
            )
        available_classes = _subfolders(images / ctx)
        for cls in classes:
            if cls not in available_classes:
                raise HarnessError(
                    f"{images / ctx / cls}: class folder not found; present: {', '.join(available_classes)}"
                )
            cells[cls, ctx] = _image_files(images / ctx / cls)
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

    original, only_fg, no_fg, only_bg_b, only_bg_t: the image's own background (its class). Mixed
    variants name their background image (``fg_<stem>_bg_<stem>``); when that image is in
    bg_challenge/original its class is used. Otherwise mixed_same means the same class, mixed_next the next class
    (label + 1 mod 9) and mixed_rand a random class: unknown (grouped as mismatch).
    """
    if background_stem is not None and background_stem in class_of_stem:
        return class_of_stem[background_stem]
    if variant in ("original", "only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_same"):
        return label
    if variant == "mixed_next":
        return (label + 1) % num_classes
    return None


def _in9_folders(root: Path, options: dict[str, str]) -> tuple[Path, Path]:
    """(in9l, bg_challenge): the root holds both, or is the Backgrounds Challenge release's bg_challenge
    folder itself, with IN-9L given by option in9l or found beside it."""
    if (root / "bg_challenge").is_dir():
        bg, beside = root / "bg_challenge", root / "in9l"
    elif (root / "original" / "val").is_dir():
        bg, beside = root, root.parent / "in9l"
    else:
        raise HarnessError(f"{root}: neither bg_challenge/ nor the bg_challenge folder itself (original/val/)")
    in9l = Path(options["in9l"]).expanduser() if "in9l" in options else beside
    if not (in9l / "train").is_dir():
        raise HarnessError(
            f"{in9l / 'train'}: folder not found (IN-9L, the train and val splits; give its folder with "
            "--data-option in9l=PATH)"
        )
    return in9l, bg


def _load_imagenet9(root: Path, options: dict[str, str]) -> _Layout:
    in9l, bg = _in9_folders(root, options)
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
            f"in9l/{path.relative_to(in9l).as_posix()}" if path.is_relative_to(in9l)
            else f"bg_challenge/{path.relative_to(bg).as_posix()}",
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


# ----------------------------------------------------------------------------- csv: any dataset from a metadata file

CSV_COLUMNS = ("filename", "y", "a", "split")  # SubpopBench's metadata.csv
CSV_SPLITS = {"0": 0, "1": 1, "2": 2, "train": 0, "val": 1, "test": 2}


def _load_csv(root: Path, options: dict[str, str]) -> _Layout:
    """A dataset of the user's own: metadata.csv with filename, class y, attribute a and split per row;
    groups are the (y, a) pairs. Optional columns: mask (a mask file per row) or a box (xmin, ymin, xmax,
    ymax in pixels of the original image), y_name and a_name (names of the values)."""
    metadata = root / "metadata.csv"
    header, rows = _read_csv_table(metadata, CSV_COLUMNS)
    if not rows:
        raise HarnessError(f"{metadata}: no rows below the header")
    boxes = [column for column in BOX_COLUMNS if column in header]
    if boxes and len(boxes) != len(BOX_COLUMNS):
        raise HarnessError(f"{metadata}: a box needs all of columns {', '.join(BOX_COLUMNS)}; found {', '.join(boxes)}")
    data_root = _DataRoot(root)
    names: dict[str, dict[int, tuple[int, str]]] = {"y": {}, "a": {}}
    splits: dict[str, list[_Record]] = {name: [] for name in SPLIT_NAMES}
    for line, row in rows:
        y, a = (_parse_whole(metadata, line, column, row[column]) for column in ("y", "a"))
        split = SPLIT_NAMES[_parse_choice(metadata, line, "split", row["split"], CSV_SPLITS)]
        rel, path = data_root.file(row["filename"], metadata, line, "filename")
        for column, value in (("y", y), ("a", a)):
            _note_name(metadata, line, column, value, row.get(f"{column}_name", ""), names[column])
        mask = _csv_mask(data_root, metadata, line, row, bool(boxes))
        splits[split].append(_Record(path, rel, y, a, group=-1, mask=mask))  # group once a's values are known
    records = [r for split in splits.values() for r in split]
    class_names = _csv_value_names(metadata, "y", [r.label for r in records], names["y"])
    attribute_names = _csv_value_names(metadata, "a", [r.spurious for r in records], names["a"])
    if len(class_names) < 2:
        raise HarnessError(f"{metadata}: y takes one value only; a classifier needs at least two classes")
    for r in records:
        r.group = r.label * len(attribute_names) + r.spurious
    return _Layout(
        class_names=class_names,
        spurious_names=attribute_names,
        group_names=[f"{c}/{s}" for c in class_names for s in attribute_names],
        splits=splits,
    )


def _parse_whole(path: Path, line: int, column: str, value: str) -> int:
    if not (value.strip().isascii() and value.strip().isdigit()):
        raise HarnessError(f"{path}: line {line}: {column} is {value!r}, expected a whole number >= 0")
    return int(value)


def _note_name(path: Path, line: int, column: str, value: int, name: str, names: dict[int, tuple[int, str]]) -> None:
    """Record the name a row gives ``value`` of ``column`` (empty: none); every row naming it must agree."""
    name = name.strip()
    if not name:
        return
    first_line, first = names.setdefault(value, (line, name))
    if first != name:
        raise HarnessError(
            f"{path}: line {line}: {column}_name {name!r} for {column}={value}, but line {first_line} calls it "
            f"{first!r}"
        )


def _csv_value_names(path: Path, column: str, values: list[int], names: dict[int, tuple[int, str]]) -> list[str]:
    """Names of the values 0..max of ``column`` (given, else '<column>=<value>'); every value must occur."""
    count = max(values, default=-1) + 1
    absent = sorted(set(range(count)) - set(values))
    if absent:
        raise HarnessError(
            f"{path}: {column} never takes the value(s) {', '.join(map(str, absent))}; number its values "
            f"0..{count - 1} without gaps"
        )
    result = [names[v][1] if v in names else f"{column}={v}" for v in range(count)]
    if len(set(result)) != len(result):
        raise HarnessError(f"{path}: two values of {column} share a name: {', '.join(result)}")
    return result


def _csv_mask(data_root: _DataRoot, path: Path, line: int, row: dict[str, str], has_boxes: bool) -> MaskSource | None:
    """A row's mask: its mask file (PNG or other image, nonzero = object; or .npy), else its box, else None."""
    mask = row.get("mask", "").strip()
    box_given = has_boxes and any(row[column].strip() for column in BOX_COLUMNS)
    if mask and box_given:
        raise HarnessError(f"{path}: line {line}: give a mask or a box, not both")
    if mask:
        _, mask_path = data_root.file(mask, path, line, "mask")
        return MaskSource("npy" if mask_path.suffix.lower() == ".npy" else "png", mask_path)
    if box_given:
        return MaskSource("boxes", boxes=(_parse_box(path, line, row),))
    return None


_LOADERS: dict[str, Callable[[Path, dict[str, str]], _Layout]] = {
    "waterbirds": _load_waterbirds,
    "celeba": _load_celeba,
    "isic": _load_isic,
    "nico": _load_nico,
    "imagenet9": _load_imagenet9,
    "csv": _load_csv,
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
