"""bench/disease_suggestions.py: what pre-annotation would suggest from a disease map, scored by kind of image."""

from __future__ import annotations

import numpy as np

from bench import disease_suggestions


def test_the_suggested_mask_is_the_regions_pre_annotation_keeps() -> None:
    disease = np.zeros((100, 100), np.float32)
    disease[10:30, 10:40] = 0.9  # 600 px: suggested
    disease[60:70, 50:60] = 0.6  # 100 px: suggested
    disease[90, 90] = 0.95  # 1 px, under 0.1% of the image: not suggested
    disease[40:50, 70:80] = 0.4  # under the threshold
    mask = disease_suggestions.suggested_mask(disease)
    assert mask.sum() == 700 and mask[10:30, 10:40].all() and mask[60:70, 50:60].all()
    assert not mask[90, 90] and not mask[40:50, 70:80].any()


def test_the_summary_pools_pixels_of_finding_images_and_counts_regions_on_healthy_ones() -> None:
    rows = [
        {"kind": "finding", "area": 0.1, "true_positive": 30, "suggested": 40, "truth": 60, "dice": 0.6},
        {"kind": "finding", "area": 0.0, "true_positive": 0, "suggested": 0, "truth": 40, "dice": 0.0},
        {"kind": "healthy", "area": 0.0},
        {"kind": "healthy", "area": 0.2},
        {"kind": "no_mask", "area": 0.3},
        {"kind": "empty_mask", "area": 0.1},
    ]
    summary = disease_suggestions.summarize(rows)
    assert summary["precision"] == 30 / 40 and summary["recall"] == 30 / 100 and summary["mean_dice"] == 0.3
    assert (summary["healthy_images"], summary["healthy_with_region"]) == (2, 1) and summary["healthy_mean_area"] == 0.1
    assert summary["other_images"] == 2 and abs(summary["other_mean_area"] - 0.2) < 1e-12
