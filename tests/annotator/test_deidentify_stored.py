"""De-identification end to end: a DICOM with a marker in every text-like attribute of the data
dictionary, uploaded under an identifying file name through the import API, leaves no trace in any
database row, any stored file, any page or API answer (as each role), or an export."""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from annotator.constants import State
from annotator.models import Radiograph
from annotator.services.exports import export_build, export_create

from .dicom_markers import FILE_NAME, PATIENT_ID, found_markers, marked_dataset, to_bytes
from .export_factories import lungs_save
from .test_deidentify import all_uids, rsna_path  # noqa: F401


def _database_markers() -> dict[str, set[str]]:
    """Markers found in any column of any table, each row read as JSON text."""
    found: dict[str, set[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 (names from the catalogue)
            hits = set().union(*(found_markers(row[0]) for row in cursor.fetchall()))
            if hits:
                found[table] = hits
    return found


def _media_markers(since: float) -> dict[str, set[str]]:
    """Markers in any file written under MEDIA_ROOT since ``since`` (zip members read unpacked)."""
    found: dict[str, set[str]] = {}
    for path in Path(settings.MEDIA_ROOT).rglob("*"):
        if path.is_file() and path.stat().st_mtime >= since:
            hits = found_markers(path.read_bytes()) | found_markers(str(path))
            if hits:
                found[str(path)] = hits
    return found


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _zip_markers(data: bytes) -> tuple[set[str], list[str]]:
    """Markers in the members of a zip (and their names), and the names."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        return set().union(*(found_markers(archive.read(n)) | found_markers(n) for n in names)), names


@pytest.mark.django_db
def test_no_marker_reaches_the_database_files_pages_api_or_exports(rsna_path, make_user, client_for):
    since = time.time() - 1
    marked = marked_dataset(rsna_path)
    upload = io.BytesIO(to_bytes(marked))
    upload.name = FILE_NAME
    assert len(found_markers(upload.getvalue())) >= 6
    admin, annotator, radiologist = make_user("admin"), make_user("annotator"), make_user("radiologist")

    response = client_for(admin).post("/api/imports/", {"dataset": "deid", "files": [upload]}, format="multipart")
    assert response.status_code == 201 and response.json()["imported"] == 1, response.content
    radiograph = Radiograph.objects.get(pk=response.json()["radiograph_ids"][0])
    assert radiograph.kind == "dicom" and radiograph.state == State.IMPORTED
    assert radiograph.display_name == f"deid #{radiograph.id}"

    answers: dict[str, bytes] = {}
    pages = ["/", "/radiographs/", f"/radiographs/{radiograph.id}/", "/annotate/", f"/annotate/{radiograph.id}/", "/review/"]
    apis = ["/api/radiographs/", f"/api/radiographs/{radiograph.id}/", f"/api/radiographs/{radiograph.id}/events/",
            f"/api/radiographs/{radiograph.id}/regions/", "/api/datasets/"]
    apis += [f"/api/radiographs/{radiograph.id}/image/{kind}" for kind in ("preview", "display", "pixels")]
    for user in (annotator, radiologist, admin):
        browser = Client()
        browser.force_login(user)
        for url in pages + (["/manage/", "/manage/import/"] if user is admin else []):
            answers[f"{user.username} {url}"] = _body(browser.get(url))
        for url in apis:
            answers[f"{user.username} {url}"] = _body(client_for(user).get(url))
    answers["original"] = _body(client_for(admin).post(f"/api/radiographs/{radiograph.id}/image/original"))
    assert answers["original"].startswith(b"\0" * 128 + b"DICM")
    # The review workspace once the lungs are done, and an export of the accepted radiograph.
    Radiograph.objects.filter(pk=radiograph.pk).update(state=State.LUNGS_DONE)
    browser = Client()
    browser.force_login(radiologist)
    answers["review workspace"] = _body(browser.get(f"/review/{radiograph.id}/"))
    lungs_save(radiograph, right=(100, 100, 400, 900), left=(600, 100, 900, 900))
    Radiograph.objects.filter(pk=radiograph.pk).update(state=State.ACCEPTED, findings_complete=True)
    snapshot = export_create(user=admin, datasets=["deid"], options={}, enqueue=False)
    export_build(export_id=snapshot.id)
    download = client_for(admin).post(f"/api/exports/{snapshot.id}/download/")
    assert download.status_code == 200
    exported, members = _zip_markers(_body(download))
    assert any(name.endswith(f"images/{radiograph.id}.png") for name in members), members  # it was exported
    for user in (annotator, radiologist, admin):  # the pages really showed the radiograph, by its display name
        assert radiograph.display_name.encode() in answers[f"{user.username} /radiographs/"]

    leaks = {name: found_markers(body) for name, body in answers.items() if found_markers(body)}
    assert leaks == {}
    assert exported == set()
    assert _database_markers() == {}
    assert _media_markers(since) == {}
    everything = b"".join(answers.values()).decode("latin-1")
    assert PATIENT_ID not in everything
    assert not [uid for uid in all_uids(marked) if uid in everything]
