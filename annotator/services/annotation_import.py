"""Import of existing annotations: COCO lung boxes, COCO lung polygons, full-size finding masks.

They are stored with provenance ``imported`` and count as accepted ground truth. Re-importing the
same files adds nothing.
"""
from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.db import transaction
from django.db.models import F

from ..constants import SOURCE_ANATOMY_LABELS, SOURCE_FINDING_MAP, SOURCE_LUNG_LABELS, AnnotationSource, FindingLabel, LungStatus, RegionStatus
from ..errors import DomainError, InvalidImage, InvalidInput
from ..geometry import box_validate, boxes_frame, coco_bbox_to_box, mask_bbox, mask_crop, polygons_rasterise, sides_from_boxes
from ..imaging.encode import decode_mask_png, mask_png_bytes
from ..models import Dataset, FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph
from ..selectors import radiographs_by_file_name
from .events import event_record

logger = logging.getLogger(__name__)

MAX_ANNOTATION_FILE_BYTES = 256 * 1024 * 1024
# What a malformed annotation raises on its way through the geometry (a bbox of three strings, a
# polygon of dicts, a coordinate of 1e300): reported for its image, never fatal to the import.
MALFORMED = (TypeError, ValueError, OverflowError, KeyError, IndexError)


def _key(value):
    """A COCO id usable as a dict key (an int or a string), else None."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _malformed(exc: Exception) -> str:
    return exc.message if isinstance(exc, DomainError) else f"malformed annotation ({type(exc).__name__})"


def _categories(data: dict) -> dict:
    categories = data.get("categories")
    if not isinstance(categories, list):
        return {}
    return {_key(c.get("id")): str(c.get("name", "")).strip().lower() for c in categories if isinstance(c, dict) and _key(c.get("id")) is not None}


def _section() -> dict:
    return {"images": 0, "unchanged": 0, "unknown_images": [], "errors": []}


def _radiographs_by_name(dataset: Dataset, names) -> dict[str, Radiograph]:
    return radiographs_by_file_name(dataset=dataset, names=names, include_excluded=False)


def _load_json(path: Path) -> dict:
    if path.stat().st_size > MAX_ANNOTATION_FILE_BYTES:
        raise InvalidInput(f"{path.name} is too large.")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path.name} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInput(f"{path.name} is nested too deeply to be COCO.") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InvalidInput(f"{path.name} is not COCO: it needs 'images' and 'annotations' lists.")
    return data


def _coco_images(data: dict) -> dict:
    images = {}
    for image in data["images"]:
        if isinstance(image, dict) and _key(image.get("id")) is not None and isinstance(image.get("file_name"), str):
            images[image["id"]] = Path(image["file_name"].replace("\x00", "")).name
    return images


def lung_annotation_save(
    *,
    radiograph: Radiograph,
    right_box,
    left_box,
    status: str,
    source: str,
    author=None,
    mask: np.ndarray | None = None,
    model_version=None,
    keep_mask: bool = True,
) -> LungAnnotation:
    """Append a lung annotation state and bump the radiograph's version (caller holds the row lock)."""
    current = radiograph.lung_annotations.first()
    mask_png, mask_box = None, None
    if mask is not None:
        cropped = mask_crop(mask)
        if cropped is not None:
            mask_box, crop = cropped
            mask_png = mask_png_bytes(crop)
    elif keep_mask and current is not None and current.mask_png:
        mask_png, mask_box = bytes(current.mask_png), current.mask_bbox
    Radiograph.objects.filter(pk=radiograph.pk).update(version=F("version") + 1)
    radiograph.version += 1
    return LungAnnotation.objects.create(
        radiograph=radiograph,
        version=radiograph.version,
        right_box=right_box,
        left_box=left_box,
        mask_png=mask_png,
        mask_bbox=mask_box,
        status=status,
        source=source,
        author=author if getattr(author, "is_authenticated", False) else None,
        model_version=model_version,
    )


