"""Builders of export-v1 snapshots for tests: from the real cxr-sample data, and tiny synthetic ones.

There is no export command on the Django side yet, so this writes the format of DESIGN.md directly:
labels.csv, images/ (8-bit grayscale PNG), masks/lung and masks/disease (0/255 PNG) and a
manifest.json with the sha256 of every file. Reusable outside pytest::

    python tests/training/sample_export.py OUT_DIR [--lung-labelled-only] [--max-side 512]

Sample data rules (from the issue): frontal views only (L, Axial, Coronal skipped); lung masks are
the two COCO lung boxes filled; disease masks are the union of the ground_glass_opacity,
consolidation and pleural_effusion masks of findings.csv; labels from metadata.csv ``finding``:
"COVID-19" -> covid positive, unhealthy, other disease negative; "No Finding" (any case) -> healthy;
blank or "todo" -> all unknown; anything else -> unhealthy, covid negative, other disease positive.
The split is subject-disjoint (by patient_id), about 20% of images in test, stratified by COVID.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import os
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_COLUMNS = (
    "image_id", "subject_id", "dataset", "view", "healthy", "covid", "other_disease",
    "has_lung_mask", "has_disease_mask", "split", "width", "height",
)
SKIPPED_VIEWS = {"L", "Axial", "Coronal"}
DISEASE_FINDINGS = {"ground_glass_opacity", "consolidation", "pleural_effusion"}


def default_sample_dir() -> Path:
    """The sample data: $LUNGMARK_SAMPLE_DATA, else ``shared/data/cxr-sample`` beside the repository."""
    env = os.environ.get("LUNGMARK_SAMPLE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr-sample"


def write_manifest(root: Path, *, source: str, counts: dict, split_seed: int) -> None:
    files = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = {
        "format": "lungmark-export/1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "counts": counts,
        "split_seed": split_seed,
        "files": files,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def write_labels(root: Path, rows: list[dict]) -> None:
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def labels_from_finding(finding: str) -> tuple[str, str, str]:
    """(healthy, covid, other_disease) from metadata.csv's free-text ``finding``."""
    text = (finding or "").strip()
    if text == "" or text.lower() == "todo":
        return "unknown", "unknown", "unknown"
    if text == "COVID-19":
        return "negative", "positive", "negative"
    if text.lower() == "no finding":
        return "positive", "negative", "negative"
    return "negative", "negative", "positive"


def subject_disjoint_split(subject_images: dict[str, int], subject_covid: dict[str, bool], fraction: float, seed: int) -> set[str]:
    """Test subjects: about ``fraction`` of the images, drawn separately from COVID and other subjects."""
    rng = random.Random(seed)
    test: set[str] = set()
    for group in (True, False):
        subjects = sorted(s for s in subject_images if subject_covid[s] == group)
        rng.shuffle(subjects)
        target = fraction * sum(subject_images[s] for s in subjects)
        count = 0
        for subject in subjects:
            if count >= target:
                break
            test.add(subject)
            count += subject_images[subject]
    return test


def _safe_id(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate)
    return candidate


def _load_scaled(path: Path, max_side: int | None) -> tuple[Image.Image, float, float]:
    """Grayscale image, downscaled so its longer side is at most ``max_side``; returns x/y scale factors."""
    with Image.open(path) as image:
        width, height = image.size
        if max_side and max(width, height) > max_side:
            image.draft("L", (max_side, max_side))  # JPEG: decode at a reduced size, much faster
        gray = image.convert("L")
    if max_side and max(gray.size) > max_side:
        factor = max_side / max(gray.size)
        gray = gray.resize((max(1, round(gray.width * factor)), max(1, round(gray.height * factor))), Image.Resampling.BILINEAR)
    return gray, gray.width / width, gray.height / height


