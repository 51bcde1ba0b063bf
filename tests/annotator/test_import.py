"""Import of real radiographs and their annotations (the sample's layout), and of bad files."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import call_command
from PIL import Image

from annotator.constants import SOURCE_ANATOMY_LABELS, State
from annotator.models import FindingRegion, LungAnnotation, Radiograph, ReviewEvent
from annotator.imaging.dicom import SECONDARY_CAPTURE_CLASSES
from annotator.selectors import radiographs_by_file_name
from annotator.services.imports import SourceFile, dataset_get_or_create, folder_sources, radiographs_import

NON_FRONTAL = {"l", "ll", "lateral", "axial", "coronal"}


def _may_carry_burned_in_text(ds) -> bool:
    """Burned In Annotation YES, or a secondary capture that does not say NO (the default setting)."""
    said = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    capture = str(ds.get("SOPClassUID", "")) in SECONDARY_CAPTURE_CLASSES or bool(ds.get("ConversionType"))
    return said == "YES" or (capture and said != "NO")


def _names(dataset, names, radiographs) -> set[str]:
    """The file names among ``names`` under which ``radiographs`` were imported."""
    found = radiographs_by_file_name(dataset=dataset, names=names)
    ids = set(radiographs.values_list("id", flat=True))
    return {name for name, radiograph in found.items() if radiograph.id in ids}


def _expected(sample: Path) -> dict:
    """What the sample's own files say should happen (never hard-coded: the set may be larger)."""
    rows = list(csv.DictReader((sample / "metadata.csv").open(encoding="utf-8")))
    excluded = {r["file"] for r in rows if r["view"].strip().lower() in NON_FRONTAL or r["modality"].strip().upper() == "CT"}
    images = {p.name for p in (sample / "images").iterdir() if p.is_file()}
    dicoms = {p.name for p in (sample / "dicom").iterdir() if p.is_file()}
    burned_in = {name for name in dicoms if _may_carry_burned_in_text(pydicom.dcmread(sample / "dicom" / name, force=True))}
    kept = (images - excluded) | (dicoms - burned_in)

    def coco_images(name: str, category: str | None) -> set[str]:
        data = json.loads((sample / "annotations" / name).read_text())
        names = {i["id"]: i["file_name"] for i in data["images"]}
        cats = {c["id"]: c["name"] for c in data["categories"]}
        return {names[a["image_id"]] for a in data["annotations"] if category is None or cats[a["category_id"]] == category} & kept

    findings = {r["file"] for r in csv.DictReader((sample / "annotations" / "findings.csv").open())} & kept
    return {
        "imported": kept,
        "excluded": (excluded & images) | burned_in,
        "dicom": dicoms,
        "lung_boxes": coco_images("lung_boxes.json", None),
        "lung_polygons": coco_images("lung_polygons.json", "Lung"),
        "findings": findings,
    }


@pytest.mark.django_db
def test_sample_import_keeps_every_frontal_image_and_excludes_the_rest(sample_import, sample_dir):
    expected = _expected(sample_dir)
    report = sample_import["report"]
    assert report.errors == []
    assert report.imported == len(expected["imported"])
    assert {e["file"] for e in report.excluded} == expected["excluded"]
    assert all(e["reason"] in {"lateral_view", "ct", "burned_in_text"} for e in report.excluded)
    dataset = sample_import["dataset"]
    stored = Radiograph.objects.filter(dataset=dataset)
    every = expected["imported"] | expected["excluded"] | expected["dicom"]
    assert stored.count() == len(every)
    assert _names(dataset, every, stored.exclude(state=State.EXCLUDED)) == expected["imported"]
    assert _names(dataset, every, stored.filter(state=State.EXCLUDED)) == expected["excluded"]
    assert _names(dataset, every, stored.filter(kind="dicom")) == expected["dicom"]
    # Every exclusion is recorded as an event with its reason.
    for radiograph in stored.filter(state=State.EXCLUDED):
        assert ReviewEvent.objects.filter(radiograph=radiograph, action="excluded", data__reason=radiograph.excluded_reason).exists()


@pytest.mark.django_db
def test_sample_annotations_import_counts(sample_import, sample_dir):
    expected = _expected(sample_dir)
    annotations = sample_import["annotations"]
    assert annotations["lung_boxes"]["images"] == len(expected["lung_boxes"])
    assert annotations["lung_polygons"]["images"] == len(expected["lung_polygons"])
    assert annotations["findings"]["images"] == len(expected["findings"])
    for name, section in annotations.items():
        if name != "findings":
            assert section["errors"] == []
    # A findings row is refused exactly when its mask is not the size of its image (anatomy is not read).
    sample_images = {p.name: p for folder in ("images", "dicom") for p in (sample_dir / folder).iterdir()}
    mismatched = set()
    for line, row in enumerate(csv.DictReader((sample_dir / "annotations" / "findings.csv").open()), start=2):
        if row["file"] in expected["findings"] and row["label"] not in SOURCE_ANATOMY_LABELS:
            with Image.open(sample_images[row["file"]]) as image, Image.open(sample_dir / "annotations" / row["mask"]) as mask:
                if image.size != mask.size:
                    mismatched.add((row["file"], line))
    assert {(e["file"], e["line"]) for e in annotations["findings"]["errors"]} == mismatched


