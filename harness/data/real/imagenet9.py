"""ImageNet-9 / Backgrounds Challenge: ``in9l/{train,val}/<NN_class>/`` and
``bg_challenge/<variant>/val/<NN_class>/`` (the root may be bg_challenge itself); see
:func:`imagenet9_background`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import HarnessError
from harness.data.dataset import DatasetFacts
from harness.data.image_cache import MaskSource
from harness.data.real.base import MASKS_OPTION, RealDataset
from harness.data.real.reading import Layout, Record, comma_list, image_files, subfolders

IN9_VARIANTS = ("mixed_same", "mixed_rand", "mixed_next", "only_fg", "no_fg", "only_bg_b", "only_bg_t")
MIXED_NAME = re.compile(r"^fg_(?P<fg>.+)_bg_(?P<bg>.+)$")  # e.g. fg_n02497673_05944_bg_n02536864_02721


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


class ImageNet9(RealDataset):
    """ImageNet-9: nine classes, with test variants whose backgrounds change (paper Sec. 5.1)."""

    name = "imagenet9"
    description = "ImageNet-9 / Backgrounds Challenge: 9 classes, test variants with changed backgrounds"
    expected = (
        "in9l/train/<NN_class>/ and in9l/val/<NN_class>/ (e.g. 00_dog ... 08_fish)",
        "bg_challenge/original/val/<NN_class>/ (the test split)",
        "bg_challenge/<variant>/val/<NN_class>/ for the variants present among mixed_same, "
        "mixed_rand, mixed_next, only_fg, no_fg, only_bg_b, only_bg_t",
        "bg_challenge/fg_mask/val/<NN_class>/<image>.npy (optional foreground masks)",
        "the data root may also be the bg_challenge folder itself, with in9l/ beside it (or option in9l)",
    )
    options = {
        "variants": "comma-separated test variants to load (default all present)",
        "in9l": "the IN-9L folder (train/, val/) when it is not in or beside the data root",
        "masks": MASKS_OPTION,
    }
    facts = DatasetFacts("ImageNet9", "multi-class", weighted_avg=False, published="waterbirds",
                         slim_budgets=((180, 0.10), (50, 0.10)), split_sizes=(45405, 4185),
                         masks="test splits: fg_mask arrays or only_fg non-black pixels; train/val only with "
                         "option masks",
                         test_splits=("test_mixed_rand", "test"),  # the paper reports ImageNet-9 on mixed_rand
                         paper_accuracy={"ERM": (55.3, 2.0, 75.6, 1.1), "SLIM_Tr": (68.1, 0.3, 74.5, 0.2),
                                         "SLIM_Val": (64.6, 0.4, 74.2, 0.3)})

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        in9l, bg = _in9_folders(root, options)
        folders = subfolders(in9l / "train")
        if not folders:
            raise HarnessError(f"{in9l / 'train'}: no class folders (expected e.g. 00_dog ... 08_fish)")
        class_names = [re.sub(r"^\d+_", "", folder) for folder in folders]
        present = [v for v in IN9_VARIANTS if (bg / v / "val").is_dir()]
        variants = comma_list(options["variants"]) if "variants" in options else present
        for variant in variants:
            if variant not in IN9_VARIANTS:
                raise HarnessError(f"unknown ImageNet-9 variant {variant!r}; valid: {', '.join(IN9_VARIANTS)}")
            if variant not in present:
                raise HarnessError(f"{bg / variant / 'val'}: variant folder not found")

        def listing(split_dir: Path) -> list[tuple[int, Path]]:
            items = []
            for folder in subfolders(split_dir):
                if folder not in folders:
                    raise HarnessError(
                        f"{split_dir / folder}: class folder not in {in9l / 'train'} ({', '.join(folders)})"
                    )
                items += [(folders.index(folder), path) for path in image_files(split_dir / folder)]
            return items

        def record(label: int, path: Path, background: int | None, mask: MaskSource | None) -> Record:
            spurious = len(class_names) if background is None else background
            return Record(
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
        return Layout(
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
        for path in image_files(only_fg / folder)
    }

    def lookup(folder: str, stem: str) -> MaskSource | None:
        array = arrays / folder / f"{stem}.npy"
        if array.is_file():
            return MaskSource("npy", array)
        image = only_fg_files.get((folder, stem))
        return MaskSource("nonblack", image) if image is not None else None

    return lookup
