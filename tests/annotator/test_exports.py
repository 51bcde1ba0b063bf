"""Mask dataset exports: what a snapshot holds, the frozen split, verification, the round trip.

Synthetic radiographs (tests/annotator/export_factories.py) cover the rules; the real sample checks
that an export holds every imported lung box and finding mask pixel for pixel.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from annotator.constants import SOURCE_ANATOMY_LABELS, SOURCE_FINDING_MAP, SOURCE_LUNG_LABELS, AnnotationSource, LungStatus, Provenance, RegionStatus, State, Tri
from annotator.errors import Conflict, InvalidInput, NotAllowed, NotFound
from annotator.geometry import boxes_fill, coco_bbox_to_box, polygons_rasterise
from annotator.models import AuditLog, Dataset, ExportSnapshot, Radiograph, Subject
from annotator.selectors import radiographs_by_file_name
from annotator.services.exports import export_build, export_create, export_verify
from annotator.services.snapshot_import import snapshot_import
from training.export import lung_mask_kinds

from .export_factories import DatasetFactory, RadiographFactory, SubjectFactory, blob, lungs_save, region_save

pytestmark = pytest.mark.django_db


def export(tmp_path: Path, *datasets: str, name: str = "snapshot", **options) -> tuple[ExportSnapshot, Path]:
    snapshot = export_create(user=None, datasets=list(datasets), options=options, enqueue=False)
    out = tmp_path / name
    return export_build(export_id=snapshot.id, out=out), out


def rows(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        return {row["image_id"]: row for row in csv.DictReader(fh)}


def mask(root: Path, rel: str) -> np.ndarray:
    with Image.open(root / rel) as image:
        assert image.mode == "L"
        pixels = np.asarray(image)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255


# --- what a snapshot holds -------------------------------------------------------------------------


def test_snapshot_holds_accepted_truth_only(tmp_path):
    dataset = DatasetFactory()
    shape = (48, 64)
    full = RadiographFactory(dataset=dataset, findings_complete=True)
    lungs_save(full)
    region_save(full, blob(*shape, 10, 20, 8, 18), label="consolidation")
    region_save(full, blob(*shape, 30, 40, 40, 50), label="interstitial_shadow", subtype="ground_glass", description="patchy")
    region_save(full, blob(*shape, 0, 5, 0, 5), label="pneumothorax", status=RegionStatus.REJECTED)
    region_save(full, blob(*shape, 40, 48, 0, 10), label="pleural_effusion", status=RegionStatus.SUGGESTED, source=AnnotationSource.MODEL)
    region_save(full, blob(*shape, 20, 30, 50, 60), label="unknown", source_label="cardiomediastinum")

    # Only model suggestions (boxes, a region, a label): nothing of it is ground truth.
    suggested = RadiographFactory(dataset=dataset, covid_source=Provenance.MODEL, healthy=Tri.UNKNOWN, healthy_source=Provenance.NONE)
    lungs_save(suggested, status=LungStatus.SUGGESTED, source=AnnotationSource.MODEL)
    region_save(suggested, blob(*shape, 10, 20, 8, 18), status=RegionStatus.SUGGESTED, source=AnnotationSource.MODEL)

    # Accepted boxes, then an annotator's unreviewed edit: the accepted boxes stay the truth.
    edited = RadiographFactory(dataset=dataset)
    lungs_save(edited, right=(2, 2, 20, 30), left=(40, 2, 60, 30))
    lungs_save(edited, right=(0, 0, 30, 48), left=(32, 0, 64, 48), status=LungStatus.SUBMITTED, source=AnnotationSource.ANNOTATOR)

    # Findings not complete: accepted regions exist, but no disease mask is claimed.
    partial = RadiographFactory(dataset=dataset, findings_complete=False)
    region_save(partial, blob(*shape, 10, 20, 8, 18))

    excluded = RadiographFactory(dataset=dataset, state=State.EXCLUDED, excluded_reason="lateral_view", findings_complete=True)
    lungs_save(excluded)
    lateral = RadiographFactory(dataset=dataset, view="LATERAL")
    lungs_save(lateral)
    nothing = RadiographFactory(dataset=dataset, healthy=Tri.UNKNOWN, healthy_source=Provenance.NONE, covid=Tri.UNKNOWN, covid_source=Provenance.NONE)

    snapshot, root = export(tmp_path, dataset.name)
    assert export_verify(root) == []
    labels = rows(root)
    assert set(labels) == {str(full.id), str(edited.id), str(partial.id)}
    assert not {str(r.id) for r in (suggested, excluded, lateral, nothing)} & set(labels)

    row = labels[str(full.id)]
    assert (row["healthy"], row["covid"], row["other_disease"]) == ("negative", "positive", "unknown")
    assert (row["has_lung_mask"], row["has_disease_mask"], row["width"], row["height"]) == ("1", "1", "64", "48")
    assert np.array_equal(mask(root, f"masks/lung/{full.id}.png"), boxes_fill(width=64, height=48, boxes=[[4, 6, 28, 40], [34, 6, 60, 40]]))
    consolidation, ground_glass = blob(*shape, 10, 20, 8, 18), blob(*shape, 30, 40, 40, 50)
    assert np.array_equal(mask(root, f"masks/disease/{full.id}.png"), consolidation | ground_glass)
    assert np.array_equal(mask(root, f"masks/findings/consolidation/{full.id}.png"), consolidation)
    assert np.array_equal(mask(root, f"masks/findings/interstitial_shadow/{full.id}.png"), ground_glass)
    # A flagged (unmapped) label is kept apart, not mixed into the disease mask.
    assert np.array_equal(mask(root, f"masks/findings/unknown/{full.id}.png"), blob(*shape, 20, 30, 50, 60))
    assert not (root / f"masks/findings/pneumothorax/{full.id}.png").exists()
    assert not (root / f"masks/findings/pleural_effusion/{full.id}.png").exists()

    edited_row = labels[str(edited.id)]
    assert np.array_equal(mask(root, f"masks/lung/{edited.id}.png"), boxes_fill(width=64, height=48, boxes=[[2, 2, 20, 30], [40, 2, 60, 30]]))
    assert edited_row["has_disease_mask"] == "0" and not (root / f"masks/disease/{edited.id}.png").exists()
    assert (labels[str(partial.id)]["has_lung_mask"], labels[str(partial.id)]["has_disease_mask"]) == ("0", "0")

    coco = json.loads((root / "coco.json").read_text())
    by_image = defaultdict(list)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for annotation in coco["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    assert sorted(names[a["category_id"]] for a in by_image[full.id]) == ["Left Lung", "Right Lung", "consolidation", "interstitial_shadow", "unknown"]
    glass = next(a for a in by_image[full.id] if names[a["category_id"]] == "interstitial_shadow")
    assert glass["attributes"] == {"subtype": "ground_glass", "description": "patchy", "source_label": "interstitial_shadow", "flagged": False}
    assert glass["bbox"] == [40, 30, 10, 10] and glass["area"] == 100
    assert by_image[partial.id] == []

    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "lungmark-export/1"
    assert manifest["counts"]["images"] == 3 and manifest["counts"]["disease_masks"] == 1
    assert set(manifest["files"]) == {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert snapshot.status == "done" and snapshot.progress == 1.0 and len(snapshot.manifest_sha256) == 64


def test_annotator_labels_count_only_once_a_radiologist_accepted(tmp_path):
    dataset = DatasetFactory()
    pending = RadiographFactory(dataset=dataset, covid_source=Provenance.ANNOTATOR, state=State.LUNGS_DONE)
    accepted = RadiographFactory(dataset=dataset, covid_source=Provenance.ANNOTATOR, state=State.ACCEPTED)
    _, root = export(tmp_path, dataset.name)
    labels = rows(root)
    assert labels[str(pending.id)]["covid"] == "unknown"
    assert labels[str(accepted.id)]["covid"] == "positive"
    _, reviewed = export(tmp_path, dataset.name, name="reviewed", reviewed_only=True)
    assert set(rows(reviewed)) == {str(accepted.id)}


def test_outline_option_writes_polygon_masks_where_they_exist(tmp_path):
    dataset = DatasetFactory()
    outline = np.zeros((48, 64), dtype=bool)
    outline[10:30, 5:25] = True
    outline[12:35, 38:58] = True
    with_outline = RadiographFactory(dataset=dataset)
    lungs_save(with_outline, right=(5, 10, 25, 30), left=(38, 12, 58, 35), outline=outline)
    boxes_only = RadiographFactory(dataset=dataset)
    lungs_save(boxes_only)
    _, boxes = export(tmp_path, dataset.name, name="boxes")
    _, outlines = export(tmp_path, dataset.name, name="outlines", lung_masks="outlines")
    assert np.array_equal(mask(outlines, f"masks/lung/{with_outline.id}.png"), outline)
    assert np.array_equal(mask(boxes, f"masks/lung/{with_outline.id}.png"), boxes_fill(width=64, height=48, boxes=[[5, 10, 25, 30], [38, 12, 58, 35]]))
    assert np.array_equal(mask(outlines, f"masks/lung/{boxes_only.id}.png"), mask(boxes, f"masks/lung/{boxes_only.id}.png"))
    # coco.json says which lung masks are outlines, so that training scores lung Dice against those alone
    no_lungs = RadiographFactory(dataset=dataset, covid=Tri.POSITIVE, covid_source=Provenance.METADATA)
    _, outlines = export(tmp_path, dataset.name, name="outlines-again", lung_masks="outlines")
    _, boxes = export(tmp_path, dataset.name, name="boxes-again")
    assert str(no_lungs.id) in rows(outlines)
    assert lung_mask_kinds(outlines) == {str(with_outline.id): "outline", str(boxes_only.id): "boxes"}
    assert lung_mask_kinds(boxes) == {str(with_outline.id): "boxes", str(boxes_only.id): "boxes"}


def test_coco_lung_boxes_say_whether_people_drew_them_or_they_came_from_an_outline(tmp_path):
    dataset = DatasetFactory()
    outline = np.zeros((48, 64), dtype=bool)
    outline[10:30, 5:25] = True
    outline[12:35, 38:58] = True
    tight = dict(right=(5, 10, 25, 30), left=(38, 12, 58, 35))
    from_polygons = RadiographFactory(dataset=dataset)
    lungs_save(from_polygons, **tight, outline=outline)
    box_file_won = RadiographFactory(dataset=dataset)  # a box file's boxes kept over the polygons' outline
    lungs_save(box_file_won, right=(3, 8, 26, 38), left=(36, 10, 60, 40), outline=outline)
    box_file = RadiographFactory(dataset=dataset)
    lungs_save(box_file, **tight)
    annotated = RadiographFactory(dataset=dataset)  # an annotator saved the outline's boxes as they were
    lungs_save(annotated, **tight, outline=outline, source=AnnotationSource.ANNOTATOR)
    for option in ("boxes", "outlines"):
        _, root = export(tmp_path, dataset.name, name=option, lung_masks=option)
        coco = json.loads((root / "coco.json").read_text())
        lung_ids = {c["id"] for c in coco["categories"] if c["name"] in ("Right Lung", "Left Lung")}
        sources = defaultdict(set)
        for annotation in coco["annotations"]:
            if annotation["category_id"] in lung_ids:
                sources[annotation["image_id"]].add(annotation["attributes"]["box_source"])
        assert sources == {from_polygons.id: {"outline"}, box_file_won.id: {"drawn"}, box_file.id: {"drawn"}, annotated.id: {"drawn"}}, option


def test_a_snapshot_is_immutable_and_never_overwritten(tmp_path):
    dataset = DatasetFactory()
    lungs_save(RadiographFactory(dataset=dataset))
    snapshot, root = export(tmp_path, dataset.name)
    assert all(not (p.stat().st_mode & 0o222) for p in root.rglob("*") if p.is_file())
    assert export_build(export_id=snapshot.id).manifest_sha256 == snapshot.manifest_sha256  # finished: left alone
    again = export_create(user=None, datasets=[dataset.name], enqueue=False)
    with pytest.raises(Conflict):
        export_build(export_id=again.id, out=root)
    again.refresh_from_db()
    assert again.status == "failed" and "never overwritten" in again.error
    assert not list(tmp_path.glob(".*partial*"))


def test_export_requests_are_checked_and_recorded(tmp_path, annotator, admin_user):
    dataset = DatasetFactory()
    with pytest.raises(NotAllowed):
        export_create(user=annotator, datasets=[dataset.name], enqueue=False)
    with pytest.raises(NotFound):
        export_create(user=admin_user, datasets=["no-such-dataset"], enqueue=False)
    for bad in ({"lung_masks": "polygons"}, {"seed": -1}, {"reviewed_only": "yes"}, {"colour": "red"}):
        with pytest.raises(InvalidInput):
            export_create(user=admin_user, datasets=[dataset.name], options=bad, enqueue=False)
    first = export_create(user=admin_user, datasets=[dataset.name], enqueue=False)
    with pytest.raises(Conflict):
        export_create(user=admin_user, datasets=[dataset.name], enqueue=False)
    assert export_create(user=admin_user, datasets=[dataset.name], options={"lung_masks": "outlines"}, enqueue=False).id != first.id
    # A dataset without ground truth: the export fails with a reason instead of writing an empty snapshot.
    with pytest.raises(InvalidInput):
        export_build(export_id=first.id, out=tmp_path / "empty")
    first.refresh_from_db()
    assert first.status == "failed" and "no ground truth" in first.error
    actions = list(AuditLog.objects.filter(target=f"export:{first.id}").values_list("action", flat=True))
    assert sorted(actions) == ["export_failed", "export_requested"]


# --- the frozen split ------------------------------------------------------------------------------


def make_subjects(dataset, count: int, *, covid: str, offset: int) -> list[Subject]:
    subjects = []
    for i in range(count):
        subject = SubjectFactory(dataset=dataset, key=f"{covid}-{offset + i:04d}")
        for _ in range(1 + i % 2):  # several images of one patient stay together
            RadiographFactory(dataset=dataset, subject=subject, covid=covid)
        subjects.append(subject)
    return subjects


def split_of(root: Path) -> dict[str, str]:
    split: dict[str, set[str]] = defaultdict(set)
    for row in rows(root).values():
        split[row["subject_id"]].add(row["split"])
    assert all(len(s) == 1 for s in split.values()), "a subject is in both splits"
    return {key: s.pop() for key, s in split.items()}


def test_split_is_subject_disjoint_stratified_and_frozen_when_subjects_are_added(tmp_path):
    dataset = DatasetFactory()
    make_subjects(dataset, 20, covid="positive", offset=0)
    make_subjects(dataset, 10, covid="negative", offset=0)
    _, first = export(tmp_path, dataset.name, name="first")
    before = split_of(first)
    assert sum(s == "test" for k, s in before.items() if k.startswith("positive")) == 4
    assert sum(s == "test" for k, s in before.items() if k.startswith("negative")) == 2

    make_subjects(dataset, 20, covid="positive", offset=100)
    make_subjects(dataset, 15, covid="negative", offset=100)
    _, second = export(tmp_path, dataset.name, name="second", seed=12345)
    after = split_of(second)
    assert {k: after[k] for k in before} == before  # nobody moved, whatever the seed
    assert sum(s == "test" for k, s in after.items() if k.startswith("positive")) == 8
    assert sum(s == "test" for k, s in after.items() if k.startswith("negative")) == 5
    assert dict(Subject.objects.filter(dataset=dataset).values_list("key", "split")) == after


def test_split_is_deterministic(tmp_path):
    one, two = DatasetFactory(name="twin-a"), DatasetFactory(name="twin-b")
    for dataset in (one, two):
        make_subjects(dataset, 15, covid="positive", offset=0)
    _, a = export(tmp_path, one.name, name="a")
    _, b = export(tmp_path, two.name, name="b")
    assert split_of(a) == split_of(b)


# --- verification ----------------------------------------------------------------------------------


def test_a_tampered_file_fails_verification_naming_the_file(tmp_path, capsys):
    dataset = DatasetFactory()
    radiograph = RadiographFactory(dataset=dataset, findings_complete=True)
    lungs_save(radiograph)
    region_save(radiograph, blob(48, 64, 10, 20, 8, 18))
    _, root = export(tmp_path, dataset.name)
    call_command("verify_export", str(root))
    assert "sound" in capsys.readouterr().out
    for rel in (f"masks/disease/{radiograph.id}.png", f"images/{radiograph.id}.png", "labels.csv"):
        target = root / rel
        original = target.read_bytes()
        target.chmod(0o644)
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        target.write_bytes(bytes(changed))
        problems = export_verify(root)
        assert problems and any(p.startswith(rel) for p in problems), problems
        with pytest.raises(CommandError):
            call_command("verify_export", str(root))
        assert rel in capsys.readouterr().err
        target.write_bytes(original)
    assert export_verify(root) == []


# --- the real sample ------------------------------------------------------------------------------


def _sample_expectations(sample_dir: Path, import_report: dict) -> dict:
    """What the sample's annotation files say, per file name, read straight from the files."""
    # Images with a refused row (e.g. a mask of another size) are not stored "as drawn".
    skipped = {e["file"] for section in import_report.values() for e in section["errors"]}
    skipped |= {name for section in import_report.values() for name in section["unknown_images"]}
    boxes: dict[str, dict[str, list]] = defaultdict(dict)
    coco = json.loads((sample_dir / "annotations" / "lung_boxes.json").read_text())
    images = {i["id"]: i for i in coco["images"]}
    categories = {c["id"]: c["name"].lower() for c in coco["categories"]}
    for annotation in coco["annotations"]:
        image = images[annotation["image_id"]]
        side = "right" if "right" in categories[annotation["category_id"]] else "left"
        boxes[Path(image["file_name"]).name][side] = (annotation["bbox"], image)
    polygons: dict[str, list] = defaultdict(list)
    coco = json.loads((sample_dir / "annotations" / "lung_polygons.json").read_text())
    images = {i["id"]: Path(i["file_name"]).name for i in coco["images"]}
    categories = {c["id"]: c["name"].lower() for c in coco["categories"]}
    for annotation in coco["annotations"]:
        if categories[annotation["category_id"]] == "lung":
            polygons[images[annotation["image_id"]]] += [p for p in annotation["segmentation"] if len(p) >= 6]
    findings: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    with open(sample_dir / "annotations" / "findings.csv", newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            findings[Path(row["file"]).name].append((row["label"].strip().lower(), sample_dir / "annotations" / row["mask"]))
    return {"skipped": skipped, "boxes": boxes, "polygons": polygons, "findings": findings}


def test_sample_export_holds_every_imported_box_and_mask_pixel_for_pixel(sample_import, sample_dir, tmp_path):
    expected = _sample_expectations(sample_dir, sample_import["annotations"])
    _, boxes_root = export(tmp_path, "sample", name="boxes")
    _, outline_root = export(tmp_path, "sample", name="outlines", lung_masks="outlines")
    assert export_verify(boxes_root) == []
    every_file = [p.name for folder in ("images", "dicom") for p in (sample_dir / folder).iterdir()]
    by_name = radiographs_by_file_name(dataset=sample_import["dataset"], names=every_file)
    labels, outline_labels = rows(boxes_root), rows(outline_root)
    assert not {str(r.id) for r in by_name.values() if r.state == State.EXCLUDED} & set(labels)
    split_of(boxes_root)

    checked = defaultdict(int)
    for name, sides in expected["boxes"].items():
        if name in expected["skipped"]:
            continue
        radiograph = by_name[name]
        truth = [coco_bbox_to_box(sides[s][0], width=radiograph.width, height=radiograph.height) for s in ("right", "left") if s in sides]
        assert np.array_equal(mask(boxes_root, f"masks/lung/{radiograph.id}.png"), boxes_fill(width=radiograph.width, height=radiograph.height, boxes=truth)), name
        checked["lung boxes"] += 1

    for name, file_rows in expected["findings"].items():
        if name in expected["skipped"]:
            continue
        radiograph = by_name[name]
        shape = (radiograph.height, radiograph.width)
        per_label: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(shape, dtype=bool))
        lungs = np.zeros(shape, dtype=bool)
        for source_label, path in file_rows:
            pixels = np.asarray(Image.open(path).convert("L")) != 0
            if source_label in SOURCE_ANATOMY_LABELS:
                continue  # anatomy outlines are not imported as findings
            if source_label in SOURCE_LUNG_LABELS:
                lungs |= pixels
            else:
                per_label[SOURCE_FINDING_MAP.get(source_label, ("unknown", ""))[0]] |= pixels
        assert labels[str(radiograph.id)]["has_disease_mask"] == "1"
        disease = np.zeros(shape, dtype=bool)
        for label, pixels in per_label.items():
            if not pixels.any():
                continue  # an empty mask marks nothing
            assert np.array_equal(mask(boxes_root, f"masks/findings/{label}/{radiograph.id}.png"), pixels), (name, label)
            checked["finding masks"] += 1
            if label != "unknown":  # flagged labels are not part of the disease mask
                disease |= pixels
        assert np.array_equal(mask(boxes_root, f"masks/disease/{radiograph.id}.png"), disease), name
        if lungs.any():
            assert np.array_equal(mask(outline_root, f"masks/lung/{radiograph.id}.png"), lungs), name
            checked["lung masks"] += 1

    for name, shapes in expected["polygons"].items():
        if name in expected["skipped"] or any(label in SOURCE_LUNG_LABELS for label, _ in expected["findings"].get(name, [])):
            continue  # lung masks drawn in findings.csv replace the polygons of the same image
        radiograph = by_name[name]
        outline = polygons_rasterise(width=radiograph.width, height=radiograph.height, polygons=shapes)
        if outline.any():
            assert outline_labels[str(radiograph.id)]["has_lung_mask"] == "1"
            assert np.array_equal(mask(outline_root, f"masks/lung/{radiograph.id}.png"), outline), name
            checked["lung polygons"] += 1
    assert min(checked.values()) > 0 and len(checked) == 4, checked


