"""Tiny fixture trees in the published layouts of the real datasets, with the facts a loader must find.

Every image is a flat colour chosen from its group (so a test can tell which record a row came
from after decoding), saved in the dataset's real encoding (JPEG unless the dataset uses PNG).
Object regions are aligned to 16-pixel JPEG blocks so that decoding is exact enough to threshold.
Expected masks are worked out by hand for ``MASK_IMAGE_SIZE`` and written down as slices.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

MASK_IMAGE_SIZE = 16  # the image_size the expected masks below are worked out for

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()

GROUP_COLOURS = [(230, 40, 40), (40, 200, 40), (40, 40, 230), (220, 220, 40), (40, 220, 220), (220, 40, 220)]


def expected_box_mask(rows: slice, cols: slice, size: int = MASK_IMAGE_SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = True
    return mask


def save_flat(path: Path, colour: tuple[int, int, int], width: int, height: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), colour).save(path, format=fmt, quality=95)


def save_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path, format="PNG")


# ----------------------------------------------------------------------------- Waterbirds

# A 64 x 32 (w x h) Waterbirds image; the bird occupies x 8..31, y 4..11 (a wide, non-square box).
WATERBIRDS_SIZE = (64, 32)
# At 16 x 16 the x scale is 4 and the y scale 2: columns 8/4..32/4 = 2..8, rows 4/2..12/2 = 2..6.
WATERBIRDS_MASK = expected_box_mask(slice(2, 6), slice(2, 8))
# (y, place) counts per split: skewed train, balanced val/test.
WATERBIRDS_COUNTS = {
    0: {(0, 0): 3, (0, 1): 1, (1, 0): 1, (1, 1): 2},
    1: dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1)], 1),
    2: dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1)], 1),
}
SPECIES = {0: "010.Red_winged_Blackbird", 1: "001.Black_footed_Albatross"}


def make_waterbirds_fixture(root: Path, cub: str | None = "segmentations") -> dict:
    """Waterbirds folder (+ CUB_200_2011 beside it with 'segmentations', 'boxes' or nothing)."""
    root.mkdir(parents=True, exist_ok=True)
    rows, expected = [], {"train": [], "val": [], "test": []}
    names = ("train", "val", "test")
    for split, counts in WATERBIRDS_COUNTS.items():
        for (label, place), count in counts.items():
            for _ in range(count):
                img_id = len(rows) + 1
                species = SPECIES[label]
                rel = f"{species}/{species.split('.')[1]}_{img_id:04d}_{100 + img_id}.jpg"
                save_flat(root / rel, GROUP_COLOURS[2 * label + place], *WATERBIRDS_SIZE)
                place_file = f"/{'b/bamboo_forest' if place == 0 else 'o/ocean'}/00000{img_id}.jpg"
                rows.append([img_id, rel, label, split, place, place_file])
                expected[names[split]].append(
                    {"rel": rel, "label": label, "place": place, "group": 2 * label + place}
                )
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img_id", "img_filename", "y", "split", "place", "place_filename"])
        writer.writerows(rows)
    facts = {"splits": expected, "rows": rows, "cub_root": None}
    if cub is not None:
        cub_root = root.parent / "CUB_200_2011"
        facts["cub_root"] = cub_root
        _make_cub(cub_root, [row[1] for row in rows], cub)
    return facts


def _make_cub(cub_root: Path, rels: list[str], kind: str) -> None:
    cub_root.mkdir(parents=True, exist_ok=True)
    if kind == "segmentations":
        for rel in rels:
            seg = np.zeros((WATERBIRDS_SIZE[1], WATERBIRDS_SIZE[0]), dtype=np.uint8)
            seg[4:12, 8:32] = 255  # every annotator: bird
            seg[20:32, 40:64] = 100  # a minority of annotators: below the threshold, not bird
            save_grey(cub_root / "segmentations" / Path(rel).with_suffix(".png"), seg)
        return
    # CUB ids are numbered independently of Waterbirds (matching is by path): reverse them.
    with open(cub_root / "images.txt", "w") as images, open(cub_root / "bounding_boxes.txt", "w") as boxes:
        for cub_id, rel in enumerate(reversed(rels), start=1):
            images.write(f"{cub_id} {rel}\n")
            boxes.write(f"{cub_id} 8.0 4.0 24.0 8.0\n")


# ----------------------------------------------------------------------------- CelebA

CELEBA_SIZE = (32, 32)
# (blond, male) counts per split 0/1/2.
CELEBA_COUNTS = {
    0: {(0, 0): 3, (0, 1): 3, (1, 0): 2, (1, 1): 1},
    1: dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1)], 1),
    2: dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1)], 1),
}


CELEBA_LAYOUTS = ("txt", "kaggle", "wilds")


def make_celeba_fixture(root: Path, seed: int = 0, layout: str = "txt") -> dict:
    """CelebA folder; other attributes random in {-1, 1}; returns per-split expectations and all values.

    ``layout``: "txt" the original release (list_*.txt, img_align_celeba/); "wilds" WILDS' celebA_v1.0
    (list_attr_celeba.csv with image_id and the attribute names, list_eval_partition.csv with image_id,
    partition; img_align_celeba/); "kaggle" the same CSVs with the images in img_align_celeba/img_align_celeba/
    as Kaggle's archive unpacks."""
    images_dir = "img_align_celeba/img_align_celeba" if layout == "kaggle" else "img_align_celeba"
    rng = np.random.default_rng(seed)
    blond, male = CELEBA_ATTRIBUTES.index("Blond_Hair"), CELEBA_ATTRIBUTES.index("Male")
    images, partition, values = [], [], []
    expected = {"train": [], "val": [], "test": []}
    for split, counts in CELEBA_COUNTS.items():
        for (label, attr), count in counts.items():
            for _ in range(count):
                name = f"{len(images) + 1:06d}.jpg"
                row = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
                row[blond], row[male] = 2 * label - 1, 2 * attr - 1
                save_flat(root / images_dir / name, GROUP_COLOURS[2 * label + attr], *CELEBA_SIZE)
                images.append(name)
                partition.append(f"{name} {split}\n")
                values.append(row)
                expected[("train", "val", "test")[split]].append(
                    {"name": name, "rel": f"{images_dir}/{name}", "values": row}
                )
    # Interleave the partition file so split order is not file order.
    interleaved = partition[::2] + partition[1::2]
    if layout == "txt":
        (root / "list_eval_partition.txt").write_text("".join(interleaved))
        lines = [f"{len(images)}\n", " ".join(CELEBA_ATTRIBUTES) + " \n"]
        lines += [
            f"{name} " + " ".join(f"{v:2d}" for v in row) + "\n" for name, row in zip(images, values, strict=True)
        ]
        (root / "list_attr_celeba.txt").write_text("".join(lines))
    else:
        with open(root / "list_eval_partition.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", "partition"])
            writer.writerows(line.split() for line in interleaved)
        with open(root / "list_attr_celeba.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", *CELEBA_ATTRIBUTES])
            writer.writerows([name, *row.tolist()] for name, row in zip(images, values, strict=True))
    order = {line.split()[0]: i for i, line in enumerate(partition[::2] + partition[1::2])}
    for records in expected.values():
        records.sort(key=lambda r: order[r["name"]])
    return {"splits": expected}


