"""Reading the real datasets' files: metadata in text, CSV and whitespace tables (UTF-8, errors of one line
naming the file and line), the files a metadata file names (each inside the data root, issue 31), folders of
images, and the records and layout every dataset's reader produces.
"""
from __future__ import annotations

import codecs
import csv
import io
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.data.image_cache import MaskSource, round_box_outward

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # compared case-insensitively
SPLIT_NAMES = ("train", "val", "test")
SPLIT_CODES = {"0": 0, "1": 1, "2": 2}  # Waterbirds and CelebA split column: index into SPLIT_NAMES
BINARY = {"0": 0, "1": 1}
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")  # pixels of the original image, x = column, y = row


@dataclass
class Record:
    """One image: where it is, its labels and where its masks come from (None: unknown)."""

    image: Path
    rel: str  # path relative to the data root, '/'-separated (user mask lookup)
    label: int
    spurious: int
    group: int
    mask: MaskSource | None = None
    patch_mask: MaskSource | None = None


@dataclass
class Layout:
    """What a dataset's reader found: names, the records of each split, and facts for the benchmark's info."""

    class_names: list[str]
    spurious_names: list[str]
    group_names: list[str]
    splits: dict[str, list[Record]]
    info: dict = field(default_factory=dict)


def parse_box(path: Path, line: int, row: dict[str, str]) -> tuple[int, int, int, int]:
    """The pixel box of a row's xmin, ymin, xmax, ymax (half-open, fractions rounded outward)."""
    coords = [parse_float(path, line, key, row[key]) for key in BOX_COLUMNS]
    if not (coords[0] < coords[2] and coords[1] < coords[3]):
        raise HarnessError(f"{path}: line {line}: empty box (need xmin < xmax and ymin < ymax), got {coords}")
    return round_box_outward(*coords)


def read_text(path: Path) -> str:
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


def read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a comma-separated file with a header, as (line number, {column: value})."""
    return read_csv_table(path, required)[1]


def read_csv_table(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of a comma-separated file; the ``required`` columns must be there."""
    try:
        records = list(csv.reader(io.StringIO(read_text(path), newline="")))
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


def read_table(path: Path, n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated rows with exactly ``n_fields`` fields (blank lines skipped)."""
    for number, text in enumerate(read_text(path).splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise HarnessError(f"{path}: line {number}: expected {n_fields} fields, got {len(fields)}")
        yield number, fields


class DataRoot:
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


def parse_choice(path: Path, line: int, column: str, value: str, allowed: dict[str, int]) -> int:
    key = value.strip()
    if key not in allowed:
        raise HarnessError(
            f"{path}: line {line}: {column} is {value!r}, expected one of {', '.join(allowed)}"
        )
    return allowed[key]


def parse_float(path: Path, line: int, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise HarnessError(f"{path}: line {line}: {column} is {value!r}, expected a number")
    return number


def pick_layout(root: Path, name: str, layouts: tuple[tuple[str, Callable], ...]) -> Callable:
    """The reader of the first layout whose marker file is in ``root`` (a dataset several copies of which
    people have on disk, each in its own layout)."""
    for marker, reader in layouts:
        if (root / marker).is_file():
            return reader
    raise HarnessError(f"{root}: no {name} layout found (expected {' or '.join(m for m, _ in layouts)})")


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise HarnessError(f"{folder}: folder not found")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
