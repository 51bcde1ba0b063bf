"""Faults: the database restarted while saves are in flight, Redis restarted while a pre-annotation
batch is queued. Each ends with the work done once, or a clear error and nothing lost.

Both run against private, throw-away servers (``services.py``): restarting the shared PostgreSQL or
Redis would break the other test runs on the machine. A worker killed mid-task is covered by
``tests/inference/test_worker.py``.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from bench.load import Api, Gunicorn, migrate, seed, server_env
from tests.annotator.factories import RadiographFactory
from tests.inference.conftest import checkpoints, register  # noqa: F401  (fixtures)
from tests.inference.worker import celery_worker, wait_for  # noqa: F401  (fixture)

from .conftest import LEFT
from .services import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.slow]


# --- the database restarts while annotators save -------------------------------------------------


@pytest.fixture
def private_postgres():
    try:
        server = PrivatePostgres().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


class Annotator(threading.Thread):
    """A closed loop like the benchmark's, that retries what the server asks to retry (503) with
    the same version, as the front end does, and keeps a log of every answer."""

    def __init__(self, port: int, token: str, stop: threading.Event, n: int) -> None:
        super().__init__(daemon=True)
        self.api, self.stop, self.n = Api(port, token, timeout=30), stop, n
        self.answers: list[tuple[float, str, int, object]] = []  # (time, what, status, body)
        self.saved: list[tuple[int, int, list[int]]] = []  # acknowledged: radiograph, version, right box
        self.conflicts: list[tuple[int, dict, list[int]]] = []

    def call(self, what, method, path, body=None):
        while True:
            status, data, _ = self.api.call(method, path, body)
            self.answers.append((time.monotonic(), what, status, data))
            if status != 503 or self.stop.is_set():
                return status, data
            time.sleep(0.2)  # Retry-After, shortened

    def run(self) -> None:
        while not self.stop.is_set():
            status, lease = self.call("next", "POST", "/api/queue/annotate/next/", {})
            if status != 200:
                time.sleep(0.1)
                continue
            self.n += 1
            right = [10 + self.n % 50, 20, 90, 140]
            body = {"version": lease["version"], "right": right, "left": LEFT, "labels": {"covid": "negative"}, "submit": True}
            status, saved = self.call("save", "PUT", f"/api/radiographs/{lease['id']}/annotation/", body)
            if status == 200:
                self.saved.append((lease["id"], saved["version"], right))
            elif status == 409:  # a retried save whose first attempt was stored after all
                self.conflicts.append((lease["id"], saved, right))


def test_a_database_restart_during_saves_loses_no_acknowledged_save(private_postgres, tmp_path):
    import psycopg

    database_url = private_postgres.create_database("lungmark")
    media = tmp_path / "media"
    media.mkdir()
    env = server_env(database_url, media)
    migrate(env)
    people = seed(env, annotators=6, radiologists=0, radiographs=2000, in_review=0)
    server = Gunicorn(env, workers=2, threads=4).start()
    stop = threading.Event()
    annotators = [Annotator(server.port, token, stop, i * 100) for i, token in enumerate(people["tokens"]["annotator"])]
    try:
        for annotator in annotators:
            annotator.start()
        wait_for(lambda: sum(len(a.saved) for a in annotators) >= 20, timeout=60, what="saves before the restart")
        # Open connections are cut (saves in flight fail), then every request finds it gone for 2 s.
        down, up = private_postgres.restart(down_for=2)
        wait_for(
            lambda: sum(1 for a in annotators for t, what, status, _ in a.answers if what == "save" and status == 200 and t > up) >= 20,
            timeout=60,
            what="saves to succeed again after the restart",
        )
    finally:
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=60)
        log = server.log()
        server.stop()

    answers = [answer for annotator in annotators for answer in annotator.answers]
    statuses = {status for _, _, status, _ in answers}
    assert statuses <= {200, 204, 409, 503}, (statuses, log[-3000:])  # never a 500, never a dropped connection
    unavailable = [body for t, _, status, body in answers if status == 503]
    assert unavailable, "no request saw the database down: the restart was not exercised"
    assert all(body["code"] == "unavailable" and body["detail"] for body in unavailable)
    assert all(down - 1 <= t <= up + 30 for t, _, status, _ in answers if status == 503), "503s outside the outage"

    saved = [s for a in annotators for s in a.saved]
    with psycopg.connect(database_url) as conn:
        stored = {(r, v): right for r, v, right in conn.execute("SELECT radiograph_id, version, right_box FROM annotator_lungannotation")}
        submitted = dict(conn.execute("SELECT id, state FROM annotator_radiograph WHERE state = 'lungs_done'"))
    lost = [s for s in saved if stored.get((s[0], s[1])) != s[2]]
    assert not lost, f"{len(lost)} acknowledged saves are not in the database: {lost[:5]}"
    assert all(s[0] in submitted for s in saved)
    # A save retried after a 503 that had in fact been stored is answered 409 with what is stored:
    # the annotator's own boxes, so nothing is lost there either.
    for radiograph_id, body, right in (c for a in annotators for c in a.conflicts):
        assert body["code"] in ("stale_version", "invalid_transition")
        assert body["current"]["lungs"]["right"] == right, (radiograph_id, body)


# --- Redis restarts while a pre-annotation batch is queued -----------------------------------------


@contextmanager
def celery_broker(url: str):
    """Point this process's Celery app (the producer of tasks) at another broker, then back.
    (Celery reads ``CELERY_BROKER_URL`` from the environment before its own configuration.)"""
    import os

    from config.celery import app

    def reset():
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    app.conf.broker_url = os.environ["CELERY_BROKER_URL"] = url
    reset()
    try:
        yield app
    finally:
        app.conf.broker_url = previous[0]
        if previous[1] is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous[1]
        reset()


@pytest.mark.worker
def test_a_redis_restart_while_a_batch_is_queued_still_predicts_each_radiograph_once(celery_worker, register, checkpoints):
    from annotator.models import Radiograph
    from inference.models import Prediction, PreannotationItem
    from inference.services import model_version_activate
    from inference.services.preannotation import preannotation_request

    try:
        redis = PrivateRedis(persistent=True).start()  # like production: append-only file, no eviction
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        with celery_broker(redis.url):
            # Active without pre-annotating what else the database holds: only this batch is queued.
            model = register(checkpoints["plumbing"], name="tiny-redis", activate=False)
            model_version_activate(model_version_id=model.pk, preannotate=False)
            radiographs = [RadiographFactory() for _ in range(8)]
            ids = [r.id for r in radiographs]
            worker = celery_worker(
                {
                    "CELERY_BROKER_URL": redis.url,
                    "PREANNOTATE_TEST_DELAY": "0.5",  # the batch is still queued when Redis goes down
                    "CELERY_VISIBILITY_TIMEOUT": "5",
                    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
                    "CELERY_UNACKED_RESTORE_THROTTLE": "1",
                }
            )
            batch = preannotation_request(radiograph_ids=ids, model_version=model)  # enqueued at once (autocommit)
            try:
                wait_for(lambda: Prediction.objects.filter(radiograph_id__in=ids).exists(), timeout=60, what="the first prediction")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-4000:]}") from None
            done_before = Prediction.objects.filter(radiograph_id__in=ids).count()
            assert done_before < len(ids), "the batch finished before Redis went down: nothing was tested"
            redis.restart(down_for=2)

            def settled():
                items = PreannotationItem.objects.filter(batch=batch)
                return all(item.status in ("done", "failed") for item in items)

            try:
                wait_for(settled, timeout=90, what="every radiograph of the batch to be done or failed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-4000:]}") from None
            time.sleep(6)  # past another visibility timeout: a duplicate delivery would show up by now
    finally:
        redis.stop()

    for item in PreannotationItem.objects.filter(batch=batch):
        if item.status == "failed":
            assert item.detail, "a failure without a reason"
            assert Radiograph.objects.get(pk=item.radiograph_id).preannotation_status == "failed"
        else:
            assert Prediction.objects.filter(radiograph_id=item.radiograph_id, model_version=model).count() == 1
            assert Radiograph.objects.get(pk=item.radiograph_id).events.filter(action="preannotated").count() == 1
    assert Prediction.objects.filter(radiograph_id__in=ids).count() == PreannotationItem.objects.filter(batch=batch, status="done").count()
    assert PreannotationItem.objects.filter(batch=batch, status="done").count() >= done_before