@pytest.mark.django_db
def test_imported_boxes_are_stored_as_accepted_truth_pixel_for_pixel(sample_import, sample_dir):
    data = json.loads((sample_dir / "annotations" / "lung_boxes.json").read_text())
    names = {i["id"]: i["file_name"] for i in data["images"]}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    checked = 0
    by_name = radiographs_by_file_name(dataset=sample_import["dataset"], names=names.values())
    for ann in data["annotations"]:
        radiograph = by_name.get(names[ann["image_id"]])
        if radiograph is None or radiograph.state == State.EXCLUDED:
            continue
        truth = radiograph.lung_annotations.filter(status="accepted", source="imported").first()
        x, y, w, h = ann["bbox"]
        box = truth.right_box if cats[ann["category_id"]] == "Right Lung" else truth.left_box
        # Boxes reaching past the image edge (seen in public sets) are clipped to it.
        W, H = radiograph.width, radiograph.height
        assert box == [min(round(x), W), min(round(y), H), min(round(x + w), W), min(round(y + h), H)]
        checked += 1
    assert checked > 0


@pytest.mark.django_db
def test_polygon_lungs_name_sides_by_patient(sample_import):
    polygon_lungs = LungAnnotation.objects.filter(radiograph__dataset=sample_import["dataset"], source="imported", mask_png__isnull=False)
    assert polygon_lungs.exists()
    for lungs in polygon_lungs:
        if lungs.right_box and lungs.left_box:
            # The patient's right lung is on the image's left.
            assert (lungs.right_box[0] + lungs.right_box[2]) < (lungs.left_box[0] + lungs.left_box[2])


@pytest.mark.django_db
def test_findings_masks_are_mapped_and_kept(sample_import, sample_dir):
    rows = list(csv.DictReader((sample_dir / "annotations" / "findings.csv").open()))
    ggo = [r for r in rows if r["label"] == "ground_glass_opacity"]
    if ggo:
        radiograph = radiographs_by_file_name(dataset=sample_import["dataset"], names=[ggo[0]["file"]])[ggo[0]["file"]]
        region = FindingRegion.objects.filter(radiograph=radiograph, source_label="ground_glass_opacity").first()
        assert region.label == "interstitial_shadow" and region.subtype == "ground_glass"
        assert region.status == "accepted" and region.source == "imported"
    # Anatomy outlines (the cardiomediastinum) are no findings: none is stored, the report says so.
    assert not FindingRegion.objects.filter(radiograph__dataset=sample_import["dataset"], source_label__in=SOURCE_ANATOMY_LABELS).exists()
    anatomy = {r["label"] for r in rows} & SOURCE_ANATOMY_LABELS
    notes = sample_import["annotations"]["findings"]["notes"]
    assert all(any(note.startswith(f"{label}: ") and "skipped" in note for note in notes) for label in anatomy), notes


@pytest.mark.django_db
def test_reimporting_the_same_folder_adds_nothing(sample_import, sample_dir):
    dataset = sample_import["dataset"]
    before = (Radiograph.objects.count(), LungAnnotation.objects.count(), FindingRegion.objects.count())
    sources, metadata = folder_sources(sample_dir)
    report = radiographs_import(dataset=dataset, sources=sources[:25], metadata=metadata)
    assert report.imported == 0 and report.excluded == [] and report.duplicates == 25
    call_command(
        "import_annotations",
        dataset=dataset.name,
        lung_boxes=sample_dir / "annotations" / "lung_boxes.json",
        lung_polygons=sample_dir / "annotations" / "lung_polygons.json",
        findings=sample_dir / "annotations" / "findings.csv",
        stdout=io.StringIO(),
    )
    assert (Radiograph.objects.count(), LungAnnotation.objects.count(), FindingRegion.objects.count()) == before


@pytest.mark.django_db
def test_metadata_labels_are_mapped(sample_import, sample_dir):
    rows = {r["file"]: r for r in csv.DictReader((sample_dir / "metadata.csv").open(encoding="utf-8"))}
    seen = set()
    for name, radiograph in radiographs_by_file_name(dataset=sample_import["dataset"], names=rows).items():
        if radiograph.kind not in ("png", "jpeg"):
            continue
        finding = rows[name]["finding"].strip()
        if finding == "COVID-19":
            assert (radiograph.covid, radiograph.healthy) == ("positive", "negative")
            seen.add("covid")
        elif finding.lower() == "no finding":
            assert (radiograph.healthy, radiograph.covid) == ("positive", "negative")
            seen.add("healthy")
        elif finding in ("", "todo"):
            assert (radiograph.healthy, radiograph.covid, radiograph.other_disease) == ("unknown",) * 3
            assert radiograph.covid_source == "none"
            seen.add("unknown")
        else:
            assert (radiograph.healthy, radiograph.covid, radiograph.other_disease) == ("negative", "negative", "positive")
            assert radiograph.other_disease_source == "metadata"
            seen.add("other")
    assert seen