def test_round_trip_export_import_export_gives_the_same_masks_and_labels(sample_import, tmp_path):
    """A subset of the real sample covering boxes, outlines, findings and flagged labels."""
    sample = Radiograph.objects.filter(dataset__name="sample").exclude(state=State.EXCLUDED)
    picks = set(sample.filter(findings_complete=True).order_by("id").values_list("id", flat=True)[:6])
    picks |= set(sample.filter(lung_annotations__mask_bbox__isnull=False, findings_complete=False).order_by("id").values_list("id", flat=True)[:4])
    picks |= set(sample.filter(lung_annotations__isnull=True).order_by("id").values_list("id", flat=True)[:3])
    subset = DatasetFactory(name="round-trip-source")
    Radiograph.objects.filter(pk__in=picks).update(dataset=subset)

    _, first = export(tmp_path, subset.name, name="first", lung_masks="outlines")
    report = snapshot_import(dataset=DatasetFactory(name="round-trip-copy"), path=first)
    assert (report["imported"], report["errors"]) == (len(rows(first)), [])
    _, second = export(tmp_path, "round-trip-copy", name="second", lung_masks="outlines")

    old, new = list(rows(first).values()), list(rows(second).values())
    assert len(old) == len(new) >= 10
    for a, b in zip(old, new):  # the copy was imported in the snapshot's order
        assert {k: v for k, v in a.items() if k not in ("image_id", "dataset")} == {k: v for k, v in b.items() if k not in ("image_id", "dataset")}
        for folder in ("images", "masks/lung", "masks/disease", *(f"masks/findings/{p.name}" for p in (first / "masks" / "findings").iterdir())):
            before, after = first / folder / f"{a['image_id']}.png", second / folder / f"{b['image_id']}.png"
            assert before.exists() == after.exists(), (folder, a["image_id"])
            if before.exists():
                assert np.array_equal(np.asarray(Image.open(before)), np.asarray(Image.open(after))), (folder, a["image_id"])
    # Importing the same snapshot again adds nothing.
    again = snapshot_import(dataset=Dataset.objects.get(name="round-trip-copy"), path=first)
    assert (again["imported"], again["duplicates"]) == (0, len(old))


