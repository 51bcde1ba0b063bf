"""Pre-annotation requests: CMTNet's suggestions asked for radiographs, on the ``gpu`` queue.

``preannotation_request`` records a batch (for progress, one item per radiograph) and, when the
transaction commits, enqueues it as chunks of ``preannotate_batch_size()`` radiographs, one
``inference.preannotate_chunk`` task each; a worker runs a chunk as forward batches
(``preannotation_worker.radiographs_preannotate``: idempotent, attempts counted and failures marked
per radiograph, safe under ``acks_late``). Human work is never overwritten: suggestions go only to
radiographs in the states where the workflow table (``annotator.workflow``) allows ``preannotate``,
and are applied by the annotator's ``suggestions_apply``, which replaces only the model's untouched
suggestions.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.db import transaction

from annotator.constants import PreannotationStatus as Pre
from annotator.errors import Conflict, InvalidInput
from annotator.models import Radiograph

from .. import selectors
from ..models import ModelVersion, Prediction, PreannotationBatch, PreannotationItem
from .preannotation_worker import OPEN_STATES, Item, preannotate_batch_size

logger = logging.getLogger(__name__)

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
    """Send the chunks (after the commit). An unreachable broker must not fail the import that asked:
    the radiographs are stored; they are marked failed with the reason and can be asked for again."""
    from ..tasks import preannotate_chunk

    size = max(1, preannotate_batch_size())
    chunks = [radiograph_ids[i : i + size] for i in range(0, len(radiograph_ids), size)]
    sent = 0
    try:
        for chunk in chunks:
            preannotate_chunk.apply_async(args=(chunk, model_version_id, batch_id))
            sent += len(chunk)
    except Exception as exc:  # kombu/redis raise several types when the broker is down
        logger.exception("batch %d: %d of %d radiograph(s) could not be queued", batch_id, len(radiograph_ids) - sent, len(radiograph_ids))
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
