"""From probability maps to suggestions: lung boxes by patient side, disease regions and confidences."""
from __future__ import annotations

import numpy as np
import pytest

from annotator.imaging.encode import decode_mask_png
from inference.suggestions import disease_regions, suggestion_from_prediction
from training.serve import Prediction


def two_lungs(height: int = 120, width: int = 160) -> np.ndarray:
    lung = np.zeros((height, width), dtype=np.float32)
    lung[20:100, 15:65] = 0.9  # image left = the patient's right lung
    lung[25:105, 95:150] = 0.8  # image right = the patient's left lung
    return lung


def test_lung_boxes_are_named_by_the_patients_side():
    lung = two_lungs()
    suggestion = suggestion_from_prediction(
        Prediction(lung=lung, disease=None, probabilities={"healthy": 0.2, "covid": 0.7, "other_disease": 0.1}, uncertainty=0.5),
        shape=lung.shape, threshold=0.5, min_region_fraction=0.001, max_regions=5,
    )
    assert suggestion.right_box == [15, 20, 65, 100]
    assert suggestion.left_box == [95, 25, 150, 105]
    mask = decode_mask_png(suggestion.lung_mask_png, expected_shape=lung.shape)
    assert mask.sum() == (lung >= 0.5).sum()
    assert (suggestion.covid, suggestion.healthy, suggestion.uncertainty) == (0.7, 0.2, 0.5)
    assert suggestion.regions == []


def test_disease_regions_drop_specks_and_carry_their_mean_probability():
    disease = np.zeros((100, 100), dtype=np.float32)
    disease[10:30, 10:40] = 0.9  # 600 px
    disease[10:30, 40:50] = 0.7  # touching: same region, 200 px more
    disease[60:90, 60:80] = 0.6  # 600 px
    disease[95, 95] = 0.99  # one-pixel speck
    regions = disease_regions(disease, threshold=0.5, min_area=10, max_regions=10)
    assert [r.area for r in regions] == [800, 600]
    assert regions[0].bbox == [10, 10, 50, 30]
    assert regions[0].confidence == pytest.approx((600 * 0.9 + 200 * 0.7) / 800, abs=1e-5)
    assert regions[1].confidence == pytest.approx(0.6, abs=1e-6)
    crop = decode_mask_png(regions[1].mask_png, expected_shape=(30, 20))
    assert crop.all()


def test_the_largest_regions_are_kept_when_there_are_too_many():
    disease = np.zeros((50, 200), dtype=np.float32)
    for i, size in enumerate([3, 5, 4, 6]):
        disease[5 : 5 + size, 10 + 40 * i : 10 + 40 * i + size] = 0.9
    regions = disease_regions(disease, threshold=0.5, min_area=1, max_regions=2)
    assert [r.area for r in regions] == [36, 25]


def test_nothing_above_the_threshold_means_no_regions_and_no_boxes():
    empty = np.full((40, 40), 0.2, dtype=np.float32)
    suggestion = suggestion_from_prediction(
        Prediction(lung=empty, disease=empty, probabilities={}, uncertainty=None),
        shape=empty.shape, threshold=0.5, min_region_fraction=0.0, max_regions=5,
    )
    assert (suggestion.right_box, suggestion.left_box, suggestion.regions) == (None, None, [])


def test_lung_boxes_are_the_training_packages_rule():
    # One definition (training.boxes), pinned against a plain reference in tests/training/test_boxes.py.
    from inference.suggestions import lung_boxes
    from training.boxes import lung_boxes_from_mask

    assert lung_boxes is lung_boxes_from_mask
