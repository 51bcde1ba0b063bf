"""Pre-annotation through a real broker and a real worker process (not eager mode).

These tests commit their data (``transactional_db``) so the worker, a separate process, sees it.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.models import Radiograph
from inference.models import Prediction
from tests.inference.conftest import import_files, small_sample_images
from tests.inference.worker import REPO, Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def model(transactional_db, register, checkpoints):
    return register(checkpoints["plumbing"], name="tiny", activate=True)


def test_imported_radiographs_get_predictions_from_a_real_worker(model, celery_worker):
    worker = celery_worker()
    report = import_files(small_sample_images(3))
    ids = report.radiograph_ids
    assert ids, report.as_dict()
    wait_for(lambda: Prediction.objects.filter(radiograph_id__in=ids).count() == len(ids), timeout=60, what="predictions", worker=worker)

    for radiograph in Radiograph.objects.filter(pk__in=ids):
        prediction = Prediction.objects.get(radiograph=radiograph, model_version=model)
        right, left = prediction.right_box, prediction.left_box
        for box in (right, left):
            assert 0 <= box[0] < box[2] <= radiograph.width and 0 <= box[1] < box[3] <= radiograph.height
        assert (right[0] + right[2]) / 2 < (left[0] + left[2]) / 2  # the patient's right lung is on the image's left
        assert radiograph.state == "preannotated" and radiograph.preannotation_status == "done"
        assert radiograph.lung_annotations.first().source == "model"


def test_a_worker_killed_mid_task_is_replaced_and_each_radiograph_is_predicted_once(model, celery_worker):
    # Redis redelivers an unacknowledged task after the visibility timeout; make that quick here only.
    redelivery = {"CELERY_VISIBILITY_TIMEOUT": "2", "CELERY_UNACKED_RESTORE_INTERVAL": "1", "CELERY_UNACKED_RESTORE_THROTTLE": "1"}
    first = celery_worker({**redelivery, "PREANNOTATE_TEST_DELAY": "60"})
    ids = import_files(small_sample_images(2)).radiograph_ids
    running = wait_for(
        lambda: Radiograph.objects.filter(pk__in=ids, preannotation_status="running").first(),
        timeout=30, what="a pre-annotation to start", worker=first,
    )
    first.kill()
    assert not first.alive
    assert not Prediction.objects.filter(radiograph_id__in=ids).exists()

    second = celery_worker(redelivery)
    wait_for(lambda: Prediction.objects.filter(radiograph_id__in=ids).count() == len(ids), timeout=60, what="predictions", worker=second)
    time.sleep(3)  # past another visibility timeout: a second delivery would have shown up by now
    for rid in ids:
        assert Prediction.objects.filter(radiograph_id=rid, model_version=model).count() == 1
        assert Radiograph.objects.get(pk=rid).regions.count() == 1
    running.refresh_from_db()
    assert running.preannotation_attempts == 2  # the killed attempt was counted
    assert running.events.filter(action="preannotated").count() == 1


def test_a_radiograph_that_keeps_killing_the_worker_is_marked_failed_not_retried_forever(model, celery_worker):
    worker = celery_worker({"PREANNOTATE_MAX_ATTEMPTS": "2", "PREANNOTATE_TEST_DELAY": "60"}, pool="prefork")
    [rid] = import_files(small_sample_images(1)).radiograph_ids
    for attempt in (1, 2):
        wait_for(
            lambda: Radiograph.objects.filter(pk=rid, preannotation_status="running", preannotation_attempts=attempt).exists(),
            timeout=30, what=f"attempt {attempt}", worker=worker,
        )
        assert worker.kill_children()  # the pool process dies mid-task; Celery puts the task back
    radiograph = wait_for(
        lambda: Radiograph.objects.filter(pk=rid, preannotation_status="failed").first(), timeout=30, what="failed", worker=worker
    )
    assert "gave up after 2 attempts" in radiograph.preannotation_error
    assert radiograph.state == "imported" and not Prediction.objects.filter(radiograph_id=rid).exists()
    assert worker.alive  # the worker itself carries on with other work


def test_the_embedded_default_pre_annotates_without_redis(tmp_path: Path, checkpoints):
    """`make run`: SQLite, the filesystem broker and a real worker; no PostgreSQL, no Redis."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_FOLDER=str(tmp_path / "broker"),
        MEDIA_ROOT=str(tmp_path / "media"),
        LUNGMARK_VAR_DIR=str(tmp_path / "var"),
        PYTHONUNBUFFERED="1",
    )

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    worker = Worker(env, pool="prefork").launch()  # as scripts/run_local.sh starts it
    try:
        assert "active" in manage("register_model", str(checkpoints["plumbing"]), "--name", "tiny", "--activate")
        worker.wait_ready()
        folder = tmp_path / "incoming"
        folder.mkdir()
        image = small_sample_images(1)[0]
        os.symlink(image, folder / image.name)
        assert "1 imported" in manage("import_radiographs", str(folder), "--dataset", "demo", "--no-progress")

        def predicted() -> bool:
            with sqlite3.connect(tmp_path / "db.sqlite3", timeout=10) as db:
                return db.execute("select count(*) from inference_prediction").fetchone()[0] == 1

        wait_for(predicted, timeout=60, what="a prediction in the SQLite database", worker=worker)
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            state, status = db.execute("select state, preannotation_status from annotator_radiograph").fetchone()
        assert (state, status) == ("preannotated", "done")
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "broker", ignore_errors=True)


