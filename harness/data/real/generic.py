"""Datasets of the user's own in a generic layout: ``csv``, a ``metadata.csv`` (filename, y, a, split;
SubpopBench's convention), groups (y, a); masks from an optional mask or box column.
"""
from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.data.image_cache import MaskSource
from harness.data.real.base import MASKS_OPTION, RealDataset
from harness.data.real.reading import (
    BOX_COLUMNS,
    SPLIT_NAMES,
    DataRoot,
    Layout,
    Record,
    parse_box,
    parse_choice,
    read_csv_table,
)

CSV_COLUMNS = ("filename", "y", "a", "split")  # SubpopBench's metadata.csv
CSV_SPLITS = {"0": 0, "1": 1, "2": 2, "train": 0, "val": 1, "test": 2}


class MetadataCsv(RealDataset):
    """A dataset of the user's own described by a metadata file."""

    name = "csv"
    description = ("your own dataset from a metadata file (SubpopBench's convention): class y, attribute a, "
                   "groups (y, a)")
    expected = (
        "metadata.csv with columns filename (path below the data root), y (class 0..K-1), a (attribute "
        "0..M-1), split (0/1/2 or train/val/test)",
        "optional columns: mask (a mask image per row, nonzero = object) or xmin, ymin, xmax, ymax (a box "
        "in pixels of the original image); y_name, a_name (names of the values)",
    )
    options = {"masks": MASKS_OPTION}

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        """A dataset of the user's own: metadata.csv with filename, class y, attribute a and split per row;
        groups are the (y, a) pairs. Optional columns: mask (a mask file per row) or a box (xmin, ymin, xmax,
        ymax in pixels of the original image), y_name and a_name (names of the values)."""
        metadata = root / "metadata.csv"
        header, rows = read_csv_table(metadata, CSV_COLUMNS)
        if not rows:
            raise HarnessError(f"{metadata}: no rows below the header")
        boxes = [column for column in BOX_COLUMNS if column in header]
        if boxes and len(boxes) != len(BOX_COLUMNS):
            raise HarnessError(
                f"{metadata}: a box needs all of columns {', '.join(BOX_COLUMNS)}; found {', '.join(boxes)}"
            )
        data_root = DataRoot(root)
        names: dict[str, dict[int, tuple[int, str]]] = {"y": {}, "a": {}}
        splits: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
        for line, row in rows:
            y, a = (_parse_whole(metadata, line, column, row[column]) for column in ("y", "a"))
            split = SPLIT_NAMES[parse_choice(metadata, line, "split", row["split"], CSV_SPLITS)]
            rel, path = data_root.file(row["filename"], metadata, line, "filename")
            for column, value in (("y", y), ("a", a)):
                _note_name(metadata, line, column, value, row.get(f"{column}_name", ""), names[column])
            mask = _csv_mask(data_root, metadata, line, row, bool(boxes))
            splits[split].append(Record(path, rel, y, a, group=-1, mask=mask))  # group once a's values are known
        records = [r for split in splits.values() for r in split]
        class_names = _csv_value_names(metadata, "y", [r.label for r in records], names["y"])
        attribute_names = _csv_value_names(metadata, "a", [r.spurious for r in records], names["a"])
        if len(class_names) < 2:
            raise HarnessError(f"{metadata}: y takes one value only; a classifier needs at least two classes")
        for r in records:
            r.group = r.label * len(attribute_names) + r.spurious
        return Layout(
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


def _csv_mask(data_root: DataRoot, path: Path, line: int, row: dict[str, str], has_boxes: bool) -> MaskSource | None:
    """A row's mask: its mask file (PNG or other image, nonzero = object; or .npy), else its box, else None."""
    mask = row.get("mask", "").strip()
    box_given = has_boxes and any(row[column].strip() for column in BOX_COLUMNS)
    if mask and box_given:
        raise HarnessError(f"{path}: line {line}: give a mask or a box, not both")
    if mask:
        _, mask_path = data_root.file(mask, path, line, "mask")
        return MaskSource("npy" if mask_path.suffix.lower() == ".npy" else "png", mask_path)
    if box_given:
        return MaskSource("boxes", boxes=(parse_box(path, line, row),))
    return None