# ----------------------------------------------------------------------------- ISIC

ISIC_SIZE = (64, 64)
# Lesion x 16..47, y 16..47; patch x 0..15, y 48..63 (aligned to 16-pixel blocks). At 16 px: / 4.
ISIC_LESION_MASK = expected_box_mask(slice(4, 12), slice(4, 12))
ISIC_PATCH_MASK = expected_box_mask(slice(12, 16), slice(0, 4))
# (label, patch) counts per fold.
ISIC_FOLDS = ["train", "val", "test"]  # the authors' split codes 0, 1, 2
ISIC_COUNTS = {
    "train": {(0, 0): 3, (0, 1): 3, (1, 0): 2},
    "val": {(0, 0): 1, (0, 1): 1, (1, 0): 1},
    "test": {(0, 0): 1, (0, 1): 1, (1, 0): 1},
}


def make_isic_fixture(
    root: Path, masks_root: Path | None = None, malignant_patch: bool = False, layout: str = "george"
) -> dict:
    """ISIC folder; with masks_root, lesion PNGs in <masks_root>/lesion, patch PNGs in /patch.

    ``layout``: "george" labels.csv (Image Index, benign_malignant, Diagnosis, patch, fold) and images/;
    "authors" the SLIM authors' metadata.csv (img_id, img_filename, y, split 0/1/2, place = patch) and img/."""
    folder = "images" if layout == "george" else "img"
    metadata = []
    rows, expected = [], {name: [] for name in ISIC_COUNTS}
    counts = {fold: dict(c) for fold, c in ISIC_COUNTS.items()}
    if malignant_patch:
        counts["test"][(1, 1)] = 1
    for fold, fold_counts in counts.items():
        for (label, patch), count in fold_counts.items():
            for _ in range(count):
                name = f"ISIC_{len(rows):07d}"
                image = np.full((ISIC_SIZE[1], ISIC_SIZE[0], 3), 120, dtype=np.uint8)
                image[16:48, 16:48] = GROUP_COLOURS[2 * label + patch]
                if patch:
                    image[48:64, 0:16] = (30, 60, 220)
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / folder / f"{name}.jpg", quality=95)
                rows.append([name + ".jpg", ("benign", "malignant")[label], label, patch, fold])
                metadata.append([len(metadata) + 1, name + ".jpg", label, ISIC_FOLDS.index(fold), patch])
                expected[fold].append({"rel": f"{folder}/{name}.jpg", "label": label, "patch": patch})
                if masks_root is not None:
                    lesion = np.zeros((64, 64), dtype=np.uint8)
                    lesion[16:48, 16:48] = 1  # nonzero = object
                    save_grey(masks_root / "lesion" / folder / f"{name}.png", lesion)
                    if patch:
                        patch_mask = np.zeros((64, 64), dtype=np.uint8)
                        patch_mask[48:64, 0:16] = 255
                        save_grey(masks_root / "patch" / folder / f"{name}.png", patch_mask)
    if layout == "authors":
        with open(root / "metadata.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["img_id", "img_filename", "y", "split", "place"])
            writer.writerows(metadata)
        return {"splits": expected}
    rows.append(["ISIC_9999999.jpg", "indeterminate/benign", "", 0, "train"])  # left out, image absent
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Image Index", "benign_malignant", "Diagnosis", "patch", "fold"])
        writer.writerows(rows)
    return {"splits": expected}


# ----------------------------------------------------------------------------- NICO++


def make_nico_fixture(
    root: Path, classes=("cat", "dog"), contexts=("autumn", "grass", "water"), per_cell: int = 10
) -> dict:
    """<context>/<class>/<n>.jpg, ``per_cell`` images per cell, plus a stray non-image file."""
    for ci, cls in enumerate(classes):
        for xi, ctx in enumerate(contexts):
            for n in range(per_cell):
                colour = (40 + 80 * ci, 40 + 60 * xi, 10 * n)
                save_flat(root / ctx / cls / f"{ctx}_{cls}_{n:03d}.jpg", colour, 24, 24)
    (root / contexts[0] / classes[0] / "notes.txt").write_text("not an image\n")
    return {"classes": list(classes), "contexts": list(contexts), "per_cell": per_cell}


# ----------------------------------------------------------------------------- ImageNet-9

IN9_FOLDERS = ("00_dog", "01_bird", "02_wheeled vehicle")
IN9_SIZE = (64, 64)
# Foreground x 16..47, y 16..31 (block aligned): at 16 px rows 4..8, columns 4..12.
IN9_FG_MASK = expected_box_mask(slice(4, 8), slice(4, 12))


def make_imagenet9_fixture(root: Path, fg_mask_classes: tuple[int, ...] = (0,)) -> dict:
    """in9l train/val; bg_challenge original, only_fg, no_fg, only_bg_b, only_bg_t, mixed_same, mixed_rand;
    some fg_mask arrays."""
    stems = {c: [f"n0{c}000000_{k:05d}" for k in range(2)] for c in range(len(IN9_FOLDERS))}
    for c, folder in enumerate(IN9_FOLDERS):
        for split, count in (("train", 2), ("val", 1)):
            for k in range(count):
                save_flat(
                    root / "in9l" / split / folder / f"n0{c}111111_{k}.JPEG", GROUP_COLOURS[c], *IN9_SIZE
                )
        for stem in stems[c]:
            scene = np.full((64, 64, 3), 90, dtype=np.uint8)
            scene[16:32, 16:48] = GROUP_COLOURS[c]
            only_fg = np.zeros_like(scene)
            only_fg[16:32, 16:48] = 200
            no_fg = scene.copy()
            no_fg[16:32, 16:48] = 0
            only_bg_b = np.full_like(scene, 90)  # background, the object's box black
            only_bg_b[8:40, 8:56] = 0
            only_bg_t = np.full_like(scene, 90)  # background, the object's box filled with background tiles
            variants = (("original", scene), ("only_fg", only_fg), ("no_fg", no_fg),
                        ("only_bg_b", only_bg_b), ("only_bg_t", only_bg_t))
            for variant, array in variants:
                path = root / "bg_challenge" / variant / "val" / folder / f"{stem}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path, quality=95)
            if c in fg_mask_classes:
                mask = np.zeros((64, 64), dtype=bool)
                mask[16:32, 16:48] = True
                (root / "bg_challenge" / "fg_mask" / "val" / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / "bg_challenge" / "fg_mask" / "val" / folder / f"{stem}.npy", mask)
    # Mixed images: (variant, foreground class, foreground stem, background stem, expected background class).
    mixed = [
        ("mixed_same", 0, stems[0][0], stems[0][1], 0),
        ("mixed_same", 1, stems[1][0], stems[1][1], 1),
        ("mixed_same", 2, stems[2][0], stems[2][1], 2),
        ("mixed_rand", 0, stems[0][0], stems[2][0], 2),  # background from another class: mismatch
        ("mixed_rand", 1, stems[1][1], stems[1][0], 1),  # a random background may come from the same class
        ("mixed_rand", 2, stems[2][1], "n09999999_00001", None),  # background not in original: unknown
    ]
    for variant, c, fg, bg, _ in mixed:
        save_flat(
            root / "bg_challenge" / variant / "val" / IN9_FOLDERS[c] / f"fg_{fg}_bg_{bg}.JPEG",
            GROUP_COLOURS[c],
            *IN9_SIZE,
        )
    return {"stems": stems, "mixed": mixed}


NICO_RELEASE_IMAGES = "track_1/public_dg_0416/train"


def make_nico_release_fixture(release: Path, **kwargs) -> dict:
    """NICO++ as its release unpacks: track_1/public_dg_0416/train/<context>/<class>/, an unlabelled
    public_test_flat/ beside train/ and dg_label_id_mapping.json in track_1/."""
    facts = make_nico_fixture(release / NICO_RELEASE_IMAGES, **kwargs)
    save_flat(release / "track_1" / "public_dg_0416" / "public_test_flat" / "0a1b2c.jpg", (9, 9, 9), 24, 24)
    (release / "track_1" / "dg_label_id_mapping.json").write_text('{"cat": 0, "dog": 1}\n')
    return facts


# ----------------------------------------------------------------------------- csv (the user's own dataset)

# A 64 x 32 (w x h) PNG per image; the object is x 16..47, y 8..23. At 16 px the x scale is 4 and the y
# scale 2, and nearest-neighbour resizing samples input x = 4j + 2, y = 2i + 1: columns 4..11, rows 4..11.
CSV_SIZE = (64, 32)
CSV_MASK = expected_box_mask(slice(4, 12), slice(4, 12))
CSV_CLASSES, CSV_ATTRIBUTES = ("cat", "dog", "cow"), ("indoor", "outdoor")
# (y, a) counts per split; group = 2 * y + a. The split column alternates between codes and words.
CSV_COUNTS = {
    "train": {(0, 0): 3, (0, 1): 1, (1, 0): 1, (1, 1): 2, (2, 0): 2, (2, 1): 1},
    "val": dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)], 1),
    "test": dict.fromkeys([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)], 1),
}
CSV_SPLIT_SPELLINGS = {"train": ("0", "train"), "val": ("1", "val"), "test": ("2", "test")}


