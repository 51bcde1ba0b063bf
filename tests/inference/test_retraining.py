"""Retraining: the promotion gate on the frozen test split, one training at a time, the beat check,
and a real (tiny) training run with its progress and log."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings
from PIL import Image

from annotator.errors import Conflict
from annotator.geometry import boxes_fill
from annotator.models import AuditLog, Radiograph
from annotator.services.annotation_import import lung_boxes_import, lung_polygons_import
from annotator.services.exports import export_local_copy
from inference.models import ModelVersion, PreannotationBatch, TrainingRun
from inference.services import promotion_decide, training_run_execute, training_run_start, training_run_start_if_due
from tests.conftest import SAMPLE
from tests.inference.conftest import import_files, small_sample_images
from training.export import annotated_lung_boxes, lung_mask_kinds

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("predictor_reset")]

GOOD = {"lung_dice": 0.9, "covid_sensitivity_at_90_specificity": 0.8}


@pytest.mark.parametrize(
    "candidate, active, promote, why",
    [
        (GOOD, None, True, "no active model"),
        (GOOD, GOOD, True, "not worse"),
        ({"lung_dice": 0.95, "covid_sensitivity_at_90_specificity": 0.85}, GOOD, True, "not worse"),
        ({"lung_dice": 0.89, "covid_sensitivity_at_90_specificity": 0.9}, GOOD, False, "lung_dice: 0.8900 is worse"),
        ({"lung_dice": 0.95, "covid_sensitivity_at_90_specificity": 0.7}, GOOD, False, "covid_sensitivity_at_90_specificity: 0.7000 is worse"),
        ({"lung_dice": 0.95, "covid_sensitivity_at_90_specificity": None}, GOOD, False, "not measured for the candidate"),
        ({"lung_dice": 0.95, "covid_sensitivity_at_90_specificity": None}, {"lung_dice": 0.9, "covid_sensitivity_at_90_specificity": None}, True, "not measurable"),
        ({"lung_dice": float("nan")}, {"lung_dice": None}, False, "no gate metric could be measured"),
    ],
)
def test_promotion_decide(candidate, active, promote, why):
    decided, reasons = promotion_decide(candidate, active, tolerance=0.0)
    assert decided is promote
    assert any(why in reason for reason in reasons), reasons


def test_the_gate_tolerance_allows_noise_but_not_a_real_drop():
    assert promotion_decide({"lung_dice": 0.895}, {"lung_dice": 0.9}, tolerance=0.01)[0] is True
    assert promotion_decide({"lung_dice": 0.85}, {"lung_dice": 0.9}, tolerance=0.01)[0] is False


@pytest.fixture
def lung_truth(db):
    """A few small sample images with the sample's own lung boxes (imported ground truth).

    Retraining exports every dataset: radiographs other tests committed (the session-wide sample
    import) are removed inside this test's transaction, so the run trains on these few only.
    """
    from annotator.models import Radiograph

    Radiograph.objects.all().delete()
    report = import_files(small_sample_images(12, lung_boxes_only=True), dataset="truth")
    lung_boxes_import(dataset=report_dataset(report), path=SAMPLE / "annotations" / "lung_boxes.json")
    return report


def report_dataset(report):
    from annotator.models import Dataset

    return Dataset.objects.get(name=report.dataset)


def fake_training(monkeypatch, checkpoint: Path):
    """Training replaced by a fixed result (the checkpoint given); export and evaluation stay real."""
    from training.train import TrainResult

    def train(config, progress=None, should_stop=None):
        run_dir = Path(config.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        best = run_dir / "best.pt"
        shutil.copy(checkpoint, best)
        progress(1, 1, 1, {"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "seconds": 0.1})
        return TrainResult(run_dir=run_dir, best_checkpoint=best, last_checkpoint=best, metrics={}, history=[])

    monkeypatch.setattr("training.train.train", train)


def spy_evaluate(monkeypatch) -> list:
    from training import evaluate as module

    calls, real = [], module.evaluate

    def evaluate(checkpoint, export_dir, split="test", **kwargs):
        calls.append((Path(export_dir), split))
        return real(checkpoint, export_dir, split, **kwargs)

    monkeypatch.setattr(module, "evaluate", evaluate)
    return calls


def test_a_worse_candidate_is_registered_but_not_activated(lung_truth, register, checkpoints, monkeypatch):
    active = register(checkpoints["all_lung"], name="active", activate=True)
    fake_training(monkeypatch, checkpoints["no_lungs"])
    calls = spy_evaluate(monkeypatch)
    run = training_run_execute(training_run_id=training_run_start(trigger="manual").pk)

    assert run.status == "succeeded" and run.promoted is False and run.live is None
    assert [split for _, split in calls] == ["test", "test"] and calls[0][0] == calls[1][0]  # same frozen split
    candidate = ModelVersion.objects.get(pk=run.candidate_id)
    assert not candidate.is_active and candidate.export_id == run.export_id
    assert candidate.metrics["lung_dice"] == 0.0
    assert list(ModelVersion.objects.filter(is_active=True)) == [active]
    assert run.decision["active"]["lung_dice"] > 0 and run.decision["promote"] is False
    assert any("lung_dice" in reason and "worse" in reason for reason in run.decision["reasons"])
    assert "kept the active model" in run.log


def test_a_better_candidate_is_promoted_atomically_and_the_open_radiographs_are_preannotated_again(
    lung_truth, register, checkpoints, monkeypatch
):
    old = register(checkpoints["no_lungs"], name="old", activate=True)
    fake_training(monkeypatch, checkpoints["all_lung"])
    run = training_run_execute(training_run_id=training_run_start(trigger="manual").pk)

    assert run.status == "succeeded" and run.promoted is True and run.progress == 1.0
    candidate = ModelVersion.objects.get(pk=run.candidate_id)
    old.refresh_from_db()
    assert list(ModelVersion.objects.filter(is_active=True)) == [candidate]
    assert (candidate.previous, old.is_active, run.baseline) == (old, False, old)
    assert candidate.metrics["lung_dice"] > run.decision["active"]["lung_dice"] == 0.0
    assert AuditLog.objects.filter(action="model_promoted", target=candidate.name).exists()
    batch = PreannotationBatch.objects.get(model_version=candidate)
    assert batch.reason == "promotion" and batch.items.count() == Radiograph.objects.filter(state="imported").count() > 0


def test_retraining_learns_each_lung_from_its_outline_where_one_was_imported(lung_truth, checkpoints, monkeypatch, tmp_path):
    polygons = json.loads((SAMPLE / "annotations" / "lung_polygons.json").read_text())
    without = {im["id"] for im in polygons["images"] if im["file_name"] == small_sample_images(12, lung_boxes_only=True)[0].name}
    polygons["annotations"] = [a for a in polygons["annotations"] if a["image_id"] not in without]  # one image keeps its boxes only
    (tmp_path / "polygons.json").write_text(json.dumps(polygons))
    lung_polygons_import(dataset=report_dataset(lung_truth), path=tmp_path / "polygons.json")
    fake_training(monkeypatch, checkpoints["all_lung"])
    run = training_run_execute(training_run_id=training_run_start(trigger="manual").pk)

    assert run.status == "succeeded" and run.export.options["lung_masks"] == "outlines"
    root = export_local_copy(run.export)
    kinds, drawn = lung_mask_kinds(root), annotated_lung_boxes(root)
    assert set(kinds.values()) == {"outline", "boxes"}  # some of these images have polygons, some only boxes
    for image_id, kind in kinds.items():
        with Image.open(root / "masks" / "lung" / f"{image_id}.png") as image:
            lungs = np.asarray(image) > 0
        filled = boxes_fill(width=lungs.shape[1], height=lungs.shape[0], boxes=[[int(v) for v in drawn[image_id][side]] for side in ("right", "left")])
        assert np.array_equal(lungs, filled) == (kind == "boxes"), image_id  # an outline is not its boxes filled


def test_a_real_tiny_training_run_reports_progress_and_registers_its_candidate(lung_truth, client_for, annotator):
    run = training_run_start(trigger="manual", overrides={"epochs": 2, "width": 0.0625, "image_size": 64, "batch_size": 4, "lr": 1e-3})
    run = training_run_execute(training_run_id=run.pk)
    assert run.status == "succeeded", run.log
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.progress == 1.0 and run.live is None and run.finished_at
    assert "epoch 2/2" in run.log and "promoted" in run.log
    candidate = ModelVersion.objects.get(pk=run.candidate_id)
    assert candidate.is_active  # nothing to compare with: the first model is promoted
    assert candidate.metrics["lung_images"] > 0 and candidate.metrics["lung_dice"] is not None
    assert candidate.config["model"]["width"] == 0.0625
    # Its artefacts are read from the media storage; checkpoints are not among what people see.
    detail = client_for(annotator).get(f"/api/training-runs/{run.pk}/").json()
    names = {a["name"] for a in detail["artefacts"]}
    assert {"train.log", "metrics.jsonl", "loss_curves.png", "config.json"} <= names and "last.pt" not in names
    curves = client_for(annotator).get(f"/api/training-runs/{run.pk}/artefacts/loss_curves.png")
    assert curves.status_code == 200 and curves["Content-Type"] == "image/png"
    assert b"".join(curves.streaming_content).startswith(b"\x89PNG")
    assert client_for(annotator).get(f"/api/training-runs/{run.pk}/artefacts/last.pt").status_code == 404
    # These images have drawn boxes only: the lungs learnt from them as boxes (the box term), not as
    # filled rectangles.
    stored = client_for(annotator).get(f"/api/training-runs/{run.pk}/artefacts/config.json")
    resolved = json.loads(b"".join(stored.streaming_content))["resolved"]
    assert resolved["lung_box_images"] > 0 and resolved["lung_mask_images"] == 0, resolved
    # Running the task again (a redelivery) changes nothing.
    again = training_run_execute(training_run_id=run.pk)
    assert (again.status, again.candidate_id) == ("succeeded", run.candidate_id)
    assert ModelVersion.objects.count() == 1


def test_a_failed_run_records_why_and_frees_the_slot(db):
    from annotator.models import Dataset, Radiograph

    # No dataset at all (data other tests committed is removed inside this test's transaction).
    Radiograph.objects.all().delete()
    Dataset.objects.all().delete()
    run = training_run_execute(training_run_id=training_run_start(trigger="manual").pk)  # no dataset at all
    assert run.status == "failed" and run.live is None
    assert "no dataset to train on" in run.log
    training_run_start(trigger="manual")  # the next one may start


def test_never_two_trainings_at_once(db):
    first = training_run_start(trigger="manual")
    with pytest.raises(Conflict, match=f"Training run {first.pk} is already queued"):
        training_run_start(trigger="manual")
    assert TrainingRun.objects.filter(live=True).count() == 1


@override_settings(RETRAIN_MIN_NEW_ACCEPTED=2)
def test_beat_starts_a_run_only_when_enough_new_work_was_accepted():
    from tests.annotator.factories import RadiographFactory

    RadiographFactory(state="accepted")
    assert training_run_start_if_due() is None
    RadiographFactory(state="accepted")
    run = training_run_start_if_due()
    assert (run.trigger, run.accepted_count, run.status) == ("periodic", 2, "queued")
    assert training_run_start_if_due() is None  # one is live
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", live=None)
    assert training_run_start_if_due() is None  # nothing new since
    RadiographFactory(state="accepted"), RadiographFactory(state="accepted")
    assert training_run_start_if_due().accepted_count == 4


def test_an_unreachable_broker_fails_the_run_and_frees_the_slot(django_capture_on_commit_callbacks, monkeypatch):
    from kombu.exceptions import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("Connection refused.")

    monkeypatch.setattr("inference.tasks.train.apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_start(trigger="manual")
    run.refresh_from_db()
    assert (run.status, run.live) == ("failed", None) and "broker is unreachable" in run.log


def test_a_stop_request_leaves_the_run_live_and_the_next_delivery_resumes_it(lung_truth):
    """The worker's shutdown (``should_stop``) ends the training within a batch; the run stays live
    and running, and executing it again continues from last.pt rather than from epoch 1."""
    run = training_run_start(trigger="manual", overrides={"epochs": 3, "width": 0.03125, "image_size": 32, "batch_size": 2, "lr": 1e-3})
    epochs_seen = []

    def stop_after_first_epoch() -> bool:
        epochs_seen[:] = TrainingRun.objects.get(pk=run.pk).history
        return len(epochs_seen) >= 1

    stopped = training_run_execute(training_run_id=run.pk, should_stop=stop_after_first_epoch)
    assert (stopped.status, stopped.live, stopped.candidate_id) == ("running", True, None), stopped.log
    assert "stopped: the worker is shutting down" in stopped.log
    assert [row["epoch"] for row in stopped.history] == [1]
    assert (Path(settings.MEDIA_ROOT) / stopped.config["run_dir"] / "last.pt").is_file()

    finished = training_run_execute(training_run_id=run.pk)
    assert finished.status == "succeeded", finished.log
    after = finished.log.split("resumed after the worker stopped", 1)[1]
    assert "epoch 1/3" not in after and "epoch 2/3" in after  # from last.pt, not from the start
    assert [row["epoch"] for row in finished.history] == [1, 2, 3]


def test_a_run_folder_is_named_by_id_and_creation_time_so_a_reused_id_starts_afresh():
    import datetime as dt

    from inference.services.run_files import run_folder_name

    before = TrainingRun(pk=5, created_at=dt.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=dt.timezone.utc))
    again = TrainingRun(pk=5, created_at=dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.timezone.utc))
    assert run_folder_name(before) == "training/5-20260102T030405600000"
    assert run_folder_name(again) != run_folder_name(before)
    # A run that recorded its folder (older runs: "training/<id>") keeps it.
    assert run_folder_name(TrainingRun(pk=7, config={"run_dir": "training/7"})) == "training/7"
