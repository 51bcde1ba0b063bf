"""Pre-annotation as the worker runs it (the service in-process): what annotators and radiologists
start from, idempotence, poison radiographs, and human work that is never overwritten."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings

from annotator.constants import State
from annotator.models import FindingRegion, LungAnnotation, Radiograph, ReviewEvent
from annotator.services import regions as region_services
from annotator.services import workflow
from inference.models import Prediction, PreannotationItem
from inference.services import model_version_activate, preannotation_request, radiograph_preannotate, radiographs_preannotate
from tests.annotator.factories import RadiographFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("predictor_reset")]


def preannotate(radiograph, model_version, batch=None) -> str:
    return radiograph_preannotate(radiograph_id=radiograph.pk, model_version_id=model_version.pk, batch_id=batch.pk if batch else None)


def test_the_model_suggests_lungs_regions_and_labels(active_model):
    radiograph = RadiographFactory(state=State.IMPORTED, width=200, height=160)
    version = radiograph.version
    assert preannotate(radiograph, active_model) == "done"

    radiograph.refresh_from_db()
    prediction = Prediction.objects.get(radiograph=radiograph, model_version=active_model)
    # The whole image is lung for this model: one piece, split at the midline; patient right = image left.
    assert (prediction.right_box, prediction.left_box) == ([0, 0, 100, 160], [100, 0, 200, 160])
    assert 0 <= prediction.covid_prob <= 1 and 0 <= prediction.healthy_prob <= 1 and 0 <= prediction.other_disease_prob <= 1
    assert radiograph.state == State.PREANNOTATED
    assert radiograph.uncertainty == pytest.approx(prediction.uncertainty)
    assert (radiograph.preannotation_status, radiograph.preannotation_attempts) == ("done", 1)
    assert radiograph.version == version + 1

    lungs = radiograph.lung_annotations.first()
    assert (lungs.status, lungs.source, lungs.model_version) == ("suggested", "model", active_model)
    assert (lungs.right_box, lungs.left_box, lungs.version) == (prediction.right_box, prediction.left_box, radiograph.version)

    region = FindingRegion.objects.get(radiograph=radiograph)
    assert (region.status, region.source, region.label, region.prediction) == ("suggested", "model", "consolidation", prediction)
    assert region.bbox == [0, 0, 200, 160] and region.area == 200 * 160
    assert region.confidence == pytest.approx(0.8, abs=1e-3)
    assert list(region.revisions.values_list("version", "status")) == [(1, "suggested")]
    assert prediction.regions == [{"bbox": [0, 0, 200, 160], "area": 32000, "confidence": pytest.approx(0.8, abs=1e-3)}]

    event = ReviewEvent.objects.get(radiograph=radiograph, action="preannotated")
    assert (event.from_state, event.to_state, event.model_version) == ("imported", "preannotated", active_model)


def test_running_twice_stores_one_prediction_and_one_set_of_suggestions(active_model):
    radiograph = RadiographFactory(state=State.IMPORTED)
    assert preannotate(radiograph, active_model) == "done"
    assert preannotate(radiograph, active_model) == "exists"
    assert Prediction.objects.filter(radiograph=radiograph).count() == 1
    assert FindingRegion.objects.filter(radiograph=radiograph).count() == 1
    assert LungAnnotation.objects.filter(radiograph=radiograph).count() == 1
    assert ReviewEvent.objects.filter(radiograph=radiograph, action="preannotated").count() == 1


@override_settings(PREANNOTATE_MAX_ATTEMPTS=3)
def test_a_radiograph_that_killed_the_worker_too_often_is_marked_failed_not_retried(active_model):
    radiograph = RadiographFactory(state=State.IMPORTED, preannotation_attempts=3, preannotation_status="running")
    batch = preannotation_request(radiograph_ids=[radiograph.pk], model_version=active_model)
    Radiograph.objects.filter(pk=radiograph.pk).update(preannotation_attempts=3)  # three worker deaths since
    assert preannotate(radiograph, active_model, batch) == "failed"
    radiograph.refresh_from_db()
    assert radiograph.preannotation_status == "failed"
    assert "gave up after 3 attempts" in radiograph.preannotation_error
    assert radiograph.state == State.IMPORTED
    assert not Prediction.objects.filter(radiograph=radiograph).exists()
    assert PreannotationItem.objects.get(batch=batch).status == "failed"
    assert ReviewEvent.objects.filter(radiograph=radiograph, action="preannotation_failed").exists()


@override_settings(PREANNOTATE_MAX_ATTEMPTS=3)
def test_an_attempt_below_the_limit_runs_and_is_counted(active_model):
    radiograph = RadiographFactory(state=State.IMPORTED, preannotation_attempts=2)
    assert preannotate(radiograph, active_model) == "done"
    radiograph.refresh_from_db()
    assert (radiograph.preannotation_status, radiograph.preannotation_attempts) == ("done", 3)


def test_an_unreadable_image_fails_with_the_reason(active_model):
    radiograph = RadiographFactory(state=State.IMPORTED)
    with default_storage.open(radiograph.display.name, "wb") as fh:
        fh.write(b"not a png any more")
    assert preannotate(radiograph, active_model) == "failed"
    radiograph.refresh_from_db()
    assert radiograph.preannotation_status == "failed"
    assert "UnidentifiedImageError" in radiograph.preannotation_error
    assert radiograph.preannotation_attempts == 1
    assert radiograph.state == State.IMPORTED


def test_a_newer_model_replaces_only_its_untouched_suggestions(register, checkpoints, active_model):
    radiograph = RadiographFactory(state=State.IMPORTED)
    preannotate(radiograph, active_model)
    newer = register(checkpoints["other"], name="newer")
    model_version_activate(model_version_id=newer.pk, preannotate=False)
    assert preannotate(radiograph, newer) == "done"

    regions = FindingRegion.objects.filter(radiograph=radiograph)
    assert [r.prediction.model_version for r in regions] == [newer]
    lungs = radiograph.lung_annotations.first()
    assert (lungs.source, lungs.model_version) == ("model", newer)
    assert Prediction.objects.filter(radiograph=radiograph).count() == 2


def test_human_work_is_never_overwritten(register, checkpoints, active_model, annotator, radiologist):
    radiograph = RadiographFactory(state=State.IMPORTED, width=200, height=160)
    preannotate(radiograph, active_model)
    radiograph.refresh_from_db()
    suggested = FindingRegion.objects.get(radiograph=radiograph)
    # The radiologist relabels the suggestion (still undecided); the annotator draws their own boxes,
    # submits, and the radiologist returns the image.
    region_services.region_edit(region=suggested, user=radiologist, version=1, label="pleural_effusion", status="suggested")
    radiograph, _ = workflow.annotation_save(
        radiograph_id=radiograph.pk, user=annotator, version=radiograph.version, right=[10, 10, 90, 150], left=[110, 10, 190, 150], submit=True
    )
    radiograph = workflow.radiograph_return(radiograph_id=radiograph.pk, user=radiologist, version=radiograph.version, comment="check the left base")
    newer = register(checkpoints["other"], name="newer")
    model_version_activate(model_version_id=newer.pk, preannotate=False)

    assert preannotate(radiograph, newer) == "done"
    radiograph.refresh_from_db()
    assert radiograph.state == State.RETURNED
    lungs = radiograph.lung_annotations.first()
    assert (lungs.source, lungs.right_box, lungs.left_box) == ("annotator", [10, 10, 90, 150], [110, 10, 190, 150])
    edited = FindingRegion.objects.get(pk=suggested.pk)
    assert (edited.label, edited.version) == ("pleural_effusion", 2)
    new = FindingRegion.objects.filter(radiograph=radiograph).exclude(pk=suggested.pk)
    assert [(r.source, r.status, r.prediction.model_version) for r in new] == [("model", "suggested", newer)]


@pytest.mark.parametrize("state", [State.LUNGS_DONE, State.IN_REVIEW, State.ACCEPTED, State.EXCLUDED])
def test_radiographs_past_annotation_get_no_new_suggestions(active_model, state):
    radiograph = RadiographFactory(state=state)
    assert preannotate(radiograph, active_model) == "skipped"
    radiograph.refresh_from_db()
    assert radiograph.state == state
    assert not Prediction.objects.filter(radiograph=radiograph).exists()
    assert not FindingRegion.objects.filter(radiograph=radiograph).exists()


def test_a_task_for_a_model_that_is_no_longer_active_does_nothing(register, checkpoints, active_model):
    radiograph = RadiographFactory(state=State.IMPORTED)
    newer = register(checkpoints["other"], name="newer")
    model_version_activate(model_version_id=newer.pk, preannotate=False)
    assert preannotate(radiograph, active_model) == "skipped"
    assert not Prediction.objects.filter(radiograph=radiograph).exists()


def test_without_an_active_model_the_workflow_goes_on_without_suggestions(django_capture_on_commit_callbacks):
    radiograph = RadiographFactory(state=State.IMPORTED)
    with django_capture_on_commit_callbacks() as callbacks:
        assert preannotation_request(radiograph_ids=[radiograph.pk]) is None
    assert callbacks == []


def test_a_request_is_enqueued_on_commit_and_reports_progress(active_model, django_capture_on_commit_callbacks, monkeypatch):
    open_ones = [RadiographFactory(state=State.IMPORTED), RadiographFactory(state=State.RETURNED)]
    done = RadiographFactory(state=State.LUNGS_DONE)
    sent = []
    monkeypatch.setattr("inference.tasks.preannotate_chunk.apply_async", lambda args, **kw: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        batch = preannotation_request(radiograph_ids=[r.pk for r in [*open_ones, done]], model_version=active_model)
        assert sent == []  # nothing leaves before the commit
    # On the CPU a chunk is one radiograph (batch 1 is fastest there).
    assert sorted(sent) == sorted(([r.pk], active_model.pk, batch.pk) for r in open_ones)

    from inference.selectors import preannotation_batch_progress

    assert preannotation_batch_progress(batch) | {} == {
        "total": 3, "finished": 1, "fraction": pytest.approx(1 / 3, abs=1e-3), "complete": False,
        "queued": 2, "running": 0, "done": 0, "skipped": 1, "failed": 0,
    }
    for ids, mv, bid in sent:
        radiographs_preannotate(radiograph_ids=ids, model_version_id=mv, batch_id=bid)
    progress = preannotation_batch_progress(batch)
    assert (progress["finished"], progress["done"], progress["complete"]) == (3, 2, True)


def test_an_unreachable_broker_marks_the_radiographs_failed_instead_of_failing_the_import(
    active_model, django_capture_on_commit_callbacks, monkeypatch
):
    from kombu.exceptions import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr("inference.tasks.preannotate_chunk.apply_async", down)
    radiograph = RadiographFactory(state=State.IMPORTED)
    with django_capture_on_commit_callbacks(execute=True):
        batch = preannotation_request(radiograph_ids=[radiograph.pk], model_version=active_model)
    radiograph.refresh_from_db()
    assert radiograph.preannotation_status == "failed" and "broker is unreachable" in radiograph.preannotation_error
    assert batch.items.get().status == "failed"
