"""Retraining: export a snapshot → train → evaluate candidate and active model on its frozen test
split → register the candidate → promote it only if it is not worse → pre-annotate again.

Every run trains with a named preset of ``training.presets`` (the admin page's choice, else
``TRAINING_PRESET``; ``auto`` is the preset for the device) with optional overrides of its settings.

Never two trainings at once: a ``TrainingRun`` is ``live`` while queued or running and the unique
constraint on ``live`` refuses a second one (a ``Conflict``, HTTP 409). The run's progress, per-epoch
history and log are written while it trains, for the admin page. A worker killed mid-training gets
the task again (``acks_late``) and resumes from the run directory's ``last.pt``; a worker shutting down
stops the training at its next batch and leaves the run live, to be queued again (``bootstrap.py``).

The snapshot is read from a local copy (``export_local_copy``) and the run's folder is stored in the
media storage after every epoch (``run_files.RunFolder``), so any worker that reaches the database,
the broker and the storage can train, or resume another's run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from annotator.constants import ExportStatus, State
from annotator.errors import Conflict, InvalidInput
from annotator.models import Dataset, ExportSnapshot, Radiograph
from annotator.services.events import audit_record
from annotator.services.exports import export_build, export_create, export_local_copy

from ..models import ModelVersion, TrainingRun
from ..selectors import training_images_count
from .registry import json_safe, model_version_activate, model_version_register
from .run_files import RunFolder

# The lung masks a run learns from: imported outlines where an image has one, else its two lung boxes
# filled. By 5-fold cross-validation on the sample (training/README.md) a model that learnt every lung
# from filled boxes suggests worse boxes than one that learnt from the outlines, even against the
# boxes people drew.
RETRAINING_EXPORT_OPTIONS = {"lung_masks": "outlines"}

logger = logging.getLogger(__name__)

# The gate: the candidate must not be worse than the active model on these (higher is better).
GATE_METRICS = ("lung_dice", "covid_sensitivity_at_90_specificity")
# Share of the progress bar for each stage.
EXPORT_SHARE, TRAIN_SHARE = 0.05, 0.85
# Training settings a manual start may override: name -> (type, minimum, maximum).
# Those that size the model rather than the run.
MODEL_SETTINGS = ("width", "image_size")
OVERRIDABLE: dict[str, tuple[type, float, float]] = {
    "epochs": (int, 1, 1000),
    "width": (float, 0.03125, 2.0),
    "image_size": (int, 32, 1024),
    "batch_size": (int, 1, 512),
    "lr": (float, 1e-7, 1.0),
}


def promotion_decide(
    candidate_metrics: dict[str, Any] | None, active_metrics: dict[str, Any] | None, *, tolerance: float | None = None
) -> tuple[bool, list[str]]:
    """Promote the candidate only if it is not worse than the active model on the gate metrics.

    Both dicts come from ``training.evaluate.evaluate`` on the *same* snapshot's test split. A metric
    the split cannot measure for either model (None) does not decide; one the candidate lacks but the
    active model has counts as worse; with no active model the candidate is promoted. Returns
    (promote, reasons), one reason per gate metric.
    """
    tolerance = settings.PROMOTION_TOLERANCE if tolerance is None else tolerance
    if not active_metrics:
        return True, ["no active model to compare with"]
    candidate_metrics = candidate_metrics or {}
    promote, compared, reasons = True, 0, []
    for name in GATE_METRICS:
        new, old = _finite(candidate_metrics.get(name)), _finite(active_metrics.get(name))
        if old is None and new is None:
            reasons.append(f"{name}: not measurable on this test split")
            continue
        compared += 1
        if old is None:
            reasons.append(f"{name}: {new:.4f} (the active model has none)")
        elif new is None:
            promote = False
            reasons.append(f"{name}: not measured for the candidate, active {old:.4f}")
        elif new + tolerance < old:
            promote = False
            reasons.append(f"{name}: {new:.4f} is worse than the active model's {old:.4f}")
        else:
            reasons.append(f"{name}: {new:.4f} is not worse than the active model's {old:.4f}")
    if compared == 0:
        return False, reasons + ["no gate metric could be measured: the active model stays"]
    return promote, reasons


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --- starting a run -----------------------------------------------------------------------------


def training_preset(name: str | None = None):
    """A named preset of ``training.presets``; without a name TRAINING_PRESET, where ``auto`` (the
    default) is the preset for the training device. An unknown name is an ``InvalidInput``."""
    from training.presets import PRESETS, get_preset, preset_for_device

    name = (name or settings.TRAINING_PRESET or "auto").strip()
    if name == "auto":
        return preset_for_device(settings.INFERENCE_DEVICE)
    try:
        return get_preset(name)
    except ValueError:
        raise InvalidInput(f"Unknown training preset {name!r}; choose one of {', '.join(PRESETS)}.") from None


def training_overrides_clean(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Validated overrides of a preset's settings (``epochs``, ``width``, ...); empty ones are dropped."""
    overrides = {k: v for k, v in dict(overrides or {}).items() if v not in (None, "")}
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise InvalidInput(f"Unknown training setting(s) {', '.join(unknown)}; allowed: {', '.join(OVERRIDABLE)}.")
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        kind, low, high = OVERRIDABLE[name]
        try:
            if isinstance(value, bool):
                raise TypeError
            number = kind(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"'{name}' must be a number.") from None
        if not low <= number <= high:
            raise InvalidInput(f"'{name}' must be between {low} and {high}.")
        clean[name] = number
    if clean.get("image_size", 32) % 32:
        raise InvalidInput("'image_size' must be a multiple of 32.")
    return clean