def build_sample_export(
    source: Path,
    dest: Path,
    *,
    lung_labelled_only: bool = False,
    max_side: int | None = 512,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write an export-v1 snapshot of the cxr-sample data to ``dest`` and return ``dest``.

    ``max_side`` shrinks large originals (the export then records the shrunk size) to keep tests fast;
    ``None`` keeps the original resolution.
    """
    source, dest = Path(source), Path(dest)
    with open(source / "metadata.csv", newline="", encoding="utf-8") as fh:
        metadata = [row for row in csv.DictReader(fh) if row["view"].strip() not in SKIPPED_VIEWS]

    coco = json.loads((source / "annotations" / "lung_boxes.json").read_text(encoding="utf-8"))
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    file_of = {im["id"]: im["file_name"] for im in coco["images"]}
    boxes: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for ann in coco["annotations"]:
        side = "right" if categories[ann["category_id"]] == "Right Lung" else "left"
        boxes[file_of[ann["image_id"]]][side] = ann["bbox"]

    findings: dict[str, list[Path]] = defaultdict(list)
    with open(source / "annotations" / "findings.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            findings[row["file"]]  # every annotated image has a disease mask, possibly empty
            if row["label"] in DISEASE_FINDINGS:
                findings[row["file"]].append(source / "annotations" / row["mask"])

    if lung_labelled_only:
        metadata = [row for row in metadata if row["file"] in boxes]

    subject_of = {row["file"]: (row["patient_id"].strip() or f"file-{row['file']}") for row in metadata}
    subject_images: dict[str, int] = defaultdict(int)
    subject_covid: dict[str, bool] = defaultdict(bool)
    for row in metadata:
        subject_images[subject_of[row["file"]]] += 1
        subject_covid[subject_of[row["file"]]] |= row["finding"].strip() == "COVID-19"
    test_subjects = subject_disjoint_split(subject_images, subject_covid, test_fraction, seed)

    for folder in ("images", "masks/lung", "masks/disease"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    rows = []
    for row in metadata:
        file = row["file"]
        image_id = _safe_id(file, taken)
        image, sx, sy = _load_scaled(source / "images" / file, max_side)
        image.save(dest / "images" / f"{image_id}.png", optimize=False)
        has_lung = file in boxes and {"right", "left"} <= set(boxes[file])
        if has_lung:
            mask = Image.new("L", image.size, 0)
            draw = ImageDraw.Draw(mask)
            for x, y, w, h in boxes[file].values():
                x0, y0 = math.floor(x * sx), math.floor(y * sy)
                x1, y1 = min(image.width, math.ceil((x + w) * sx)), min(image.height, math.ceil((y + h) * sy))
                draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)  # PIL rectangles include x1/y1
            mask.save(dest / "masks" / "lung" / f"{image_id}.png")
        has_disease = file in findings
        if has_disease:
            union = np.zeros((image.height, image.width), dtype=bool)
            for mask_path in findings[file]:
                with Image.open(mask_path) as m:
                    union |= np.asarray(m.convert("L").resize(image.size, Image.Resampling.NEAREST)) > 127
            Image.fromarray((union * 255).astype(np.uint8)).save(dest / "masks" / "disease" / f"{image_id}.png")
        healthy, covid, other = labels_from_finding(row["finding"])
        rows.append({
            "image_id": image_id,
            "subject_id": subject_of[file],
            "dataset": row["source"],
            "view": row["view"].strip(),
            "healthy": healthy,
            "covid": covid,
            "other_disease": other,
            "has_lung_mask": int(has_lung),
            "has_disease_mask": int(has_disease),
            "split": "test" if subject_of[file] in test_subjects else "train",
            "width": image.width,
            "height": image.height,
        })
    write_labels(dest, rows)
    counts = {
        "images": len(rows),
        "train": sum(r["split"] == "train" for r in rows),
        "test": sum(r["split"] == "test" for r in rows),
        "lung_masks": sum(r["has_lung_mask"] for r in rows),
        "disease_masks": sum(r["has_disease_mask"] for r in rows),
    }
    write_manifest(dest, source="cxr-sample", counts=counts, split_seed=seed)
    return dest


def build_synthetic_export(
    dest: Path,
    *,
    n_images: int = 12,
    size_range: tuple[int, int] = (40, 72),
    seed: int = 0,
    test_every: int = 3,
) -> Path:
    """A tiny export with drawn 'lungs' (two dark ellipses) and 'lesions', mixed and unknown labels.

    Image i: subject ``s{i // 2}``; subjects with ``(i // 2) % test_every == test_every - 1`` are in
    test. Lung masks on all but every 5th image, disease masks on every 3rd; labels cycle through
    COVID / other disease / healthy / unknown so every loss switch is exercised.
    """
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    for folder in ("images", "masks/lung", "masks/disease"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    label_cycle = [
        ("negative", "positive", "negative"),
        ("negative", "negative", "positive"),
        ("positive", "negative", "negative"),
        ("unknown", "unknown", "unknown"),
        ("negative", "positive", "unknown"),
    ]
    rows = []
    for i in range(n_images):
        width, height = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        lung = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(lung)
        draw.ellipse([0.10 * width, 0.15 * height, 0.45 * width, 0.85 * height], fill=255)
        draw.ellipse([0.55 * width, 0.15 * height, 0.90 * width, 0.85 * height], fill=255)
        lung_arr = np.asarray(lung)
        disease = Image.new("L", (width, height), 0)
        if i % 2 == 0:
            ImageDraw.Draw(disease).ellipse([0.2 * width, 0.5 * height, 0.35 * width, 0.7 * height], fill=255)
        disease_arr = np.asarray(disease)
        image = 170 + rng.normal(0, 12, size=(height, width))
        image[lung_arr > 0] -= 100
        image[disease_arr > 0] += 60
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(dest / "images" / f"img{i:03d}.png")
        has_lung = i % 5 != 4
        has_disease = i % 3 == 0
        if has_lung:
            lung.save(dest / "masks" / "lung" / f"img{i:03d}.png")
        if has_disease:
            disease.save(dest / "masks" / "disease" / f"img{i:03d}.png")
        healthy, covid, other = label_cycle[i % len(label_cycle)]
        subject = i // 2
        rows.append({
            "image_id": f"img{i:03d}",
            "subject_id": f"s{subject}",
            "dataset": "synthetic",
            "view": "PA",
            "healthy": healthy,
            "covid": covid,
            "other_disease": other,
            "has_lung_mask": int(has_lung),
            "has_disease_mask": int(has_disease),
            "split": "test" if subject % test_every == test_every - 1 else "train",
            "width": width,
            "height": height,
        })
    write_labels(dest, rows)
    write_manifest(dest, source="synthetic", counts={"images": n_images}, split_seed=seed)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=default_sample_dir())
    parser.add_argument("--lung-labelled-only", action="store_true")
    parser.add_argument("--max-side", type=int, default=512, help="0 keeps the original size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build_sample_export(args.source, args.out, lung_labelled_only=args.lung_labelled_only, max_side=args.max_side or None, seed=args.seed)
    print(f"export written to {args.out}")


if __name__ == "__main__":
    main()