def make_csv_fixture(root: Path, masks: str | None = "png", names: bool = True) -> dict:
    """A folder with metadata.csv (filename, y, a, split [, y_name, a_name] [, mask | xmin, ymin, xmax, ymax])
    and PNG images in class folders; ``masks``: "png" a mask image per row, "boxes" box columns, None neither.
    Rows are written shuffled across splits, so split order is file order within a split only."""
    header = ["filename", "y", "a", "split"] + (["y_name", "a_name"] if names else [])
    header += {"png": ["mask"], "boxes": ["xmin", "ymin", "xmax", "ymax"], None: []}[masks]
    rows, expected = [], {split: [] for split in CSV_COUNTS}
    for split, counts in CSV_COUNTS.items():
        for (y, a), count in counts.items():
            for _ in range(count):
                rel = f"images/{CSV_CLASSES[y]}/{len(rows):03d}.png"
                save_flat(root / rel, GROUP_COLOURS[2 * y + a], *CSV_SIZE, fmt="PNG")
                row = [rel, y, a, CSV_SPLIT_SPELLINGS[split][len(rows) % 2]]
                row += [CSV_CLASSES[y], CSV_ATTRIBUTES[a]] if names else []
                if masks == "png":
                    mask = np.zeros((CSV_SIZE[1], CSV_SIZE[0]), dtype=np.uint8)
                    mask[8:24, 16:48] = 1  # nonzero = object
                    save_grey(root / "masks" / Path(rel).with_suffix(".png").relative_to("images"), mask)
                    row.append(f"masks/{CSV_CLASSES[y]}/{len(rows):03d}.png")
                elif masks == "boxes":
                    row += [16, 8.5, 47.2, 24]  # fractions rounded outward: x 16..48, y 8..24
                rows.append(row)
                expected[split].append({"rel": rel, "y": y, "a": a, "group": 2 * y + a})
    order = np.random.default_rng(0).permutation(len(rows))
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows[i] for i in order)
    rank = {rows[i][0]: position for position, i in enumerate(order)}
    for records in expected.values():
        records.sort(key=lambda r: rank[r["rel"]])
    return {"splits": expected, "header": header}
