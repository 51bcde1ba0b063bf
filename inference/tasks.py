"""Celery tasks of the inference app: thin, named, taking ids, each calling one service.

Model work (``inference.preannotate_chunk``, ``inference.train``) is routed to the ``gpu`` queue, the
beat check (``inference.retrain_if_due``) to ``default`` (``config/celery.py``). All run with
``acks_late``: a worker killed mid-task leaves the message to be delivered again, and the services
are idempotent, so the work completes once.
"""
from __future__ import annotations

from celery import shared_task
from celery.worker import state as worker_state
from django.conf import settings

from .services import radiograph_preannotate, radiographs_preannotate, training_bootstrap_if_due, training_run_execute, training_run_start_if_due

_PREANNOTATE_LIMIT = settings.PREANNOTATE_TIME_LIMIT
_PREANNOTATE_OPTIONS = dict(
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=_PREANNOTATE_LIMIT,
    soft_time_limit=max(1, _PREANNOTATE_LIMIT - 30),
    ignore_result=True,
)


@shared_task(name="inference.preannotate_chunk", **_PREANNOTATE_OPTIONS)
def preannotate_chunk(radiograph_ids: list[int], model_version_id: int, batch_id: int | None = None) -> dict[int, str]:
    """A chunk of a pre-annotation batch, run as forward batches (``preannotation_request`` sends them)."""
    return radiographs_preannotate(radiograph_ids=radiograph_ids, model_version_id=model_version_id, batch_id=batch_id)


@shared_task(name="inference.preannotate", **_PREANNOTATE_OPTIONS)
def preannotate(radiograph_id: int, model_version_id: int, batch_id: int | None = None) -> str:
    """One radiograph: the message of earlier releases, still in queues after an upgrade (a chunk of one)."""
    return radiograph_preannotate(radiograph_id=radiograph_id, model_version_id=model_version_id, batch_id=batch_id)


def worker_stopping() -> bool:
    """True once this worker process was asked to shut down (Ctrl+C, TERM). Celery's signal handler
    sets it in the main process, where the solo pool of ``make run`` runs its tasks; a prefork pool's
    child never sees it, so there a warm shutdown waits for the training to end, as before."""
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


@shared_task(name="inference.train", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train(training_run_id: int) -> None:
    # Stopped by a shutdown, the run stays live and running: ``manage.py training_bootstrap`` (run by
    # ``make run`` at each start) queues it again and it resumes. It is not requeued from here: a
    # worker shutting down would take the message straight back.
    training_run_execute(training_run_id=training_run_id, should_stop=worker_stopping)


@shared_task(name="inference.retrain_if_due", acks_late=True, ignore_result=True)
def retrain_if_due() -> int | None:
    """Beat's check: the first model when there is none, else retraining on enough new work."""
    run = training_bootstrap_if_due() or training_run_start_if_due()
    return run.pk if run else None
