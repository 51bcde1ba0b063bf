"""Import of an export snapshot into a dataset: the round trip of format ``lungmark-export/1``.

The snapshot is verified first (a tampered or incomplete one is refused, naming its problems).
Each image is imported like any radiograph (decoded, re-encoded, stored under a server-chosen
name); then its subject id, frozen split, view and H/C/O labels are carried over, its lung boxes
come from ``coco.json`` (and its lung mask when the snapshot holds outlines), and its finding
regions come from the COCO run-length masks with their labels, subtypes and descriptions. All of
it is stored as imported, accepted ground truth, so exporting the new dataset gives back the same
masks and labels. Re-importing the same snapshot into the same dataset adds nothing.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction

from ..constants import FRONTAL_VIEWS, AnnotationSource, FindingLabel, InterstitialSubtype, LungStatus, Provenance, RegionStatus, Tri, View
from ..errors import DomainError, InvalidInput
from ..geometry import box_validate, mask_crop
from ..imaging.encode import decode_mask_png, mask_png_bytes
from ..models import Dataset, FindingRegion, FindingRegionRevision, Radiograph, Subject
from .annotation_import import lung_annotation_save
from .events import event_record
from .export_files import FINDING_CATEGORIES, LUNG_CATEGORIES, rle_decode
from .imports import SourceFile, radiograph_import_one

logger = logging.getLogger(__name__)

MAX_COCO_BYTES = 1024 * 1024 * 1024


def snapshot_import(*, dataset: Dataset, path: Path, actor=None) -> dict[str, Any]:
    """Import a verified snapshot folder into ``dataset``; returns a report (imported, duplicates, errors)."""
    from training.export import read_export

    from .exports import export_verify

    root = Path(path)
    problems = export_verify(root)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InvalidInput(f"The snapshot is not sound: {shown}", extra={"problems": problems[:100]})
    export = read_export(root)
    outlines = export.manifest.get("source", {}).get("options", {}).get("lung_masks") == "outlines"
    annotations = _coco_annotations(root / "coco.json")
    report: dict[str, Any] = {"dataset": dataset.name, "imported": 0, "duplicates": 0, "errors": [], "radiograph_ids": []}
    for record in export.records:
        image_path = record.image_path(root)
        source = SourceFile(name=image_path.name, size=image_path.stat().st_size, read=_reader(image_path))
        try:
            # Everything is read and checked before the image is stored, so a bad row stores nothing.
            truth = _truth_read(record=record, root=root, annotations=annotations.get(record.image_id, []), outlines=outlines)
            radiograph = radiograph_import_one(dataset=dataset, source=source, meta={}, actor=actor)
            if radiograph is None:
                report["duplicates"] += 1
                continue
            _truth_store(radiograph=radiograph, record=record, truth=truth, actor=actor)
        except DomainError as exc:
            report["errors"].append({"file": image_path.name, "error": exc.message, "code": exc.code})
            continue
        report["imported"] += 1
        report["radiograph_ids"].append(radiograph.id)
    return report


def _reader(path: Path):
    def read(limit: int) -> bytes:
        with open(path, "rb") as fh:
            return fh.read(limit)

    return read


def _coco_annotations(path: Path) -> dict[str, list[dict[str, Any]]]:
    """COCO annotations grouped by the snapshot's image id (the stem of the image's file name)."""
    if path.stat().st_size > MAX_COCO_BYTES:
        raise InvalidInput("coco.json is too large to import.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {image["id"]: Path(image["file_name"]).stem for image in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for annotation in data["annotations"]:
            grouped[names[annotation["image_id"]]].append({**annotation, "category": categories[annotation["category_id"]]})
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"coco.json does not describe the snapshot's images: {exc}") from exc
    return grouped


@dataclass
class _Truth:
    right: list[int] | None = None
    left: list[int] | None = None
    lung_mask: np.ndarray | None = None
    regions: list[dict[str, Any]] = field(default_factory=list)


def _truth_read(*, record, root: Path, annotations: list[dict[str, Any]], outlines: bool) -> _Truth:
    """The lung boxes, lung outline and regions of one row, decoded and checked."""
    width, height = record.width, record.height
    truth = _Truth()
    lung_names = {name: side for side, (_cid, name) in LUNG_CATEGORIES.items()}
    for annotation in annotations:
        category = annotation["category"]
        if category in lung_names:
            try:
                x, y, w, h = annotation["bbox"]
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"a lung box in coco.json is not [x, y, w, h]: {exc}") from exc
            setattr(truth, lung_names[category], box_validate([x, y, x + w, y + h], width=width, height=height))
        elif category in FINDING_CATEGORIES and record.has_disease_mask:
            truth.regions.append(_region_read(category=category, annotation=annotation, width=width, height=height))
    if outlines and record.has_lung_mask:
        truth.lung_mask = decode_mask_png(record.lung_mask_path(root).read_bytes(), expected_shape=(height, width))
    truth.regions = [r for r in truth.regions if r]
    return truth


def _region_read(*, category: str, annotation: dict[str, Any], width: int, height: int) -> dict[str, Any] | None:
    try:
        mask = rle_decode(annotation["segmentation"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"a region's mask in coco.json cannot be read: {exc}") from exc
    if mask.shape != (height, width):
        raise InvalidInput("a region's mask in coco.json does not have the image's size")
    cropped = mask_crop(mask)
    if cropped is None:
        return None
    box, crop = cropped
    attributes = annotation.get("attributes") if isinstance(annotation.get("attributes"), dict) else {}
    label = category if category in FindingLabel.values else FindingLabel.UNKNOWN
    subtype = attributes.get("subtype") or ""
    if label != FindingLabel.INTERSTITIAL_SHADOW or subtype not in InterstitialSubtype.values:
        subtype = ""
    return {
        "label": label,
        "subtype": subtype,
        "source_label": str(attributes.get("source_label") or category)[:64],
        "description": str(attributes.get("description") or "")[:4000],
        "bbox": box,
        "png": mask_png_bytes(crop),
        "area": int(np.count_nonzero(crop)),
    }


def _truth_store(*, radiograph: Radiograph, record, truth: _Truth, actor) -> None:
    author = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().get(pk=radiograph.pk)
        placeholder = radiograph.subject
        subject, _ = Subject.objects.get_or_create(dataset=radiograph.dataset, key=record.subject_id[:64])
        if not subject.split:
            # The snapshot's split is frozen: keep it, so models are compared on the same test set.
            Subject.objects.filter(pk=subject.pk).update(split=record.split)
        changes: dict[str, Any] = {
            "subject": subject,
            "view": record.view if record.view in FRONTAL_VIEWS else View.UNKNOWN,
            "findings_complete": record.has_disease_mask,
        }
        for name in ("healthy", "covid", "other_disease"):
            value = getattr(record, name)
            changes[name] = value
            changes[f"{name}_source"] = Provenance.IMPORTED if value != Tri.UNKNOWN else Provenance.NONE
        Radiograph.objects.filter(pk=radiograph.pk).update(**changes)
        for key, value in changes.items():
            setattr(radiograph, key, value)
        if placeholder.pk != subject.pk and not placeholder.radiographs.exists():
            placeholder.delete()  # the subject the plain image import made up for it
        if truth.right or truth.left or truth.lung_mask is not None:
            lung_annotation_save(
                radiograph=radiograph,
                right_box=truth.right,
                left_box=truth.left,
                status=LungStatus.ACCEPTED,
                source=AnnotationSource.IMPORTED,
                author=actor,
                mask=truth.lung_mask,
                keep_mask=False,
            )
        for item in truth.regions:
            region = FindingRegion.objects.create(
                radiograph=radiograph,
                label=item["label"],
                subtype=item["subtype"],
                source_label=item["source_label"],
                flagged=item["label"] == FindingLabel.UNKNOWN,
                description=item["description"],
                status=RegionStatus.ACCEPTED,
                source=AnnotationSource.IMPORTED,
                bbox=item["bbox"],
                mask_png=item["png"],
                area=item["area"],
                author=author,
            )
            FindingRegionRevision.objects.create(
                region=region,
                version=1,
                label=region.label,
                subtype=region.subtype,
                description=region.description,
                status=region.status,
                bbox=region.bbox,
                mask_png=item["png"],
                author=author,
            )
        event_record(radiograph=radiograph, actor=actor, action="imported_snapshot", data={"image_id": record.image_id, "regions": len(truth.regions)})
