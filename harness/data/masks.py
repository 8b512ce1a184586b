"""Object masks from bounding boxes, for datasets that publish boxes instead of segmentations."""
from __future__ import annotations

import numpy as np

from harness.core.errors import HarnessError


def is_integer_scalar(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def box_mask(shape: tuple[int, int], xmin: int, ymin: int, xmax: int, ymax: int) -> np.ndarray:
    """Boolean (h, w) mask that is True inside a bounding box.

    ``shape`` is (h, w); x indexes columns and y rows. Bounds are half-open like slicing:
    pixels with xmin <= x < xmax and ymin <= y < ymax are inside. The box must be non-empty and
    lie inside the image (0 <= xmin < xmax <= w, 0 <= ymin < ymax <= h), otherwise HarnessError:
    boxes are never clipped silently, so a box in the wrong coordinate system (or with x and y
    swapped) fails loudly. Boxes rescaled to another image size must be rounded and clipped by the caller.
    """
    if len(shape) != 2 or any(not is_integer_scalar(n) or n <= 0 for n in shape):
        raise HarnessError(f"box_mask shape must be (h, w) with positive integers, got {shape!r}")
    coords = {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}
    not_int = [name for name, value in coords.items() if not is_integer_scalar(value)]
    if not_int:
        raise HarnessError(f"box coordinates must be integers, got {coords} ({', '.join(not_int)} not)")
    height, width = int(shape[0]), int(shape[1])
    if not (0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height):
        raise HarnessError(
            f"box (xmin={xmin}, ymin={ymin}, xmax={xmax}, ymax={ymax}) is empty or outside the "
            f"{height}x{width} (h x w) image; "
            f"need 0 <= xmin < xmax <= {width} and 0 <= ymin < ymax <= {height}"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[int(ymin):int(ymax), int(xmin):int(xmax)] = True
    return mask