def test_import_snapshot_command_refuses_a_tampered_snapshot_and_imports_a_sound_one(tmp_path, capsys):
    dataset = DatasetFactory()
    radiograph = RadiographFactory(dataset=dataset, findings_complete=True)
    lungs_save(radiograph)
    region_save(radiograph, blob(48, 64, 10, 20, 8, 18), label="interstitial_shadow", subtype="nodular", description="small nodules")
    _, root = export(tmp_path, dataset.name)
    image = root / f"images/{radiograph.id}.png"
    original = image.read_bytes()
    image.chmod(0o644)
    image.write_bytes(original[:-20])
    with pytest.raises(CommandError, match=f"images/{radiograph.id}.png"):
        call_command("import_snapshot", str(root), "--dataset", "copy")
    assert not Radiograph.objects.filter(dataset__name="copy").exists()
    image.write_bytes(original)
    call_command("import_snapshot", str(root), "--dataset", "copy")
    assert "1 imported" in capsys.readouterr().out
    copy = Radiograph.objects.get(dataset__name="copy")
    region = copy.regions.get()
    assert (region.label, region.subtype, region.description, region.status) == ("interstitial_shadow", "nodular", "small nodules", "accepted")
    assert (copy.subject.key, copy.subject.split) == (radiograph.subject.key, Subject.objects.get(pk=radiograph.subject_id).split)
    assert (copy.covid, copy.covid_source, copy.findings_complete) == ("positive", "imported", True)
