"""Pre-annotation on the worker: a chunk of radiographs run through CMTNet as batches (idempotent).

``radiographs_preannotate`` is what the ``inference.preannotate_chunk`` task runs (and, for one
radiograph, the older ``inference.preannotate``). It is safe under ``acks_late``, a redelivered
chunk and a chunk delivered twice at once, because every rule holds per radiograph:

- one ``Prediction`` per (radiograph, model version): checked under the radiograph's row lock when
  its attempt starts and again when it is stored, so a second run adds nothing;
- the attempt is counted and committed *before* the radiograph is decoded and run, so a radiograph
  that kills the worker every time is marked failed after ``PREANNOTATE_MAX_ATTEMPTS`` starts;
- a radiograph whose earlier attempt never finished (still ``running`` when the chunk starts: the
  chunk was redelivered after its worker died) runs alone, after the others and without prefetching,
  so a poison image costs its neighbours at most one counted attempt;
- a radiograph that fails to decode, or whose suggestions fail, fails alone; the rest of its batch
  runs; a forward pass that fails is retried one radiograph at a time for the same reason;
- each radiograph's prediction, suggestions (``suggestions_apply``: human work is never overwritten)
  and progress item are committed as it completes, so the page's progress bar moves per radiograph.

Decoding overlaps the model: while a batch runs, a thread pool reads and preprocesses the next
batch (PIL and torch release the GIL there). Batch size: ``preannotate_batch_size`` (32 on CUDA,
1 on the CPU where a larger batch is slower: bench/README.md).
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from PIL import Image

from annotator import workflow
from annotator.constants import PreannotationStatus as Pre
from annotator.models import Radiograph
from annotator.services.events import event_record
from annotator.services.suggestions import suggestions_apply

from ..models import ModelVersion, Prediction, PreannotationItem
from ..runtime import predictor_for
from ..suggestions import Suggestion, suggestion_from_prediction

logger = logging.getLogger(__name__)

# States whose radiographs receive (new) suggestions (the workflow table's); later states hold human decisions.
OPEN_STATES = workflow.sources("preannotate")
Item = PreannotationItem.Status

# Forward batch on CUDA when PREANNOTATE_BATCH_SIZE is 0 (bench/README.md: 8 -> 32 still gains).
CUDA_BATCH_SIZE = 32
# Most threads decoding ahead of the model (each holds one full-size image at a time).
MAX_DECODE_THREADS = 8


def preannotate_batch_size() -> int:
    """Radiographs per task and per forward pass: ``PREANNOTATE_BATCH_SIZE``, or by the device that
    ``INFERENCE_DEVICE`` resolves to here (CUDA: ``CUDA_BATCH_SIZE``; CPU: 1, the fastest there)."""
    if settings.PREANNOTATE_BATCH_SIZE > 0:
        return settings.PREANNOTATE_BATCH_SIZE
    from training.runtime import resolve_device

    try:
        device = resolve_device(settings.INFERENCE_DEVICE)
    except ValueError:  # CUDA named but absent: the worker will say so when it loads the model
        return 1
    return CUDA_BATCH_SIZE if device.type == "cuda" else 1


def radiograph_preannotate(*, radiograph_id: int, model_version_id: int, batch_id: int | None = None) -> str:
    """Run the model on one radiograph (a chunk of one). Returns ``done``, ``exists``, ``skipped`` or ``failed``."""
    return radiographs_preannotate(radiograph_ids=[radiograph_id], model_version_id=model_version_id, batch_id=batch_id)[radiograph_id]


def radiographs_preannotate(*, radiograph_ids: Iterable[int], model_version_id: int, batch_id: int | None = None) -> dict[int, str]:
    """Run the model on a chunk of radiographs in batches and store each one's prediction and
    suggestions as it completes (idempotent; see the module docstring).

    Returns each radiograph's outcome: ``done``, ``exists``, ``skipped``, ``failed``, or ``queued``
    (past the task's soft time limit, not reached: sent again as a new chunk).
    """
    ids = list(dict.fromkeys(int(i) for i in radiograph_ids))
    outcomes: dict[int, str] = {}
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        for rid in ids:
            outcomes[rid] = _item(batch_id, rid, Item.SKIPPED, "the model version was deleted", "skipped")
        return outcomes
    existing = set(Prediction.objects.filter(model_version=model_version, radiograph_id__in=ids).values_list("radiograph_id", flat=True))
    for rid in existing:
        outcomes[rid] = _item(batch_id, rid, Item.DONE, "already pre-annotated by this model", "exists")
    pending = [rid for rid in ids if rid not in existing]
    if not model_version.is_active:
        for rid in pending:
            outcomes[rid] = _item(batch_id, rid, Item.SKIPPED, f"{model_version.name} is no longer the active model", "skipped")
        return outcomes
    chunk = _Chunk(model_version=model_version, batch_id=batch_id, outcomes=outcomes)
    if pending:
        chunk.run(pending)
    logger.info(
        "chunk of %d for %s: %s; forward passes of %s radiograph(s)",
        len(ids), model_version.name, dict(Counter(outcomes.values())), chunk.passes,
    )
    return outcomes


# A batch being prepared: radiograph id -> its decoding in flight (its attempt already counted).
_Batch = dict[int, Future]


class _Chunk:
    """One chunk's run: batches prepared (attempts counted, decoding submitted) one ahead of the model."""

    def __init__(self, *, model_version: ModelVersion, batch_id: int | None, outcomes: dict[int, str]) -> None:
        self.model_version = model_version
        self.batch_id = batch_id
        self.outcomes = outcomes
        self.predictor = None
        self.pool: ThreadPoolExecutor | None = None
        self.passes: list[int] = []  # the size of each forward pass, for the log

    def run(self, pending: list[int]) -> None:
        unfinished = set(Radiograph.objects.filter(pk__in=pending, preannotation_status=Pre.RUNNING).values_list("pk", flat=True))
        fresh = [rid for rid in pending if rid not in unfinished]
        size = max(1, preannotate_batch_size())
        groups = [fresh[i : i + size] for i in range(0, len(fresh), size)]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, min(size, cores, MAX_DECODE_THREADS))
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preannotate-decode")
        current: _Batch | None = None
        try:
            ahead = self._prepare(groups[0]) if groups else None
            for k in range(len(groups)):
                current, ahead = ahead, (self._prepare(groups[k + 1]) if k + 1 < len(groups) else None)
                self._run(current)
            # Suspected of killing a worker: alone, and nothing decoded beside them.
            for rid in pending:
                if rid in unfinished:
                    current, ahead = self._prepare([rid]), None
                    self._run(current)
            current = None
        except SoftTimeLimitExceeded:
            self._time_limit(pending, current)
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if unfinished:
            logger.info("%d radiograph(s) whose earlier attempt did not finish ran alone", len(unfinished))

    def _prepare(self, group: list[int]) -> _Batch:
        """Count each radiograph's attempt (committed), then submit its decoding."""
        batch: _Batch = {}
        started = []
        for rid in group:
            outcome, radiograph = _attempt_start(radiograph_id=rid, model_version=self.model_version, batch_id=self.batch_id)
            if radiograph is None:
                self.outcomes[rid] = outcome
            else:
                started.append(radiograph)
        if not started:
            return batch
        try:
            # Loaded once per process (after the first attempts are counted: a model that kills the
            # worker while loading still uses up attempts).
            self.predictor = self.predictor or predictor_for(self.model_version)
        except Exception as exc:  # an unreadable checkpoint: recorded on each radiograph
            logger.exception("loading model %s failed", self.model_version.name)
            for radiograph in started:
                self._failed(radiograph.pk, exc)
            return batch
        for radiograph in started:
            batch[radiograph.pk] = self.pool.submit(_decode, radiograph, self.predictor)
        return batch

    def _run(self, batch: _Batch | None) -> None:
        """Wait for the batch's decoding, run the model once, store each radiograph as it completes."""
        if not batch:
            return
        delay = settings.PREANNOTATE_TEST_DELAY
        if delay:
            time.sleep(delay)
        ready: list[tuple[int, tuple[int, int], object]] = []
        for rid, future in batch.items():
            try:
                shape, tensor = future.result()
            except Exception as exc:  # a corrupt or mismatched image fails alone
                logger.warning("radiograph %s could not be decoded: %s", rid, exc)
                self._failed(rid, exc)
                continue
            ready.append((rid, shape, tensor))
        if ready:
            self._predict(ready)

    def _predict(self, ready: list[tuple[int, tuple[int, int], object]]) -> None:
        import torch

        clock = time.perf_counter()
        self.passes.append(len(ready))
        try:
            results = self.predictor.predict_preprocessed(torch.cat([t for _, _, t in ready]), [s for _, s, _ in ready])
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            if len(ready) > 1:  # find the one that fails: the others still get their suggestions
                logger.warning("a batch of %d failed (%s): running its radiographs one at a time", len(ready), exc)
                for one in ready:
                    self._predict([one])
                return
            logger.exception("pre-annotation of radiograph %s failed", ready[0][0])
            self._failed(ready[0][0], exc)
            return
        model_seconds = (time.perf_counter() - clock) / len(ready)
        for (rid, shape, _), result in zip(ready, results):
            clock = time.perf_counter()
            try:
                suggestion = suggestion_from_prediction(
                    result,
                    shape=shape,
                    threshold=settings.PREANNOTATE_MASK_THRESHOLD,
                    min_region_fraction=settings.PREANNOTATE_MIN_REGION_FRACTION,
                    max_regions=settings.PREANNOTATE_MAX_REGIONS,
                )
            except Exception as exc:
                logger.exception("suggestions of radiograph %s failed", rid)
                self._failed(rid, exc)
                continue
            seconds = model_seconds + time.perf_counter() - clock
            self.outcomes[rid] = _store(
                radiograph_id=rid, model_version=self.model_version, batch_id=self.batch_id, suggestion=suggestion, seconds=seconds
            )

    def _failed(self, rid: int, exc: BaseException) -> None:
        _fail(rid, self.batch_id, f"{type(exc).__name__}: {exc}"[:2000])
        self.outcomes[rid] = "failed"

    def _time_limit(self, pending: list[int], current: _Batch | None) -> None:
        """Past the soft time limit: the batch the model was running fails; radiographs not reached
        yet go back to the queue as a new chunk (those counted ahead keep the count and run alone)."""
        running = set(current or ())
        for rid in running - set(self.outcomes):
            _fail(rid, self.batch_id, "pre-annotation took longer than its time limit")
            self.outcomes[rid] = "failed"
        rest = [rid for rid in pending if rid not in self.outcomes]
        if rest:
            from ..tasks import preannotate_chunk

            logger.warning("chunk past its time limit: %d radiograph(s) queued again", len(rest))
            PreannotationItem.objects.filter(batch_id=self.batch_id, radiograph_id__in=rest).update(status=Item.QUEUED, detail="")
            preannotate_chunk.apply_async(args=(rest, self.model_version.pk, self.batch_id))
            for rid in rest:
                self.outcomes[rid] = "queued"


