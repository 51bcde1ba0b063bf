"""The first model: with no active model and enough accepted annotations, a bootstrap training run
starts by itself (the preset for the training device, with ``BOOTSTRAP_TRAINING_OVERRIDES``: fewer
epochs, since this model exists to start the suggestions). It is promoted when it passes the gate (there
is nothing to compare the first model with) and the open radiographs are pre-annotated.

``training_bootstrap`` is what ``make run`` calls at each start (``manage.py training_bootstrap``),
after its worker is up; beat's periodic check calls ``training_bootstrap_if_due`` too, so a fresh
install starts training as soon as enough work is accepted. A run left live by a stopped worker is
queued again (the embedded broker drops a task whose worker was killed); the task is idempotent and
resumes from the run's ``last.pt``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from annotator.errors import Conflict

from ..models import ModelVersion, TrainingRun
from ..selectors import annotated_count, training_images_count
from .retraining import training_run_enqueue, training_run_start

logger = logging.getLogger(__name__)

BOOTSTRAP = "bootstrap"


def training_bootstrap_if_due() -> TrainingRun | None:
    """Queue the bootstrap run when there is no active model, no live run, at least
    ``BOOTSTRAP_MIN_ANNOTATED`` annotated radiographs, and more of them than the last bootstrap had
    (a bootstrap that failed or did not pass the gate is not repeated on the same data)."""
    if ModelVersion.objects.filter(is_active=True).exists() or TrainingRun.objects.filter(live=True).exists():
        return None
    annotated = annotated_count()
    if annotated < settings.BOOTSTRAP_MIN_ANNOTATED:
        logger.info("no model yet: %d annotated radiograph(s), %d needed to train the first", annotated, settings.BOOTSTRAP_MIN_ANNOTATED)
        return None
    last = TrainingRun.objects.filter(trigger=BOOTSTRAP).order_by("-created_at", "-pk").first()
    if last is not None and (last.config or {}).get("images", 0) >= training_images_count():
        logger.info("no model yet: bootstrap run %d already tried these %d radiograph(s)", last.pk, annotated)
        return None
    try:
        return training_run_start(trigger=BOOTSTRAP, overrides=settings.BOOTSTRAP_TRAINING_OVERRIDES)
    except Conflict:
        return None


@dataclass
class BootstrapStatus:
    """What ``training_bootstrap`` did, for the command to say."""

    resumed: list[TrainingRun]
    started: TrainingRun | None
    active: ModelVersion | None
    annotated: int


def training_bootstrap() -> BootstrapStatus:
    """At start: queue the live runs again (they resume), then the bootstrap run if it is due."""
    resumed = list(TrainingRun.objects.filter(live=True).order_by("pk"))
    for run in resumed:
        training_run_enqueue(run.pk)
    started = training_bootstrap_if_due() if not resumed else None
    return BootstrapStatus(
        resumed=resumed,
        started=started,
        active=ModelVersion.objects.filter(is_active=True).first(),
        annotated=annotated_count(),
    )
