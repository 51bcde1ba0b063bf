"""Shared fixtures: users per role, API clients, the real sample data and a session-wide import of it."""
from __future__ import annotations

import os
from pathlib import Path

import factory
import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery-staple"
SAMPLE = Path(os.environ.get("LUNGMARK_SAMPLE_DATA", REPO.parent / "shared" / "data" / "cxr-sample"))


def pytest_report_header(config):
    return f"sample data: {SAMPLE} ({'present' if SAMPLE.is_dir() else 'missing'})"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])


@pytest.fixture
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("sample data not available")
    return SAMPLE


@pytest.fixture
def make_user(db):
    def make(role: str | None = None, **kwargs):
        return UserFactory(role=role, **kwargs)

    return make


@pytest.fixture
def annotator(make_user):
    return make_user("annotator", username="ann1")


@pytest.fixture
def radiologist(make_user):
    return make_user("radiologist", username="rad1")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin", username="admin1")


def _client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def client_for():
    return _client_for


@pytest.fixture(scope="session")
def sample_import(django_db_setup, django_db_blocker):
    """The real sample imported once per session (radiographs + annotations) into dataset ``sample``.

    Tests that only read it share it; their own changes are rolled back by the ``db`` fixture.
    Tests that need a real worker (transactional) run last and import what they need themselves.
    """
    if not SAMPLE.is_dir():
        pytest.skip("sample data not available")
    from annotator.services.annotation_import import findings_import, lung_boxes_import, lung_polygons_import
    from annotator.services.imports import dataset_get_or_create, folder_sources, radiographs_import

    with django_db_blocker.unblock():
        dataset = dataset_get_or_create(name="sample")
        sources, metadata = folder_sources(SAMPLE)
        report = radiographs_import(dataset=dataset, sources=sources, metadata=metadata)
        annotations = {
            "lung_boxes": lung_boxes_import(dataset=dataset, path=SAMPLE / "annotations" / "lung_boxes.json"),
            "lung_polygons": lung_polygons_import(dataset=dataset, path=SAMPLE / "annotations" / "lung_polygons.json"),
            "findings": findings_import(dataset=dataset, path=SAMPLE / "annotations" / "findings.csv"),
        }
    return {"dataset": dataset, "report": report, "annotations": annotations}