def _png(width=64, height=48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(width * height) % 251).astype(np.uint8).reshape(height, width)).save(buf, "PNG")
    return buf.getvalue()


def _source(name: str, data: bytes) -> SourceFile:
    return SourceFile(name=name, size=len(data), read=lambda limit: data[:limit])


@pytest.mark.django_db
def test_bad_files_get_clear_errors_and_the_rest_imports(sample_dir, settings):
    settings.MAX_UPLOAD_BYTES = 3_000_000
    good = sorted((sample_dir / "images").glob("*.jpg"))[0].read_bytes()
    real_png = _png()
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")
    settings.MAX_IMAGE_PIXELS = 50_000_000
    sources = [
        _source("good.jpg", good),
        _source("corrupt.png", real_png[:40] + b"\x00garbage" * 50),
        _source("truncated.jpg", good[: len(good) // 3]),
        _source("empty.png", b""),
        _source("notes.png", b"this is a text file, not an image\n" * 10),
        _source("huge.png", b"\x89PNG" + b"\x00" * 3_100_000),
        _source("bomb.png", bomb.getvalue()),
        _source("other.png", real_png),
    ]
    dataset = dataset_get_or_create(name="bad-input")
    report = radiographs_import(dataset=dataset, sources=sources, metadata={})
    errors = {e["file"]: e for e in report.errors}
    assert set(errors) == {"corrupt.png", "truncated.jpg", "empty.png", "notes.png", "huge.png", "bomb.png"}
    assert errors["huge.png"]["code"] == "file_too_large"
    assert all(e["code"] in {"invalid_image", "file_too_large"} and e["error"] for e in report.errors)
    assert report.imported == 2
    stored = Radiograph.objects.filter(dataset=dataset)
    assert set(radiographs_by_file_name(dataset=dataset, names=[s.name for s in sources])) == {"good.jpg", "other.png"} and stored.count() == 2


@pytest.mark.django_db
def test_import_command_writes_report_json(tmp_path, sample_dir):
    folder = tmp_path / "mini"
    (folder / "images").mkdir(parents=True)
    for path in sorted((sample_dir / "images").iterdir())[:3]:
        (folder / "images" / path.name).write_bytes(path.read_bytes())
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    report_path = tmp_path / "report.json"
    out = io.StringIO()
    call_command("import_radiographs", str(folder), dataset="mini", report=str(report_path), no_progress=True, stdout=out)
    report = json.loads(report_path.read_text())
    assert {"imported", "duplicates", "excluded", "errors"} <= set(report)
    assert report["imported"] + len(report["excluded"]) == 3
    assert [e["file"] for e in report["errors"]] == ["broken.jpg"]
    assert "1 errors" in out.getvalue()


@pytest.mark.django_db
def test_upload_endpoint_accepts_files_and_zip(client_for, admin_user, annotator, sample_dir):
    images = sorted((sample_dir / "images").iterdir())[:4]
    client = client_for(admin_user)
    files = [io.BytesIO(p.read_bytes()) for p in images[:2]]
    for f, p in zip(files, images[:2]):
        f.name = p.name
    response = client.post("/api/imports/", {"dataset": "uploads", "files": files}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["imported"] + len(response.json()["excluded"]) == 2

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for p in images[2:]:
            zf.writestr(f"images/{p.name}", p.read_bytes())
        zf.writestr("images/bad.png", b"nope")
        zf.writestr("metadata.csv", "file,view,finding\n" + "".join(f"{p.name},PA,COVID-19\n" for p in images[2:]))
    archive.seek(0)
    archive.name = "batch.zip"
    response = client.post("/api/imports/", {"dataset": "uploads", "archive": archive}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["imported"] == 2 and [e["file"] for e in body["errors"]] == ["bad.png"]
    zipped = radiographs_by_file_name(dataset=dataset_get_or_create(name="uploads"), names=[p.name for p in images[2:]])
    assert len(zipped) == 2 and {r.covid for r in zipped.values()} == {"positive"}

    # Annotators cannot import.
    f = io.BytesIO(images[0].read_bytes())
    f.name = "x.jpg"
    assert client_for(annotator).post("/api/imports/", {"dataset": "uploads", "files": [f]}, format="multipart").status_code == 403


@pytest.mark.django_db
def test_upload_rejects_a_zip_bomb(client_for, admin_user, settings):
    settings.MAX_ZIP_BYTES = 1_000_000
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/zeros.png", b"\x00" * 5_000_000)
    archive.seek(0)
    archive.name = "bomb.zip"
    response = client_for(admin_user).post("/api/imports/", {"dataset": "z", "archive": archive}, format="multipart")
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
