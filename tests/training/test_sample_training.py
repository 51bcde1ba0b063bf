"""CMTNet learns lungs from the real sample data on the CPU (the behaviour a user of ``train`` notices).

A width-0.25 CMTNet at 128 px (all four tasks) trained from scratch for a few epochs on the sample's
lung-labelled images must lower its loss and segment the training lungs clearly better than the best
constant predictor (the mean training mask, or everything), and its evaluation must hold every metric.
About a minute on an idle 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config import AugmentConfig, LossConfig, ModelConfig, TrainConfig
from training.data import ExportDataset
from training.evaluate import evaluate
from training.export import read_export
from training.metrics import dice_score

from tests.training.test_evaluate import METRIC_KEYS

MARGIN = 0.03


def constant_predictor_dice(export_dir: Path, image_size: int) -> float:
    """Best mean Dice on the training lungs of a predictor that ignores the image."""
    export = read_export(export_dir)
    records = [r for r in export.split("train") if r.has_lung_mask]
    dataset = ExportDataset(export_dir, records, image_size=image_size)
    masks = np.stack([dataset.load_resized(i)[1] for i in range(len(records))]).astype(bool)
    mean_mask = masks.mean(axis=0) >= 0.5
    candidates = [mean_mask, np.ones_like(mean_mask)]
    return max(float(np.mean([dice_score(c, m) for m in masks])) for c in candidates)


@pytest.mark.slow
def test_cmtnet_learns_lungs_from_the_sample_on_the_cpu(sample_lung_export: Path, tmp_path: Path) -> None:
    from training.train import train

    config = TrainConfig(
        export_dir=str(sample_lung_export),
        run_dir=str(tmp_path / "run"),
        model=ModelConfig(width=0.25, image_size=128, pretrained=False),
        loss=LossConfig(lung_dice=True),
        augment=AugmentConfig(covid_copies=True, generic=False),
        schedule="cosine",
        # The sample is COVID-heavy, so the copies now go to its few COVID-negative images: an epoch has
        # about a third of the samples it had with five copies of every COVID image, hence more epochs
        # for about the same number of optimisation steps.
        epochs=10,
        batch_size=4,
        lr=1e-3,
        val_fraction=0.0,
    )
    result = train(config)

    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1]["train_parts"]["lung"] < result.history[0]["train_parts"]["lung"]

    on_train = evaluate(result.best_checkpoint, sample_lung_export, split="train")
    baseline = constant_predictor_dice(sample_lung_export, 128)
    assert on_train["lung_dice"] > baseline + MARGIN, (on_train["lung_dice"], baseline)

    on_test = result.metrics
    assert METRIC_KEYS <= set(on_test) and METRIC_KEYS <= set(on_train)
    assert on_test["lung_dice"] is not None and on_test["lung_box_iou"] is not None
    assert (result.run_dir / "roc.png").is_file()