def _decode(radiograph: Radiograph, predictor) -> tuple[tuple[int, int], object]:
    """In a decoding thread: the stored display image as the model's input (original shape, tensor)."""
    pixels = radiograph_pixels(radiograph)
    return pixels.shape, predictor.preprocess([pixels])


def radiograph_pixels(radiograph: Radiograph) -> np.ndarray:
    """The 8-bit grayscale image the model sees (the stored display image, original size)."""
    with default_storage.open(radiograph.display.name, "rb") as fh, Image.open(fh) as image:
        array = np.asarray(image.convert("L") if image.mode != "L" else image)
    if array.shape != (radiograph.height, radiograph.width):
        raise ValueError(f"stored image is {array.shape[1]}x{array.shape[0]}, expected {radiograph.width}x{radiograph.height}")
    return array


def _attempt_start(*, radiograph_id: int, model_version: ModelVersion, batch_id: int | None) -> tuple[str, Radiograph | None]:
    """Count this attempt (committed before the model runs) or give up on a poison radiograph.

    Returns ("started", the radiograph), or ("exists" | "skipped" | "failed", None) when the model must not run.
    """
    limit = settings.PREANNOTATE_MAX_ATTEMPTS
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            return "skipped", None
        # Another delivery of the chunk stored it meanwhile (it held this lock while storing).
        if Prediction.objects.filter(radiograph_id=radiograph_id, model_version=model_version).exists():
            return _item(batch_id, radiograph_id, Item.DONE, "already pre-annotated by this model", "exists"), None
        if radiograph.state not in OPEN_STATES:
            return _item(batch_id, radiograph_id, Item.SKIPPED, f"the radiograph is {radiograph.state}", "skipped"), None
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


def _item(batch_id: int | None, radiograph_id: int, status: str, detail: str, outcome: str = "") -> str:
    """Set the radiograph's progress item in the batch (if any); returns ``outcome`` for brevity."""
    if batch_id is not None:
        PreannotationItem.objects.filter(batch_id=batch_id, radiograph_id=radiograph_id).update(status=status, detail=detail)
    return outcome


def _store(*, radiograph_id: int, model_version: ModelVersion, batch_id: int | None, suggestion: Suggestion, seconds: float) -> str:
    with transaction.atomic():
        # Deliveries of the same chunk queue up on this row lock, so the check below decides.
        radiograph = Radiograph.objects.select_for_update().get(pk=radiograph_id)
        if Prediction.objects.filter(radiograph_id=radiograph_id, model_version=model_version).exists():
            return _item(batch_id, radiograph_id, Item.DONE, "already pre-annotated by this model", "exists")
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
