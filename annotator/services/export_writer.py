"""Writing one export snapshot (format ``lungmark-export/1``) from the database.

Two passes: the first reads only ids and labels (which radiographs carry ground truth, and the
members of each subject, for the frozen split); the second reads batches of radiographs with their
lung truth and accepted regions and writes their files from a few threads, streaming
``labels.csv`` and ``coco.json`` as it goes, so memory does not grow with the number of images.
The snapshot is written into a hidden partial folder that is renamed into place when complete.

Ground truth (DESIGN.md): only the latest accepted lung annotation and accepted finding regions;
image-level labels whose provenance is the source metadata, an import or a radiologist (an
annotator's only once the radiograph is accepted); never a model suggestion. Excluded and
non-frontal radiographs are never exported.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from django.core.files.storage import default_storage
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from training.export import LUNG_MASK_BOXES, LUNG_MASK_OUTLINE

from ..constants import FRONTAL_VIEWS, AnnotationSource, FindingLabel, LungStatus, Provenance, RegionStatus, State, Tri
from ..errors import Conflict, InvalidImage, InvalidInput
from ..geometry import boxes_fill, boxes_frame, mask_paste
from ..imaging.encode import decode_mask_png
from ..models import ExportSnapshot, FindingRegion, LungAnnotation, Radiograph
from . import export_files as files
from .export_split import TEST_FRACTION, splits_freeze

logger = logging.getLogger(__name__)

LABEL_FIELDS = ("healthy", "covid", "other_disease")
TRUSTED_LABEL_SOURCES = {Provenance.METADATA, Provenance.IMPORTED, Provenance.RADIOLOGIST}
BATCH = 64


def snapshot_write(*, snapshot: ExportSnapshot, target: Path, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Write ``snapshot`` into ``target`` (which must not exist or be empty); returns the manifest."""
    options = snapshot.options
    outlines = options.get("lung_masks") == "outlines"
    datasets = sorted(snapshot.datasets.values_list("name", flat=True))
    ids, members = _plan(snapshot)
    if not ids:
        raise InvalidInput(f"Nothing to export: {', '.join(datasets)} hold(s) no ground truth yet.")
    splits = splits_freeze(members=members, seed=int(options.get("seed", 0)))
    partial = _prepare_target(target)
    try:
        manifest = _write_files(
            snapshot=snapshot, root=partial, ids=ids, splits=splits, outlines=outlines, datasets=datasets, options=options, progress=progress
        )
        files.make_read_only(p for p in partial.rglob("*") if p.is_file())
        _finish_target(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _prepare_target(target: Path) -> Path:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target.name} already exists and is not empty: a snapshot is never overwritten.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    return partial


