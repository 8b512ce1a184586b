"""Facts about each paper dataset, in one table that tables, evaluation and hyperparameters read
(:data:`FACTS`); the scales; how a synthetic preset's name says which paper dataset it stands for.

A synthetic preset ``<paper>-synth`` stands for the paper dataset ``<paper>`` and shares its facts.
This module imports nothing of the harness but its errors, so any module may read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import HarnessError

SCALES = ("tiny", "quick", "paper")  # synthetic preset sizes and the matching training budgets
REAL_IMAGE_SIZE = 224  # real datasets are decoded and resized to this size unless --image-size says otherwise
SYNTH_SUFFIX = "-synth"


@dataclass(frozen=True)
class DatasetFacts:
    """What the paper says about a dataset, in one place.

    ``family``: "binary" (paper Table 2) or "multi-class" (Table 3). ``weighted_avg``: its "Avg" weights
    test group accuracies by the train group proportions (the Waterbirds convention). ``published``: whose
    published JTT / GroupDRO / ERM settings it uses at the paper scale. ``slim_budgets``: paper Table 4's
    (attention budget, curated subset fraction) of SLIM_Tr and SLIM_Val; ``split_sizes``: Table 4's
    (train, val) sizes, so each budget is also a share of its split. ``test_splits``: the accuracy tables'
    test split, first one present wins. ``masks``: which object masks the real dataset has. ``looked_at``:
    in plain words, the object the model should look at in every image (what the masks mark), where one
    word fits all classes; None where each class is its own object (NICO, ImageNet-9).
    """

    title: str
    family: str
    weighted_avg: bool
    published: str
    slim_budgets: tuple[tuple[int, float], tuple[int, float]]
    split_sizes: tuple[int, int]
    masks: str
    test_splits: tuple[str, ...] = ("test",)
    looked_at: str | None = None


_ROWS = (
    # name, title, family, weighted_avg, published, slim_budgets (SLIM_Tr, SLIM_Val), split_sizes (train, val)
    ("waterbirds", "Waterbirds", "binary", True, "waterbirds", ((120, 0.10), (40, 0.10)), (4795, 1199)),
    ("celeba", "CelebA", "binary", False, "celeba", ((200, 0.10), (70, 0.05)), (162770, 19867)),
    ("isic", "ISIC", "binary", False, "waterbirds", ((120, 0.20), (40, 0.30)), (17000, 2000)),
    ("nico", "NICO", "multi-class", False, "waterbirds", ((40, 0.20), (20, 0.20)), (2220, 740)),
    ("imagenet9", "ImageNet9", "multi-class", False, "waterbirds", ((180, 0.10), (50, 0.10)), (45405, 4185)),
)
_MASKS = {
    "waterbirds": "CUB segmentations or boxes (option cub_root)",
    "celeba": "CelebAMask-HQ hair masks if given (option masks)",
    "isic": "lesion masks if given (option masks); patch masks (patch_masks) mark wrong attention",
    "nico": "only user masks or boxes (option masks)",
    "imagenet9": "test splits: fg_mask arrays or only_fg non-black pixels; train/val only with option masks",
}
_TEST_SPLITS = {"imagenet9": ("test_mixed_rand", "test")}  # the paper reports ImageNet-9 on mixed_rand
_LOOKED_AT = {"waterbirds": "bird", "celeba": "hair", "isic": "lesion"}  # CelebA: its paper target, Blond_Hair
FACTS: dict[str, DatasetFacts] = {
    name: DatasetFacts(*row, masks=_MASKS[name], test_splits=_TEST_SPLITS.get(name, ("test",)),
                       looked_at=_LOOKED_AT.get(name))
    for name, *row in _ROWS
}


def is_synthetic(name: str) -> bool:
    """Whether ``name`` is a generated preset (``<paper dataset>-synth``)."""
    return name.endswith(SYNTH_SUFFIX)


def paper_dataset(name: str) -> str:
    """The paper dataset a name stands for: 'waterbirds-synth' -> 'waterbirds'."""
    return name[: -len(SYNTH_SUFFIX)] if is_synthetic(name) else name


def facts(name: str) -> DatasetFacts | None:
    """The facts of the paper dataset ``name`` stands for (None for datasets the paper has not)."""
    return FACTS.get(paper_dataset(name))


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise HarnessError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
