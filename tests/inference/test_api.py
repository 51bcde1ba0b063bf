"""The inference API: who may do what, and what the admin page reads (models, runs, progress)."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotator.constants import State
from inference.models import ModelVersion, TrainingRun
from tests.annotator.factories import RadiographFactory

pytestmark = pytest.mark.django_db

WRITES = [
    ("post", "/api/models/{mv}/activate/"),
    ("post", "/api/models/rollback/"),
    ("post", "/api/models/"),
    ("post", "/api/training-runs/"),
    ("post", "/api/preannotations/"),
    ("post", "/api/radiographs/{r}/preannotate/"),
]
READS = ["/api/models/", "/api/models/{mv}/", "/api/training-runs/", "/api/preannotations/"]


@pytest.fixture
def ids(register, checkpoints):
    mv = register(checkpoints["random"], name="r")
    return {"mv": mv.pk, "r": RadiographFactory(state=State.IMPORTED).pk}


@pytest.mark.parametrize("method, url", WRITES)
@pytest.mark.parametrize("role", ["annotator", "radiologist"])
def test_only_admins_change_models_training_or_preannotation(client_for, make_user, ids, role, method, url):
    response = getattr(client_for(make_user(role)), method)(url.format(**ids), {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "not_allowed"
    assert not ModelVersion.objects.filter(is_active=True).exists()
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("url", READS)
def test_everyone_signed_in_can_read_and_anonymous_cannot(client_for, annotator, ids, url):
    assert client_for(annotator).get(url.format(**ids)).status_code == 200
    assert client_for(None).get(url.format(**ids)).status_code in (401, 403)


def test_admin_uploads_activates_and_rolls_back(client_for, admin_user, checkpoints):
    client = client_for(admin_user)
    first = client.post("/api/models/", {"file": SimpleUploadedFile("a.pt", checkpoints["random"].read_bytes()), "name": "a", "activate": "true"}, format="multipart")
    assert first.status_code == 201, first.json()
    assert first.json()["is_active"] is True
    second = client.post("/api/models/", {"file": SimpleUploadedFile("b.pt", checkpoints["other"].read_bytes()), "name": "b"}, format="multipart")
    assert second.status_code == 201 and second.json()["is_active"] is False

    activated = client.post(f"/api/models/{second.json()['id']}/activate/", {"preannotate": False}, format="json")
    assert activated.status_code == 200
    assert activated.json()["is_active"] is True and activated.json()["previous"]["name"] == "a"
    listed = {m["name"]: m["is_active"] for m in client.get("/api/models/").json()}
    assert listed == {"a": False, "b": True}

    rolled = client.post("/api/models/rollback/", {}, format="json")
    assert rolled.status_code == 200 and rolled.json()["name"] == "a"
    again = client.post("/api/models/rollback/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_bad_uploads_get_clear_errors_not_500(client_for, admin_user, checkpoints):
    client = client_for(admin_user)
    bad = client.post("/api/models/", {"file": SimpleUploadedFile("x.pt", b"\x00garbage")}, format="multipart")
    assert bad.status_code == 400 and "not a loadable PyTorch checkpoint" in bad.json()["detail"]
    missing = client.post("/api/models/", {"name": "x"}, format="multipart")
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_input"
    client.post("/api/models/", {"file": SimpleUploadedFile("a.pt", checkpoints["random"].read_bytes())}, format="multipart")
    duplicate = client.post("/api/models/", {"file": SimpleUploadedFile("a.pt", checkpoints["random"].read_bytes())}, format="multipart")
    assert duplicate.status_code == 409
    assert client.post("/api/models/999999/activate/", {}, format="json").status_code == 404


def test_a_second_training_request_is_refused_with_409(client_for, admin_user):
    client = client_for(admin_user)
    first = client.post("/api/training-runs/", {"epochs": 1}, format="json")
    assert first.status_code == 201 and first.json()["status"] == "queued" and first.json()["config"]["overrides"]["epochs"] == 1
    second = client.post("/api/training-runs/", {}, format="json")
    assert second.status_code == 409 and second.json()["training_run"] == first.json()["id"]
    detail = client.get(f"/api/training-runs/{first.json()['id']}/").json()
    assert {"progress", "history", "log", "decision"} <= set(detail)


def test_bad_training_settings_are_refused(client_for, admin_user):
    response = client_for(admin_user).post("/api/training-runs/", {"image_size": 100}, format="json")
    assert response.status_code == 400 and "multiple of 32" in response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_on_demand_preannotation_needs_an_active_model_and_reports_progress(client_for, admin_user, register, checkpoints):
    client = client_for(admin_user)
    radiograph = RadiographFactory(state=State.IMPORTED)
    none_active = client.post(f"/api/radiographs/{radiograph.pk}/preannotate/")
    assert none_active.status_code == 409 and "no active model" in none_active.json()["detail"]

    register(checkpoints["random"], name="r", activate=True)
    response = client.post("/api/preannotations/", {"dataset": radiograph.dataset.name}, format="json")
    assert response.status_code == 202
    batch = response.json()
    assert batch["progress"]["total"] == 1 and batch["progress"]["queued"] == 1 and batch["progress"]["complete"] is False
    assert client.get(f"/api/preannotations/{batch['id']}/").json()["progress"]["total"] == 1

    assert client.post("/api/preannotations/", {"dataset": "nope"}, format="json").status_code == 400
    assert client.post("/api/preannotations/", {"radiograph_ids": [987654]}, format="json").status_code == 400
    assert client.post("/api/preannotations/", {}, format="json").status_code == 400
    assert client.post("/api/radiographs/987654/preannotate/").status_code == 404
