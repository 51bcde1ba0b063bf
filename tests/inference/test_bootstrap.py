"""The first model trains by itself: with no active model and enough annotated radiographs, the
bootstrap run trains on a real worker, is promoted (nothing to compare with) and the radiographs
nobody has finished get suggestions. Tiny preset overrides keep it to seconds."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from annotator.models import Radiograph
from annotator.services.annotation_import import lung_boxes_import
from inference.models import ModelVersion, Prediction, TrainingRun
from inference.services import training_bootstrap_if_due
from tests.conftest import SAMPLE
from tests.inference.conftest import import_files, small_sample_images
from tests.inference.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

TINY = {"epochs": 2, "width": 0.0625, "image_size": 64, "batch_size": 4, "lr": 1e-3}


@pytest.fixture
def annotated(transactional_db):
    """Eight small sample radiographs with the sample's lung boxes, and two without annotations."""
    from annotator.models import Dataset

    Radiograph.objects.all().delete()  # data other tests committed
    boxed = small_sample_images(8, lung_boxes_only=True)
    report = import_files(boxed, dataset="boxed")
    lung_boxes_import(dataset=Dataset.objects.get(name="boxed"), path=SAMPLE / "annotations" / "lung_boxes.json")
    others = [p for p in small_sample_images(30) if p not in boxed][:2]
    open_ids = import_files(others, dataset="open").radiograph_ids
    return report.radiograph_ids, open_ids


def test_no_bootstrap_below_the_threshold_or_with_an_active_model(annotated, register, checkpoints):
    with override_settings(BOOTSTRAP_MIN_ANNOTATED=9):
        assert training_bootstrap_if_due() is None  # 8 annotated radiographs, 9 needed
    register(checkpoints["plumbing"], name="given", activate=True)
    with override_settings(BOOTSTRAP_MIN_ANNOTATED=1):
        assert training_bootstrap_if_due() is None
    assert not TrainingRun.objects.exists()


def test_the_first_model_trains_by_itself_is_promoted_and_preannotates(annotated, celery_worker, admin_user):
    boxed_ids, open_ids = annotated
    worker = celery_worker()  # the run carries its preset and overrides
    out = io.StringIO()
    with override_settings(BOOTSTRAP_MIN_ANNOTATED=5, BOOTSTRAP_TRAINING_OVERRIDES=TINY):
        call_command("training_bootstrap", stdout=out)
    run = TrainingRun.objects.get()
    assert run.trigger == "bootstrap" and run.config["images"] == len(boxed_ids)
    assert f"training the first one (run #{run.pk}, preset {run.config['preset']}" in out.getvalue()

    # The dashboard follows it.
    page = Client()
    page.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    assert f"Run #{run.pk}</a> (bootstrap, preset {run.config['preset']})" in page.get("/manage/").content.decode()

    run = wait_for(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(), timeout=300, what="the bootstrap run", worker=worker
    )
    assert run.status == "succeeded", run.log
    assert run.promoted and [row["epoch"] for row in run.history] == [1, 2]
    model = ModelVersion.objects.get(is_active=True)
    assert model == run.candidate and run.decision["reasons"] == ["no active model to compare with"]

    # The radiographs nobody has finished get the new model's suggestions.
    wait_for(
        lambda: Prediction.objects.filter(model_version=model, radiograph_id__in=open_ids).count() == len(open_ids),
        timeout=120, what="suggestions from the first model", worker=worker,
    )
    assert set(Radiograph.objects.filter(pk__in=open_ids).values_list("state", flat=True)) == {"preannotated"}

    # Starting again does not train a second first model.
    out = io.StringIO()
    with override_settings(BOOTSTRAP_MIN_ANNOTATED=5, BOOTSTRAP_TRAINING_OVERRIDES=TINY):
        call_command("training_bootstrap", stdout=out)
    assert TrainingRun.objects.count() == 1 and f"Active model: {model.name}." in out.getvalue()
