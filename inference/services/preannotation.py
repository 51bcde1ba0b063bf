"""Pre-annotation: CMTNet's suggestions stored for radiographs, on the ``gpu`` queue.

``preannotation_request`` records a batch (for progress) and enqueues one task per radiograph when
the transaction commits. ``radiograph_preannotate`` (what the task runs) is idempotent and safe under
``acks_late``:

- one ``Prediction`` per (radiograph, model version): a second run, or a redelivered one, adds nothing;
- the attempt is counted and committed *before* the model runs, so a radiograph that kills the worker
  every time is marked failed with the reason after ``PREANNOTATE_MAX_ATTEMPTS`` starts instead of
  being retried forever;
- human work is never overwritten: suggestions go only to radiographs in the states where the
  workflow table (``annotator.workflow``) allows ``preannotate``, and are applied by the annotator's
  ``suggestions_apply``, which replaces only the model's untouched suggestions.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import partial

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from PIL import Image

from annotator import workflow
from annotator.constants import PreannotationStatus as Pre
from annotator.errors import Conflict, InvalidInput
from annotator.models import Radiograph
from annotator.services.events import event_record
from annotator.services.suggestions import suggestions_apply

from .. import selectors
from ..models import ModelVersion, Prediction, PreannotationBatch, PreannotationItem
from ..runtime import predictor_for
from ..suggestions import Suggestion, suggestion_from_prediction

logger = logging.getLogger(__name__)

# States whose radiographs receive (new) suggestions (the workflow table's); later states hold human decisions.
OPEN_STATES = workflow.sources("preannotate")
Item = PreannotationItem.Status


def model_version_active() -> ModelVersion | None:
    return selectors.model_version_active()


def preannotation_request(
    *,
    radiograph_ids: Iterable[int],
    model_version: ModelVersion | None = None,
    actor=None,
    reason: str = "import",
) -> PreannotationBatch | None:
    """Ask the workers to pre-annotate these radiographs with the active model (enqueued on commit).

    Returns the batch that reports progress, or None when there is no active model (a fresh install
    shows the workflow without suggestions). Radiographs that already have this model's prediction
    count as done at once; those past ``OPEN_STATES`` are skipped.
    """
    ids = sorted({int(i) for i in radiograph_ids})
    model_version = model_version or model_version_active()
    if model_version is None:
        logger.info("no active model: %d radiograph(s) stay without suggestions", len(ids))
        return None
    states = dict(Radiograph.objects.filter(pk__in=ids).values_list("pk", "state"))
    existing = set(Prediction.objects.filter(model_version=model_version, radiograph_id__in=ids).values_list("radiograph_id", flat=True))
    items, queued = [], []
    for rid in ids:
        if rid not in states:
            continue
        if rid in existing:
            items.append(PreannotationItem(radiograph_id=rid, status=Item.DONE, detail="already pre-annotated by this model"))
        elif states[rid] not in OPEN_STATES:
            items.append(PreannotationItem(radiograph_id=rid, status=Item.SKIPPED, detail=f"the radiograph is {states[rid]}"))
        else:
            items.append(PreannotationItem(radiograph_id=rid, status=Item.QUEUED))
            queued.append(rid)
    with transaction.atomic():
        batch = PreannotationBatch.objects.create(
            model_version=model_version, reason=reason, created_by=actor if getattr(actor, "is_authenticated", False) else None
        )
        for item in items:
            item.batch = batch
        PreannotationItem.objects.bulk_create(items, batch_size=1000)
        # A new request gives a radiograph its attempts back (a task in flight keeps its count).
        Radiograph.objects.filter(pk__in=queued).exclude(preannotation_status=Pre.RUNNING).update(
            preannotation_status=Pre.QUEUED, preannotation_attempts=0, preannotation_error=""
        )
        transaction.on_commit(partial(_enqueue, radiograph_ids=queued, model_version_id=model_version.pk, batch_id=batch.pk))
    logger.info("batch %d: %d radiograph(s) queued for %s (%s)", batch.pk, len(queued), model_version.name, reason)
    return batch


def _enqueue(*, radiograph_ids: list[int], model_version_id: int, batch_id: int) -> None:
    """Send the tasks (after the commit). An unreachable broker must not fail the import that asked:
    the radiographs are stored; they are marked failed with the reason and can be asked for again."""
    from ..tasks import preannotate

    sent = 0
    try:
        for rid in radiograph_ids:
            preannotate.apply_async(args=(rid, model_version_id, batch_id))
            sent += 1
    except Exception as exc:  # kombu/redis raise several types when the broker is down
        logger.exception("batch %d: %d of %d task(s) could not be queued", batch_id, len(radiograph_ids) - sent, len(radiograph_ids))
        unsent = radiograph_ids[sent:]
        reason = f"could not be queued: the task broker is unreachable ({type(exc).__name__})"
        PreannotationItem.objects.filter(batch_id=batch_id, radiograph_id__in=unsent).update(status=Item.FAILED, detail=reason)
        Radiograph.objects.filter(pk__in=unsent, preannotation_status=Pre.QUEUED).update(preannotation_status=Pre.FAILED, preannotation_error=reason)


def preannotation_request_for_dataset(*, dataset_name: str, actor=None) -> PreannotationBatch:
    """On demand: every open radiograph of a dataset that lacks the active model's prediction."""
    from annotator.models import Dataset

    dataset = Dataset.objects.filter(name=dataset_name).first()
    if dataset is None:
        raise InvalidInput(f"No dataset named {dataset_name!r}.")
    ids = Radiograph.objects.filter(dataset=dataset, state__in=OPEN_STATES).values_list("pk", flat=True)
    return _requested(ids, actor=actor)


