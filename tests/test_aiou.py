"""AIoU, box masks and group-wise attention accuracy against hand-worked values."""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import HarnessError
from simulated_oracle import aiou, aiou_batch, attention_accuracy, box_mask

# Strong pixels (>= 0.8): 0.9, 0.8, 1.0, 0.85 -> 3.55 in all; inside the mask: 0.9 + 0.85 = 1.75.
PARTIAL_ATTENTION = np.array([[0.9, 0.8, 0.5], [1.0, 0.2, 0.85]])
PARTIAL_MASK = np.array([[True, False, False], [False, False, True]])


def naive_aiou(attention: np.ndarray, mask: np.ndarray, delta: float) -> float:
    """Pixel-by-pixel reading of the definition, as a second method."""
    strong_total = on_object = 0.0
    for value, inside in zip(attention.ravel().tolist(), mask.ravel().tolist(), strict=True):
        if value >= delta:
            strong_total += value
            on_object += value if inside else 0.0
    return on_object / strong_total if strong_total > 0 else 0.0


def test_all_attention_inside_mask_scores_one() -> None:
    attention = np.zeros((4, 6))
    attention[1:3, 2:5] = [[0.9, 1.0, 0.85], [0.8, 0.95, 1.0]]
    attention[0, 0] = 0.7  # weak attention outside the mask is ignored
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    assert aiou(attention, mask) == pytest.approx(1.0)


def test_all_attention_outside_mask_scores_zero() -> None:
    attention = np.zeros((4, 6))
    attention[0, :] = 1.0
    mask = np.zeros((4, 6), dtype=bool)
    mask[2:, :] = True
    mask[0, 0] = False
    attention[2, 3] = 0.79  # below delta, inside the mask: does not count
    assert aiou(attention, mask) == 0.0


def test_partial_case_worked_by_hand() -> None:
    assert aiou(PARTIAL_ATTENTION, PARTIAL_MASK) == pytest.approx(1.75 / 3.55)
    # delta 0.5 adds the 0.5 pixel (outside the mask) to the denominator.
    assert aiou(PARTIAL_ATTENTION, PARTIAL_MASK, delta=0.5) == pytest.approx(1.75 / 4.05)


def test_nothing_reaching_delta_scores_zero() -> None:
    attention = np.full((3, 3), 0.5)
    assert aiou(attention, np.ones((3, 3), dtype=bool)) == 0.0
    assert aiou(np.zeros((3, 3)), np.ones((3, 3), dtype=bool)) == 0.0


def test_pixels_exactly_at_delta_count() -> None:
    attention = np.array([[0.8, 0.8, 0.3]])
    mask = np.array([[True, False, True]])
    assert aiou(attention, mask, delta=0.8) == pytest.approx(0.5)
    assert aiou(np.array([[0.8]]), np.array([[True]]), delta=0.8) == 1.0


def test_batch_equals_per_image_and_naive_reading() -> None:
    rng = np.random.default_rng(0)
    attention = rng.random((20, 7, 9))
    attention[:4] *= 0.7  # a few maps with no pixel reaching delta
    masks = rng.random((20, 7, 9)) < 0.4
    batch = aiou_batch(attention, masks)
    assert batch.shape == (20,)
    assert np.all(batch[:4] == 0.0)
    for i in range(20):
        assert batch[i] == pytest.approx(aiou(attention[i], masks[i]), abs=1e-12)
        assert batch[i] == pytest.approx(naive_aiou(attention[i], masks[i], 0.8), abs=1e-12)
    naive_low_delta = [naive_aiou(a, m, 0.3) for a, m in zip(attention, masks, strict=True)]
    assert np.allclose(aiou_batch(attention, masks, delta=0.3), naive_low_delta)


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(1)
    attention = rng.random((5, 6, 8)).astype(np.float32)
    masks = rng.random((5, 6, 8)) < 0.5
    attention_before, masks_before = attention.copy(), masks.copy()
    aiou_batch(attention, masks)
    aiou(attention[0], masks[0])
    np.testing.assert_array_equal(attention, attention_before)
    np.testing.assert_array_equal(masks, masks_before)