def _coco_import(*, dataset: Dataset, path: Path, keep, store) -> dict:
    """The loop both COCO lung imports share: annotations that ``keep(ann, category)`` accepts,
    grouped by image; ``store(radiograph, anns)`` stores one image's and says whether it changed
    anything. Unknown images and per-image errors go into the report; the rest still imports."""
    data = _load_json(Path(path))
    images = _coco_images(data)
    categories = _categories(data)
    by_image: dict = defaultdict(list)
    for ann in data["annotations"]:
        if isinstance(ann, dict) and _key(ann.get("image_id")) in images and keep(ann, categories.get(_key(ann.get("category_id")), "")):
            by_image[ann["image_id"]].append(ann)
    report = _section()
    radiographs = _radiographs_by_name(dataset, {images[image_id] for image_id in by_image})
    for image_id, anns in by_image.items():
        name = images[image_id]
        radiograph = radiographs.get(name)
        if radiograph is None:
            report["unknown_images"].append(name)
            continue
        try:
            changed = store(radiograph, anns, categories)
        except (DomainError, *MALFORMED) as exc:
            report["errors"].append({"file": name, "error": _malformed(exc)})
            continue
        report["images" if changed else "unchanged"] += 1
    return report


def lung_boxes_import(*, dataset: Dataset, path: Path, actor=None) -> dict:
    """COCO boxes with categories ``Right Lung`` / ``Left Lung`` (patient sides), two per image."""

    def store(radiograph: Radiograph, anns: list, categories: dict) -> bool:
        sides: dict = {"right": None, "left": None}
        for ann in anns:
            category = categories.get(_key(ann.get("category_id")), "")
            side = "right" if "right" in category else "left" if "left" in category else None
            if side is None or not isinstance(ann.get("bbox"), list):
                continue
            sides[side] = coco_bbox_to_box(ann["bbox"], width=radiograph.width, height=radiograph.height)
        if sides["right"] is None and sides["left"] is None:
            raise InvalidInput("no Right Lung / Left Lung box")
        return _lungs_store(radiograph=radiograph, right=sides["right"], left=sides["left"], mask=None, actor=actor, what="lung_boxes")

    return _coco_import(dataset=dataset, path=path, keep=lambda ann, category: True, store=store)


def lung_polygons_import(*, dataset: Dataset, path: Path, actor=None) -> dict:
    """COCO polygons (category ``Lung``; ``Ignore`` regions are skipped): rasterised, boxes derived."""

    def store(radiograph: Radiograph, anns: list, categories: dict) -> bool:
        boxes, polygons = [], []
        for ann in anns:
            shapes = [p for p in ann["segmentation"] if isinstance(p, list) and len(p) >= 6]
            lung = polygons_rasterise(width=radiograph.width, height=radiograph.height, polygons=shapes)
            box = mask_bbox(lung)
            if box is not None:
                boxes.append(box)
                polygons.extend(shapes)
        if not boxes:
            raise InvalidInput("no lung polygon with area inside the image")
        mask = polygons_rasterise(width=radiograph.width, height=radiograph.height, polygons=polygons)
        sides = sides_from_boxes(boxes if len(boxes) <= 2 else _two_sides(boxes, radiograph.width), width=radiograph.width)
        return _lungs_store(radiograph=radiograph, right=sides["right"], left=sides["left"], mask=mask, actor=actor, what="lung_polygons")

    def keep(ann: dict, category: str) -> bool:
        return category == "lung" and isinstance(ann.get("segmentation"), list)

    return _coco_import(dataset=dataset, path=path, keep=keep, store=store)


def _two_sides(boxes: list, width: int) -> list:
    """More than two lung pieces: merge them into one box per image half."""
    halves: dict = {0: [], 1: []}
    for b in boxes:
        halves[int((b[0] + b[2]) / 2 >= width / 2)].append(b)
    merged = []
    for group in halves.values():
        if group:
            merged.append(boxes_frame(group))
    return merged


