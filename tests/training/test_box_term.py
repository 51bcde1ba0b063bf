"""Learning the lungs from their boxes as boxes: the projection term (``training.losses.lung_box_projection``)
and its pairwise part (``lung_box_pairwise``), the box masks the dataset moves with each image,
filled-box masks kept out of the mask losses, and the command-line flags that turn them on."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.boxes import box_iou, lung_boxes_from_mask
from training.cli import main
from training.config import AugmentConfig
from training.data import ExportDataset, box_masks, subject_split
from training.export import annotated_lung_boxes, lung_mask_kinds, read_export
from training.losses import lung_box_pairwise, lung_box_projection

SIZE = 48
# Boxes (x0, y0, x1, y1) in model pixels, half-open: the right lung on the image's left.
RIGHT, LEFT = (6, 8, 21, 40), (27, 6, 42, 43)


def box_tensor(right=RIGHT, left=LEFT) -> torch.Tensor:
    boxes = torch.zeros(1, 2, SIZE, SIZE)
    for side, (x0, y0, x1, y1) in enumerate((right, left)):
        boxes[0, side, y0:y1, x0:x1] = 1
    return boxes


def ellipses(right=RIGHT, left=LEFT) -> np.ndarray:
    """Two filled ellipses, each touching all four edges of its box."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for x0, y0, x1, y1 in (right, left):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        mask |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return mask


def logits_of(mask: np.ndarray, confidence: float = 8.0) -> torch.Tensor:
    fg = torch.from_numpy(mask.astype(np.float32)) * 2 - 1
    return torch.stack([-confidence * fg, confidence * fg])[None]


def test_any_shape_that_spans_its_boxes_costs_nothing_and_one_that_does_not_costs() -> None:
    boxes = box_tensor()
    inscribed = ellipses()
    assert lung_box_projection(logits_of(inscribed), boxes).item() < 0.01
    # The same boxes listed left lung first: the term finds which box is on which side.
    assert lung_box_projection(logits_of(inscribed), boxes.flip(1)).item() < 0.01

    short = ellipses(left=(27, 6, 42, 34))  # the left lung stops 9 px above its box's bottom
    spilling = inscribed.copy()
    spilling[40:46, 8:20] = True  # the right lung runs 6 px past its box's bottom
    empty = np.zeros_like(inscribed)
    costs = {name: lung_box_projection(logits_of(mask), boxes).item() for name, mask in
             (("short", short), ("spilling", spilling), ("empty", empty))}
    assert 0.02 < costs["short"] < costs["empty"] and 0.02 < costs["spilling"] < costs["empty"], costs


def test_fitting_a_map_to_the_term_moves_its_edges_onto_the_boxes_without_filling_the_corners() -> None:
    # Start from lungs that end too high and too far in (as the boxes of the sample's models did). The
    # map is smooth, as a decoder's is: a 12 x 12 grid of logits, upsampled.
    start = ellipses(right=(9, 12, 19, 30), left=(29, 10, 39, 31))
    coarse = F.avg_pool2d(logits_of(start, confidence=3.0), 4).clone().requires_grad_(True)
    boxes = box_tensor()

    def logits() -> torch.Tensor:
        return F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)

    optimizer = torch.optim.Adam([coarse], lr=0.05)
    before = lung_box_projection(logits(), boxes).item()
    for _ in range(300):
        optimizer.zero_grad()
        lung_box_projection(logits(), boxes).sum().backward()
        optimizer.step()
    learnt = (torch.softmax(logits().detach(), dim=1)[0, 1] > 0.5).numpy()
    found = lung_boxes_from_mask(learnt)
    assert lung_box_projection(logits(), boxes).item() < before / 10
    assert box_iou(found["right"], list(RIGHT)) > 0.9 and box_iou(found["left"], list(LEFT)) > 0.9, found
    # Only the extent is taught: the map does not become the two rectangles.
    rectangles = box_tensor()[0].amax(0).numpy() > 0
    assert learnt.sum() < 0.8 * rectangles.sum()


def dark_lungs() -> torch.Tensor:
    """A normalised image where the inscribed ellipses are dark and everything else is bright."""
    return torch.from_numpy(np.where(ellipses(), -1.0, 1.0).astype(np.float32))[None, None].expand(1, 3, SIZE, SIZE)


