"""evaluate(): every metric of the paper in one dict, ROC plot, and None for undefined metrics."""

from __future__ import annotations

import json
from pathlib import Path

from training.evaluate import evaluate

METRIC_KEYS = {
    "lung_dice", "lung_iou", "lung_box_iou", "lung_box_iou_right", "lung_box_iou_left",
    "disease_dice", "disease_iou",
    "covid_accuracy", "covid_auc", "covid_sensitivity_at_99_specificity", "covid_sensitivity_at_90_specificity", "covid_eer",
    "healthy_accuracy", "n_images",
}


def test_evaluate_returns_every_metric_and_writes_json_and_roc(trained_run, synthetic_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval" / "metrics.json"
    metrics = evaluate(trained_run.best_checkpoint, synthetic_export, split="test", out=out)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["n_images"] == 4 and metrics["split"] == "test"
    assert json.loads(out.read_text())["lung_dice"] == metrics["lung_dice"]
    assert (out.parent / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= metrics["lung_dice"] <= 1 and metrics["covid_auc"] is not None


def test_metrics_without_negatives_are_none_not_a_crash(trained_run, make_synthetic_export) -> None:
    export = make_synthetic_export(n_images=1, test_every=1)  # one COVID-positive test image
    metrics = evaluate(trained_run.best_checkpoint, export, split="test")
    assert metrics["covid_negatives"] == 0
    assert metrics["covid_auc"] is None and metrics["covid_eer"] is None
    assert metrics["covid_sensitivity_at_99_specificity"] is None
