"""Fixtures of the trust tests: token clients, a stored body of reviewed work to protect, and a
snapshot of every annotation row (and stored file) to prove that nothing already stored changed."""
from __future__ import annotations

import hashlib
import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.annotator.factories import DatasetFactory, RadiographFactory, region_for

RIGHT = [10, 20, 90, 140]
LEFT = [110, 20, 190, 140]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Users are made by the dozen here; Argon2's deliberate cost is tested in test_security."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token_client(user) -> APIClient:
    """An API client that authenticates like a script does: ``Authorization: Token ...``."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _annotator_tables():
    from annotator.models import (
        AuditLog,
        Dataset,
        FindingRegion,
        FindingRegionRevision,
        LungAnnotation,
        Radiograph,
        ReviewEvent,
        Subject,
    )

    return [Dataset, Subject, Radiograph, LungAnnotation, FindingRegion, FindingRegionRevision, ReviewEvent, AuditLog]


def _row_digest(row: tuple) -> str:
    return hashlib.sha256(json.dumps(row, default=lambda v: bytes(v).hex() if isinstance(v, (bytes, memoryview)) else str(v)).encode()).hexdigest()


# How each table reaches its dataset, to snapshot one dataset's rows only.
_DATASET_PATH = {
    "Dataset": "pk",
    "Subject": "dataset_id",
    "Radiograph": "dataset_id",
    "LungAnnotation": "radiograph__dataset_id",
    "FindingRegion": "radiograph__dataset_id",
    "FindingRegionRevision": "region__radiograph__dataset_id",
    "ReviewEvent": "radiograph__dataset_id",
}


def stored_snapshot(datasets: list[int] | None = None) -> dict[str, dict[int, str]]:
    """A digest of every row of the annotation tables, and of every stored radiograph file, by id
    (only the rows of ``datasets`` when given)."""
    from django.core.files.storage import default_storage

    from annotator.models import Radiograph

    snapshot: dict[str, dict[int, str]] = {}
    for model in _annotator_tables():
        names = [f.attname for f in model._meta.concrete_fields]
        rows = model.objects.order_by("pk")
        if datasets is not None:
            if model.__name__ not in _DATASET_PATH:
                continue
            rows = rows.filter(**{f"{_DATASET_PATH[model.__name__]}__in": datasets})
        snapshot[model.__name__] = {row[0]: _row_digest(row) for row in rows.values_list("pk", *names)}
    files: dict[int, str] = {}
    radiographs = Radiograph.objects.order_by("pk")
    if datasets is not None:
        radiographs = radiographs.filter(dataset_id__in=datasets)
    for radiograph in radiographs:
        digest = hashlib.sha256()
        for field in (radiograph.original, radiograph.display, radiograph.preview, radiograph.pixels):
            if field and default_storage.exists(field.name):
                with default_storage.open(field.name, "rb") as fh:
                    digest.update(fh.read())
        files[radiograph.pk] = digest.hexdigest()
    snapshot["files"] = files
    return snapshot


def changed_rows(before: dict[str, dict[int, str]], after: dict[str, dict[int, str]]) -> dict[str, list[int]]:
    """Rows (and files) that existed before and are now different or gone; new rows are not changes."""
    changed = {}
    for table, rows in before.items():
        now = after.get(table, {})
        bad = [pk for pk, digest in rows.items() if now.get(pk) != digest]
        if bad:
            changed[table] = bad
    return changed


@pytest.fixture
def reviewed_work(make_user):
    """A dataset of reviewed work: one radiograph accepted by a radiologist (lungs, labels, an
    accepted region with an edit history), one submitted and waiting for review."""
    from annotator.models import Radiograph

    annotator = make_user("annotator", username="keeper-ann")
    radiologist = make_user("radiologist", username="keeper-rad")
    dataset = DatasetFactory(name="reviewed")
    accepted = RadiographFactory(dataset=dataset)
    waiting = RadiographFactory(dataset=dataset)
    ann, rad = token_client(annotator), token_client(radiologist)
    for radiograph in (accepted, waiting):
        response = ann.put(
            f"/api/radiographs/{radiograph.id}/annotation/",
            {"version": radiograph.version, "right": RIGHT, "left": LEFT, "labels": {"covid": "positive"}, "submit": True},
            format="json",
        )
        assert response.status_code == 200, response.content
    region = region_for(accepted)
    assert rad.post(f"/api/regions/{region.id}/accept/", {"version": 1}, format="json").status_code == 200
    accepted.refresh_from_db()
    response = rad.post(f"/api/radiographs/{accepted.id}/accept/", {"version": accepted.version}, format="json")
    assert response.status_code == 200, response.content
    accepted.refresh_from_db()
    waiting.refresh_from_db()
    assert accepted.state == "accepted" and waiting.state == "lungs_done"
    return {
        "dataset": dataset,
        "accepted": accepted,
        "waiting": waiting,
        "region": region,
        "annotator": annotator,
        "radiologist": radiologist,
        "ids": list(Radiograph.objects.filter(dataset=dataset).values_list("pk", flat=True)),
    }