def test_the_pairwise_part_follows_the_image_edges_inside_the_boxes_and_clears_what_lies_outside() -> None:
    boxes, image = box_tensor(), dark_lungs()
    rectangles = box_tensor()[0].amax(0).numpy() > 0
    speckle = (torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(0)) > 0.5).numpy() & rectangles
    spilling = ellipses()
    spilling[0:4, :] = True  # lung above both boxes
    costs = {name: lung_box_pairwise(logits_of(mask), image, boxes).item() for name, mask in
             (("lungs", ellipses()), ("rectangles", rectangles), ("speckle", speckle), ("spilling", spilling))}
    assert costs["lungs"] < 0.01, costs
    # The boxes' corners look like the background outside them, so the filled boxes pay for them.
    assert costs["rectangles"] > 0.2 and costs["speckle"] > 1.0 and costs["spilling"] > 0.2, costs


def test_with_the_pairwise_part_filled_boxes_learn_the_lung_shape_the_image_shows() -> None:
    # Start from the filled boxes (what a box-only image taught before); the terms carve the corners.
    rectangles = box_tensor()[0].amax(0).numpy() > 0
    coarse = F.avg_pool2d(logits_of(rectangles, confidence=3.0), 4).clone().requires_grad_(True)
    boxes, image = box_tensor(), dark_lungs()

    def cost() -> torch.Tensor:
        logits = F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)
        return lung_box_projection(logits, boxes) + lung_box_pairwise(logits, image, boxes)

    optimizer = torch.optim.Adam([coarse], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        cost().sum().backward()
        optimizer.step()
    logits = F.interpolate(coarse.detach(), size=SIZE, mode="bilinear", align_corners=False)
    learnt = (torch.softmax(logits, dim=1)[0, 1] > 0.5).numpy()
    lungs = ellipses()
    assert 2 * (learnt & lungs).sum() / (learnt.sum() + lungs.sum()) > 0.95
    found = lung_boxes_from_mask(learnt)
    assert box_iou(found["right"], list(RIGHT)) > 0.9 and box_iou(found["left"], list(LEFT)) > 0.9, found


def test_box_masks_are_the_boxes_at_model_size() -> None:
    right, left = box_masks({"right": [20, 40, 140, 360], "left": [180, 30, 300, 380]}, width=320, height=400, size=32)
    # x scales by 0.1, y by 0.08: rows 3.2-28.8 and columns 2-14 -> rows 3..28, columns 2..13.
    assert torch.nonzero(right).amin(0).tolist() == [3, 2] and torch.nonzero(right).amax(0).tolist() == [28, 13]
    assert torch.nonzero(left).amin(0).tolist() == [2, 18] and torch.nonzero(left).amax(0).tolist() == [29, 29]
    assert all(m.sum() == 0 for m in box_masks(None, 320, 400, 32))


@pytest.fixture
def export_with_boxes(synthetic_export: Path, tmp_path: Path) -> Path:
    """The synthetic export with a coco.json holding each image's two lung boxes around its ellipses
    (the export's ellipses span x 0.10-0.45 and 0.55-0.90, y 0.15-0.85), and saying that the lung
    masks of two images are filled boxes."""
    root = tmp_path / "export"
    shutil.copytree(synthetic_export, root)
    records = read_export(root).records
    coco = {"categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}], "images": [], "annotations": []}
    for n, record in enumerate(records, start=1):
        w, h = record.width, record.height
        image = {"id": n, "file_name": f"{record.image_id}.png", "width": w, "height": h}
        if record.has_lung_mask:
            image["lung_mask"] = "boxes" if n <= 2 else "outline"
        coco["images"].append(image)
        for category, (x0, x1) in ((1, (0.10, 0.45)), (2, (0.55, 0.90))):
            coco["annotations"].append({"image_id": n, "category_id": category, "bbox": [x0 * w, 0.15 * h, (x1 - x0) * w, 0.7 * h]})
    (root / "coco.json").write_text(json.dumps(coco))
    return root


def test_the_dataset_moves_the_boxes_with_the_image_and_can_keep_filled_boxes_out_of_the_mask_loss(export_with_boxes: Path) -> None:
    records = read_export(export_with_boxes).split("train")
    boxes = annotated_lung_boxes(export_with_boxes)
    mask_off = {records[0].image_id}
    augment = AugmentConfig(covid_copies=True, generic=True, contrast_range=0.0)
    ds = ExportDataset(export_with_boxes, records, image_size=64, augment=augment, lung_boxes=boxes, mask_off=mask_off)
    moved, unmoved = [], []
    for i in range(len(ds)):
        item = ds[i]
        record = ds.records[int(item["index"])]
        assert item["lung_boxes"].shape == (2, 64, 64)
        assert item["has_lung_boxes"] == 1.0
        assert item["has_lung_mask"] == float(record.has_lung_mask and record.image_id not in mask_off)
        if record.has_lung_mask:
            # The ellipses were rotated, shifted and scaled with their boxes: they stay inside them,
            # and not inside the boxes where they were drawn.
            lung = item["lung_mask"] > 0
            moved.append(float((item["lung_boxes"].amax(0) > 0)[lung].float().mean()))
            still = torch.stack(box_masks(boxes[record.image_id], record.width, record.height, 64)).amax(0) > 0
            unmoved.append(float(still[lung].float().mean()))
    assert len(moved) > 5
    assert min(moved) > 0.93 and np.mean(moved) > 0.97, moved
    assert np.mean(unmoved) < np.mean(moved) - 0.05, (unmoved, moved)

    # Without boxes there is nothing to fit: the switch is off, and plain datasets carry no box keys.
    ds = ExportDataset(export_with_boxes, records, image_size=64, lung_boxes={})
    assert ds[0]["has_lung_boxes"] == 0.0 and ds[0]["lung_boxes"].sum() == 0
    assert "lung_boxes" not in ExportDataset(export_with_boxes, records, image_size=64)[0]


def test_the_flags_reach_the_run_and_it_says_what_the_lungs_learnt_from(export_with_boxes: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--export", str(export_with_boxes), "--run-dir", str(run), "--width", "0.0625", "--image-size", "32",
            "--batch-size", "4", "--epochs", "1", "--no-verify"]  # coco.json was added after the manifest
    assert main([*args, "--lung-box-weight", "0.5", "--lung-box-pairwise", "--no-filled-box-masks", "--flip-prob", "0.5", "--no-mirror-average"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["loss"]["lung_box_weight"] == 0.5 and config["loss"]["filled_boxes_as_mask"] is False
    assert config["augment"]["flip_probability"] == 0.5 and config["model"]["mirror_average"] is False
    assert config["loss"]["lung_box_pairwise"] is True
    trained, _ = subject_split(read_export(export_with_boxes).split("train"), config["val_fraction"], config["seed"])
    filled = {image_id for image_id, kind in lung_mask_kinds(export_with_boxes).items() if kind == "boxes"}
    assert filled & {r.image_id for r in trained}  # the test needs a filled-box image among those trained on
    assert config["resolved"]["lung_box_images"] == len(trained)
    assert config["resolved"]["lung_mask_images"] == sum(r.has_lung_mask and r.image_id not in filled for r in trained)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_parts"]["lung_box"] > 0

    with pytest.raises(SystemExit, match="--lung-box-weight"):
        main([*args, "--lung-box-weight", "-1"])
    with pytest.raises(SystemExit, match="--flip-prob"):
        main([*args, "--flip-prob", "1.5"])


def test_a_mirrored_sample_keeps_each_box_on_its_lung_and_its_lung_inside_the_boxes(export_with_boxes: Path) -> None:
    records = read_export(export_with_boxes).split("train")
    boxes = annotated_lung_boxes(export_with_boxes)
    still = AugmentConfig(covid_copies=False, generic=True, rotation_deg=0.0, shift_fraction=0.0, scale_range=0.0, contrast_range=0.0)
    plain = ExportDataset(export_with_boxes, records, image_size=64, augment=still, lung_boxes=boxes)
    flipped = ExportDataset(export_with_boxes, records, image_size=64, augment=replace(still, flip_probability=1.0), lung_boxes=boxes)
    for i in range(len(plain)):
        a, b = plain[i], flipped[i]
        assert torch.equal(b["image"], a["image"].flip(-1))
        assert torch.equal(b["lung_mask"], a["lung_mask"].flip(-1))
        # The right lung's box stays on the image's left (the patient's right), now around the mirrored left lung.
        right, left = b["lung_boxes"]
        assert torch.equal(right, a["lung_boxes"][1].flip(-1)) and torch.equal(left, a["lung_boxes"][0].flip(-1))
        columns = torch.arange(64.0)
        assert (columns * right.amax(0)).sum() / right.amax(0).sum() < 32 < (columns * left.amax(0)).sum() / left.amax(0).sum()
        lung = b["lung_mask"] > 0
        if lung.any():
            assert (b["lung_boxes"].amax(0) > 0)[lung].float().mean() > 0.93
    # Half the samples, drawn per sample and epoch: some mirrored, some not.
    half = ExportDataset(export_with_boxes, records, image_size=64, augment=replace(still, flip_probability=0.5), lung_boxes=boxes)
    mirrored = [torch.equal(half[i]["image"], plain[i]["image"].flip(-1)) and not torch.equal(half[i]["image"], plain[i]["image"]) for i in range(len(plain))]
    assert any(mirrored) and not all(mirrored)
