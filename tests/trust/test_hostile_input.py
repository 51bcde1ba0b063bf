"""Hostile input: mutated PNG/JPEG/DICOM/zip/CSV/COCO files and JSON bodies at every import path and
annotation endpoint. Never a 500, never a hang, and nothing already stored changes.

Each generated example runs inside a savepoint that is rolled back, so every example starts from
the same stored state: the reviewed work of ``reviewed_work`` plus a few radiographs to aim at.
The decoders themselves are fuzzed in ``tests/annotator/test_imaging.py``; here the whole path
(multipart parsing, zip reading, metadata, the import service, storage, the report) is.
"""
from __future__ import annotations

import csv
import io
import json
import re
import struct
import tempfile
import uuid
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from annotator.models import ImportJob, Radiograph
from tests.annotator.factories import DatasetFactory, RadiographFactory, png, region_for

from .conftest import LEFT, RIGHT, changed_rows, stored_snapshot, token_client

FUZZ = settings(
    max_examples=25,
    deadline=timedelta(seconds=20),  # a hang fails the example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    database=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
)
SERVER_NAME = re.compile(r"^radiographs/\d+/[0-9a-f]{32}(-full)?\.(png|jpg|webp|dcm)$")


# --- seeds -----------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares ``width`` × ``height`` (a decompression bomb)."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")


def dicom_bytes(pixels: np.ndarray, *, rows: int | None = None, columns: int | None = None) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.Modality, ds.ViewPosition = "HOSTILE-1", "Doe^Jane", "DX", "PA"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows or pixels.shape[0], columns or pixels.shape[1]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _gradient(width: int, height: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) * 255 // (width + height)).astype(np.uint8)


