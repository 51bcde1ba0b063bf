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


@override_settings(PREANNOTATE_BATCH_SIZE=0, INFERENCE_DEVICE="cpu")
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


# --- chunks run as forward batches -------------------------------------------------------------


@pytest.fixture
def forward_batches(monkeypatch):
    """The size of every forward pass the predictor makes (the real one still runs)."""
    from training.serve import Predictor

    sizes: list[int] = []
    real = Predictor.predict_preprocessed

    def spy(self, batch, shapes):
        sizes.append(len(shapes))
        return real(self, batch, shapes)

    monkeypatch.setattr(Predictor, "predict_preprocessed", spy)
    return sizes


def run_chunk(radiographs, model_version, batch=None) -> dict[int, str]:
    ids = [r.pk for r in radiographs]
    return radiographs_preannotate(radiograph_ids=ids, model_version_id=model_version.pk, batch_id=batch.pk if batch else None)


def test_the_batch_size_follows_the_device(settings, monkeypatch):
    import torch

    from inference.services.preannotation_worker import preannotate_batch_size

    settings.PREANNOTATE_BATCH_SIZE, settings.INFERENCE_DEVICE = 0, "cpu"
    assert preannotate_batch_size() == 1
    monkeypatch.setattr("training.runtime.resolve_device", lambda name: torch.device("cuda"))
    assert preannotate_batch_size() == 32
    settings.PREANNOTATE_BATCH_SIZE = 8
    assert preannotate_batch_size() == 8