def training_config_build(preset, *, export_dir: str, run_dir: str, overrides: dict[str, Any] | None = None):
    """The preset's ``TrainConfig`` for this run with the overrides applied (model size included)."""
    overrides = overrides or {}
    base = preset.train_config(export_dir=export_dir, run_dir=run_dir)
    model = dataclasses.replace(base.model, **{k: overrides[k] for k in MODEL_SETTINGS if k in overrides})
    return dataclasses.replace(base, model=model, **{k: v for k, v in overrides.items() if k not in MODEL_SETTINGS})


def training_plan(*, preset: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run would train and roughly how long it would take, shown before it is started."""
    chosen = training_preset(preset)
    overrides = training_overrides_clean({**settings.TRAINING_OVERRIDES, **(overrides or {})})
    images = training_images_count()
    seconds = float(chosen.estimate_seconds(images))
    if "epochs" in overrides:  # the estimate is for the preset's own number of epochs
        seconds *= overrides["epochs"] / max(1, training_config_build(chosen, export_dir="", run_dir="").epochs)
    return {
        "preset": chosen.name,
        "title": chosen.title,
        "description": chosen.description,
        "device": chosen.device,
        "overrides": overrides,
        "images": images,
        "estimate_seconds": round(seconds),
    }


def training_presets() -> dict[str, Any]:
    """Every preset with roughly how long a run would take on the annotated radiographs now, and the
    one a run gets when none is chosen (the admin page shows this before a run is started)."""
    from training.presets import PRESETS

    images = training_images_count()
    return {
        "default": training_preset().name,
        "images": images,
        "presets": [
            {
                "name": p.name,
                "title": p.title,
                "description": p.description,
                "device": p.device,
                "epochs": training_config_build(p, export_dir="", run_dir="").epochs,
                "estimate_seconds": round(p.estimate_seconds(images)),
            }
            for p in PRESETS.values()
        ],
    }


def training_run_start(
    *, actor=None, trigger: str = "manual", preset: str | None = None, overrides: dict[str, Any] | None = None
) -> TrainingRun:
    """Queue a training run with a preset (default: TRAINING_PRESET) and optional overrides (the task
    is enqueued on commit). A run already live is a Conflict."""
    plan = training_plan(preset=preset, overrides=overrides)
    config = {key: plan[key] for key in ("preset", "overrides", "images", "estimate_seconds")}
    accepted = Radiograph.objects.filter(state=State.ACCEPTED).count()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=trigger,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                config=config,
                accepted_count=accepted,
                live=True,
            )
            audit_record(actor=actor, action="training_requested", target=f"training:{run.pk}", data={"trigger": trigger, "config": config})
            transaction.on_commit(lambda: training_run_enqueue(run.pk))
    except IntegrityError:
        live = TrainingRun.objects.filter(live=True).first()
        message = f"Training run {live.pk} is already {live.status}" if live else "A training run is already live"
        raise Conflict(f"{message}: one training at a time.", extra={"training_run": live.pk if live else None}) from None
    logger.info("training run %d queued (%s, preset %s, about %d s)", run.pk, trigger, plan["preset"], plan["estimate_seconds"])
    return run


def training_run_enqueue(run_id: int) -> None:
    """Send the task (after the commit); if the broker is unreachable the run fails with the reason
    and frees the one-training slot."""
    from ..tasks import train

    try:
        train.apply_async(args=(run_id,))
    except Exception as exc:  # kombu/redis raise several types when the broker is down
        logger.exception("training run %d could not be queued", run_id)
        _run_update(
            run_id, line=f"could not be queued: the task broker is unreachable ({type(exc).__name__})",
            status=TrainingRun.Status.FAILED, live=None, finished_at=timezone.now(),
        )


def training_run_start_if_due() -> TrainingRun | None:
    """Beat's check: start a run when RETRAIN_MIN_NEW_ACCEPTED radiographs were accepted since the last."""
    last = TrainingRun.objects.order_by("-created_at", "-pk").first()
    accepted = Radiograph.objects.filter(state=State.ACCEPTED).count()
    new = accepted - (last.accepted_count if last else 0)
    if new < settings.RETRAIN_MIN_NEW_ACCEPTED:
        logger.info("retraining not due: %d newly accepted, %d needed", new, settings.RETRAIN_MIN_NEW_ACCEPTED)
        return None
    try:
        return training_run_start(trigger="periodic")
    except Conflict:
        logger.info("retraining due, but a training run is already live")
        return None


# --- running it (the gpu worker) -----------------------------------------------------------------


class _Reporter:
    """The training package's progress callback: progress, history and log on the run, throttled."""

    def __init__(self, run_id: int, epochs: int, *, every: float = 2.0, on_epoch: Callable[[], None] | None = None) -> None:
        self.run_id, self.epochs, self.every = run_id, max(1, epochs), every
        self.on_epoch = on_epoch  # after an epoch's checkpoints are written (stores the run folder)
        self.last = 0.0

    def __call__(self, epoch: int, step: int, total_steps: int, metrics: dict[str, Any]) -> None:
        fraction = ((epoch - 1) + step / max(1, total_steps)) / self.epochs
        progress = EXPORT_SHARE + TRAIN_SHARE * min(1.0, fraction)
        epoch_end = step == total_steps and "train_loss" in metrics
        now = time.monotonic()
        if not epoch_end and now - self.last < self.every:
            return
        self.last = now
        if epoch_end:
            row = json_safe(metrics)
            run = TrainingRun.objects.only("history").get(pk=self.run_id)
            history = [r for r in run.history if r.get("epoch") != row.get("epoch")] + [row]
            line = f"epoch {epoch}/{self.epochs}: train loss {_fmt(row.get('train_loss'))}, val loss {_fmt(row.get('val_loss'))}"
            if row.get("val_lung_dice") is not None:
                line += f", val lung Dice {_fmt(row['val_lung_dice'])}"
            line += f", {_fmt(row.get('seconds'), 1)} s"
            _run_update(self.run_id, progress=progress, history=history, line=line)
            if self.on_epoch is not None:
                self.on_epoch()
        else:
            _run_update(self.run_id, progress=progress)


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _run_update(run_id: int, *, line: str | None = None, **changes: Any) -> None:
    if line is not None:
        logger.info("training run %d: %s", run_id, line)
        changes["log"] = Concat(F("log"), Value(f"{timezone.now():%Y-%m-%d %H:%M:%S} {line}\n"))
    TrainingRun.objects.filter(pk=run_id).update(**changes)


def training_run_execute(*, training_run_id: int, should_stop: Callable[[], bool] | None = None) -> TrainingRun:
    """Carry out a queued run (idempotent: a finished run is left alone; a running one resumes).

    ``should_stop`` (the worker's shutdown) stops the training within seconds; the run then stays
    ``running`` and live, to be resumed from its ``last.pt`` by the next delivery.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=training_run_id).first()
        if run is None:
            raise InvalidInput(f"No training run {training_run_id}.")
        if run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED):
            return run
        resumed = run.status == TrainingRun.Status.RUNNING
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, started_at=run.started_at or timezone.now())
    _run_update(run.pk, line="resumed after the worker stopped" if resumed else "started")
    try:
        _execute(run, should_stop)
    except Exception as exc:
        logger.exception("training run %d failed", run.pk)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        _run_update(run.pk, line=f"failed: {detail}"[:4000], status=TrainingRun.Status.FAILED, live=None, finished_at=timezone.now())
        audit_record(actor=None, action="training_failed", target=f"training:{run.pk}", data={"error": detail[:500]})
    run.refresh_from_db()
    return run


def _execute(run: TrainingRun, should_stop: Callable[[], bool] | None = None) -> bool:
    """Export, train, evaluate, register, maybe promote; False when a shutdown stopped the training."""
    # torch is imported here, in the worker that trains, never by the web process.
    from training.checkpoint import load_checkpoint, write_checkpoint
    from training.config import ModelConfig, TrainConfig
    from training.evaluate import evaluate
    from training.train import train

    from ..runtime import checkpoint_local_path

    snapshot = _snapshot(run)
    export_root = export_local_copy(snapshot)
    config = run.config or {}
    preset = training_preset(config.get("preset"))
    folder = RunFolder(run)
    folder.restore()
    train_config = dataclasses.replace(
        training_config_build(preset, export_dir=str(export_root), run_dir=str(folder.local), overrides=config.get("overrides")),
        resume=True,  # a redelivered or stopped run continues from last.pt
        nproc=settings.TRAINING_NPROC,  # "auto": every GPU of this worker
        evaluate_test=False,  # scored below, like the active model, with the same function
    )
    _run_update(
        run.pk,
        line=(
            f"training with preset {preset.name} ({preset.title}) on {preset.device}: {train_config.epochs} epochs, "
            f"width {train_config.model.width}, {train_config.model.image_size} px; snapshot {snapshot.pk}: {json_safe(snapshot.counts)}"
        ),
        config={**config, "run_dir": folder.stored.prefix},
    )
    try:
        result = train(train_config, progress=_Reporter(run.pk, train_config.epochs, on_epoch=folder.sync), should_stop=should_stop)
    finally:
        folder.sync()  # the log of a failed run too
    if result.stopped:
        _run_update(run.pk, line="stopped: the worker is shutting down; the run continues from where it stopped (last.pt) when it is queued again")
        return False

    _run_update(run.pk, line="evaluating the candidate and the active model on the snapshot's test split", progress=EXPORT_SHARE + TRAIN_SHARE)
    candidate_metrics = json_safe(evaluate(result.best_checkpoint, export_root, split="test", device=settings.INFERENCE_DEVICE))
    active = ModelVersion.objects.filter(is_active=True).first()
    active_metrics = None
    if active is not None:
        active_metrics = json_safe(evaluate(checkpoint_local_path(active), export_root, split="test", device=settings.INFERENCE_DEVICE))
    # The registered checkpoint carries its metrics on this snapshot's test split (DESIGN.md).
    payload = load_checkpoint(result.best_checkpoint)
    payload["metrics"] = candidate_metrics
    write_checkpoint(result.best_checkpoint, payload)
    candidate = _candidate_register(run=run, path=result.best_checkpoint, snapshot=snapshot, metrics=candidate_metrics)

    promote, reasons = promotion_decide(candidate_metrics, active_metrics)
    decision = {
        "promote": promote,
        "reasons": reasons,
        "split": "test",
        "export": snapshot.pk,
        "candidate": {name: candidate_metrics.get(name) for name in GATE_METRICS},
        "active": None if active_metrics is None else {name: active_metrics.get(name) for name in GATE_METRICS},
        "active_model": active.name if active else None,
    }
    TrainingRun.objects.filter(pk=run.pk).update(candidate=candidate, baseline=active, decision=decision)
    folder.sync()  # best.pt now carries its test metrics
    if promote:
        model_version_activate(model_version_id=candidate.pk, actor=None, action="model_promoted")
    _run_update(
        run.pk,
        line=("promoted " if promote else "kept the active model; registered ") + f"{candidate.name}: " + "; ".join(reasons),
        status=TrainingRun.Status.SUCCEEDED,
        promoted=promote,
        progress=1.0,
        live=None,
        finished_at=timezone.now(),
    )
    audit_record(actor=None, action="training_finished", target=f"training:{run.pk}", data={"candidate": candidate.name, **decision})
    folder.local_discard()
    return True


def _snapshot(run: TrainingRun) -> ExportSnapshot:
    """The run's export snapshot, written now unless an earlier attempt of this run finished it."""
    if run.export_id is not None and run.export.status == ExportStatus.DONE:
        return run.export
    if run.export_id is None:
        names = list(Dataset.objects.order_by("name").values_list("name", flat=True))
        if not names:
            raise InvalidInput("There is no dataset to train on.")
        snapshot = export_create(user=None, datasets=names, options=RETRAINING_EXPORT_OPTIONS, enqueue=False)
        TrainingRun.objects.filter(pk=run.pk).update(export=snapshot)
        run.export = snapshot
    _run_update(run.pk, line=f"exporting snapshot {run.export_id}")

    def progress(fraction: float) -> None:
        TrainingRun.objects.filter(pk=run.pk).update(progress=EXPORT_SHARE * float(fraction))

    return export_build(export_id=run.export_id, progress=progress)


def _candidate_register(*, run: TrainingRun, path: Path, snapshot: ExportSnapshot, metrics: dict[str, Any]) -> ModelVersion:
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    existing = ModelVersion.objects.filter(sha256=sha).first()
    if existing is not None:  # registered by an earlier attempt of this run
        return existing
    with open(path, "rb") as fh:
        return model_version_register(
            file=fh, name=f"cmtnet-run{run.pk}-{sha[:8]}", export=snapshot, metrics=metrics, notes=f"Trained by training run {run.pk}."
        )
