"""CelebA: ``img_align_celeba/``, ``list_eval_partition.txt``, ``list_attr_celeba.txt``, or the CSV copies
(Kaggle, WILDS' celebA_v1.0); target/spurious attributes by name (default Blond_Hair / Male); masks only from
``masks``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.data.dataset import DatasetFacts
from harness.data.real.base import MASKS_OPTION, RealDataset
from harness.data.real.reading import (
    SPLIT_CODES,
    SPLIT_NAMES,
    DataRoot,
    Layout,
    Record,
    parse_choice,
    pick_layout,
    read_csv,
    read_csv_table,
    read_table,
    read_text,
)


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
    lines = read_text(attributes).splitlines()
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
        [(line, image, code) for line, (image, code) in read_table(partition, 2)],
    )


def _celeba_csv_tables(root: Path) -> _CelebaTables:
    """The CSV copies (Kaggle's, WILDS' celebA_v1.0): list_attr_celeba.csv with columns image_id and the
    attribute names, list_eval_partition.csv with columns image_id, partition."""
    attributes, partition = root / "list_attr_celeba.csv", root / "list_eval_partition.csv"
    header, rows = read_csv_table(attributes, ("image_id",))
    names = [name for name in header if name != "image_id"]
    row_of, values = _celeba_values(
        attributes, names, [(line, row["image_id"].strip(), [row[name] for name in names]) for line, row in rows]
    )
    return _CelebaTables(
        attributes, names, row_of, values, partition,
        [(line, row["image_id"].strip(), row["partition"])
         for line, row in read_csv(partition, ("image_id", "partition"))],
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


class CelebA(RealDataset):
    """CelebA: blond hair or not, with the spurious attribute male (paper Sec. 5.1)."""

    name = "celeba"
    description = "CelebA: target attribute (default Blond_Hair) vs spurious attribute (default Male)"
    expected = (
        "img_align_celeba/<image>.jpg (or img_align_celeba/img_align_celeba/, as Kaggle's archive unpacks)",
        "list_eval_partition.txt (image, split 0/1/2) and list_attr_celeba.txt (count line, 40 attribute "
        "names, image + 40 values in {-1, 1}); or the CSV copies of Kaggle and WILDS' celebA_v1.0: "
        "list_eval_partition.csv (image_id, partition) and list_attr_celeba.csv (image_id, 40 attributes)",
    )
    options = {
        "target": "attribute to predict (default Blond_Hair)",
        "spurious": "spurious attribute (default Male)",
        "masks": MASKS_OPTION,
    }
    facts = DatasetFacts("CelebA", "binary", weighted_avg=False, published="celeba",
                         slim_budgets=((200, 0.10), (70, 0.05)), split_sizes=(162770, 19867),
                         masks="CelebAMask-HQ hair masks if given (option masks)",
                         looked_at="hair",  # the paper's target, Blond_Hair
                         paper_accuracy={"ERM": (47.7, 2.1, 94.9, 0.3), "JTT": (81.5, 1.7, 88.1, 0.3),
                                         "SLIM_Tr": (89.4, 0.3, 90.1, 0.2), "SLIM_Val": (89.4, 0.5, 90.7, 0.2),
                                         "DFR": (87.3, 1.0, 90.2, 0.8), "GDRO": (88.9, 1.3, 93.9, 0.1)})

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        tables = pick_layout(root, "celeba", CELEBA_LAYOUTS)(root)
        target, spurious = options.get("target", "Blond_Hair"), options.get("spurious", "Male")
        for role, attribute in (("target", target), ("spurious", spurious)):
            if attribute not in tables.names:
                raise HarnessError(
                    f"{tables.attributes_file}: unknown {role} attribute {attribute!r}; "
                    f"valid: {', '.join(tables.names)}"
                )
        if target == spurious:
            raise HarnessError(f"target and spurious attribute are both {target!r}; choose two different ones")
        target_col, spurious_col = tables.names.index(target), tables.names.index(spurious)
        images = CELEBA_NESTED_IMAGES if (root / CELEBA_NESTED_IMAGES).is_dir() else "img_align_celeba"
        data_root = DataRoot(root)
        splits: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
        for line, image, code in tables.partition:
            split = SPLIT_NAMES[parse_choice(tables.partition_file, line, "split", code, SPLIT_CODES)]
            if image not in tables.row_of:
                raise HarnessError(
                    f"{tables.partition_file}: line {line}: image {image} is not in {tables.attributes_file}"
                )
            row = tables.values[tables.row_of[image]]
            label, attr = int(row[target_col] == 1), int(row[spurious_col] == 1)
            rel, path = data_root.file(image, tables.partition_file, line, "image", images)
            splits[split].append(Record(path, rel, label, attr, 2 * label + attr))
        class_names, spurious_names = [f"not_{target}", target], [f"not_{spurious}", spurious]
        return Layout(
            class_names=class_names,
            spurious_names=spurious_names,
            group_names=[f"{c}/{s}" for c in class_names for s in spurious_names],
            splits=splits,
            info={"target": target, "spurious": spurious},
        )
