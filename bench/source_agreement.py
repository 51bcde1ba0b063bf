#!/usr/bin/env python
"""How well two human sources of the same lungs agree: the ceiling for the model's lung figures.

A dataset folder in the sample's layout can hold the same lungs more than once, drawn by different
people for different projects: lung outlines as COCO polygons (``annotations/lung_polygons.json``,
category ``Lung``), lung outlines as full-size masks in the findings file (``annotations/findings.csv``,
the labels the findings import keeps as lung outlines), and two lung boxes per image
(``annotations/lung_boxes.json``). Where an image has two of them, this script scores one against the
other with the metrics the model is scored with (``python -m training evaluate``):

- **outline vs outline**: lung Dice at the image's size and at model sizes (both masks brought to
  S x S the way an export's masks are, ``training.data.resize_mask``);
- **box vs outline**: the annotated boxes against the boxes of each outline source (the product's
  lung-box rule, ``training.boxes.lung_boxes_from_mask``): mean IoU, the share of images with both
  boxes at IoU >= 0.9 / 0.8, and the mean bottom-edge difference (outline box minus annotated box, as a
  fraction of the image height).

    python bench/source_agreement.py [--data FOLDER] [--sizes 128,160,224]

Prints a table and writes ``bench/results/source_agreement.json``. Images whose two sources differ in
size are left out and counted (a mask drawn on another crop of the image cannot be compared).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root
from annotator.constants import SOURCE_LUNG_LABELS  # noqa: E402
from annotator.geometry import coco_bbox_to_box, polygons_rasterise  # noqa: E402
from bench.common import RESULTS_DIR, SAMPLE  # noqa: E402
from training.boxes import box_iou, lung_boxes_from_mask  # noqa: E402
from training.data import resize_mask  # noqa: E402
from training.metrics import dice_score  # noqa: E402

RESULTS = RESULTS_DIR / "source_agreement.json"
POLYGONS = "annotations/lung_polygons.json"
FINDINGS = "annotations/findings.csv"
BOXES = "annotations/lung_boxes.json"
SIDES = ("right", "left")
# COCO category names of the box file (patient sides, DESIGN.md).
BOX_CATEGORIES = {"right lung": "right", "left lung": "left"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="a dataset folder in the sample's layout")
    parser.add_argument("--sizes", default="128,160,224", help="model sizes to compare the outlines at")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _coco(path: Path) -> tuple[dict[int, dict], dict[int, str], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    images = {image["id"]: image for image in data.get("images", [])}
    categories = {c["id"]: str(c.get("name", "")).strip().lower() for c in data.get("categories", [])}
    return images, categories, data.get("annotations", [])


def polygon_outlines(root: Path) -> dict[str, np.ndarray]:
    """File name -> full-size boolean mask of the ``Lung`` polygons (other categories are not lungs),
    rasterised as the polygon import does."""
    path = root / POLYGONS
    if not path.is_file():
        return {}
    images, categories, annotations = _coco(path)
    polygons: dict[int, list] = {}
    for annotation in annotations:
        segmentation = annotation.get("segmentation")
        if annotation.get("image_id") in images and categories.get(annotation.get("category_id")) == "lung" and isinstance(segmentation, list):
            polygons.setdefault(annotation["image_id"], []).extend(segmentation)  # RLE is not a lung polygon here
    return {
        Path(images[image_id]["file_name"]).name: polygons_rasterise(
            width=int(images[image_id]["width"]), height=int(images[image_id]["height"]), polygons=shapes
        )
        for image_id, shapes in polygons.items()
    }


def mask_outlines(root: Path) -> dict[str, np.ndarray]:
    """File name -> the union of the findings file's lung-outline masks of that image."""
    path = root / FINDINGS
    if not path.is_file():
        return {}
    outlines: dict[str, np.ndarray] = {}
    for row in csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()):
        if (row.get("label") or "").strip().lower() not in SOURCE_LUNG_LABELS:
            continue
        mask_path = (path.parent / (row.get("mask") or "")).resolve()
        if not mask_path.is_file():
            continue
        with Image.open(mask_path) as image:
            mask = np.asarray(image.convert("L")) >= 128
        name = Path(row.get("file") or "").name
        previous = outlines.get(name)
        outlines[name] = mask if previous is None or previous.shape != mask.shape else previous | mask
    return outlines


def annotated_boxes(root: Path) -> dict[str, tuple[dict[str, list[int] | None], int]]:
    """File name -> ({"right": [x0, y0, x1, y1], "left": ...}, image height) of the box file."""
    path = root / BOXES
    if not path.is_file():
        return {}
    images, categories, annotations = _coco(path)
    boxes: dict[str, tuple[dict[str, list[int] | None], int]] = {}
    for annotation in annotations:
        image = images.get(annotation.get("image_id"))
        side = BOX_CATEGORIES.get(categories.get(annotation.get("category_id"), ""))
        if image is None or side is None:
            continue
        width, height = int(image["width"]), int(image["height"])
        entry = boxes.setdefault(Path(image["file_name"]).name, ({"right": None, "left": None}, height))
        entry[0][side] = coco_bbox_to_box(annotation["bbox"], width=width, height=height)
    return boxes