def test_a_batch_runs_as_chunks_on_a_real_worker_and_a_corrupt_image_fails_alone(transactional_db, register, checkpoints, celery_worker, settings):
    from django.core.files.storage import default_storage

    from inference.models import PreannotationItem
    from inference.services import model_version_activate

    settings.PREANNOTATE_BATCH_SIZE = 4  # where the request is split
    worker = celery_worker({"PREANNOTATE_BATCH_SIZE": "4"})  # where the chunks run
    model = register(checkpoints["plumbing"], name="tiny")  # not active: the import queues nothing
    ids = sorted(import_files(small_sample_images(5)).radiograph_ids)
    corrupt = Radiograph.objects.get(pk=ids[1])
    with default_storage.open(corrupt.display.name, "wb") as fh:
        fh.write(b"\x89PNG truncated")
    model_version_activate(model_version_id=model.pk)  # pre-annotates every open radiograph: chunks [4, 1]

    def settled():
        items = PreannotationItem.objects.filter(batch__model_version=model, radiograph_id__in=ids)
        return items.count() == len(ids) and all(i.status in ("done", "failed") for i in items)

    wait_for(settled, timeout=90, what="the batch to finish", worker=worker)
    assert "forward passes of [3] radiograph(s)" in worker.log()  # the corrupt one dropped out of its batch of 4
    assert "forward passes of [1] radiograph(s)" in worker.log()
    for rid in ids:
        radiograph = Radiograph.objects.get(pk=rid)
        if rid == corrupt.pk:
            assert radiograph.preannotation_status == "failed" and radiograph.preannotation_error
            assert not Prediction.objects.filter(radiograph_id=rid).exists()
        else:
            assert radiograph.preannotation_status == "done" and radiograph.state == "preannotated"
            assert Prediction.objects.filter(radiograph_id=rid, model_version=model).count() == 1


def test_a_chunk_delivered_twice_at_once_and_the_old_one_radiograph_message_predict_once(transactional_db, register, checkpoints, celery_worker):
    from inference.services import model_version_activate
    from inference.tasks import preannotate, preannotate_chunk

    worker = celery_worker({"PREANNOTATE_TEST_DELAY": "1", "PREANNOTATE_BATCH_SIZE": "2"}, pool="prefork", concurrency=2)
    model = register(checkpoints["plumbing"], name="tiny")  # not active: the import queues nothing
    first, *others = sorted(import_files(small_sample_images(3)).radiograph_ids)
    model_version_activate(model_version_id=model.pk, preannotate=False)
    for _ in range(2):
        preannotate_chunk.apply_async(args=(others, model.pk, None))  # the two copies run side by side
    preannotate.apply_async(args=(first, model.pk, None))  # as queued by an earlier release
    everything = [first, *others]
    wait_for(
        lambda: Prediction.objects.filter(radiograph_id__in=everything).count() == len(everything)
        and not Radiograph.objects.filter(pk__in=everything, preannotation_status__in=["queued", "running"]).exists(),
        timeout=90, what="predictions", worker=worker,
    )
    wait_for(lambda: worker.log().count("forward passes of") >= 3, timeout=30, what="both copies and the old message to finish", worker=worker)
    for rid in everything:
        assert Prediction.objects.filter(radiograph_id=rid, model_version=model).count() == 1
        radiograph = Radiograph.objects.get(pk=rid)
        assert radiograph.preannotation_status == "done" and radiograph.regions.count() == 1
        assert radiograph.events.filter(action="preannotated").count() == 1