def preannotation_request_for_radiographs(*, radiograph_ids: list[int], actor=None) -> PreannotationBatch:
    """On demand: these radiographs (ids that do not exist are an error)."""
    found = set(Radiograph.objects.filter(pk__in=radiograph_ids).values_list("pk", flat=True))
    missing = sorted(set(radiograph_ids) - found)
    if missing:
        raise InvalidInput(f"No radiograph with id {', '.join(map(str, missing[:10]))}.")
    return _requested(radiograph_ids, actor=actor)


def _requested(ids: Iterable[int], *, actor) -> PreannotationBatch:
    active = model_version_active()
    if active is None:
        raise Conflict("There is no active model: register one and activate it first.")
    return preannotation_request(radiograph_ids=list(ids), model_version=active, actor=actor, reason="request")


def preannotation_request_open(*, model_version: ModelVersion, actor=None, reason: str) -> PreannotationBatch | None:
    """After a promotion or rollback: every radiograph nobody has finished gets the model's suggestions."""
    ids = list(Radiograph.objects.filter(state__in=OPEN_STATES).values_list("pk", flat=True))
    if not ids:
        return None
    return preannotation_request(radiograph_ids=ids, model_version=model_version, actor=actor, reason=reason)


# --- the worker side ---------------------------------------------------------------------------


def radiograph_preannotate(*, radiograph_id: int, model_version_id: int, batch_id: int | None = None) -> str:
    """Run the model on one radiograph and store its prediction and suggestions (idempotent).

    Returns what happened: ``done``, ``exists``, ``skipped`` or ``failed``.
    """
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        _item(batch_id, radiograph_id, Item.SKIPPED, "the model version was deleted")
        return "skipped"
    if Prediction.objects.filter(radiograph_id=radiograph_id, model_version=model_version).exists():
        _item(batch_id, radiograph_id, Item.DONE, "already pre-annotated by this model")
        return "exists"
    if not model_version.is_active:
        _item(batch_id, radiograph_id, Item.SKIPPED, f"{model_version.name} is no longer the active model")
        return "skipped"

    outcome, radiograph = _attempt_start(radiograph_id=radiograph_id, batch_id=batch_id)
    if radiograph is None:
        return outcome
    delay = settings.PREANNOTATE_TEST_DELAY
    if delay:
        time.sleep(delay)
    try:
        image = radiograph_pixels(radiograph)
        predictor = predictor_for(model_version)
        clock = time.perf_counter()
        result = predictor.predict(image)
        suggestion = suggestion_from_prediction(
            result,
            shape=image.shape,
            threshold=settings.PREANNOTATE_MASK_THRESHOLD,
            min_region_fraction=settings.PREANNOTATE_MIN_REGION_FRACTION,
            max_regions=settings.PREANNOTATE_MAX_REGIONS,
        )
        seconds = time.perf_counter() - clock
    except SoftTimeLimitExceeded:
        _fail(radiograph_id, batch_id, "pre-annotation took longer than its time limit")
        return "failed"
    except Exception as exc:  # a bad image or checkpoint: recorded on the radiograph, never retried blindly
        logger.exception("pre-annotation of radiograph %s failed", radiograph_id)
        _fail(radiograph_id, batch_id, f"{type(exc).__name__}: {exc}"[:2000])
        return "failed"
    return _store(radiograph_id=radiograph_id, model_version=model_version, batch_id=batch_id, suggestion=suggestion, seconds=seconds)


