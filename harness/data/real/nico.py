"""NICO++ (DG track): ``<context>/<class>/<image>``, found below the release root too; a long-tailed train
split is drawn, see :func:`nico_split`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.data.dataset import DatasetFacts
from harness.data.real.base import MASKS_OPTION, RealDataset
from harness.data.real.reading import Layout, Record, comma_list, image_files, subfolders

NICO_CONTEXTS = ("autumn", "dim", "grass", "outdoor", "rock", "water")
NICO_DEFAULT_CLASSES = ("bird", "cat", "dog", "horse", "sheep", "cow")
NICO_EVAL_SHARE = 0.2  # val and test each take this share of the smallest (class, context) cell
NICO_DEFAULT_DOMINANT_SHARE = 0.9
NICO_RELEASE_FOLDERS = (".", "train", "public_dg_0416/train", "track_1/public_dg_0416/train")


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


class NICO(RealDataset):
    """NICO++: object classes in contexts, each class mostly in its own context in train (paper Sec. 5.1)."""

    name = "nico"
    description = "NICO++ (DG track): object classes in contexts, long-tailed context skew in train"
    expected = (
        "<context>/<class>/<image>.jpg for contexts autumn, dim, grass, outdoor, rock, water: the folder "
        "holding them, or the release's track_1/public_dg_0416 (its train/), track_1 or the release root",
    )
    options = {
        "classes": "comma-separated class folders (default bird,cat,dog,horse,sheep,cow)",
        "contexts": "comma-separated context folders (default autumn,dim,grass,outdoor,rock,water)",
        "seed": "seed of the split (default 0)",
        "dominant_share": "share of a class's train images from its dominant context (default 0.9)",
        "masks": MASKS_OPTION,
    }
    facts = DatasetFacts("NICO", "multi-class", weighted_avg=False, published="waterbirds",
                         slim_budgets=((40, 0.20), (20, 0.20)), split_sizes=(2220, 740),
                         masks="only user masks or boxes (option masks)",
                         paper_accuracy={"ERM": (11.9, 0.2, 70.9, 1.2), "SLIM_Tr": (78.0, 0.8, 92.1, 0.1),
                                         "SLIM_Val": (73.8, 0.4, 90.7, 0.2), "DFR": (70.9, 2.1, 85.8, 0.6),
                                         "GDRO": (73.3, 1.0, 90.3, 0.5)})

    @staticmethod
    def read_layout(root: Path, options: dict[str, str]) -> Layout:
        classes = comma_list(options.get("classes", ",".join(NICO_DEFAULT_CLASSES)))
        contexts = comma_list(options.get("contexts", ",".join(NICO_CONTEXTS)))
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
        available_contexts = subfolders(images)
        cells: dict[tuple[str, str], list[Path]] = {}
        for ctx in contexts:
            if ctx not in available_contexts:
                raise HarnessError(
                    f"{images / ctx}: context folder not found; present: {', '.join(available_contexts)}"
                )
            available_classes = subfolders(images / ctx)
            for cls in classes:
                if cls not in available_classes:
                    raise HarnessError(
                        f"{images / ctx / cls}: class folder not found; present: {', '.join(available_classes)}"
                    )
                cells[cls, ctx] = image_files(images / ctx / cls)
        drawn, info = nico_split(cells, classes, contexts, seed=seed, dominant_share=dominant_share)
        class_index, context_index = {c: i for i, c in enumerate(classes)}, {c: i for i, c in enumerate(contexts)}
        splits = {
            name: [
                Record(
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
        return Layout(
            class_names=classes,
            spurious_names=contexts,
            group_names=[f"{cls}/{ctx}" for cls in classes for ctx in contexts],
            splits=splits,
            info=info,
        )
