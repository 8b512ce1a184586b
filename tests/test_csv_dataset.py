"""``--dataset csv``: any dataset from a metadata.csv of filename, y, a, split (SubpopBench's convention).

The fixture is worked out by hand in tests/fixtures_real.py: 3 classes x 2 attribute values, PNG images in
class folders, a mask image or a box per row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.core.errors import HarnessError
from harness.data.real.generic import MetadataCsv
from tests.fixtures_real import CSV_MASK, GROUP_COLOURS, MASK_IMAGE_SIZE, make_csv_fixture

SIZE = MASK_IMAGE_SIZE


def load(root, cache, **options):
    return MetadataCsv.read(root, image_size=SIZE, cache_dir=cache, options=options, progress=False)


def edit_metadata(root: Path, edit) -> None:
    """Apply ``edit(header, rows)`` to root/metadata.csv (rows are dicts, in file order)."""
    with open(root / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames), list(reader)
    header = edit(header, rows) or header
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def with_masks(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    return root, make_csv_fixture(root, masks="png")


def assert_split_matches(bench, expected: dict) -> None:
    for name, records in expected.items():
        split = bench.splits[name]
        assert split.labels.tolist() == [r["y"] for r in records]
        assert split.spurious.tolist() == [r["a"] for r in records]
        assert split.groups.tolist() == [r["group"] for r in records]  # group = y * 2 + a
        colours = split.images.float().mean(dim=(2, 3)).numpy()  # PNG: the exact flat colour of the group
        np.testing.assert_allclose(colours, [GROUP_COLOURS[r["group"]] for r in records], atol=0.5)


def test_labels_groups_names_and_mask_images(with_masks, tmp_path):
    root, facts = with_masks
    bench = load(root, tmp_path)
    assert bench.name == "csv"
    assert bench.class_names == ["cat", "dog", "cow"] and bench.spurious_names == ["indoor", "outdoor"]
    assert bench.group_names == ["cat/indoor", "cat/outdoor", "dog/indoor", "dog/outdoor", "cow/indoor",
                                 "cow/outdoor"]
    assert_split_matches(bench, facts["splits"])
    assert bench.splits["train"].group_counts(6).tolist() == [3, 1, 1, 2, 2, 1]
    # The 64 x 32 mask is squashed to 16 x 16 with the image: x 16..47 -> columns 4..11, y 8..23 -> rows 4..11.
    assert bench.has_masks and all(np.array_equal(m, CSV_MASK) for s in bench.splits.values()
                                   for m in s.masks.numpy())
    assert bench.info["mask_coverage"] == {"train": "10/10", "val": "6/6", "test": "6/6"}


def test_box_columns_in_pixels_of_the_original_image(tmp_path):
    root = tmp_path / "data"
    facts = make_csv_fixture(root, masks="boxes")
    bench = load(root, tmp_path / "cache")
    assert_split_matches(bench, facts["splits"])
    # x 16..47.2 and y 8.5..24 round outward to the mask images' x 16..48, y 8..24: the same 16-px mask.
    assert all(np.array_equal(m, CSV_MASK) for s in bench.splits.values() for m in s.masks.numpy())


def test_without_names_or_masks_values_name_themselves(tmp_path):
    root = tmp_path / "data"
    facts = make_csv_fixture(root, masks=None, names=False)
    bench = load(root, tmp_path / "cache")
    assert bench.class_names == ["y=0", "y=1", "y=2"] and bench.spurious_names == ["a=0", "a=1"]
    assert bench.group_names[:3] == ["y=0/a=0", "y=0/a=1", "y=1/a=0"]
    assert_split_matches(bench, facts["splits"])
    assert not bench.has_masks and bench.info["mask_coverage"]["train"] == "0/10"


def test_masks_only_in_the_splits_where_every_row_has_one(tmp_path):
    """A split has masks when all its rows do: the oracle and AIoU run there, SLIM elsewhere needs people."""
    root = tmp_path / "data"
    facts = make_csv_fixture(root, masks="png")
    unmasked = facts["splits"]["test"][2]["rel"]

    def drop_one_mask(header, rows):
        next(r for r in rows if r["filename"] == unmasked)["mask"] = ""

    edit_metadata(root, drop_one_mask)
    bench = load(root, tmp_path / "cache")
    assert bench.splits["test"].masks is None and bench.splits["val"].masks is not None
    assert bench.info["mask_coverage"] == {"train": "10/10", "val": "6/6", "test": "5/6"}


def test_the_users_masks_option_overrides_the_mask_column(with_masks, tmp_path):
    root, facts = with_masks
    boxes = tmp_path / "boxes.csv"
    rel = facts["splits"]["val"][0]["rel"]
    boxes.write_text(f"image,xmin,ymin,xmax,ymax\n{rel},0,0,8,4\n")
    bench = load(root, tmp_path / "cache", masks=str(boxes))
    first = facts["splits"]["val"][0]
    index = [r["rel"] for r in facts["splits"]["val"]].index(first["rel"])
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[0:2, 0:2] = True  # x 0..8 / 4, y 0..4 / 2
    assert np.array_equal(bench.splits["val"].masks[index].numpy(), expected)


def set_cell(column: str, value: str, row: int = 3):
    def edit(header, rows):
        rows[row][column] = value
    return edit


def drop_column(column: str):
    def edit(header, rows):
        return [c for c in header if c != column]
    return edit


@pytest.mark.parametrize(
    ("masks", "edit", "message"),
    [
        ("png", drop_column("a"), r"metadata.csv: missing column\(s\) a \(header: filename, y, split"),
        ("png", set_cell("split", "validation"),
         r"metadata.csv: line 5: split is 'validation', expected one of 0, 1, 2, train, val, test"),
        ("png", set_cell("split", "3"), r"line 5: split is '3', expected one of 0, 1, 2, train, val, test"),
        ("png", set_cell("filename", "images/cat/nowhere.png"),
         r"images/cat/nowhere.png: file not found \(named on line 5 of .*metadata.csv\)"),
        ("png", set_cell("mask", "masks/none.png"), r"masks/none.png: file not found \(named on line 5"),
        ("png", set_cell("filename", "../elsewhere.png"),
         r"line 5: filename '../elsewhere.png' leads outside the data root"),
        ("png", set_cell("mask", "/etc/hostname"), r"line 5: mask '/etc/hostname' leads outside the data root"),
        ("png", set_cell("y", "1.5"), r"line 5: y is '1.5', expected a whole number >= 0"),
        ("png", set_cell("a", "-1"), r"line 5: a is '-1', expected a whole number >= 0"),
        ("png", set_cell("y", "5"), r"y never takes the value\(s\) 3, 4; number its values 0..5 without gaps"),
        ("png", set_cell("y_name", "kitten", row=0),
         r"line \d+: y_name '\w+' for y=\d, but line \d+ calls it '\w+'"),
        ("png", set_cell("xmin", "3"), r"line 5: give a mask or a box, not both"),
        ("boxes", drop_column("ymax"), r"a box needs all of columns xmin, ymin, xmax, ymax; found xmin, ymin, xmax"),
        ("boxes", set_cell("xmax", "10"), r"line 5: empty box \(need xmin < xmax and ymin < ymax\)"),
        ("boxes", set_cell("xmin", "left"), r"line 5: xmin is 'left', expected a number"),
    ],
    ids=["missing-column", "split-word", "split-code", "absent-image", "absent-mask", "image-outside-root",
         "mask-outside-root", "y-fraction", "a-negative", "y-gap", "names-disagree", "mask-and-box",
         "partial-box-columns", "empty-box", "box-not-a-number"],
)
def test_bad_metadata_is_one_clear_line(tmp_path, masks, edit, message):
    root = tmp_path / "data"
    make_csv_fixture(root, masks=masks)
    if masks == "png":  # a header with both kinds, empty box cells: masks come from the mask column
        edit_metadata(root, lambda header, rows: header + ["xmin", "ymin", "xmax", "ymax"])
    edit_metadata(root, edit)
    with pytest.raises(HarnessError, match=message) as info:
        load(root, tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()  # refused before any decoding


def set_everywhere(column: str, value: str, only: tuple[str, ...] | None = None):
    """Set ``column`` to ``value`` in every row (or in the rows whose value is in ``only``)."""
    def edit(header, rows):
        for row in rows:
            if only is None or row[column] in only:
                row[column] = value
    return edit


def test_one_class_or_no_rows_is_refused(tmp_path):
    root = tmp_path / "data"
    make_csv_fixture(root, masks=None, names=False)
    edit_metadata(root, set_everywhere("y", "0"))
    with pytest.raises(HarnessError, match="y takes one value only"):
        load(root, tmp_path / "cache")
    edit_metadata(root, lambda header, rows: rows.clear())
    with pytest.raises(HarnessError, match="metadata.csv: no rows below the header"):
        load(root, tmp_path / "cache")


def test_a_split_without_rows_is_refused(tmp_path):
    root = tmp_path / "data"
    make_csv_fixture(root, masks=None)
    edit_metadata(root, set_everywhere("split", "train", only=("2", "test")))
    with pytest.raises(HarnessError, match=r"csv split\(s\) test have no images"):
        load(root, tmp_path / "cache")


def test_a_csv_dataset_without_paper_facts_runs_end_to_end(tmp_path):
    """csv has no paper facts: a run, its metrics (plain average, no weighting), AIoU from the
    mask column, and the tables all work without one."""
    from harness.data.facts import FACTS

    assert "csv" not in FACTS
    root = tmp_path / "data"
    make_csv_fixture(root, masks="png")
    out = tmp_path / "out"
    assert main(["run", "--dataset", "csv", "--data-root", str(root), "--method", "erm", "--image-size", "32",
                 "--set", "epochs=1", "--set", "pretrained=none", "--set", "width=0.25", "--set", "batch_size=8",
                 "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    record = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert record["status"] == "ok" and record["dataset"] == "csv"
    test = record["metrics"]["test"]
    assert set(test["group_acc"]) <= {"cat/indoor", "cat/outdoor", "dog/indoor", "dog/outdoor", "cow/indoor",
                                      "cow/outdoor"}
    assert "weighted_avg_acc" not in test and 0.0 <= test["aiou_avg"] <= 1.0
    assert main(["tables", "--runs", str(out), "--out", str(tmp_path / "tables")]) == 0


def test_the_dataset_list_shows_csv_and_its_columns(capsys):
    from harness.data.catalog import list_datasets

    entry = next(e for e in list_datasets() if e.name == "csv")
    assert not entry.synthetic and "metadata.csv with columns filename" in entry.needs
    assert "xmin, ymin, xmax, ymax" in entry.needs and "masks:" not in entry.description  # no paper facts
    assert main(["datasets"]) == 0 and "\ncsv " in capsys.readouterr().out


def test_cached_images_equal_a_fresh_decode(with_masks, tmp_path):
    root, _ = with_masks
    first = load(root, tmp_path)
    second = load(root, tmp_path)
    assert torch.equal(first.splits["train"].images, second.splits["train"].images)
    assert first.info["content_hash"] == second.info["content_hash"]
