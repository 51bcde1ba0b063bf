"""Reading and verifying export snapshots (format ``lungmark-export/1``, DESIGN.md).

``read_export(dir)`` parses ``labels.csv`` into typed ``ExportRecord`` rows and fails with an
``ExportError`` that names the file and the problem (a missing column, an unknown label value).
``verify_export(dir)`` is the thorough check shared with the Django side: manifest format, every
listed file present with the right sha256, no unlisted files, the labels.csv schema and its
consistency with the mask files, mask sizes and binarity. It returns problem strings, each naming
the file it is about; an empty list means the snapshot is sound.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

EXPORT_FORMAT = "lungmark-export/1"
MANIFEST = "manifest.json"
COCO = "coco.json"
# COCO category names of the two lung boxes (patient sides), as export_masks writes them.
LUNG_BOX_CATEGORIES = {"Right Lung": "right", "Left Lung": "left"}
# A lung box's ``attributes.box_source`` when Lungmark computed it from an imported outline (else "drawn").
BOX_FROM_OUTLINE = "outline"
# An image's ``lung_mask`` in coco.json: its lung mask is an outline, or the two lung boxes filled.
LUNG_MASK_OUTLINE, LUNG_MASK_BOXES = "outline", "boxes"
LABELS = "labels.csv"
LABEL_COLUMNS: tuple[str, ...] = (
    "image_id",
    "subject_id",
    "dataset",
    "view",
    "healthy",
    "covid",
    "other_disease",
    "has_lung_mask",
    "has_disease_mask",
    "split",
    "width",
    "height",
)
LABEL_VALUES = ("positive", "negative", "unknown")
SPLITS = ("train", "test")
FLAG_VALUES = ("0", "1")
# Files that describe the snapshot rather than being listed in it (the manifest cannot hash itself).
UNLISTED_OK = frozenset({MANIFEST})


class ExportError(ValueError):
    """The export folder cannot be used; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class ExportRecord:
    """One row of labels.csv. Label fields hold ``"positive" | "negative" | "unknown"``."""

    image_id: str
    subject_id: str
    dataset: str
    view: str
    healthy: str
    covid: str
    other_disease: str
    has_lung_mask: bool
    has_disease_mask: bool
    split: str
    width: int
    height: int

    def image_path(self, root: Path) -> Path:
        return root / "images" / f"{self.image_id}.png"

    def lung_mask_path(self, root: Path) -> Path:
        return root / "masks" / "lung" / f"{self.image_id}.png"

    def disease_mask_path(self, root: Path) -> Path:
        return root / "masks" / "disease" / f"{self.image_id}.png"


@dataclass(frozen=True)
class Export:
    """A parsed snapshot: its folder, its manifest (may be empty if absent) and its rows."""

    root: Path
    manifest: dict
    records: list[ExportRecord]

    def split(self, name: str) -> list[ExportRecord]:
        """The rows of one split (``train`` or ``test``), or every row for ``all``."""
        if name == "all":
            return list(self.records)
        return [r for r in self.records if r.split == name]

    @property
    def identity(self) -> dict:
        """What a checkpoint records about the snapshot it was trained on."""
        return {
            "path": str(self.root),
            "created": self.manifest.get("created"),
            "manifest_sha256": sha256_file(self.root / MANIFEST) if (self.root / MANIFEST).is_file() else None,
        }


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _label_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _row_problems(row: dict[str, str], line: int) -> list[str]:
    """Schema problems of one labels.csv row (line numbers count the header as line 1)."""
    where = f"{LABELS} line {line}"
    problems = []
    if not (row.get("image_id") or "").strip():
        problems.append(f"{where}: empty image_id")
    elif "/" in row["image_id"] or "\\" in row["image_id"] or row["image_id"] in (".", ".."):
        problems.append(f"{where}: image_id {row['image_id']!r} is not a plain file name")
    if not (row.get("subject_id") or "").strip():
        problems.append(f"{where}: empty subject_id")
    for column in ("healthy", "covid", "other_disease"):
        if row.get(column) not in LABEL_VALUES:
            problems.append(f"{where}: {column} is {row.get(column)!r}, expected one of {', '.join(LABEL_VALUES)}")
    for column in ("has_lung_mask", "has_disease_mask"):
        if row.get(column) not in FLAG_VALUES:
            problems.append(f"{where}: {column} is {row.get(column)!r}, expected 0 or 1")
    if row.get("split") not in SPLITS:
        problems.append(f"{where}: split is {row.get('split')!r}, expected train or test")
    for column in ("width", "height"):
        value = row.get(column) or ""
        if not value.isdigit() or int(value) <= 0:
            problems.append(f"{where}: {column} is {value!r}, expected a positive integer")
    return problems


