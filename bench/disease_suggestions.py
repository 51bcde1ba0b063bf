#!/usr/bin/env python
"""What the disease decoder would suggest to radiologists, out of fold, for cross-validation runs.

``crossval`` scores the disease map by Dice on the images with a finding mask. A radiologist sees
something else: the regions pre-annotation cuts from the map (``inference.suggestions.disease_regions``,
p >= 0.5, components of at least 0.1% of the image, the product's defaults), on every radiograph,
including those that have no finding. For each run given, each fold's ``best.pt`` answers the fold's
test images at their own size, and the regions are scored against the export's masks:

- images with a non-empty finding mask: pixel precision and recall of the suggested regions (pooled
  over the images) and the mean per-image Dice (an image without a region counts as Dice 0);
- images labelled healthy: on how many a region is suggested, and the mean share of the image;
- every other image without a finding mask: the mean share of the image.

Prints a table and writes ``bench/results/disease_suggestions.json``; ``--per-image CSV`` also writes
one row per image and run (for paired comparisons).

    python bench/disease_suggestions.py NAME=CROSSVAL_DIR [NAME=CROSSVAL_DIR ...] [--per-image out.csv]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotator.imaging.encode import decode_mask_png  # noqa: E402
from bench.common import RESULTS_DIR  # noqa: E402
from inference.suggestions import disease_regions  # noqa: E402
from training.data import load_gray  # noqa: E402
from training.export import read_export  # noqa: E402

RESULTS = RESULTS_DIR / "disease_suggestions.json"
# The product's defaults (config/settings: PREANNOTATE_MASK_THRESHOLD, _MIN_REGION_FRACTION, _MAX_REGIONS).
THRESHOLD, MIN_REGION_FRACTION, MAX_REGIONS = 0.5, 0.001, 10


def suggested_mask(disease: np.ndarray) -> np.ndarray:
    """The union of the regions pre-annotation would suggest, at the map's size."""
    height, width = disease.shape
    min_area = int(np.ceil(MIN_REGION_FRACTION * height * width))
    regions = disease_regions(disease, threshold=THRESHOLD, min_area=min_area, max_regions=MAX_REGIONS)
    mask = np.zeros(disease.shape, dtype=bool)
    for region in regions:
        x0, y0, x1, y1 = region.bbox
        mask[y0:y1, x0:x1] |= decode_mask_png(region.mask_png, (y1 - y0, x1 - x0))  # the region's own pixels
    return mask


def fold_rows(fold_dir: Path) -> list[dict]:
    """One row per test image of a fold: its kind and what the fold's model suggests on it."""
    from training.serve import Predictor

    export = read_export(fold_dir / "export")
    predictor = Predictor(fold_dir / "run" / "best.pt", device="cpu")
    rows = []
    for record in export.split("test"):
        image = load_gray(record.image_path(export.root))
        suggested = suggested_mask(predictor.predict(image).disease)
        row = {"image_id": record.image_id, "fold": int(fold_dir.name.split("_")[-1]), "area": float(suggested.mean())}
        truth = load_gray(record.disease_mask_path(export.root)) > 0 if record.has_disease_mask else None
        if truth is not None and truth.any():
            row["kind"] = "finding"
            row["true_positive"] = int((suggested & truth).sum())
            row["suggested"] = int(suggested.sum())
            row["truth"] = int(truth.sum())
            row["dice"] = 2 * row["true_positive"] / (row["suggested"] + row["truth"])
        elif record.healthy == "positive":
            row["kind"] = "healthy"
        elif truth is None:
            row["kind"] = "no_mask"
        else:
            row["kind"] = "empty_mask"  # a radiologist reviewed it and marked nothing
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    findings = [r for r in rows if r["kind"] == "finding"]
    healthy = [r for r in rows if r["kind"] == "healthy"]
    others = [r for r in rows if r["kind"] in ("no_mask", "empty_mask")]
    tp = sum(r["true_positive"] for r in findings)
    return {
        "finding_images": len(findings),
        "precision": tp / max(1, sum(r["suggested"] for r in findings)),
        "recall": tp / max(1, sum(r["truth"] for r in findings)),
        "mean_dice": float(np.mean([r["dice"] for r in findings])) if findings else None,
        "healthy_images": len(healthy),
        "healthy_with_region": sum(r["area"] > 0 for r in healthy),
        "healthy_mean_area": float(np.mean([r["area"] for r in healthy])) if healthy else None,
        "other_images": len(others),
        "other_mean_area": float(np.mean([r["area"] for r in others])) if others else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=CROSSVAL_DIR (a crossval --out folder)")
    parser.add_argument("--per-image", type=Path, help="also write one row per image and run here")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"the JSON summary (default {RESULTS})")
    args = parser.parse_args(argv)

    results, all_rows = {}, []
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        if not folder:
            parser.error(f"{spec!r}: expected NAME=CROSSVAL_DIR")
        # A fold is finished when crossval has written its metrics.json (a running one has a best.pt too).
        folds = sorted(p for p in Path(folder).glob("fold_*") if (p / "metrics.json").is_file() and (p / "run" / "best.pt").is_file())
        if not folds:
            parser.error(f"{folder}: no finished fold (fold_*/metrics.json and fold_*/run/best.pt)")
        rows = [row for fold in tqdm(folds, desc=name, unit="fold") for row in fold_rows(fold)]
        results[name] = summarize(rows)
        all_rows += [{"run": name, **row} for row in rows]

    print("| run | finding images: precision / recall / mean Dice | healthy: with a region / mean area | other images: mean area |")
    print("|---|---|---|---|")
    for name, s in results.items():
        dice = f"{s['mean_dice']:.2f}" if s["mean_dice"] is not None else "-"
        healthy = f"{s['healthy_with_region']} of {s['healthy_images']} / {100 * (s['healthy_mean_area'] or 0):.1f}%"
        print(
            f"| {name} | {s['precision']:.2f} / {s['recall']:.2f} / {dice} ({s['finding_images']}) | {healthy} "
            f"| {100 * (s['other_mean_area'] or 0):.1f}% ({s['other_images']}) |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threshold": THRESHOLD, "min_region_fraction": MIN_REGION_FRACTION, "runs": results}, indent=2))
    print(f"\nwritten to {args.out}")
    if args.per_image:
        fields = ["run", "fold", "image_id", "kind", "area", "dice", "true_positive", "suggested", "truth"]
        with args.per_image.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(all_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
