"""The box-edge calibration: fitted from a checkpoint's boxes against annotated ones, stored in the
checkpoint, applied when scoring and when pre-annotating."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import ModelConfig
from training.evaluate import checkpoint_box_calibrate, score_checkpoint
from training.export import read_export
from training.model import CMTNet
from training.serve import Predictor

# Where annotators draw each lung, as fractions of the image (x0, y0, x1, y1).
RIGHT, LEFT = (0.1, 0.1, 0.45, 0.8), (0.55, 0.1, 0.9, 0.8)


def all_lung_checkpoint(path: Path) -> Path:
    """A tiny CMTNet whose lung map is 0.9 everywhere: its boxes are the two image halves."""
    torch.manual_seed(0)
    model = CMTNet(ModelConfig(width=0.0625, image_size=32, pretrained=False))
    with torch.no_grad():
        model.lung_decoder.classifier.weight.zero_()
        model.lung_decoder.classifier.bias.copy_(torch.tensor([0.0, float(torch.logit(torch.tensor(0.9)))]))
    return save_checkpoint(path, model, normalization={"mean": [0.5] * 3, "std": [0.25] * 3})


@pytest.fixture
def export_with_boxes(synthetic_export: Path, tmp_path: Path) -> Path:
    """The synthetic export plus a coco.json with both lung boxes of every image where RIGHT/LEFT say."""
    root = tmp_path / "export"
    shutil.copytree(synthetic_export, root)
    records = read_export(root).records
    coco = {"categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}], "images": [], "annotations": []}
    for n, record in enumerate(records, start=1):
        coco["images"].append({"id": n, "file_name": f"{record.image_id}.png", "width": record.width, "height": record.height})
        for category, (x0, y0, x1, y1) in ((1, RIGHT), (2, LEFT)):
            w, h = record.width, record.height
            coco["annotations"].append({"image_id": n, "category_id": category, "bbox": [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h]})
    (root / "coco.json").write_text(json.dumps(coco))
    return root


def test_a_fitted_calibration_is_stored_in_the_checkpoint_and_brings_boxes_onto_the_annotated_ones(
    export_with_boxes: Path, tmp_path: Path
) -> None:
    checkpoint = all_lung_checkpoint(tmp_path / "model.pt")
    before, _ = score_checkpoint(checkpoint, export_with_boxes, "all", device="cpu")
    assert before["lung_box_iou_annotated"] < 0.6  # image halves against boxes a third smaller

    train_records = read_export(export_with_boxes).split("train")
    calibration = checkpoint_box_calibrate(checkpoint, export_with_boxes, train_records, device=torch.device("cpu"))
    # Image halves [0, 0, .5, 1] and [.5, 0, 1, 1] moved to the annotated boxes.
    assert calibration["right"] == pytest.approx([0.1, 0.1, -0.05, -0.2], abs=0.03)
    assert calibration["left"] == pytest.approx([0.05, 0.1, -0.1, -0.2], abs=0.03)
    assert load_checkpoint(checkpoint)["box_calibration"] == calibration

    after, _ = score_checkpoint(checkpoint, export_with_boxes, "all", device="cpu")
    assert after["lung_box_iou_annotated_raw"] == pytest.approx(before["lung_box_iou_annotated"])
    assert after["lung_box_iou_annotated"] > 0.9
    assert abs(after["lung_box_bottom_error"]) < 0.03 < abs(before["lung_box_bottom_error"])


def test_pre_annotation_boxes_move_by_the_checkpoints_calibration(export_with_boxes: Path, tmp_path: Path) -> None:
    from inference.suggestions import suggestion_from_prediction

    checkpoint = all_lung_checkpoint(tmp_path / "model.pt")
    image = np.full((200, 300), 128, dtype=np.uint8)

    def boxes():
        prediction = Predictor(checkpoint, device="cpu").predict(image)
        suggestion = suggestion_from_prediction(prediction, shape=image.shape, threshold=0.5, min_region_fraction=0.01, max_regions=5)
        return suggestion.right_box, suggestion.left_box

    assert boxes() == ([0, 0, 150, 200], [150, 0, 300, 200])
    checkpoint_box_calibrate(checkpoint, export_with_boxes, read_export(export_with_boxes).records, device=torch.device("cpu"))
    right, left = boxes()
    assert right == pytest.approx([30, 20, 135, 160], abs=8)
    assert left == pytest.approx([165, 20, 270, 160], abs=8)
    assert all(isinstance(v, int) for v in right + left)
