"""Waterbirds (waterbird_complete95_forest2water2): ``metadata.csv`` (img_id, img_filename, y, split 0/1/2,
place) beside the species folders; masks from CUB-200-2011 (option ``cub_root``):
``segmentations/<img_filename>.png`` (grey levels of annotator agreement, object where > 127) or, without
segmentations, ``images.txt`` + ``bounding_boxes.txt`` (img_id x y width height) as box masks.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from harness.core.errors import HarnessError
from harness.data.dataset import DatasetFacts
from harness.data.image_cache import MaskSource, round_box_outward
from harness.data.real.base import MASKS_OPTION, RealDataset
from harness.data.real.reading import (
    BINARY,
    SPLIT_CODES,
    SPLIT_NAMES,
    DataRoot,
    Layout,
    Record,
    parse_choice,
    parse_float,
    read_csv,
    read_table,
)

CUB_SEGMENTATION_THRESHOLD = 127  # CUB grey levels encode annotator agreement: object where most agree


class Waterbirds(RealDataset):
    """Waterbirds: landbird vs waterbird on land or water backgrounds (paper Sec. 5.1)."""

    name = "waterbirds"
    description = "Waterbirds (waterbird_complete95_forest2water2): landbird vs waterbird on land/water"
    expected = (
        "metadata.csv with columns img_id, img_filename, y, split (0 train, 1 val, 2 test), place",
        "<species folder>/<image>.jpg for every img_filename",
    )
    options = {
        "cub_root": "CUB_200_2011 folder: segmentations/<species>/<image>.png, "
        "else images.txt + bounding_boxes.txt",
        "masks": MASKS_OPTION,
    }
    facts = DatasetFacts("Waterbirds", "binary", weighted_avg=True, published="waterbirds",
                         slim_budgets=((120, 0.10), (40, 0.10)), split_sizes=(4795, 1199),
                         masks="CUB segmentations or boxes (option cub_root)", looked_at="bird",
                         paper_accuracy={"ERM": (62.6, 0.3, 97.3, 1.0), "JTT": (83.1, 3.5, 90.6, 0.3),
                                         "SLIM_Tr": (89.1, 0.6, 91.7, 0.5), "SLIM_Val": (91.0, 0.4, 93.8, 0.4),
                                         "DFR": (89.6, 0.7, 92.1, 0.2), "GDRO": (89.9, 0.6, 92.6, 0.1)})

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        metadata = root / "metadata.csv"
        cub_mask = _cub_masks(Path(options["cub_root"]).expanduser()) if "cub_root" in options else None
        data_root = DataRoot(root)
        splits: dict[str, list[Record]] = {name: [] for name in SPLIT_NAMES}
        for line, row in read_csv(metadata, ("img_id", "img_filename", "y", "split", "place")):
            label = parse_choice(metadata, line, "y", row["y"], BINARY)
            place = parse_choice(metadata, line, "place", row["place"], BINARY)
            split = SPLIT_NAMES[parse_choice(metadata, line, "split", row["split"], SPLIT_CODES)]
            rel, path = data_root.file(row["img_filename"], metadata, line, "img_filename")
            mask = cub_mask(rel) if cub_mask else None
            splits[split].append(Record(path, rel, label, place, 2 * label + place, mask))
        return Layout(
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
    path_of = {fields[0]: fields[1] for _, fields in read_table(images_txt, 2)}
    boxes: dict[str, MaskSource] = {}
    for line, (image_id, *numbers) in read_table(boxes_txt, 5):
        x, y, width, height = (
            parse_float(boxes_txt, line, name, v) for name, v in zip("xywh", numbers, strict=True)
        )
        if width <= 0 or height <= 0:
            raise HarnessError(f"{boxes_txt}: line {line}: box width and height must be positive")
        if image_id not in path_of:
            raise HarnessError(f"{boxes_txt}: line {line}: image id {image_id} is not in {images_txt}")
        box = round_box_outward(x, y, x + width, y + height)
        boxes[path_of[image_id]] = MaskSource("boxes", boxes=(box,), clip_boxes=True)
    return boxes.get
