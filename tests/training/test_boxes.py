"""The one lung-box rule and box IoU (training.boxes), shared by metrics and pre-annotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from training.boxes import (
    MIN_SECOND_LUNG_FRACTION,
    box_iou,
    calibrate_boxes,
    fit_box_calibration,
    lung_box_iou,
    lung_boxes_from_mask,
    scale_box,
)


def reference_lung_boxes(mask: np.ndarray) -> dict:
    """The rule written the plain way (full-image component masks), as the fast one must behave."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return {"right": None, "left": None}

    def bbox(m):
        ys, xs = np.nonzero(m)
        return None if len(xs) == 0 else [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]

    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    largest = labels == order[0] + 1
    midline = mask.shape[1] / 2.0
    if count >= 2 and sizes[order[1]] >= MIN_SECOND_LUNG_FRACTION * sizes[order[0]]:
        second = labels == order[1] + 1
        a, b = np.nonzero(largest)[1].mean(), np.nonzero(second)[1].mean()
        if (a < midline) != (b < midline):
            left_in_image, right_in_image = (largest, second) if a < b else (second, largest)
            return {"right": bbox(left_in_image), "left": bbox(right_in_image)}
        largest = largest | second
    columns = np.arange(mask.shape[1])[None, :]
    split = int(np.ceil(midline))
    return {"right": bbox(largest & (columns < split)), "left": bbox(largest & (columns >= split))}


def random_lungs(rng: np.random.Generator) -> np.ndarray:
    """Blobs of random size and place, sometimes touching, sometimes one, sometimes none."""
    height, width = rng.integers(20, 90, size=2)
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(0, 5)):
        h, w = rng.integers(1, height), rng.integers(1, width)
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        mask[y : y + h, x : x + w] = True
    return mask & (rng.random(mask.shape) > rng.choice([0.0, 0.05, 0.5]))


def test_the_fast_rule_gives_the_boxes_of_the_plain_rule() -> None:
    rng = np.random.default_rng(7)
    for _ in range(400):
        mask = random_lungs(rng)
        assert lung_boxes_from_mask(mask) == reference_lung_boxes(mask)


def test_the_patients_right_lung_is_the_one_on_the_images_left() -> None:
    mask = np.zeros((20, 40), dtype=bool)
    mask[2:18, 3:15] = True  # image left
    mask[4:16, 25:37] = True  # image right
    assert lung_boxes_from_mask(mask) == {"right": [3, 2, 15, 18], "left": [25, 4, 37, 16]}


def test_a_missing_box_scores_zero_and_two_missing_boxes_score_nothing() -> None:
    box = [0, 0, 10, 10]
    assert box_iou(None, box) == 0.0  # a lung missed
    assert box_iou(box, None) == 0.0  # a lung found where the truth has none
    assert box_iou(None, None) is None
    assert box_iou(box, [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 0, 5], [0, 0, 0, 5]) == 0.0  # no area: nothing overlaps
    # Per image: one missed side halves the score; an image with no lungs on either side is not scored.
    assert lung_box_iou({"right": None, "left": box}, {"right": [20, 0, 30, 10], "left": box}) == pytest.approx(0.5)
    assert lung_box_iou({"right": None, "left": None}, {"right": None, "left": None}) is None


def test_metrics_and_pre_annotation_use_this_one_definition() -> None:
    import training.metrics as metrics
    from inference import suggestions

    assert metrics.lung_boxes_from_mask is lung_boxes_from_mask
    assert metrics.box_iou is box_iou
    assert suggestions.lung_boxes is lung_boxes_from_mask


def test_boxes_scale_to_another_image_size() -> None:
    assert scale_box([2, 4, 6, 8], sx=2.0, sy=0.5) == [4, 2, 12, 4]
    assert scale_box(None, sx=2.0, sy=2.0) is None


def test_a_calibration_fitted_on_boxes_that_end_too_high_moves_their_bottom_edge_down() -> None:
    # Predicted boxes end 20 px (10% of a 200 px tall image) above the annotated ones, other edges agree.
    pairs = []
    for shift in range(6):
        annotated = {"right": [10 + shift, 20, 90, 180], "left": [110, 20, 190 - shift, 180]}
        predicted = {"right": [10 + shift, 20, 90, 160], "left": [110, 20, 190 - shift, 160]}
        pairs.append((predicted, annotated, 200, 200))
    calibration = fit_box_calibration(pairs)
    assert calibration["right"] == [0.0, 0.0, 0.0, 0.1] and calibration["left"] == [0.0, 0.0, 0.0, 0.1]

    moved = calibrate_boxes({"right": [10, 20, 90, 160], "left": None}, calibration, width=200, height=200)
    assert moved == {"right": [10, 20, 90, 180], "left": None}
    assert box_iou(moved["right"], [10, 20, 90, 180]) == 1.0


def test_a_calibration_needs_enough_images_and_keeps_boxes_inside_the_image() -> None:
    few = [({"right": [0, 0, 10, 10], "left": None}, {"right": [0, 0, 10, 12], "left": None}, 20, 20)] * 4
    assert fit_box_calibration(few) is None
    assert calibrate_boxes({"right": [5, 5, 10, 10]}, None, width=20, height=20) == {"right": [5, 5, 10, 10]}

    outward = {"right": [-0.5, -0.5, 0.5, 0.5], "left": [0.0, 0.0, 0.0, 0.0], "images": 9}
    assert calibrate_boxes({"right": [2, 2, 18, 18], "left": [3, 3, 9, 9]}, outward, width=20, height=20) == {
        "right": [0, 0, 20, 20],
        "left": [3, 3, 9, 9],
    }
    inside_out = {"right": [0.9, 0.0, -0.9, 0.0]}
    assert calibrate_boxes({"right": [2, 2, 18, 18]}, inside_out, width=20, height=20) == {"right": [2, 2, 18, 18]}