def read_export(root: str | Path) -> Export:
    """Parse an export folder's labels.csv (and manifest.json when present).

    Raises ``ExportError`` naming the file when labels.csv is missing, lacks a column, or has a row
    that breaks the schema. It does not hash files; ``verify_export`` does.
    """
    root = Path(root)
    labels_path = root / LABELS
    if not labels_path.is_file():
        raise ExportError(f"{labels_path}: labels.csv not found (is {root} an export snapshot?)")
    columns, rows = _label_rows(labels_path)
    missing = [c for c in LABEL_COLUMNS if c not in columns]
    if missing:
        raise ExportError(f"{labels_path}: missing column(s) {', '.join(missing)}; expected {', '.join(LABEL_COLUMNS)}")
    problems = [p for i, row in enumerate(rows, start=2) for p in _row_problems(row, i)]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ExportError(f"{labels_path}: {shown}")
    manifest: dict = {}
    if (root / MANIFEST).is_file():
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{root / MANIFEST}: unreadable ({exc})") from exc
    records = [
        ExportRecord(
            image_id=row["image_id"],
            subject_id=row["subject_id"],
            dataset=row["dataset"],
            view=row["view"],
            healthy=row["healthy"],
            covid=row["covid"],
            other_disease=row["other_disease"],
            has_lung_mask=row["has_lung_mask"] == "1",
            has_disease_mask=row["has_disease_mask"] == "1",
            split=row["split"],
            width=int(row["width"]),
            height=int(row["height"]),
        )
        for row in rows
    ]
    return Export(root=root, manifest=manifest if isinstance(manifest, dict) else {}, records=records)


def annotated_lung_boxes(root: str | Path, *, with_outline_boxes: bool = False) -> dict[str, dict[str, list[float]]]:
    """The lung boxes people drew or accepted, per image, from the export's coco.json, in original pixels.

    ``{image_id: {"right": [x0, y0, x1, y1], "left": [...]}}`` (half-open), for images with both
    boxes; empty when the export has no coco.json. These follow the annotators' convention, which
    differs from the tight boxes of a lung outline (they include the costophrenic angles, for one), so
    boxes that Lungmark computed from an imported outline (``attributes.box_source == "outline"``)
    are left out: their image is scored by the outline itself (``with_outline_boxes`` keeps them, for
    training). Boxes without the attribute (older exports) count as drawn. Raises ``ExportError`` when
    coco.json exists but cannot be read.
    """

    def read(coco: dict) -> dict[str, dict[str, list[float]]]:
        categories = {c["id"]: LUNG_BOX_CATEGORIES.get(c["name"]) for c in coco.get("categories", [])}
        image_ids = {im["id"]: Path(im["file_name"]).stem for im in coco.get("images", [])}
        boxes: dict[str, dict[str, list[float]]] = {}
        from_outline: set[str] = set()
        for annotation in coco.get("annotations", []):
            side = categories.get(annotation["category_id"])
            if side is None or annotation["image_id"] not in image_ids:
                continue
            image_id = image_ids[annotation["image_id"]]
            attributes = annotation.get("attributes")
            if isinstance(attributes, dict) and attributes.get("box_source") == BOX_FROM_OUTLINE:
                from_outline.add(image_id)
            x, y, w, h = (float(v) for v in annotation["bbox"])
            boxes.setdefault(image_id, {})[side] = [x, y, x + w, y + h]
        return {
            image_id: sides
            for image_id, sides in boxes.items()
            if len(sides) == 2 and (with_outline_boxes or image_id not in from_outline)
        }

    return _coco_read(root, read)