def _finish_target(partial: Path, target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    try:
        os.rename(partial, target)
    except OSError as exc:
        raise Conflict(f"{target.name} appeared while the export was written: a snapshot is never overwritten.") from exc


@dataclass
class _Item:
    """What one radiograph contributes, gathered from the database before any file is written."""

    id: int
    subject_key: str
    dataset: str
    view: str
    labels: dict[str, str]
    width: int
    height: int
    display: str
    split: str = ""
    right_box: list[int] | None = None
    left_box: list[int] | None = None
    outline: tuple[list[int], bytes] | None = None
    boxes_imported: bool = False  # the boxes came with the dataset (they may be an outline's, not drawn)
    findings_complete: bool = False
    regions: list[FindingRegion] = field(default_factory=list)


def _truth_id() -> Subquery:
    """The id of a radiograph's latest accepted lung annotation (its lung ground truth)."""
    accepted = LungAnnotation.objects.filter(radiograph=OuterRef("pk"), status=LungStatus.ACCEPTED).order_by("-version", "-id")
    return Subquery(accepted.values("id")[:1])


def _radiographs(snapshot: ExportSnapshot):
    """The exportable radiographs, each annotated with the id of its lung ground truth."""
    qs = (
        Radiograph.objects.filter(dataset__in=snapshot.datasets.all())
        .exclude(state=State.EXCLUDED)
        .filter(view__in=list(FRONTAL_VIEWS))
        .annotate(truth_id=_truth_id())
    )
    if snapshot.options.get("reviewed_only"):
        qs = qs.filter(state=State.ACCEPTED)
    return qs


def _labels_of(row: dict[str, Any]) -> dict[str, str]:
    labels = {}
    for name in LABEL_FIELDS:
        source = row[f"{name}_source"]
        trusted = source in TRUSTED_LABEL_SOURCES or (source == Provenance.ANNOTATOR and row["state"] == State.ACCEPTED)
        labels[name] = row[name] if trusted and row[name] in Tri.values else Tri.UNKNOWN
    return labels


def _plan(snapshot: ExportSnapshot) -> tuple[list[int], dict[str, dict[int, list[str]]]]:
    """Pass 1 (database only): the ids of radiographs that carry any ground truth, and the members
    of each subject for the split."""
    outlines = snapshot.options.get("lung_masks") == "outlines"
    truths = LungAnnotation.objects.filter(pk=OuterRef("truth_id"))
    rows = (
        _radiographs(snapshot)
        .annotate(
            truth_right=Subquery(truths.values("right_box")[:1]),
            truth_left=Subquery(truths.values("left_box")[:1]),
            truth_outline=Subquery(truths.filter(mask_bbox__isnull=False).values("id")[:1]),
        )
        .order_by("id")
        .values("id", "subject_id", "subject__key", "state", "findings_complete", "truth_right", "truth_left", "truth_outline",
                *LABEL_FIELDS, *(f"{n}_source" for n in LABEL_FIELDS))
    )
    ids: list[int] = []
    members: dict[str, dict[int, list[str]]] = {}
    for row in rows.iterator(chunk_size=2000):
        labels = _labels_of(row)
        has_lung = bool(row["truth_right"] and row["truth_left"]) or (outlines and row["truth_outline"] is not None)
        if not (has_lung or row["findings_complete"] or any(v != Tri.UNKNOWN for v in labels.values())):
            continue
        ids.append(row["id"])
        members.setdefault(row["subject__key"], {}).setdefault(row["subject_id"], []).append(labels["covid"])
    return ids, members


def _items(ids: list[int], *, splits: dict[str, str]) -> list[_Item]:
    """Pass 2, one batch: the rows, their lung truth and their accepted regions."""
    radiographs = (
        Radiograph.objects.filter(pk__in=ids)
        .annotate(truth_id=_truth_id())
        .order_by("id")
        .values("id", "subject__key", "dataset__name", "view", "state", "width", "height", "display", "findings_complete", "truth_id",
                *LABEL_FIELDS, *(f"{n}_source" for n in LABEL_FIELDS))
    )
    rows = list(radiographs)
    truths = {la.pk: la for la in LungAnnotation.objects.filter(pk__in=[r["truth_id"] for r in rows if r["truth_id"]])}
    regions: dict[int, list[FindingRegion]] = {}
    complete = [r["id"] for r in rows if r["findings_complete"]]
    for region in FindingRegion.objects.filter(radiograph_id__in=complete, status=RegionStatus.ACCEPTED).order_by("radiograph_id", "id"):
        regions.setdefault(region.radiograph_id, []).append(region)
    items = []
    for row in rows:
        truth = truths.get(row["truth_id"])
        item = _Item(
            id=row["id"],
            subject_key=row["subject__key"],
            dataset=row["dataset__name"],
            view=row["view"],
            labels=_labels_of(row),
            width=row["width"],
            height=row["height"],
            display=row["display"],
            split=splits[row["subject__key"]],
            findings_complete=row["findings_complete"],
            regions=regions.get(row["id"], []),
        )
        if truth is not None:
            item.right_box, item.left_box = truth.right_box, truth.left_box
            item.boxes_imported = truth.source == AnnotationSource.IMPORTED
            if truth.mask_png and truth.mask_bbox:
                item.outline = (list(truth.mask_bbox), bytes(truth.mask_png))
        items.append(item)
    return items


@dataclass
class _Written:
    """The outcome of one radiograph: its labels.csv row, files, COCO annotations, or why it was skipped."""

    item: _Item
    row: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, once written
    annotations: list[dict[str, Any]] = field(default_factory=list)
    labels_present: list[str] = field(default_factory=list)
    lung_mask: str = ""  # LUNG_MASK_OUTLINE | LUNG_MASK_BOXES (coco.json's images[].lung_mask) when one is written
    skipped: str = ""


def _crop_decode(box: list[int], png: bytes) -> np.ndarray:
    x0, y0, x1, y1 = box
    return decode_mask_png(png, expected_shape=(y1 - y0, x1 - x0))


def _render(item: _Item, *, outlines: bool, root: Path) -> _Written:
    """Encode and write everything one radiograph contributes (in a worker thread: PNG coding,
    zlib, hashing and file writes release the GIL). Nothing is written for a skipped one."""
    out = _Written(item=item)
    blobs: dict[str, bytes] = {}
    try:
        with default_storage.open(item.display, "rb") as fh:
            image = files.png_gray8_clean(fh.read(), width=item.width, height=item.height)
    except (OSError, ValueError) as exc:
        out.skipped = f"the stored image cannot be read ({type(exc).__name__})"
        return out
    except InvalidImage as exc:
        out.skipped = exc.message
        return out
    shape = (item.height, item.width)
    image_id = str(item.id)
    blobs[f"images/{image_id}.png"] = image
    try:
        lung = None
        if outlines and item.outline is not None:
            lung = np.zeros(shape, dtype=bool)
            mask_paste(lung, item.outline[0], _crop_decode(*item.outline))
            out.lung_mask = LUNG_MASK_OUTLINE
        elif item.right_box and item.left_box:
            lung = boxes_fill(width=item.width, height=item.height, boxes=[item.right_box, item.left_box])
            out.lung_mask = LUNG_MASK_BOXES
        if lung is not None:
            blobs[f"masks/lung/{image_id}.png"] = files.mask_png(lung)
        from_outline = _boxes_of_outline(item)
        for side, box in (("right", item.right_box), ("left", item.left_box)):
            if box and lung is not None:
                source = files.BOX_FROM_OUTLINE if from_outline else files.BOX_DRAWN
                out.annotations.append(files.box_annotation(image_id=item.id, side=side, box=box, source=source))
        if item.findings_complete:
            disease = np.zeros(shape, dtype=bool)
            per_label: dict[str, np.ndarray] = {}
            for region in item.regions:
                crop = _crop_decode(list(region.bbox), bytes(region.mask_png))
                label = region.label if region.label in files.FINDING_CATEGORIES else FindingLabel.UNKNOWN
                mask = per_label.setdefault(label, np.zeros(shape, dtype=bool))
                mask_paste(mask, region.bbox, crop)
                out.annotations.append(_region_annotation(item, region, crop, label))
            known = [label for label in per_label if label != FindingLabel.UNKNOWN]  # flagged labels may be anatomy
            for label, mask in sorted(per_label.items()):
                blobs[f"masks/findings/{label}/{image_id}.png"] = files.mask_png(mask)
            if len(known) == 1:  # the usual case: the disease mask is that label's mask
                blobs[f"masks/disease/{image_id}.png"] = blobs[f"masks/findings/{known[0]}/{image_id}.png"]
            else:
                for label in known:
                    disease |= per_label[label]
                blobs[f"masks/disease/{image_id}.png"] = files.mask_png(disease)
            out.labels_present = sorted(per_label)
    except (InvalidImage, ValueError) as exc:  # a corrupt stored mask, or a box that does not fit it
        out.annotations.clear()
        out.skipped = f"a stored mask cannot be used: {exc.message if isinstance(exc, InvalidImage) else exc}"
        return out
    out.row = {
        "image_id": image_id,
        "subject_id": item.subject_key,
        "dataset": item.dataset,
        "view": item.view,
        **item.labels,
        "has_lung_mask": int(f"masks/lung/{image_id}.png" in blobs),
        "has_disease_mask": int(item.findings_complete),
        "split": item.split,
        "width": item.width,
        "height": item.height,
    }
    out.files = {rel: files.write_file(root, rel, data) for rel, data in blobs.items()}
    return out


def _boxes_of_outline(item: _Item) -> bool:
    """Whether the imported boxes were computed from the imported outline (a polygon file, a findings
    file's lung masks) rather than drawn: boxes computed from an outline are tight on its pieces, so
    together they span exactly the outline's box, to the pixel on all four sides, which drawn boxes
    practically never do. Boxes people saved on the annotate page are theirs in any case. Decided from
    the stored boxes alone: decoding every outline would slow the export by about a fifth."""
    if not item.boxes_imported or item.outline is None:
        return False
    boxes = [b for b in (item.right_box, item.left_box) if b]
    return bool(boxes) and boxes_frame(boxes) == list(item.outline[0])


def _region_annotation(item: _Item, region: FindingRegion, crop: np.ndarray, label: str) -> dict[str, Any]:
    x0, y0, x1, y1 = region.bbox
    return {
        "image_id": item.id,
        "category_id": files.FINDING_CATEGORIES[label],
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(np.count_nonzero(crop)),
        "segmentation": files.rle_encode(crop=crop, box=region.bbox, width=item.width, height=item.height),
        "iscrowd": 0,
        "attributes": {
            "subtype": region.subtype,
            "description": region.description,
            "source_label": region.source_label,
            "flagged": region.flagged,
        },
    }


def _write_files(
    *,
    snapshot: ExportSnapshot,
    root: Path,
    ids: list[int],
    splits: dict[str, str],
    outlines: bool,
    datasets: list[str],
    options: dict[str, Any],
    progress: Callable[[float], None] | None,
) -> dict[str, Any]:
    created = timezone.now().isoformat(timespec="seconds")
    digests: dict[str, str] = {}
    labels = files.LabelsWriter(root / "labels.csv")
    coco = files.CocoWriter(root / "coco.json", info={"description": "Lungmark export", "format": files.EXPORT_FORMAT, "date_created": created})
    counts: dict[str, Any] = {
        "images": 0,
        "subjects": {"train": 0, "test": 0},
        "split": {"train": 0, "test": 0},
        "lung_masks": 0,
        "disease_masks": 0,
        "findings": {},
        "labels": {name: {v: 0 for v in Tri.values} for name in LABEL_FIELDS},
        "skipped": [],
    }
    subjects_seen: set[str] = set()
    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
    # Threads, not processes: Celery's prefork workers cannot fork children, and the heavy parts
    # release the GIL. The next batch is read from the database while this one is rendered.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        items = _items(batches[0], splits=splits)
        for number in range(len(batches)):
            futures = [pool.submit(_render, item, outlines=outlines, root=root) for item in items]
            items = _items(batches[number + 1], splits=splits) if number + 1 < len(batches) else []
            for future in futures:
                result = future.result()
                if result.skipped:
                    counts["skipped"].append({"image_id": str(result.item.id), "reason": result.skipped})
                    logger.warning("export %s skips radiograph %s: %s", snapshot.id, result.item.id, result.skipped)
                    continue
                digests.update(result.files)
                row = result.row
                labels.write(row)
                image = {"id": result.item.id, "file_name": f"{row['image_id']}.png", "width": row["width"], "height": row["height"]}
                if result.lung_mask:
                    image["lung_mask"] = result.lung_mask
                coco.add_image(image)
                for annotation in result.annotations:
                    coco.add_annotation(annotation)
                counts["images"] += 1
                counts["split"][row["split"]] += 1
                if row["subject_id"] not in subjects_seen:
                    subjects_seen.add(row["subject_id"])
                    counts["subjects"][row["split"]] += 1
                counts["lung_masks"] += row["has_lung_mask"]
                counts["disease_masks"] += row["has_disease_mask"]
                for label in result.labels_present:
                    counts["findings"][label] = counts["findings"].get(label, 0) + 1
                for name in LABEL_FIELDS:
                    counts["labels"][name][row[name]] += 1
            fraction = min(0.99, (number + 1) / len(batches))
            ExportSnapshot.objects.filter(pk=snapshot.pk).update(progress=fraction)
            if progress:
                progress(fraction)
    labels.close()
    coco.close()
    if counts["images"] == 0:
        raise InvalidInput("Nothing could be exported: every stored image failed to read.", extra={"skipped": counts["skipped"][:20]})
    digests["labels.csv"] = files.file_sha256(root / "labels.csv")
    digests["coco.json"] = files.file_sha256(root / "coco.json")
    manifest = {
        "format": files.EXPORT_FORMAT,
        "created": created,
        "source": {"application": "lungmark", "export_id": snapshot.id, "datasets": datasets, "options": options},
        "split_seed": int(options.get("seed", 0)),
        "split": {"method": "subject-disjoint, stratified by covid, frozen per subject", "test_fraction": TEST_FRACTION, "seed": int(options.get("seed", 0))},
        "lung_masks": "polygon outlines where they exist, else the two lung boxes filled" if outlines else "the two accepted lung boxes, filled",
        "disease_mask": "union of accepted regions with a finding label (flagged 'unknown' labels are only in masks/findings/unknown)",
        "counts": counts,
        "files": dict(sorted(digests.items())),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
