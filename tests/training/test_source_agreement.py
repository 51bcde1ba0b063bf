"""bench/source_agreement.py: how well two human sources of the same lungs agree (the ceiling for the
model's lung Dice and box IoU), on a folder with known geometry and on the sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import source_agreement

W, H = 200, 160
# Two rectangular "lungs" as the polygon source draws them, patient's right lung on the image's left.
RIGHT = (20, 30, 90, 140)
LEFT = (110, 30, 180, 140)


def _polygon(box: tuple[int, int, int, int]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _write_folder(root: Path, *, mask_shift: int, box_bottom: int) -> None:
    (root / "annotations" / "masks").mkdir(parents=True)
    images = [{"id": 1, "file_name": "a.png", "width": W, "height": H}, {"id": 2, "file_name": "b.png", "width": W, "height": H}]
    polygons = {
        "images": images,
        "categories": [{"id": 1, "name": "Lung"}, {"id": 2, "name": "Ignore"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [_polygon(RIGHT)]},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [_polygon(LEFT)]},
            # A device outline is not a lung: it must not enter the outline.
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [_polygon((95, 0, 105, 160))]},
        ],
    }
    (root / "annotations" / "lung_polygons.json").write_text(json.dumps(polygons))
    rows = ["file,label,mask"]
    for side, (x0, y0, x1, y1) in (("right_lung", RIGHT), ("left_lung", LEFT)):
        mask = np.zeros((H, W), np.uint8)
        mask[y0:y1, x0 + mask_shift : x1 + mask_shift] = 255
        Image.fromarray(mask).save(root / "annotations" / "masks" / f"a_{side}.png")
        rows.append(f"a.png,{side},masks/a_{side}.png")
    mask = np.full((H, W), 255, np.uint8)  # anatomy rows are not lungs
    Image.fromarray(mask).save(root / "annotations" / "masks" / "a_heart.png")
    rows.append("a.png,cardiomediastinum,masks/a_heart.png")
    (root / "annotations" / "findings.csv").write_text("\n".join(rows) + "\n")
    boxes = {
        "images": images,
        "categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [RIGHT[0], RIGHT[1], RIGHT[2] - RIGHT[0], box_bottom - RIGHT[1]]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [LEFT[0], LEFT[1], LEFT[2] - LEFT[0], box_bottom - LEFT[1]]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 50]},
            {"id": 4, "image_id": 2, "category_id": 2, "bbox": [110, 10, 50, 50]},
        ],
    }
    (root / "annotations" / "lung_boxes.json").write_text(json.dumps(boxes))


def test_identical_sources_agree_fully(tmp_path: Path) -> None:
    _write_folder(tmp_path, mask_shift=0, box_bottom=RIGHT[3])
    result = source_agreement.measure(tmp_path, [64])
    outlines = result["outlines_polygons_vs_masks"]
    assert outlines["full"]["n"] == 1 and outlines["full"]["mean"] == pytest.approx(1.0, abs=0.02)
    assert outlines["64px"]["mean"] == pytest.approx(1.0, abs=0.03)
    boxes = result["boxes_vs_polygon_outlines"]
    assert boxes["box_iou"]["n"] == 1  # image b has boxes but no outline: not compared
    assert boxes["box_iou"]["mean"] == pytest.approx(1.0, abs=0.03) and boxes["both_iou_0_9"] == 1.0


def test_disagreement_lowers_the_figures_by_the_expected_amount(tmp_path: Path) -> None:
    shift, bottom = 10, RIGHT[3] + 20
    _write_folder(tmp_path, mask_shift=shift, box_bottom=bottom)
    result = source_agreement.measure(tmp_path, [64])
    width, height = RIGHT[2] - RIGHT[0], RIGHT[3] - RIGHT[1]
    expected_dice = (width - shift) / width  # each lung overlaps its shifted copy by (w - shift) columns
    assert result["outlines_polygons_vs_masks"]["full"]["mean"] == pytest.approx(expected_dice, abs=0.02)
    boxes = result["boxes_vs_polygon_outlines"]
    assert boxes["box_iou"]["mean"] == pytest.approx(height / (height + 20), abs=0.02)
    # The outline boxes end 20 px above the annotated ones: a negative bottom-edge difference.
    assert boxes["bottom_edge"]["mean"] == pytest.approx(-20 / H, abs=0.01)
    assert boxes["both_iou_0_9"] == 0.0 and boxes["both_iou_0_8"] == 1.0


def test_the_command_prints_a_table_and_writes_json(tmp_path: Path, capsys) -> None:
    _write_folder(tmp_path / "data", mask_shift=0, box_bottom=RIGHT[3])
    out = tmp_path / "agreement.json"
    assert source_agreement.main(["--data", str(tmp_path / "data"), "--sizes", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lung Dice, polygon vs mask outlines (64px)" in printed and "box IoU, annotated boxes" in printed
    assert json.loads(out.read_text())["images"] == {"polygon_outlines": 1, "mask_outlines": 1, "annotated_boxes": 2}
    assert source_agreement.main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_the_samples_two_outline_sources_agree_near_the_lung_target(sample_dir: Path) -> None:
    # The lung Dice target (0.95) is what two human outline sources reach on the same lungs.
    result = source_agreement.measure(sample_dir, [128])
    outlines = result["outlines_polygons_vs_masks"]
    assert outlines["full"]["n"] >= 5
    assert 0.85 < outlines["full"]["mean"] < 0.99
    assert abs(outlines["128px"]["mean"] - outlines["full"]["mean"]) < 0.01