def lung_mask_kinds(root: str | Path) -> dict[str, str]:
    """What each image's lung mask holds, from coco.json's ``images[].lung_mask``: ``{image_id:
    "outline" | "boxes"}``. A filled pair of boxes is not an outline, so lung Dice against it measures
    the box convention rather than the lung. Images without the key (older exports, or no lung mask)
    are left out; empty when the export has no coco.json. Raises ``ExportError`` when coco.json exists
    but cannot be read."""
    return _coco_read(
        root,
        lambda coco: {
            Path(image["file_name"]).stem: image["lung_mask"]
            for image in coco.get("images", [])
            if image.get("lung_mask") in (LUNG_MASK_OUTLINE, LUNG_MASK_BOXES)
        },
    )


def _coco_read(root: str | Path, read: Callable[[dict], dict]) -> dict:
    """``read(coco)`` of the export's coco.json; empty when there is none. A file that does not parse,
    or that lacks what ``read`` looks up, is an ``ExportError`` naming it."""
    path = Path(root) / COCO
    if not path.is_file():
        return {}
    try:
        return read(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: unreadable COCO annotations ({exc})") from exc


def verify_export(path: str | Path) -> list[str]:
    """Check an export snapshot thoroughly; return one problem string per issue (empty: sound).

    Checks: manifest.json parses and has format ``lungmark-export/1`` and a ``files`` mapping of
    relative path -> sha256; every listed file exists with that hash; no file in the folder is
    unlisted; labels.csv has every column and only allowed values, unique image ids, and a subject is
    never in both splits; every image exists, is 8-bit grayscale and has the width/height of its row;
    ``has_lung_mask``/``has_disease_mask`` agree with the mask files present; masks have the image's
    size and only the values 0 and 255. Each problem names the file (relative to the snapshot).
    """
    root = Path(path)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    problems: list[str] = []
    problems += _verify_manifest(root)
    problems += _verify_labels_and_pixels(root)
    return problems


def _verify_manifest(root: Path) -> list[str]:
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST}: missing"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{MANIFEST}: not valid JSON ({exc})"]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: expected a JSON object"]
    problems = []
    if manifest.get("format") != EXPORT_FORMAT:
        problems.append(f"{MANIFEST}: format is {manifest.get('format')!r}, expected {EXPORT_FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        return problems + [f"{MANIFEST}: 'files' must map relative paths to sha256 hex digests"]
    resolved_root = root.resolve()
    for rel, expected in sorted(files.items()):
        target = root / rel
        if not isinstance(expected, str) or len(expected) != 64:
            problems.append(f"{rel}: manifest sha256 {expected!r} is not a 64-digit hex digest")
            continue
        try:
            inside = target.resolve().is_relative_to(resolved_root)
        except OSError:
            inside = False
        if Path(rel).is_absolute() or not inside:
            problems.append(f"{rel}: listed in {MANIFEST} but outside the snapshot")
        elif not target.is_file():
            problems.append(f"{rel}: listed in {MANIFEST} but missing")
        elif sha256_file(target) != expected.lower():
            problems.append(f"{rel}: sha256 does not match {MANIFEST} (file changed or corrupt)")
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel not in files and rel not in UNLISTED_OK:
            problems.append(f"{rel}: present but not listed in {MANIFEST}")
    if LABELS not in files:
        problems.append(f"{LABELS}: not listed in {MANIFEST}")
    return problems


def _verify_labels_and_pixels(root: Path) -> list[str]:
    labels_path = root / LABELS
    if not labels_path.is_file():
        return [f"{LABELS}: missing"]
    try:
        columns, rows = _label_rows(labels_path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [f"{LABELS}: unreadable ({exc})"]
    missing = [c for c in LABEL_COLUMNS if c not in columns]
    if missing:
        return [f"{LABELS}: missing column(s) {', '.join(missing)}"]
    problems: list[str] = []
    seen: dict[str, int] = {}
    subject_splits: dict[str, set[str]] = {}
    for line, row in enumerate(rows, start=2):
        row_problems = _row_problems(row, line)
        problems += row_problems
        image_id = row.get("image_id") or ""
        if image_id in seen:
            problems.append(f"{LABELS} line {line}: image_id {image_id!r} repeats line {seen[image_id]}")
            continue
        seen[image_id] = line
        if row_problems:
            continue  # the pixel checks below need a well-formed row
        subject_splits.setdefault(row["subject_id"], set()).add(row["split"])
        problems += _verify_row_files(root, row)
    for subject, splits in sorted(subject_splits.items()):
        if len(splits) > 1:
            problems.append(f"{LABELS}: subject {subject!r} is in both train and test (the split must be subject-disjoint)")
    problems += _verify_no_orphan_masks(root, set(seen))
    return problems


def _verify_row_files(root: Path, row: dict[str, str]) -> list[str]:
    image_id = row["image_id"]
    image_rel = f"images/{image_id}.png"
    size = (int(row["width"]), int(row["height"]))
    problems = []
    image = _open_image(root / image_rel)
    if isinstance(image, str):
        problems.append(f"{image_rel}: {image}")
    else:
        if image.mode != "L":
            problems.append(f"{image_rel}: mode {image.mode}, expected 8-bit grayscale (L)")
        if image.size != size:
            problems.append(f"{image_rel}: size {image.size[0]}x{image.size[1]}, labels.csv says {size[0]}x{size[1]}")
    for kind, flag in (("lung", "has_lung_mask"), ("disease", "has_disease_mask")):
        mask_rel = f"masks/{kind}/{image_id}.png"
        exists = (root / mask_rel).is_file()
        if row[flag] == "1" and not exists:
            problems.append(f"{mask_rel}: missing although {LABELS} has {flag}=1 for {image_id}")
        elif row[flag] == "0" and exists:
            problems.append(f"{mask_rel}: present although {LABELS} has {flag}=0 for {image_id}")
        elif exists:
            problems += [f"{mask_rel}: {p}" for p in _mask_problems(root / mask_rel, size)]
    return problems


def _verify_no_orphan_masks(root: Path, image_ids: set[str]) -> list[str]:
    problems = []
    for folder in ("images", "masks/lung", "masks/disease"):
        directory = root / folder
        if not directory.is_dir():
            continue
        for file in sorted(directory.iterdir()):
            if file.is_file() and (file.suffix != ".png" or file.stem not in image_ids):
                problems.append(f"{folder}/{file.name}: no row in {LABELS} for it")
    findings = root / "masks" / "findings"
    if findings.is_dir():
        for file in sorted(findings.rglob("*.png")):
            if file.stem not in image_ids:
                problems.append(f"{file.relative_to(root).as_posix()}: no row in {LABELS} for it")
    return problems


def _open_image(path: Path) -> Image.Image | str:
    if not path.is_file():
        return "missing"
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        return f"not a readable PNG ({exc})"
    if image.format != "PNG":
        return f"is {image.format}, expected PNG"
    return image


def _mask_problems(path: Path, size: tuple[int, int]) -> list[str]:
    mask = _open_image(path)
    if isinstance(mask, str):
        return [mask]
    problems = []
    if mask.mode != "L":
        problems.append(f"mode {mask.mode}, expected 8-bit grayscale (L)")
    if mask.size != size:
        problems.append(f"size {mask.size[0]}x{mask.size[1]} differs from the image's {size[0]}x{size[1]}")
    # Which grey levels occur: a 256-bin count is one pass, where np.unique sorts every pixel.
    counts = np.bincount(np.asarray(mask.convert("L") if mask.mode != "L" else mask).ravel(), minlength=256)
    stray = [int(v) for v in np.flatnonzero(counts) if v not in (0, 255)]
    if stray:
        problems.append(f"not binary: values other than 0/255 ({', '.join(map(str, stray[:5]))}{'...' if len(stray) > 5 else ''})")
    return problems
