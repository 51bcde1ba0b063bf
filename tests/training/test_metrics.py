"""Metrics on hand-computed cases, lung box orientation, and degenerate splits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.metrics import (
    accuracy,
    box_iou,
    classification_metrics,
    dice_score,
    equal_error_rate,
    iou_score,
    lung_box_iou,
    lung_boxes_from_mask,
    roc_auc,
    roc_curve,
    sensitivity_at_specificity,
)


def test_dice_and_iou_on_hand_computed_masks() -> None:
    pred = np.zeros((4, 4), bool)
    true = np.zeros((4, 4), bool)
    pred[0, :3] = True  # 3 pixels
    true[0, 1:] = True  # 3 pixels, 2 shared
    assert dice_score(pred, true) == pytest.approx(2 * 2 / 6)
    assert iou_score(pred, true) == pytest.approx(2 / 4)


def test_dice_and_iou_of_two_empty_masks_is_perfect_and_of_disjoint_masks_zero() -> None:
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert dice_score(empty, empty) == 1.0
    assert iou_score(empty, empty) == 1.0
    assert dice_score(full, empty) == 0.0
    assert iou_score(empty, full) == 0.0


def two_lungs(width: int = 40, height: int = 30) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[5:25, 3:15] = True  # on the image's left: the patient's right lung
    mask[8:28, 24:37] = True  # on the image's right: the patient's left lung
    return mask


def test_lung_boxes_patient_right_is_image_left() -> None:
    boxes = lung_boxes_from_mask(two_lungs())
    assert boxes["right"] == [3, 5, 15, 25]
    assert boxes["left"] == [24, 8, 37, 28]


def test_lung_boxes_are_half_open() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2, 1] = True  # one pixel on the left half
    boxes = lung_boxes_from_mask(mask)
    assert boxes["right"] == [1, 2, 2, 3]
    assert boxes["left"] is None


def test_merged_lungs_are_split_at_the_vertical_midline() -> None:
    mask = np.zeros((20, 40), bool)
    mask[4:16, 5:35] = True  # one blob across the midline (x = 20)
    boxes = lung_boxes_from_mask(mask)
    assert boxes["right"] == [5, 4, 20, 16]
    assert boxes["left"] == [20, 4, 35, 16]


def test_small_noise_blob_does_not_count_as_a_lung() -> None:
    mask = np.zeros((20, 40), bool)
    mask[4:16, 5:35] = True
    mask[0, 39] = True  # a stray pixel in the corner
    boxes = lung_boxes_from_mask(mask)
    assert boxes["left"] == [20, 4, 35, 16]


def test_two_pieces_on_one_side_fall_back_to_the_midline_split() -> None:
    mask = np.zeros((20, 40), bool)
    mask[2:8, 2:12] = True
    mask[10:18, 2:12] = True  # both on the image's left
    boxes = lung_boxes_from_mask(mask)
    assert boxes["right"] == [2, 2, 12, 18]
    assert boxes["left"] is None


def test_empty_mask_gives_no_boxes() -> None:
    assert lung_boxes_from_mask(np.zeros((8, 8), bool)) == {"right": None, "left": None}


def test_box_iou_hand_computed_and_missing_boxes() -> None:
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 2, 2], [5, 5, 6, 6]) == 0.0
    assert box_iou(None, [0, 0, 1, 1]) == 0.0
    assert box_iou(None, None) is None


def test_lung_box_iou_is_perfect_for_the_same_mask_and_penalises_a_swapped_side() -> None:
    mask = two_lungs()
    assert lung_box_iou(mask, mask) == 1.0
    only_right = mask.copy()
    only_right[:, 20:] = False
    assert lung_box_iou(only_right, mask) == pytest.approx(0.5)


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounding creates ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_curve_runs_from_origin_to_one() -> None:
    fpr, tpr, thresholds = roc_curve([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.3])
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thresholds) < 0)


def test_sensitivity_at_specificity_hand_computed() -> None:
    # 10 negatives with scores 0.0..0.9, 4 positives. At >= 90% specificity one false positive is
    # allowed (the 0.9 negative), which lets the threshold drop to 0.85: three positives above it.
    negatives = np.arange(10) / 10
    positives = np.array([0.95, 0.88, 0.86, 0.5])
    labels = np.r_[np.zeros(10), np.ones(4)]
    scores = np.r_[negatives, positives]
    assert sensitivity_at_specificity(labels, scores, 0.99) == pytest.approx(1 / 4)
    assert sensitivity_at_specificity(labels, scores, 0.90) == pytest.approx(3 / 4)


def test_equal_error_rate_of_perfect_and_reversed_and_symmetric_scores() -> None:
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # One error on each side out of two: FPR = FNR = 0.5.
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9]) == pytest.approx(0.5)


def test_accuracy_hand_computed_and_empty() -> None:
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy([], []) is None


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], []])
def test_degenerate_splits_give_none_not_a_crash(labels: list[int]) -> None:
    scores = np.linspace(0, 1, len(labels))
    metrics = classification_metrics(labels, scores)
    for key in ("auc", "sensitivity_at_99_specificity", "sensitivity_at_90_specificity", "eer"):
        assert metrics[key] is None
    assert roc_curve(labels, scores) is None
    assert metrics["accuracy"] == (None if not labels else pytest.approx(metrics["accuracy"]))