def _summary(values: list[float]) -> dict[str, Any]:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(array):
        return {"n": 0}
    return {
        "n": int(len(array)),
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "median": float(np.median(array)),
        "min": float(array.min()),
    }


def outline_agreement(first: dict[str, np.ndarray], second: dict[str, np.ndarray], sizes: list[int]) -> dict[str, Any]:
    """Lung Dice between two outline sources on the images both have, at full size and at ``sizes``."""
    scores: dict[str, list[float]] = {"full": [], **{f"{s}px": [] for s in sizes}}
    mismatched = 0
    for name in sorted(set(first) & set(second)):
        a, b = first[name], second[name]
        if a.shape != b.shape:
            mismatched += 1
            continue
        scores["full"].append(dice_score(a, b))
        for size in sizes:
            small_a = resize_mask(a.astype(np.uint8) * 255, size) > 0
            small_b = resize_mask(b.astype(np.uint8) * 255, size) > 0
            scores[f"{size}px"].append(dice_score(small_a, small_b))
    return {"size_mismatch": mismatched, **{key: _summary(values) for key, values in scores.items()}}


def box_agreement(boxes: dict[str, tuple[dict, int]], outlines: dict[str, np.ndarray]) -> dict[str, Any]:
    """Annotated boxes against the boxes of an outline source, on the images that have both."""
    ious, both_09, both_08, bottoms = [], [], [], []
    mismatched = 0
    for name in sorted(set(boxes) & set(outlines)):
        annotated, height = boxes[name]
        mask = outlines[name]
        if mask.shape[0] != height:
            mismatched += 1
            continue
        derived = lung_boxes_from_mask(mask)
        sides = [box_iou(derived[s], annotated[s]) for s in SIDES if annotated[s] is not None]
        sides = [v for v in sides if v is not None]
        if not sides:
            continue
        ious.append(float(np.mean(sides)))
        both_09.append(float(all(v >= 0.9 for v in sides)))
        both_08.append(float(all(v >= 0.8 for v in sides)))
        edges = [(derived[s][3] - annotated[s][3]) / height for s in SIDES if derived[s] is not None and annotated[s] is not None]
        if edges:
            bottoms.append(float(np.mean(edges)))
    return {
        "size_mismatch": mismatched,
        "box_iou": _summary(ious),
        "both_iou_0_9": float(np.mean(both_09)) if both_09 else None,
        "both_iou_0_8": float(np.mean(both_08)) if both_08 else None,
        "bottom_edge": _summary(bottoms),
    }


def measure(root: Path, sizes: list[int]) -> dict[str, Any]:
    polygons, masks, boxes = polygon_outlines(root), mask_outlines(root), annotated_boxes(root)
    return {
        "data": root.name,
        "images": {"polygon_outlines": len(polygons), "mask_outlines": len(masks), "annotated_boxes": len(boxes)},
        "outlines_polygons_vs_masks": outline_agreement(polygons, masks, sizes),
        "boxes_vs_polygon_outlines": box_agreement(boxes, polygons),
        "boxes_vs_mask_outlines": box_agreement(boxes, masks),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    lines = ["| comparison | images | mean | sd | median | min |", "|---|---|---|---|---|---|"]
    outlines = result["outlines_polygons_vs_masks"]
    for key, summary in outlines.items():
        if isinstance(summary, dict) and summary.get("n"):
            lines.append(
                f"| lung Dice, polygon vs mask outlines ({key}) | {summary['n']} | {_fmt(summary['mean'])} | "
                f"{_fmt(summary['sd'])} | {_fmt(summary['median'])} | {_fmt(summary['min'])} |"
            )
    for key, title in (("boxes_vs_polygon_outlines", "polygon"), ("boxes_vs_mask_outlines", "mask")):
        block = result[key]
        summary = block["box_iou"]
        if summary.get("n"):
            lines.append(
                f"| box IoU, annotated boxes vs boxes of {title} outlines (both >= 0.9: {_fmt(block['both_iou_0_9'], 2)}, "
                f">= 0.8: {_fmt(block['both_iou_0_8'], 2)}; bottom edge {_fmt(block['bottom_edge'].get('mean'), 3)}) | "
                f"{summary['n']} | {_fmt(summary['mean'])} | {_fmt(summary['sd'])} | {_fmt(summary['median'])} | {_fmt(summary['min'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"no dataset folder at {args.data}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    result = measure(args.data, sizes)
    result["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