def _lungs_store(*, radiograph: Radiograph, right, left, mask: np.ndarray | None, actor, what: str) -> bool:
    """Store imported lungs as accepted truth unless the same is already stored. Boxes already
    imported from a box file are kept when a polygon file adds a finer mask."""
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().get(pk=radiograph.pk)
        current = radiograph.lung_annotations.first()
        mask_png = None
        if mask is not None:
            cropped = mask_crop(mask)
            mask_png = mask_png_bytes(cropped[1]) if cropped else None
        # Already imported once (from this or another file)? Then importing again adds nothing.
        for earlier in radiograph.lung_annotations.filter(source=AnnotationSource.IMPORTED):
            if mask is None and earlier.right_box == right and earlier.left_box == left:
                return False
            if mask is not None and earlier.mask_png is not None and bytes(earlier.mask_png) == mask_png:
                return False
        if current is not None and current.source == AnnotationSource.IMPORTED:
            if mask is not None and _from_box_file(radiograph):
                right, left = current.right_box, current.left_box  # the box file's boxes win
        lung_annotation_save(
            radiograph=radiograph,
            right_box=right,
            left_box=left,
            status=LungStatus.ACCEPTED,
            source=AnnotationSource.IMPORTED,
            author=actor,
            mask=mask,
        )
        event_record(radiograph=radiograph, actor=actor, action=f"imported_{what}", data={"right": right, "left": left})
    return True


def _from_box_file(radiograph: Radiograph) -> bool:
    return radiograph.events.filter(action="imported_lung_boxes").exists()


def findings_import(*, dataset: Dataset, path: Path, actor=None) -> dict:
    """``file, label, mask`` rows: full-size 0/255 masks. Lung outlines become lung masks; other
    anatomy (the cardiomediastinum...) is skipped, never stored as a finding; finding labels are
    mapped onto the design's list; unknown labels are kept and flagged.

    A row whose mask cannot be used (missing, not a binary PNG, or not the size of its radiograph)
    is refused with an error naming the row; the image's other rows still import. A mask of another
    size is never rescaled: it may have been drawn on a different crop, or a different image.
    """
    path = Path(path)
    report = _section()
    report["flagged_labels"] = []
    report["anatomy"] = {}
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path.name} cannot be read: {exc}") from exc
    if rows and not {"file", "label", "mask"} <= set(rows[0].keys()):
        raise InvalidInput(f"{path.name} needs the columns file, label, mask.")
    by_file: dict = defaultdict(list)
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        by_file[Path((row.get("file") or "").strip()).name].append((line, row))
    radiographs = _radiographs_by_name(dataset, by_file)
    for name, file_rows in by_file.items():
        radiograph = radiographs.get(name)
        if radiograph is None:
            report["unknown_images"].append(name)
            continue
        try:
            changed = _findings_store(radiograph=radiograph, name=name, rows=file_rows, base=path.parent, actor=actor, report=report)
        except (DomainError, *MALFORMED) as exc:
            report["errors"].append({"file": name, "error": _malformed(exc)})
            continue
        report["images" if changed else "unchanged"] += 1
    report["notes"] = [
        f"{label}: {count} mask(s) skipped (anatomy, not a finding)" if kept is None else f"{label}: {count} mask(s) kept as {kept}"
        for label, (count, kept) in sorted(report.pop("anatomy").items())
    ]
    return report


def _read_mask(base: Path, relative: str, shape: tuple[int, int]) -> np.ndarray:
    mask_path = (base / relative).resolve()
    if not mask_path.is_relative_to(base.resolve()) or not mask_path.is_file():
        raise InvalidInput(f"mask {relative} not found next to the findings file")
    try:
        return decode_mask_png(mask_path.read_bytes(), expected_shape=shape)
    except InvalidImage as exc:
        raise InvalidInput(f"mask {relative}: {exc.message}; the row was not imported") from exc