@override_settings(PREANNOTATE_BATCH_SIZE=2)
def test_a_request_is_sent_as_chunks_of_the_batch_size(active_model, django_capture_on_commit_callbacks, monkeypatch):
    radiographs = [RadiographFactory(state=State.IMPORTED) for _ in range(5)]
    sent = []
    monkeypatch.setattr("inference.tasks.preannotate_chunk.apply_async", lambda args, **kw: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        batch = preannotation_request(radiograph_ids=[r.pk for r in radiographs], model_version=active_model)
    ids = sorted(r.pk for r in radiographs)
    assert sent == [(ids[0:2], active_model.pk, batch.pk), (ids[2:4], active_model.pk, batch.pk), (ids[4:], active_model.pk, batch.pk)]


@override_settings(PREANNOTATE_BATCH_SIZE=4)
def test_a_chunk_runs_as_forward_batches_and_reports_progress_per_radiograph(active_model, forward_batches, monkeypatch):
    from inference.services import preannotation_worker

    radiographs = [RadiographFactory(state=State.IMPORTED, width=200 + i, height=160) for i in range(6)]
    batch = preannotation_request(radiograph_ids=[r.pk for r in radiographs], model_version=active_model)
    done_after_each_store = []
    real_store = preannotation_worker._store

    def store(**kwargs):
        outcome = real_store(**kwargs)
        done_after_each_store.append(batch.items.filter(status="done").count())
        return outcome

    monkeypatch.setattr(preannotation_worker, "_store", store)
    assert run_chunk(radiographs, active_model, batch) == {r.pk: "done" for r in radiographs}
    assert forward_batches == [4, 2]
    # The progress bar moves as each radiograph is stored, not once per forward batch.
    assert done_after_each_store == [1, 2, 3, 4, 5, 6]
    for radiograph in radiographs:
        radiograph.refresh_from_db()
        assert (radiograph.state, radiograph.preannotation_status, radiograph.preannotation_attempts) == ("preannotated", "done", 1)
        prediction = Prediction.objects.get(radiograph=radiograph)
        assert prediction.left_box[2:] == [radiograph.width, 160]  # the maps come back at each one's own size


@override_settings(PREANNOTATE_BATCH_SIZE=5)
def test_batch_predictions_equal_single_ones(register, checkpoints):
    from inference.runtime import predictor_for
    from inference.services.preannotation_worker import radiograph_pixels

    model = register(checkpoints["random"], name="random", activate=True)
    radiographs = [RadiographFactory(state=State.IMPORTED, width=120 + 37 * i, height=100 + 23 * i) for i in range(5)]
    assert set(run_chunk(radiographs, model).values()) == {"done"}
    predictor = predictor_for(model)
    for radiograph in radiographs:
        alone = predictor.predict(radiograph_pixels(radiograph))
        stored = Prediction.objects.get(radiograph=radiograph)
        batched = (stored.healthy_prob, stored.covid_prob, stored.other_disease_prob, stored.uncertainty)
        single = (alone.probabilities["healthy"], alone.probabilities["covid"], alone.probabilities["other_disease"], alone.uncertainty)
        assert batched == pytest.approx(single, abs=1e-5)


@override_settings(PREANNOTATE_BATCH_SIZE=4)
def test_a_corrupt_image_fails_alone_and_the_rest_of_its_batch_is_stored(active_model, forward_batches):
    radiographs = [RadiographFactory(state=State.IMPORTED) for _ in range(4)]
    corrupt = radiographs[1]
    with default_storage.open(corrupt.display.name, "wb") as fh:
        fh.write(b"not a png any more")
    batch = preannotation_request(radiograph_ids=[r.pk for r in radiographs], model_version=active_model)
    outcomes = run_chunk(radiographs, active_model, batch)
    assert outcomes == {r.pk: ("failed" if r == corrupt else "done") for r in radiographs}
    assert forward_batches == [3]
    corrupt.refresh_from_db()
    assert corrupt.preannotation_status == "failed" and "UnidentifiedImageError" in corrupt.preannotation_error
    assert corrupt.state == State.IMPORTED and not Prediction.objects.filter(radiograph=corrupt).exists()
    item = batch.items.get(radiograph=corrupt)
    assert item.status == "failed" and "UnidentifiedImageError" in item.detail
    assert batch.items.filter(status="done").count() == 3


@override_settings(PREANNOTATE_BATCH_SIZE=3)
def test_a_failing_forward_batch_is_run_one_radiograph_at_a_time(active_model, monkeypatch):
    from training.serve import Predictor

    real = Predictor.predict_preprocessed

    def breaks_on_width_123(self, batch, shapes):
        if any(width == 123 for _, width in shapes):
            raise RuntimeError("the model cannot take this one")
        return real(self, batch, shapes)

    monkeypatch.setattr(Predictor, "predict_preprocessed", breaks_on_width_123)
    radiographs = [RadiographFactory(state=State.IMPORTED, width=w) for w in (200, 123, 210)]
    outcomes = run_chunk(radiographs, active_model)
    assert [outcomes[r.pk] for r in radiographs] == ["done", "failed", "done"]
    assert "RuntimeError: the model cannot take this one" in Radiograph.objects.get(pk=radiographs[1].pk).preannotation_error


@override_settings(PREANNOTATE_BATCH_SIZE=4, PREANNOTATE_MAX_ATTEMPTS=3)
def test_a_redelivered_chunk_finishes_what_the_dead_worker_left_and_duplicates_nothing(active_model, forward_batches):
    stored, counted_a, counted_b, untouched = radiographs = [RadiographFactory(state=State.IMPORTED) for _ in range(4)]
    batch = preannotation_request(radiograph_ids=[r.pk for r in radiographs], model_version=active_model)
    # The first delivery stored one radiograph and had counted the next two when its worker died.
    run_chunk([stored], active_model, batch)
    Radiograph.objects.filter(pk__in=[counted_a.pk, counted_b.pk]).update(preannotation_status="running", preannotation_attempts=1)
    forward_batches.clear()

    outcomes = run_chunk(radiographs, active_model, batch)
    assert outcomes == {stored.pk: "exists", counted_a.pk: "done", counted_b.pk: "done", untouched.pk: "done"}
    # The untouched one runs as a batch; the two the dead worker was running run alone, one at a time.
    assert forward_batches == [1, 1, 1]
    assert [Radiograph.objects.get(pk=r.pk).preannotation_attempts for r in radiographs] == [1, 2, 2, 1]

    assert set(run_chunk(radiographs, active_model, batch).values()) == {"exists"}  # delivered once more
    for radiograph in radiographs:
        assert Prediction.objects.filter(radiograph=radiograph).count() == 1
        assert FindingRegion.objects.filter(radiograph=radiograph).count() == 1
        assert ReviewEvent.objects.filter(radiograph=radiograph, action="preannotated").count() == 1
        assert Radiograph.objects.get(pk=radiograph.pk).preannotation_status == "done"
    assert batch.items.filter(status="done").count() == 4


@override_settings(PREANNOTATE_BATCH_SIZE=2)
def test_a_chunk_run_twice_at_once_stores_each_prediction_once(active_model, monkeypatch):
    """Two deliveries interleaved: the second starts its attempts after the first stored them."""
    from inference.services import preannotation_worker

    radiographs = [RadiographFactory(state=State.IMPORTED) for _ in range(2)]
    real_attempt = preannotation_worker._attempt_start
    nested: dict = {}

    def attempt_then_other_delivery(**kwargs):
        if "outcomes" not in nested:  # the other delivery runs the whole chunk after this one checked for predictions
            nested["outcomes"] = None
            nested["outcomes"] = run_chunk(radiographs, active_model)
        return real_attempt(**kwargs)

    monkeypatch.setattr(preannotation_worker, "_attempt_start", attempt_then_other_delivery)
    assert set(run_chunk(radiographs, active_model).values()) == {"exists"}
    assert set(nested["outcomes"].values()) == {"done"}
    for radiograph in radiographs:
        radiograph.refresh_from_db()
        assert Prediction.objects.filter(radiograph=radiograph).count() == 1
        assert (radiograph.preannotation_status, radiograph.preannotation_attempts) == ("done", 1)


@override_settings(PREANNOTATE_BATCH_SIZE=2, PREANNOTATE_MAX_ATTEMPTS=3)
def test_a_chunk_past_its_soft_time_limit_fails_the_running_batch_and_queues_the_rest_again(active_model, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from training.serve import Predictor

    real = Predictor.predict_preprocessed
    passes: list[int] = []
    limit = {"at_pass": 2}

    def slow_second_pass(self, batch, shapes):
        passes.append(len(shapes))
        if len(passes) == limit["at_pass"]:  # Celery raises this inside whatever runs when the soft limit passes
            raise SoftTimeLimitExceeded()
        return real(self, batch, shapes)

    monkeypatch.setattr(Predictor, "predict_preprocessed", slow_second_pass)
    sent: list[tuple] = []
    monkeypatch.setattr("inference.tasks.preannotate_chunk.apply_async", lambda args, **kw: sent.append(args))
    radiographs = [RadiographFactory(state=State.IMPORTED) for _ in range(6)]
    ids = [r.pk for r in radiographs]
    batch = preannotation_request(radiograph_ids=ids, model_version=active_model)

    outcomes = run_chunk(radiographs, active_model, batch)
    # First batch stored, second (the one running at the limit) failed, third not run: queued again.
    assert [outcomes[i] for i in ids] == ["done", "done", "failed", "failed", "queued", "queued"]
    assert sent == [(ids[4:], active_model.pk, batch.pk)]
    failed = Radiograph.objects.get(pk=ids[2])
    assert failed.preannotation_status == "failed" and "longer than its time limit" in failed.preannotation_error
    assert failed.state == State.IMPORTED and not Prediction.objects.filter(radiograph_id__in=ids[2:]).exists()
    assert list(batch.items.order_by("radiograph_id").values_list("status", flat=True)) == ["done"] * 2 + ["failed"] * 2 + ["queued"] * 2

    # The queued chunk runs on (another delivery): the two counted ahead of the limit keep their count.
    limit["at_pass"] = 0  # no more time limits
    assert run_chunk(radiographs[4:], active_model, batch) == {ids[4]: "done", ids[5]: "done"}
    assert passes[-2:] == [1, 1]  # suspected of stopping a worker: alone
    assert [Radiograph.objects.get(pk=i).preannotation_attempts for i in ids[4:]] == [2, 2]
    assert batch.items.filter(status="done").count() == 4
    assert Prediction.objects.filter(radiograph_id__in=ids).count() == 4