def _attempt_start(*, radiograph_id: int, batch_id: int | None) -> tuple[str, Radiograph | None]:
    """Count this attempt (committed before the model runs) or give up on a poison radiograph.

    Returns ("started", the radiograph), or ("skipped" | "failed", None) when the model must not run.
    """
    limit = settings.PREANNOTATE_MAX_ATTEMPTS
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            return "skipped", None
        if radiograph.state not in OPEN_STATES:
            _item(batch_id, radiograph_id, Item.SKIPPED, f"the radiograph is {radiograph.state}")
            return "skipped", None
        if radiograph.preannotation_attempts >= limit:
            reason = (
                f"gave up after {radiograph.preannotation_attempts} attempts: the worker stopped (killed, out of "
                f"memory or past its time limit) each time it pre-annotated this radiograph"
            )
            Radiograph.objects.filter(pk=radiograph_id).update(preannotation_status=Pre.FAILED, preannotation_error=reason)
            _item(batch_id, radiograph_id, Item.FAILED, reason)
            event_record(radiograph=radiograph, actor=None, action="preannotation_failed", data={"reason": reason})
            logger.warning("radiograph %s: %s", radiograph_id, reason)
            return "failed", None
        Radiograph.objects.filter(pk=radiograph_id).update(
            preannotation_status=Pre.RUNNING, preannotation_attempts=F("preannotation_attempts") + 1, preannotation_error=""
        )
        _item(batch_id, radiograph_id, Item.RUNNING, "")
    return "started", radiograph


def _fail(radiograph_id: int, batch_id: int | None, reason: str) -> None:
    with transaction.atomic():
        Radiograph.objects.filter(pk=radiograph_id).update(preannotation_status=Pre.FAILED, preannotation_error=reason)
        _item(batch_id, radiograph_id, Item.FAILED, reason)


def _item(batch_id: int | None, radiograph_id: int, status: str, detail: str) -> None:
    if batch_id is not None:
        PreannotationItem.objects.filter(batch_id=batch_id, radiograph_id=radiograph_id).update(status=status, detail=detail)


def radiograph_pixels(radiograph: Radiograph) -> np.ndarray:
    """The 8-bit grayscale image the model sees (the stored display image, original size)."""
    with default_storage.open(radiograph.display.name, "rb") as fh, Image.open(fh) as image:
        array = np.asarray(image.convert("L") if image.mode != "L" else image)
    if array.shape != (radiograph.height, radiograph.width):
        raise ValueError(f"stored image is {array.shape[1]}x{array.shape[0]}, expected {radiograph.width}x{radiograph.height}")
    return array


def _store(*, radiograph_id: int, model_version: ModelVersion, batch_id: int | None, suggestion: Suggestion, seconds: float) -> str:
    with transaction.atomic():
        # Deliveries of the same task queue up on this row lock, so the check below decides.
        radiograph = Radiograph.objects.select_for_update().get(pk=radiograph_id)
        if Prediction.objects.filter(radiograph_id=radiograph_id, model_version=model_version).exists():
            _item(batch_id, radiograph_id, Item.DONE, "already pre-annotated by this model")
            return "exists"
        prediction = Prediction.objects.create(
            radiograph=radiograph,
            model_version=model_version,
            lung_mask_png=suggestion.lung_mask_png,
            right_box=suggestion.right_box,
            left_box=suggestion.left_box,
            healthy_prob=suggestion.healthy,
            covid_prob=suggestion.covid,
            other_disease_prob=suggestion.other_disease,
            uncertainty=suggestion.uncertainty,
            regions=[r.summary() for r in suggestion.regions],
            seconds=round(seconds, 4),
        )
        # The attempts stay as a record (a new request gives them back).
        changes: dict = {"preannotation_status": Pre.DONE, "preannotation_error": ""}
        if suggestion.uncertainty is not None:
            changes["uncertainty"] = suggestion.uncertainty
        if ModelVersion.objects.filter(pk=model_version.pk, is_active=True).exists():
            suggestions_apply(
                radiograph=radiograph,
                prediction_id=prediction.pk,
                model_version_id=model_version.pk,
                right_box=suggestion.right_box,
                left_box=suggestion.left_box,
                regions=suggestion.regions,
                label=settings.PREANNOTATE_REGION_LABEL,
            )
        Radiograph.objects.filter(pk=radiograph_id).update(**changes)
        _item(batch_id, radiograph_id, Item.DONE, "")
    return "done"
