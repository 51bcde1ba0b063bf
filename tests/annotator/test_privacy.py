"""Patient privacy at import: burned-in text, file names shown per role, and the import audit trail."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pydicom
import pytest
from django.core.management import call_command
from django.test import Client

from annotator.constants import ExclusionReason, State
from annotator.models import ImportJob, Radiograph, ReviewEvent

from .dicom_markers import to_bytes
from .test_deidentify import rsna_path  # noqa: F401
from .test_import import _png

IDENTIFYING_NAME = "SURNAME_GIVEN_MRN12345_19450317.png"


def _dicom(path, *, burned_in: str | None) -> bytes:
    ds = pydicom.dcmread(path)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return to_bytes(ds)


def _upload(client, dataset: str, files: dict[str, bytes], **fields):
    handles = []
    for name, data in files.items():
        handle = io.BytesIO(data)
        handle.name = name
        handles.append(handle)
    response = client.post("/api/imports/", {"dataset": dataset, "files": handles, **fields}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_burned_in_annotation_yes_is_excluded_unless_the_admin_opts_in(rsna_path, client_for, admin_user):
    data = _dicom(rsna_path, burned_in="YES")
    client = client_for(admin_user)

    report = _upload(client, "burned", {"scan.dcm": data})
    assert report["imported"] == 0 and [e["reason"] for e in report["excluded"]] == ["burned_in_text"]
    radiograph = Radiograph.objects.get(dataset__name="burned")
    assert (radiograph.state, radiograph.excluded_reason) == (State.EXCLUDED, ExclusionReason.BURNED_IN_TEXT)
    assert radiograph.get_excluded_reason_display() == "Burned-in text"
    assert ReviewEvent.objects.get(radiograph=radiograph).data["reason"] == "burned_in_text"
    assert not Radiograph.objects.filter(dataset__name="burned", state__in=["imported", "preannotated"]).exists()  # not queued

    opted_in = _upload(client, "burned-ok", {"scan.dcm": data}, allow_burned_in="true")
    assert opted_in["imported"] == 1 and opted_in["excluded"] == []
    assert Radiograph.objects.get(pk=opted_in["radiograph_ids"][0]).state == State.IMPORTED
    bad_flag = client.post("/api/imports/", {"dataset": "x", "files": [io.BytesIO(data)], "allow_burned_in": "perhaps"}, format="multipart")
    assert bad_flag.status_code == 400 and not Radiograph.objects.filter(dataset__name="x").exists()


@pytest.mark.django_db
def test_secondary_captures_that_do_not_say_no_are_excluded_where_the_setting_says(rsna_path, client_for, admin_user, settings):
    # The RSNA sample is a secondary capture (Conversion Type WSD) without Burned In Annotation.
    unknown, said_no = _dicom(rsna_path, burned_in=None), _dicom(rsna_path, burned_in="NO")
    client = client_for(admin_user)
    report = _upload(client, "captures", {"unknown.dcm": unknown, "no.dcm": said_no})
    assert report["imported"] == 1 and [e["reason"] for e in report["excluded"]] == ["burned_in_text"]
    assert [e["file"] for e in report["excluded"]] == ["unknown.dcm"]  # the uploader sees which of their files

    settings.BURNED_IN_EXCLUDE_SECONDARY_CAPTURE = False
    assert _upload(client, "captures-allowed", {"unknown.dcm": unknown})["imported"] == 1


@pytest.mark.django_db
def test_import_command_takes_the_opt_in(rsna_path, tmp_path):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "scan.dcm").write_bytes(_dicom(rsna_path, burned_in="YES"))
    call_command("import_radiographs", str(tmp_path), dataset="cmd-default", no_progress=True, stdout=io.StringIO())
    call_command("import_radiographs", str(tmp_path), dataset="cmd-opt-in", allow_burned_in=True, no_progress=True, stdout=io.StringIO())
    assert Radiograph.objects.get(dataset__name="cmd-default").excluded_reason == "burned_in_text"
    assert Radiograph.objects.get(dataset__name="cmd-opt-in").state == State.IMPORTED


@pytest.mark.django_db
def test_import_events_record_the_file_by_its_content_not_a_label_name(client_for, admin_user):
    data = _png(40, 30)
    archive = io.BytesIO()

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(IDENTIFYING_NAME, data)
        zf.writestr("metadata.csv", f"file,view,finding\n{IDENTIFYING_NAME},PA,COVID-19\n")
    archive.seek(0)
    archive.name = "batch.zip"
    response = client_for(admin_user).post("/api/imports/", {"dataset": "audit", "archive": archive}, format="multipart")
    assert response.status_code == 201 and response.json()["imported"] == 1, response.content
    event = ReviewEvent.objects.get(radiograph__dataset__name="audit", action="imported")
    assert event.data == {"sha256": hashlib.sha256(data).hexdigest()}
    assert "other_disease" not in json.dumps(event.data) and "MRN12345" not in json.dumps(event.data)


@pytest.mark.django_db
def test_everyone_sees_a_display_name_and_admins_the_file_name_only_where_kept(make_user, client_for, settings):
    admin, annotator, radiologist = make_user("admin"), make_user("annotator"), make_user("radiologist")
    report = _upload(client_for(admin), "names", {IDENTIFYING_NAME: _png(48, 40), "bad.png": b"not an image"})
    radiograph = Radiograph.objects.get(pk=report["radiograph_ids"][0])
    assert radiograph.display_name == f"names #{radiograph.id}" and radiograph.source_name == ""
    stored_report = json.dumps(ImportJob.objects.get(dataset__name="names").report)
    assert "bad.png" not in stored_report and "file 2" in stored_report  # numbered, not named

    def shown(user) -> str:
        browser = Client()
        browser.force_login(user)
        pages = ["/radiographs/?dataset=names", f"/radiographs/{radiograph.id}/", f"/annotate/{radiograph.id}/"]
        api = client_for(user)
        listed = api.get("/api/radiographs/?dataset=names").json()["results"]
        detail = api.get(f"/api/radiographs/{radiograph.id}/").json()
        assert listed[0]["name"] == detail["name"] == radiograph.display_name
        return "\n".join([*(browser.get(url).content.decode() for url in pages), json.dumps(listed), json.dumps(detail)])

    for user in (annotator, radiologist, admin):
        text = shown(user)
        assert radiograph.display_name in text
        assert "MRN12345" not in text and "SURNAME" not in text, user

    # Where the setting keeps names, admins (and only admins) see the uploaded one.
    settings.KEEP_SOURCE_NAMES = True
    kept = _upload(client_for(admin), "names", {IDENTIFYING_NAME.replace(".png", "-2.png"): _png(50, 40)})
    kept_radiograph = Radiograph.objects.get(pk=kept["radiograph_ids"][0])
    assert kept_radiograph.source_name == IDENTIFYING_NAME.replace(".png", "-2.png")
    assert "MRN12345" in shown(admin)
    assert client_for(admin).get(f"/api/radiographs/{kept_radiograph.id}/").json()["source_name"] == kept_radiograph.source_name
    for user in (annotator, radiologist):
        assert "MRN12345" not in shown(user)
        assert client_for(user).get(f"/api/radiographs/{kept_radiograph.id}/").json()["source_name"] == ""