def test_tiny_rounding_outside_unit_range_is_accepted() -> None:
    attention = np.array([[1.0 + 5e-7, -5e-7]])
    assert aiou(attention, np.array([[True, False]])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("attention", "mask", "delta", "message"),
    [
        (np.ones((3, 4)), np.ones((4, 3), dtype=bool), 0.8, "shape"),
        (np.ones((2, 3, 4)), np.ones((2, 3, 4), dtype=bool), 0.8, "2 dimensions"),
        (np.array([[0.5, np.nan]]), np.ones((1, 2), dtype=bool), 0.8, "NaN"),
        (np.array([[0.5, np.inf]]), np.ones((1, 2), dtype=bool), 0.8, "NaN or infinite"),
        (np.array([[0.5, 1.01]]), np.ones((1, 2), dtype=bool), 0.8, "[0, 1]"),
        (np.array([[0.5, -0.01]]), np.ones((1, 2), dtype=bool), 0.8, "[0, 1]"),
        (np.ones((1, 2)), np.ones((1, 2), dtype=np.uint8), 0.8, "boolean"),
        (np.ones((1, 2), dtype=bool), np.ones((1, 2), dtype=bool), 0.8, "real-valued"),
        (np.ones((1, 2)), np.ones((1, 2), dtype=bool), 0.0, "delta"),
        (np.ones((1, 2)), np.ones((1, 2), dtype=bool), 1.2, "delta"),
    ],
)
def test_aiou_rejects_bad_input(attention, mask, delta, message) -> None:
    with pytest.raises(HarnessError, match=message.replace("[", r"\[").replace("]", r"\]")):
        aiou(attention, mask, delta=delta)


def test_batch_rejects_bad_input() -> None:
    with pytest.raises(HarnessError, match="3 dimensions"):
        aiou_batch(np.ones((3, 4)), np.ones((3, 4), dtype=bool))
    with pytest.raises(HarnessError, match="shape"):
        aiou_batch(np.ones((2, 3, 4)), np.ones((3, 3, 4), dtype=bool))


def test_box_mask_rows_are_y_and_max_is_exclusive() -> None:
    # A 3 x 5 (h x w) image: a square image could not tell x from y.
    expected = np.array(
        [
            [0, 1, 1, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(box_mask((3, 5), xmin=1, ymin=0, xmax=4, ymax=2), expected)
    whole = box_mask((3, 5), 0, 0, 5, 3)
    assert whole.shape == (3, 5) and whole.all()
    single = box_mask((3, 5), xmin=4, ymin=2, xmax=5, ymax=3)
    assert single.sum() == 1 and single[2, 4]
    assert box_mask((3, 5), np.int64(0), np.int64(1), np.int64(2), np.int64(3)).sum() == 4


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((0, 0, 3, 5), "outside"),  # x and y swapped: ymax 5 exceeds the height 3
        ((0, 0, 6, 3), "outside"),
        ((-1, 0, 2, 2), "outside"),
        ((2, 0, 2, 2), "empty"),
        ((3, 0, 2, 2), "empty"),
        ((0.5, 0, 2, 2), "integers"),
    ],
)
def test_box_mask_rejects_bad_boxes(box, message) -> None:
    with pytest.raises(HarnessError, match=message):
        box_mask((3, 5), *box)


def test_box_mask_rejects_bad_shape() -> None:
    with pytest.raises(HarnessError, match="shape"):
        box_mask((0, 5), 0, 0, 1, 1)


def test_attention_accuracy_by_hand() -> None:
    scores = np.array([1.0, 0.5, 0.0, 0.25, 0.75])
    groups = np.array([0, 0, 1, 1, 3])
    result = attention_accuracy(scores, groups, ["a", "b", "c", "d"])
    assert result["group_aiou"] == pytest.approx({"a": 0.75, "b": 0.125, "d": 0.75})
    assert "c" not in result["group_aiou"]  # empty group: neither reported nor the worst
    assert result["aiou_worst"] == pytest.approx(0.125)
    assert result["aiou_avg"] == pytest.approx(0.5)


def test_attention_accuracy_rejects_bad_input() -> None:
    with pytest.raises(HarnessError, match="group ids must lie"):
        attention_accuracy(np.array([0.5, 0.5]), np.array([0, 2]), ["a", "b"])
    with pytest.raises(HarnessError, match="does not match"):
        attention_accuracy(np.array([0.5, 0.5]), np.array([0]), ["a", "b"])
    with pytest.raises(HarnessError, match="non-empty"):
        attention_accuracy(np.array([]), np.array([], dtype=int), ["a"])
    with pytest.raises(HarnessError, match="integers"):
        attention_accuracy(np.array([0.5]), np.array([0.0]), ["a"])