SEEDS: dict[str, bytes] = {
    "png": png(_gradient(48, 40)),
    "png16": _encode(Image.fromarray((_gradient(40, 32).astype(np.uint16) * 257)), "PNG"),
    "rgba png": _encode(Image.fromarray(np.dstack([_gradient(32, 32)] * 4)), "PNG"),
    "jpeg": _encode(Image.fromarray(np.dstack([_gradient(48, 40)] * 3)), "JPEG", quality=80),
    "dicom": dicom_bytes(_gradient(40, 32).astype(np.uint16) * 16),
    "png bomb": png_declaring(60_000, 60_000),
    "dicom bomb": dicom_bytes(_gradient(8, 8), rows=65_535, columns=65_535),
    "polyglot": png(_gradient(32, 32)) + b"<script>alert(1)</script>PK\x03\x04",
    "text": b"GIF89a not really",
}
NAMES = st.one_of(
    st.sampled_from(
        [
            "x.png", "scan.jpg", "study.dcm", "noextension", ".hidden.png", "../../escape.png", "/etc/passwd",
            "C:\\Windows\\evil.png", "a" * 300 + ".png", "évènement.png", "metadata.csv", "x.png.php", "archive.zip",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40),
)


@st.composite
def mutated(draw, seeds: dict[str, bytes] = SEEDS) -> bytes:
    """A seed with up to four byte-level edits (flip, set, insert, delete, truncate, splice)."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        position = draw(st.one_of(st.integers(0, min(len(data) - 1, 300)), st.integers(0, len(data) - 1)))
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif operation == "truncate":
            del data[position:]
        else:
            other = seeds[draw(st.sampled_from(sorted(seeds)))]
            data[position:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


CSV_CELL = st.one_of(
    st.sampled_from(["x.png", "PA", "L", "AP Supine", "CT", "COVID-19", "Pneumonia", "No Finding", "", "=cmd|' /C calc'!A0"]),
    st.text(max_size=20),
    st.just("ab" * 70_000),  # over the csv module's field limit
)


@st.composite
def metadata_csv(draw) -> bytes:
    columns = draw(st.one_of(st.just(["file", "source", "patient_id", "view", "modality", "finding"]), st.lists(st.text(max_size=12), max_size=6)))
    rows = draw(st.lists(st.lists(CSV_CELL, min_size=len(columns), max_size=len(columns) + 2), max_size=4))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(['"', "\x00", "\r", "\ufeff", "é", ",,,,"])) + text[cut:]
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")


@st.composite
def zip_archive(draw, escapes: list[str] = ()) -> bytes:
    """A zip of mutated images (and maybe a metadata.csv), members named to escape, then maybe mutated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for _ in range(draw(st.integers(0, 3))):
            archive.writestr(draw(NAMES).replace("\x00", "") or "x", draw(mutated()))
        for name in escapes:
            archive.writestr(name, SEEDS["png"])
        if draw(st.booleans()):
            archive.writestr(draw(st.sampled_from(["metadata.csv", "sub/metadata.csv", "__MACOSX/metadata.csv"])), draw(metadata_csv()))
    data = buffer.getvalue()
    if draw(st.booleans()):
        data = draw(mutated({"zip": data}))
    return data


# --- the stored state to protect -------------------------------------------------------------------


@pytest.fixture
def guarded(reviewed_work, make_user, settings):
    """Reviewed work plus open radiographs to aim at; small caps so that bombs are cheap to build."""
    settings.MAX_UPLOAD_BYTES = 2_000_000
    settings.MAX_IMAGE_PIXELS = 4_000_000
    settings.MAX_ZIP_BYTES = 4_000_000
    dataset = DatasetFactory(name="target")
    open_radiograph = RadiographFactory(dataset=dataset, source_name="open.png")
    submitted = RadiographFactory(dataset=dataset, source_name="submitted.png", state="lungs_done")
    region = region_for(submitted)
    admin = make_user("admin", username="fuzz-admin")
    radiologist = make_user("radiologist", username="fuzz-rad")
    return {
        **reviewed_work,
        "target": dataset,
        "open": open_radiograph,
        "submitted": submitted,
        "target_region": region,
        "admin": token_client(admin),
        "admin_user": admin,
        "radiologist": token_client(radiologist),
        "before": stored_snapshot(),
    }


def rolled_back(action):
    """Run ``action`` in a savepoint that is always rolled back; returns its result."""
    with transaction.atomic():
        try:
            return action()
        finally:
            transaction.set_rollback(True)


def assert_imported_radiographs_are_clean(ids: list[int]) -> None:
    """What an import stored: server-chosen names, and images that decode within the caps."""
    for radiograph in Radiograph.objects.filter(pk__in=ids):
        for field in (radiograph.original, radiograph.display, radiograph.preview):
            assert SERVER_NAME.match(field.name), field.name
        with default_storage.open(radiograph.display.name, "rb") as fh:
            data = fh.read()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == (radiograph.width, radiograph.height)
        assert radiograph.width * radiograph.height <= django_settings.MAX_IMAGE_PIXELS
        assert b"<script>" not in data


def _upload(client, *, files=(), archive=None, dataset="target"):
    payload: dict = {"dataset": dataset}
    if files:
        payload["files"] = []
        for name, data in files:
            handle = io.BytesIO(data)
            handle.name = name
            payload["files"].append(handle)
    if archive is not None:
        handle = io.BytesIO(archive)
        handle.name = "upload.zip"
        payload["archive"] = handle
    return client.post("/api/imports/", payload, format="multipart")


def _check_upload(guarded, response) -> None:
    assert response.status_code in (201, 400, 413), (response.status_code, response.content[:500])
    body = response.json()
    if response.status_code == 201:
        for error in body["errors"]:
            assert error["code"] != "error", f"an unexpected failure hid behind the report: {error}"
            assert error["error"]
        assert_imported_radiographs_are_clean(body["radiograph_ids"])
    else:
        assert body["code"] in ("invalid_input", "invalid_image", "file_too_large") and body["detail"]
    assert changed_rows(guarded["before"], stored_snapshot()) == {}


# --- the upload API --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore")
def test_upload_api_survives_mutated_files(guarded):
    @FUZZ
    @given(files=st.lists(st.tuples(NAMES, mutated()), min_size=1, max_size=3))
    def check(files):
        rolled_back(lambda: _check_upload(guarded, _upload(guarded["admin"], files=files)))

    check()


@pytest.mark.filterwarnings("ignore")
def test_upload_api_survives_hostile_zips(guarded, tmp_path):
    marker = f"escape-{uuid.uuid4().hex}"

    escapes = [f"../../{marker}.png", f"/tmp/{marker}-abs.png", f"..\\..\\{marker}-dos.png"]

    @FUZZ
    @given(archive=zip_archive(escapes))
    def check(archive):
        rolled_back(lambda: _check_upload(guarded, _upload(guarded["admin"], archive=archive)))

    check()
    media = Path(django_settings.MEDIA_ROOT)
    assert not list(media.rglob(f"*{marker}*"))
    for folder in (media.parent, media.parent.parent, Path(tempfile.gettempdir()), Path.cwd()):
        assert not list(folder.glob(f"{marker}*")), f"a zip member escaped to {folder}"


@pytest.mark.django_db
def test_caps_are_checked_before_anything_is_decoded(guarded, monkeypatch):
    """Bombs and oversized files are refused from their headers: no decoder ever runs on them."""
    from PIL import ImageFile

    import annotator.imaging.dicom as dicom_module

    def forbidden(*args, **kwargs):
        raise AssertionError("a decoder ran on a file over the caps")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    monkeypatch.setattr(dicom_module, "pixel_array", forbidden)
    oversized = png(np.zeros((1, 16), np.uint8)) + b"\x00" * (django_settings.MAX_UPLOAD_BYTES + 1)
    files = [("bomb.png", SEEDS["png bomb"]), ("bomb.dcm", SEEDS["dicom bomb"]), ("huge.png", oversized)]
    response = _upload(guarded["admin"], files=files)
    assert response.status_code == 201
    errors = {e["file"]: e for e in response.json()["errors"]}
    assert set(errors) == {"bomb.png", "bomb.dcm", "huge.png"} and response.json()["imported"] == 0
    assert "pixels" in errors["bomb.png"]["error"] and "pixels" in errors["bomb.dcm"]["error"]
    assert errors["huge.png"]["code"] == "file_too_large"


@pytest.mark.django_db
def test_files_are_recognised_by_content_and_stored_re_encoded_under_a_server_chosen_name(guarded):
    files = [
        ("../../../photo.jpg", SEEDS["png"]),  # a PNG named .jpg, with a path
        ("scan.png.php", SEEDS["polyglot"]),  # a PNG with a script and a zip glued on
        ("study", SEEDS["dicom"]),  # no extension at all
        ("x-ray.png", SEEDS["text"]),  # a GIF header named .png
    ]
    response = _upload(guarded["admin"], files=files)
    assert response.status_code == 201
    body = response.json()
    assert body["imported"] == 3 and [e["file"] for e in body["errors"]] == ["x-ray.png"]
    assert "GIF" in body["errors"][0]["error"]
    stored = {r.id: r for r in Radiograph.objects.filter(pk__in=body["radiograph_ids"])}
    assert {r.kind for r in stored.values()} == {"png", "dicom"}
    assert_imported_radiographs_are_clean(body["radiograph_ids"])
    for radiograph in stored.values():
        with default_storage.open(radiograph.original.name, "rb") as fh:
            original = fh.read()
        assert original not in (SEEDS["png"], SEEDS["polyglot"], SEEDS["dicom"]), "the upload was stored as sent"
    # The DICOM copy is de-identified.
    dicom = next(r for r in stored.values() if r.kind == "dicom")
    with default_storage.open(dicom.original.name, "rb") as fh:
        ds = pydicom.dcmread(fh)
    assert ds.PatientID != "HOSTILE-1" and "Doe" not in str(ds.get("PatientName", ""))


# --- folder import (metadata.csv) ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore")
def test_folder_import_survives_mutated_files_and_metadata(guarded, tmp_path):
    counter = iter(range(10**6))

    @FUZZ
    @given(files=st.lists(st.tuples(st.sampled_from(["a.png", "b.jpg", "c.dcm", "d", "e.png"]), mutated()), max_size=3), metadata=st.none() | metadata_csv())
    def check(files, metadata):
        folder = tmp_path / f"folder{next(counter)}"
        (folder / "images").mkdir(parents=True)
        for name, data in files:
            (folder / "images" / name).write_bytes(data)
        if metadata is not None:
            (folder / "metadata.csv").write_bytes(metadata)

        def run():
            out = io.StringIO()
            try:
                call_command("import_radiographs", str(folder), "--dataset", "target", "--no-progress", stdout=out)
            except CommandError as exc:
                assert str(exc)
            else:
                report = ImportJob.objects.latest("pk").report
                assert all(e["code"] != "error" for e in report["errors"]), report["errors"]
                assert_imported_radiographs_are_clean(report["radiograph_ids"])
            assert changed_rows(guarded["before"], stored_snapshot()) == {}

        rolled_back(run)

    check()


# --- import_annotations: COCO JSON and findings CSV ------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _maybe(value, draw):
    return draw(st.one_of(st.just(value), JSON))


@st.composite
def coco(draw) -> bytes:
    """A COCO file for the target dataset's images, with any part swapped for arbitrary JSON."""
    categories = [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}, {"id": 3, "name": "Lung"}]
    images = [{"id": _maybe(i, draw), "file_name": _maybe(name, draw), "width": 200, "height": 160} for i, name in ((1, "open.png"), (2, "submitted.png"))]
    annotations = []
    for n in range(draw(st.integers(0, 4))):
        annotations.append(
            {
                "id": n,
                "image_id": _maybe(draw(st.sampled_from([1, 2, 3])), draw),
                "category_id": _maybe(draw(st.sampled_from([1, 2, 3])), draw),
                "bbox": _maybe(draw(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=4, max_size=4)), draw),
                "segmentation": _maybe([draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=6, max_size=12))], draw),
            }
        )
    document = {"images": _maybe(images, draw), "annotations": _maybe(annotations, draw), "categories": _maybe(categories, draw)}
    text = json.dumps(_maybe(document, draw) if draw(st.integers(0, 5)) == 0 else document)
    if draw(st.integers(0, 4)) == 0:
        text = draw(st.sampled_from(["[" * 100_000, "{", "\ufeff" + text, text[: len(text) // 2], '{"images": NaN}']))
    return text.encode("utf-8", errors="replace")


@st.composite
def findings(draw) -> tuple[bytes, dict[str, bytes]]:
    masks = {"m1.png": png((np.arange(160 * 200).reshape(160, 200) % 7 == 0).astype(np.uint8) * 255)}
    masks["m2.png"] = draw(mutated({"mask": masks["m1.png"], "rgb": SEEDS["jpeg"], "bomb": SEEDS["png bomb"]}))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        rows.append(
            [
                draw(st.sampled_from(["open.png", "submitted.png", "unknown.png", "../open.png", ""])),
                draw(st.sampled_from(["consolidation", "ground_glass_opacity", "left_lung", "lung", "new-thing", "bad\x00label", ""])),
                draw(st.sampled_from(["m1.png", "m2.png", "../../etc/passwd", "/etc/hostname", "missing.png", "", "."])),
            ]
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(draw(st.sampled_from([["file", "label", "mask"], ["file", "label"], ["mask"]])))
    writer.writerows(rows)
    return buffer.getvalue().encode(), masks


@pytest.mark.filterwarnings("ignore")
def test_annotation_import_survives_mutated_coco_and_findings(guarded, tmp_path):
    counter = iter(range(10**6))
    reviewed = guarded["dataset"].pk
    reviewed_before = stored_snapshot(datasets=[reviewed])

    @FUZZ
    @given(boxes=coco(), polygons=coco(), found=findings())
    def check(boxes, polygons, found):
        folder = tmp_path / f"annotations{next(counter)}"
        folder.mkdir()
        (folder / "boxes.json").write_bytes(boxes)
        (folder / "polygons.json").write_bytes(polygons)
        (folder / "findings.csv").write_bytes(found[0])
        for name, data in found[1].items():
            (folder / name).write_bytes(data)

        def run():
            for option, name in (("--lung-boxes", "boxes.json"), ("--lung-polygons", "polygons.json"), ("--findings", "findings.csv")):
                try:
                    call_command("import_annotations", "--dataset", "target", option, str(folder / name), stdout=io.StringIO())
                except CommandError as exc:
                    assert str(exc)
            # Nothing of the reviewed dataset changes; elsewhere annotations are only ever added (the
            # target's radiographs get a new version when their lungs or findings are imported).
            assert changed_rows(reviewed_before, stored_snapshot(datasets=[reviewed])) == {}
            changed = changed_rows(guarded["before"], stored_snapshot())
            assert set(changed) <= {"Radiograph"}, changed

        rolled_back(run)

    check()


# --- JSON bodies of the annotation and region endpoints -------------------------------------------

BOX = st.one_of(
    st.just(RIGHT),
    st.lists(st.one_of(st.floats(allow_nan=False), st.integers(-(2**70), 2**70), st.text(max_size=4), st.none()), min_size=0, max_size=6),
    JSON,
)
BODIES = {
    "annotation": lambda v: st.fixed_dictionaries(
        {"version": st.one_of(st.just(v), JSON), "right": BOX, "left": BOX},
        optional={"labels": st.one_of(st.just({"covid": "positive"}), JSON), "view": JSON, "submit": JSON, "extra": JSON},
    ),
    "exclude": lambda v: st.fixed_dictionaries({"version": st.one_of(st.just(v), JSON), "reason": st.one_of(st.just("unreadable"), JSON)}, optional={"note": JSON}),
    "skip": lambda v: st.fixed_dictionaries({}, optional={"reason": JSON}),
    "return": lambda v: st.fixed_dictionaries({"version": st.one_of(st.just(v), JSON), "comment": JSON}),
    "accept": lambda v: st.fixed_dictionaries({"version": st.one_of(st.just(v), JSON)}, optional={"labels": JSON, "right": BOX, "left": BOX}),
    "region": lambda v: st.fixed_dictionaries(
        {"version": st.one_of(st.just(1), JSON)},
        optional={"label": JSON, "subtype": JSON, "description": JSON, "bbox": BOX, "mask": st.one_of(st.text(max_size=20), JSON), "status": JSON},
    ),
    "add region": lambda v: st.fixed_dictionaries(
        {"label": st.one_of(st.just("consolidation"), JSON), "bbox": BOX, "mask": st.one_of(st.just("iVBORw0KGgo="), st.text(max_size=30), JSON)},
        optional={"subtype": JSON, "description": JSON},
    ),
    "decision": lambda v: st.one_of(st.fixed_dictionaries({"version": st.one_of(st.just(1), JSON)}), JSON),
    "queue": lambda v: st.one_of(st.fixed_dictionaries({}, optional={"dataset": JSON, "order": JSON}), JSON),
}


def _request(guarded, endpoint: str, body, raw: bytes | None = None):
    client = guarded["radiologist"]
    open_id, submitted_id, region_id = guarded["open"].id, guarded["submitted"].id, guarded["target_region"].id
    method, path = {
        "annotation": ("put", f"/api/radiographs/{open_id}/annotation/"),
        "exclude": ("post", f"/api/radiographs/{open_id}/exclude/"),
        "skip": ("post", f"/api/radiographs/{open_id}/skip/"),
        "return": ("post", f"/api/radiographs/{submitted_id}/return/"),
        "accept": ("post", f"/api/radiographs/{submitted_id}/accept/"),
        "region": ("patch", f"/api/regions/{region_id}/"),
        "add region": ("post", f"/api/radiographs/{submitted_id}/regions/"),
        "decision": ("post", f"/api/regions/{region_id}/accept/"),
        "queue": ("post", "/api/queue/annotate/next/"),  # nothing of the reviewed work is in it
    }[endpoint]
    data = raw if raw is not None else json.dumps(body)
    return getattr(client, method)(path, data, content_type="application/json")


@pytest.mark.parametrize("endpoint", sorted(BODIES))
def test_json_bodies_never_break_an_endpoint_or_other_work(guarded, endpoint):
    reviewed = guarded["dataset"].pk
    reviewed_before = stored_snapshot(datasets=[reviewed])
    version = {"return": guarded["submitted"].version, "accept": guarded["submitted"].version}.get(endpoint, guarded["open"].version)

    @settings(FUZZ, max_examples=15)
    @given(body=BODIES[endpoint](version))
    def check(body):
        def run():
            response = _request(guarded, endpoint, body)
            assert response.status_code < 500, (body, response.content[:300])
            assert response.status_code in (200, 201, 204, 400, 403, 404, 409, 428), (body, response.status_code)
            if response.status_code >= 400:
                assert response.json()["code"] and response.json()["detail"]
                assert changed_rows(guarded["before"], stored_snapshot()) == {}, body
            else:
                assert changed_rows(reviewed_before, stored_snapshot(datasets=[reviewed])) == {}, body

        rolled_back(run)

    check()


RAW_BODIES = [
    b"[" * 100_000,
    b'{"version": NaN}',
    b'{"version": 1e999999}',
    b"\xff\xfe\x00garbage",
    b'{"version": 1, "right": [1, 2, 3, 4]' + b" " * 10,
    b'"just a string"',
    b"null",
    b'{"version": ' + b"9" * 5000 + b"}",
    b'{"labels": {"covid": {"$gt": ""}}, "version": 1}',
    b'{"a": "' + b"x" * (11 * 1024 * 1024) + b'"}',  # over DATA_UPLOAD_MAX_MEMORY_SIZE
]


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["annotation", "accept", "region", "add region", "queue"])
def test_malformed_json_is_a_clear_client_error(guarded, endpoint):
    reviewed = guarded["dataset"].pk
    reviewed_before = stored_snapshot(datasets=[reviewed])
    for raw in RAW_BODIES:
        response = rolled_back(lambda: _request(guarded, endpoint, None, raw=raw))
        assert response.status_code < 500, (raw[:40], response.status_code, response.content[:200])
        if response.status_code >= 400:
            assert response.json()["code"] and response.json()["detail"]
    assert _request(guarded, endpoint, None, raw=RAW_BODIES[0]).status_code == 400  # nested 100 000 deep
    assert _request(guarded, endpoint, None, raw=RAW_BODIES[-1]).status_code == 413  # over the body size limit
    assert changed_rows(reviewed_before, stored_snapshot(datasets=[reviewed])) == {}