def _anatomy_note(report: dict, label: str, kept: str | None) -> None:
    count, _ = report["anatomy"].get(label, (0, kept))
    report["anatomy"][label] = (count + 1, kept)


def _findings_store(*, radiograph: Radiograph, name: str, rows: list[tuple[int, dict]], base: Path, actor, report: dict) -> bool:
    shape = (radiograph.height, radiograph.width)
    lungs: dict[str, np.ndarray] = {}
    findings = []
    refused_findings = False
    for line, row in rows:
        source_label = (row.get("label") or "").replace("\x00", "").strip().lower()[:64]
        if source_label in SOURCE_ANATOMY_LABELS:
            _anatomy_note(report, source_label, None)
            continue
        try:
            mask = _read_mask(base, (row.get("mask") or "").strip(), shape)
        except InvalidInput as exc:
            report["errors"].append({"file": name, "line": line, "label": source_label, "error": exc.message})
            refused_findings |= source_label not in SOURCE_LUNG_LABELS
            continue
        if source_label in SOURCE_LUNG_LABELS:
            _anatomy_note(report, source_label, "lung outline")
            side = SOURCE_LUNG_LABELS[source_label] or "both"
            lungs[side] = lungs[side] | mask if side in lungs else mask
            continue
        label, subtype = SOURCE_FINDING_MAP.get(source_label, (FindingLabel.UNKNOWN, ""))
        if label == FindingLabel.UNKNOWN and source_label not in report["flagged_labels"]:
            report["flagged_labels"].append(source_label)
        findings.append((label, subtype, source_label, mask))
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().get(pk=radiograph.pk)
        existing = {
            (r.source_label, bytes(r.mask_png), tuple(r.bbox))
            for r in radiograph.regions.filter(source=AnnotationSource.IMPORTED)
        }
        changed = False
        for label, subtype, source_label, mask in findings:
            cropped = mask_crop(mask)
            if cropped is None:
                continue  # an empty mask marks nothing
            box, crop = cropped
            png = mask_png_bytes(crop)
            if (source_label, png, tuple(box)) in existing:
                continue
            region = FindingRegion.objects.create(
                radiograph=radiograph,
                label=label,
                subtype=subtype,
                source_label=source_label,
                flagged=label == FindingLabel.UNKNOWN,
                status=RegionStatus.ACCEPTED,
                source=AnnotationSource.IMPORTED,
                bbox=box,
                mask_png=png,
                area=int(crop.sum()),
                author=actor if getattr(actor, "is_authenticated", False) else None,
            )
            FindingRegionRevision.objects.create(
                region=region, version=1, label=label, subtype=subtype, status=region.status, bbox=box, mask_png=png, author=region.author
            )
            changed = True
        if not radiograph.findings_complete and not refused_findings:
            # The source's radiologists marked every finding on these images: absence means none
            # (unless a finding row was refused: then what is missing is unknown).
            Radiograph.objects.filter(pk=radiograph.pk).update(findings_complete=True)
            changed = True
        if changed:
            event_record(radiograph=radiograph, actor=actor, action="imported_findings", data={"regions": len(findings)})
    if lungs:
        right = lungs.get("right")
        left = lungs.get("left")
        union = np.zeros(shape, dtype=bool)
        for part in lungs.values():
            union |= part
        boxes = {"right": mask_bbox(right) if right is not None else None, "left": mask_bbox(left) if left is not None else None}
        if "both" in lungs and boxes["right"] is None and boxes["left"] is None:
            boxes = sides_from_boxes([b for b in [mask_bbox(lungs["both"])] if b], width=radiograph.width)
        for side in ("right", "left"):
            if boxes[side] is not None:
                boxes[side] = box_validate(boxes[side], width=radiograph.width, height=radiograph.height)
        changed = _lungs_store(radiograph=radiograph, right=boxes["right"], left=boxes["left"], mask=union, actor=actor, what="lung_masks") or changed
    return changed
