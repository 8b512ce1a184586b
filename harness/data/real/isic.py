"""ISIC: the GEORGE-style layout ``labels.csv`` (Image Index, benign_malignant, patch, fold) and ``images/``,
rows whose benign_malignant is empty, "unknown" or "indeterminate..." left out (counted in
info["excluded_rows"]); or the SLIM authors' ``metadata.csv`` and ``img/``. ``masks`` gives lesion masks
(core), ``patch_masks`` the coloured-patch masks, exposed as info["patch_masks"][split] (attention there is
wrong).
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from harness.data.dataset import DatasetFacts
from harness.data.image_cache import MaskSource
from harness.data.real.base import MASKS_OPTION, RealDataset, UserMasks
from harness.data.real.reading import (
    SPLIT_CODES,
    SPLIT_NAMES,
    DataRoot,
    Layout,
    Record,
    parse_choice,
    pick_layout,
    read_csv,
)

ISIC_UNLABELLED = ("", "unknown", "nan")  # plus anything starting with "indeterminate"
ISIC_FOLDS = {"train": 0, "val": 1, "test": 2}
ISIC_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def _isic_george_records(root: Path) -> tuple[dict[str, list[Record]], int]:
    """GEORGE's layout: labels.csv (Image Index, benign_malignant, patch, fold) and images/; rows without a
    diagnosis are left out and counted."""
    labels_csv = root / "labels.csv"
    data_root = DataRoot(root)
    splits: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    excluded = 0
    for line, row in read_csv(labels_csv, ("Image Index", "benign_malignant", "patch", "fold")):
        diagnosis = row["benign_malignant"].strip().lower()
        if diagnosis in ISIC_UNLABELLED or diagnosis.startswith("indeterminate"):
            excluded += 1
            continue
        label = parse_choice(labels_csv, line, "benign_malignant", diagnosis, {"benign": 0, "malignant": 1})
        patch = parse_choice(labels_csv, line, "patch", row["patch"], ISIC_BINARY)
        split = SPLIT_NAMES[parse_choice(labels_csv, line, "fold", row["fold"], ISIC_FOLDS)]
        name = row["Image Index"].strip()
        name = name if PurePosixPath(name).suffix else f"{name}.jpg"
        rel, path = data_root.file(name, labels_csv, line, "Image Index", "images")
        splits[split].append(Record(path, rel, label, patch, 2 * label + patch))
    return splits, excluded


def _isic_authors_records(root: Path) -> tuple[dict[str, list[Record]], int]:
    """The SLIM authors' layout: metadata.csv (img_filename, y 0 benign / 1 malignant, split 0/1/2, place
    0/1 = coloured patch) and the images in img/."""
    metadata = root / "metadata.csv"
    data_root = DataRoot(root)
    splits: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
    for line, row in read_csv(metadata, ("img_filename", "y", "split", "place")):
        label = parse_choice(metadata, line, "y", row["y"], ISIC_BINARY)
        patch = parse_choice(metadata, line, "place", row["place"], ISIC_BINARY)
        split = SPLIT_NAMES[parse_choice(metadata, line, "split", row["split"], SPLIT_CODES)]
        rel, path = data_root.file(row["img_filename"], metadata, line, "img_filename", "img")
        splits[split].append(Record(path, rel, label, patch, 2 * label + patch))
    return splits, 0


ISIC_LAYOUTS = (("labels.csv", _isic_george_records), ("metadata.csv", _isic_authors_records))


class ISIC(RealDataset):
    """ISIC skin lesions: benign or malignant, with coloured patches on benign images (paper Sec. 5.1)."""

    name = "isic"
    description = "ISIC skin lesions: benign vs malignant; coloured patches (benign only) are spurious"
    expected = (
        "GEORGE's layout: labels.csv with columns Image Index, benign_malignant (benign/malignant), "
        "patch (0/1), fold (train/val/test); images/<Image Index> (a name without extension means .jpg)",
        "or the SLIM authors' layout: metadata.csv with columns img_filename, y (0 benign, 1 malignant), "
        "split (0/1/2), place (1 = coloured patch); img/<img_filename>",
    )
    options = {
        "masks": "lesion (core) masks: " + MASKS_OPTION,
        "patch_masks": "coloured-patch masks, same layout; an image without a patch may lack one",
    }
    facts = DatasetFacts("ISIC", "binary", weighted_avg=False, published="waterbirds",
                         slim_budgets=((120, 0.20), (40, 0.30)), split_sizes=(17000, 2000),
                         masks="lesion masks if given (option masks); patch masks (patch_masks) mark wrong "
                         "attention", looked_at="lesion",
                         paper_accuracy={"ERM": (56.7, 2.2, 79.0, 1.3), "JTT": (28.1, 4.3, 86.2, 0.3),
                                         "SLIM_Tr": (79.1, 0.5, 88.5, 0.4), "SLIM_Val": (74.0, 0.2, 85.4, 0.2),
                                         "DFR": (71.9, 0.7, 84.3, 0.3), "GDRO": (66.8, 3.5, 80.5, 1.9)})

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        read = pick_layout(root, "isic", ISIC_LAYOUTS)
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
        return Layout(
            class_names=["benign", "malignant"],
            spurious_names=["no_patch", "patch"],
            group_names=group_names,
            splits=splits,
            info={"excluded_rows": excluded},
        )
