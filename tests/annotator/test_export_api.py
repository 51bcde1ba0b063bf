"""The export API and commands: admin-only requests that run as a task, progress, streamed zip download."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command

from annotator import tasks
from annotator.models import AuditLog, ExportSnapshot

from .export_factories import DatasetFactory, RadiographFactory, blob, lungs_save, region_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset():
    dataset = DatasetFactory()
    for i in range(3):
        radiograph = RadiographFactory(dataset=dataset, findings_complete=i == 0, width=80 + i, height=60)
        lungs_save(radiograph)
        if i == 0:
            region_save(radiograph, blob(60, 80, 10, 30, 10, 30))
    return dataset


@pytest.mark.parametrize("role", [None, "annotator", "radiologist"])
def test_only_admins_reach_exports(role, make_user, client_for, dataset, admin_user):
    snapshot = ExportSnapshot.objects.create(options={})
    client = client_for(make_user(role, username=f"u-{role}") if role else None)
    responses = [
        client.get("/api/exports/"),
        client.post("/api/exports/", {"datasets": [dataset.name]}, format="json"),
        client.get(f"/api/exports/{snapshot.id}/"),
        client.post(f"/api/exports/{snapshot.id}/download/"),
    ]
    if role is None:
        assert all(r.status_code in (401, 403) and r.json()["code"] == "not_authenticated" for r in responses)
    else:
        assert all(r.status_code == 403 and r.json()["code"] == "not_allowed" for r in responses)
    assert ExportSnapshot.objects.count() == 1


def test_admin_requests_an_export_follows_it_and_downloads_it(client_for, admin_user, dataset, django_capture_on_commit_callbacks):
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/api/exports/", {"datasets": [dataset.name], "lung_masks": "outlines"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["status"], body["datasets"], body["options"]["lung_masks"], body["download"]) == ("pending", [dataset.name], "outlines", None)
    assert len(callbacks) == 1  # the task is enqueued once the request is committed

    duplicate = client.post("/api/exports/", {"datasets": [dataset.name], "lung_masks": "outlines"}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "conflict"
    early = client.post(f"/api/exports/{body['id']}/download/")
    assert early.status_code == 409 and early.json()["code"] == "invalid_transition"

    tasks.export_build(body["id"])  # what the worker runs
    detail = client.get(f"/api/exports/{body['id']}/").json()
    assert (detail["status"], detail["progress"], detail["counts"]["images"]) == ("done", 1.0, 3)
    assert detail["download"] == f"/api/exports/{body['id']}/download/"
    assert [e["id"] for e in client.get("/api/exports/").json()["results"]] == [body["id"]]

    assert client.get(detail["download"]).status_code == 405  # downloads are POSTs
    download = client.post(detail["download"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert download.streaming
    chunks = list(download.streaming_content)
    assert len(chunks) > 1  # produced piece by piece, not built in memory first
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    prefix = f"lungmark-export-{body['id']}/"
    manifest = json.loads(archive.read(prefix + "manifest.json"))
    assert hashlib.sha256(archive.read(prefix + "manifest.json")).hexdigest() == detail["manifest_sha256"]
    names = {n.removeprefix(prefix) for n in archive.namelist()}
    assert names == set(manifest["files"]) | {"manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256(archive.read(prefix + rel)).hexdigest() == digest

    actions = set(AuditLog.objects.filter(target=f"export:{body['id']}").values_list("action", flat=True))
    assert actions == {"export_requested", "export_created", "export_downloaded"}


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({}, 400, "invalid_input"),
        ({"datasets": []}, 400, "invalid_input"),
        ({"datasets": "x"}, 400, "invalid_input"),
        ({"datasets": ["no-such-dataset"]}, 404, "not_found"),
        ({"datasets": ["DATASET"], "lung_masks": "polygons"}, 400, "invalid_input"),
        ({"datasets": ["DATASET"], "seed": -3}, 400, "invalid_input"),
        ({"datasets": ["DATASET"], "reviewed_only": "perhaps"}, 400, "invalid_input"),
    ],
)
def test_bad_export_requests_get_a_clear_error(payload, status, code, client_for, admin_user, dataset):
    if payload.get("datasets") and payload["datasets"] != "x" and "DATASET" in payload["datasets"]:
        payload = {**payload, "datasets": [dataset.name]}
    response = client_for(admin_user).post("/api/exports/", payload, format="json")
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["detail"]
    assert ExportSnapshot.objects.count() == 0


def test_a_failed_export_shows_why(client_for, admin_user):
    empty = DatasetFactory()
    client = client_for(admin_user)
    created = client.post("/api/exports/", {"datasets": [empty.name]}, format="json").json()
    tasks.export_build(created["id"])  # a domain failure is recorded, not raised into the worker
    detail = client.get(f"/api/exports/{created['id']}/").json()
    assert detail["status"] == "failed" and "no ground truth" in detail["error"]
    assert client.get("/api/exports/999999/").status_code == 404


def test_export_masks_command_writes_a_sound_snapshot(dataset, tmp_path, capsys):
    out = tmp_path / "snapshot"
    call_command("export_masks", "--dataset", dataset.name, "--out", str(out))
    printed = capsys.readouterr().out
    assert "3 images" in printed and "manifest sha256" in printed
    call_command("verify_export", str(out))
    assert "sound" in capsys.readouterr().out
    snapshot = ExportSnapshot.objects.get()
    assert snapshot.status == "done" and snapshot.created_by is None and snapshot.path == str(out.resolve())
    assert AuditLog.objects.filter(action="export_created", target=f"export:{snapshot.id}").exists()
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_masks", "--dataset", dataset.name, "--out", str(out))
    with pytest.raises(CommandError, match="no-such"):
        call_command("export_masks", "--dataset", "no-such", "--out", str(tmp_path / "other"))


def test_admin_pages_create_and_download_an_export(make_user, dataset, django_capture_on_commit_callbacks):
    from django.test import Client

    admin = make_user(None, username="site-admin", is_staff=True, is_superuser=True)  # Django admin: superusers
    client = Client()
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/annotator/dataset/", {"action": "export_datasets", "_selected_action": [dataset.pk]}, follow=True
        )
    assert response.status_code == 200 and len(callbacks) == 1
    snapshot = ExportSnapshot.objects.get()
    assert f"Export {snapshot.id} is queued" in response.content.decode()
    tasks.export_build(snapshot.id)
    assert client.get("/admin/annotator/exportsnapshot/").status_code == 200
    download = client.post("/admin/annotator/exportsnapshot/", {"action": "download_export", "_selected_action": [snapshot.pk]})
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert f"lungmark-export-{snapshot.id}/labels.csv" in archive.namelist()


def test_any_json_body_gets_an_answer_never_a_server_error(client_for, admin_user, dataset):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client = client_for(admin_user)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
    anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
    bodies = st.one_of(
        anything,
        st.fixed_dictionaries(
            {"datasets": st.one_of(st.just([dataset.name]), st.lists(st.one_of(st.just(dataset.name), st.text(max_size=110)), max_size=3), anything)},
            optional={"lung_masks": st.one_of(st.sampled_from(["boxes", "outlines"]), anything), "reviewed_only": anything, "seed": anything, "extra": anything},
        ),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies)
    def check(body):
        response = client.post("/api/exports/", body, format="json")
        assert response.status_code in (202, 400, 404, 409), (body, response.status_code)
        assert response.status_code == 202 or (response.json()["code"] and response.json()["detail"])

    check()
