"""Self-training: a trained model's lung masks for the training images nobody outlined or boxed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.training.sample_export import build_synthetic_export
from training.cli import main
from training.config import ModelConfig, TrainConfig
from training.data import ExportDataset, resize_mask
from training.export import annotated_lung_boxes, read_export
from training.pseudo import pseudo_lung_candidates, pseudo_lung_masks
from training.train import train

SIZE = 32


def _true_lungs(width: int, height: int) -> np.ndarray:
    """The synthetic export's two lung ellipses of an image (tests/training/sample_export.py), at model size."""
    lung = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(lung)
    draw.ellipse([0.10 * width, 0.15 * height, 0.45 * width, 0.85 * height], fill=255)
    draw.ellipse([0.55 * width, 0.15 * height, 0.90 * width, 0.85 * height], fill=255)
    return resize_mask(np.asarray(lung), SIZE)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny lung network trained long enough to find the synthetic lungs, and its 30-image export."""
    export = build_synthetic_export(tmp_path_factory.mktemp("pseudo") / "export", n_images=30, test_every=5)
    config = TrainConfig(
        export_dir=str(export), run_dir=str(export.parent / "teacher"), epochs=12, batch_size=4, lr=3e-3,
        model=ModelConfig(width=0.125, image_size=SIZE, pretrained=False, tasks=(1,)),
    )
    return export, train(config).best_checkpoint


def test_images_without_outline_or_boxes_get_the_teachers_lungs(teacher: tuple[Path, Path]) -> None:
    export_dir, checkpoint = teacher
    export = read_export(export_dir)
    records = export.split("train")
    candidates = pseudo_lung_candidates(records, annotated_lung_boxes(export.root, with_outline_boxes=True))
    assert candidates and all(not r.has_lung_mask for r in candidates)
    assert len(candidates) == sum(not r.has_lung_mask for r in records)  # the synthetic export draws no boxes

    masks = pseudo_lung_masks(checkpoint, export.root, candidates, SIZE)
    assert set(masks) <= {r.image_id for r in candidates}
    assert len(masks) >= len(candidates) - 1, "the teacher found two lungs on (nearly) every unoutlined image"
    for record in candidates:
        if record.image_id in masks:
            mask = masks[record.image_id]
            assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 1}
            assert _dice(mask, _true_lungs(record.width, record.height)) > 0.75


def test_a_pseudo_masked_image_trains_its_lung_map_like_an_outlined_one(teacher: tuple[Path, Path]) -> None:
    export_dir, checkpoint = teacher
    export = read_export(export_dir)
    records = export.split("train")
    candidates = pseudo_lung_candidates(records, {})
    masks = pseudo_lung_masks(checkpoint, export.root, candidates, SIZE)
    plain = ExportDataset(export.root, records, image_size=SIZE)
    taught = ExportDataset(export.root, records, image_size=SIZE, pseudo_lungs=masks)
    for position, record in enumerate(records):
        before, after = plain[position], taught[position]
        if record.image_id in masks:
            assert before["has_lung_mask"] == 0 and after["has_lung_mask"] == 1
            assert torch.equal(after["lung_mask"], torch.from_numpy(masks[record.image_id]).float())
        else:  # drawn masks are never replaced
            assert after["has_lung_mask"] == before["has_lung_mask"]
            assert torch.equal(after["lung_mask"], before["lung_mask"])


def test_training_with_a_teacher_counts_its_masks_and_rejects_a_missing_one(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    export_dir, checkpoint = teacher
    run = tmp_path / "student"
    args = ["train", "--export", str(export_dir), "--run-dir", str(run), "--width", "0.0625", "--image-size", str(SIZE),
            "--batch-size", "4", "--epochs", "1", "--tasks", "1"]
    assert main([*args, "--pseudo-lungs", str(checkpoint)]) == 0
    resolved = json.loads((run / "config.json").read_text())
    taught = resolved["resolved"]["pseudo_lung_images"]
    unoutlined = sum(not r.has_lung_mask for r in read_export(export_dir).split("train"))
    assert 0 < taught <= unoutlined
    with pytest.raises(SystemExit, match="no checkpoint at"):
        main([*args, "--run-dir", str(tmp_path / "other"), "--pseudo-lungs", str(tmp_path / "missing.pt")])


def test_crossval_teachers_must_come_from_the_same_folds(teacher: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    export_dir, _ = teacher
    tiny = ["--width", "0.0625", "--image-size", str(SIZE), "--batch-size", "4", "--epochs", "1", "--tasks", "1"]
    first = tmp_path / "first"
    assert main(["crossval", "--export", str(export_dir), "--folds", "3", "--out", str(first), *tiny]) == 0
    student = tmp_path / "student"
    assert main(["crossval", "--export", str(export_dir), "--folds", "3", "--out", str(student), "--teachers", str(first), *tiny]) == 0
    report = json.loads((student / "crossval.json").read_text())
    assert report["teachers"] == str(first)
    for fold in range(3):  # each fold learns from its own fold's teacher, which never saw its test patients
        config = json.loads((student / f"fold_{fold}" / "run" / "config.json").read_text())
        assert config["pseudo_lungs"] == str(first / f"fold_{fold}" / "run" / "best.pt")
    capsys.readouterr()
    assert main(["crossval", "--export", str(export_dir), "--folds", "2", "--out", str(tmp_path / "x"), "--teachers", str(first), *tiny]) == 2
    assert "split the subjects into other folds" in capsys.readouterr().err
