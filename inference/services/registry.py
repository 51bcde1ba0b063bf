"""The model registry: register CMTNet checkpoints, promote one to active, roll back.

Exactly one version is active (a partial unique constraint guarantees it); promotion swaps it in one
transaction with the registry's rows locked, records ``activated_at`` and an audit record, and
pre-annotates the radiographs nobody has finished with the new model.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.errors import Conflict, InvalidInput, NotFound
from annotator.services.events import audit_record

from ..models import ModelVersion

logger = logging.getLogger(__name__)

# What a checkpoint must hold to be served (training.checkpoint, format "cmtnet-checkpoint/1").
REQUIRED_KEYS = ("format", "state_dict", "config", "normalization", "label_names", "tasks")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _sha256(fh: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    fh.seek(0)
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    fh.seek(0)
    return digest.hexdigest(), size


def checkpoint_inspect(fh: IO[bytes]) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``, check its keys and that CMTNet takes
    its weights. Raises ``InvalidInput`` with what is wrong."""
    import torch

    from training.checkpoint import CHECKPOINT_FORMAT, load_model

    fh.seek(0)
    try:
        data = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or corrupt file
        raise InvalidInput(f"The file is not a loadable PyTorch checkpoint ({type(exc).__name__}).") from exc
    finally:
        fh.seek(0)
    if not isinstance(data, dict):
        raise InvalidInput(f"The checkpoint holds a {type(data).__name__}, not a CMTNet checkpoint dict.")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise InvalidInput(f"The checkpoint lacks {', '.join(missing)}: it is not a CMTNet checkpoint.")
    if data["format"] != CHECKPOINT_FORMAT:
        raise InvalidInput(f"The checkpoint's format is {data['format']!r}, expected {CHECKPOINT_FORMAT!r}.")
    try:
        load_model(data, "cpu")
    except Exception as exc:
        raise InvalidInput(f"The checkpoint's weights do not fit its architecture: {exc}"[:500]) from exc
    return data


def model_version_register(
    *,
    file: IO[bytes],
    name: str | None = None,
    activate: bool = False,
    actor=None,
    export=None,
    metrics: dict | None = None,
    notes: str = "",
) -> ModelVersion:
    """Register a checkpoint (a binary file object): validate it, keep a copy under ``models/``.

    The name defaults to ``cmtnet-<sha256 prefix>``; a name or file already registered is a Conflict.
    """
    sha, size = _sha256(file)
    if size == 0:
        raise InvalidInput("The checkpoint file is empty.")
    if size > settings.MODEL_MAX_BYTES:
        raise InvalidInput(f"The checkpoint is {size} bytes, more than the {setting('MODEL_MAX_BYTES')} allowed.")
    name = (name or f"cmtnet-{sha[:12]}").strip()
    if not NAME_PATTERN.match(name):
        raise InvalidInput("A model name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    duplicate = ModelVersion.objects.filter(sha256=sha).first()
    if duplicate is not None:
        raise Conflict(f"This checkpoint is already registered as {duplicate.name}.", extra={"model_version": duplicate.pk})
    if ModelVersion.objects.filter(name=name).exists():
        raise Conflict(f"A model named {name!r} is already registered.")
    data = checkpoint_inspect(file)

    stored = default_storage.save(f"models/{sha[:16]}.pt", File(file, name=f"{sha[:16]}.pt"))
    try:
        with transaction.atomic():
            model_version = ModelVersion.objects.create(
                name=name,
                checkpoint=stored,
                sha256=sha,
                config=_config_summary(data),
                metrics=json_safe(metrics if metrics is not None else data.get("metrics") or {}),
                export=export,
                notes=notes,
            )
            audit_record(actor=actor, action="model_registered", target=name, data={"model_version": model_version.pk, "sha256": sha})
    except IntegrityError as exc:
        default_storage.delete(stored)
        raise Conflict(f"A model named {name!r} or with this checkpoint was registered at the same time.") from exc
    except BaseException:
        default_storage.delete(stored)
        raise
    logger.info("registered model %s (%s)", name, sha[:12])
    if activate:
        model_version = model_version_activate(model_version_id=model_version.pk, actor=actor)
    return model_version


def _config_summary(data: dict[str, Any]) -> dict[str, Any]:
    keep = ("config", "normalization", "label_names", "tasks", "export", "epoch", "train_config", "created", "torch_version")
    summary = {key: data[key] for key in keep if key in data}
    summary["model"] = summary.pop("config", {})
    return json_safe(summary)


def json_safe(value: Any) -> Any:
    """Plain JSON: non-finite floats become None (PostgreSQL's jsonb rejects NaN), tuples lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def model_version_activate(
    *, model_version_id: int, actor=None, preannotate: bool = True, action: str = "model_activated", record_previous: bool = True
) -> ModelVersion:
    """Make a version the active one, atomically; the radiographs nobody has finished are then
    pre-annotated with it (``preannotate``). Activating the active version changes nothing."""
    from .preannotation import preannotation_request_open

    with transaction.atomic():
        # Lock every version (a handful of rows) in a fixed order: two concurrent promotions queue
        # up here, and the second sees the first's result instead of violating the constraint.
        versions = {mv.pk: mv for mv in ModelVersion.objects.select_for_update().order_by("pk")}
        target = versions.get(_int(model_version_id))
        if target is None:
            raise NotFound("No such model version.")
        if target.is_active:
            return target
        current = next((mv for mv in versions.values() if mv.is_active), None)
        now = timezone.now()
        if current is not None:
            ModelVersion.objects.filter(pk=current.pk).update(is_active=False)
        changes: dict[str, Any] = {"is_active": True, "activated_at": now}
        if record_previous:
            changes["previous"] = current
        ModelVersion.objects.filter(pk=target.pk).update(**changes)
        audit_record(
            actor=actor,
            action=action,
            target=target.name,
            data={"model_version": target.pk, "previous": current.name if current else None, "previous_id": current.pk if current else None},
        )
        target.refresh_from_db()
        if preannotate:
            preannotation_request_open(model_version=target, actor=actor, reason="promotion")
    logger.info("%s: %s (was %s)", action, target.name, current.name if current else "none")
    return target


def model_version_rollback(*, actor=None, preannotate: bool = True) -> ModelVersion:
    """Go back to the version that was active before the current one was promoted."""
    with transaction.atomic():
        # The same lock order as model_version_activate (all rows by pk), so the two never deadlock.
        versions = list(ModelVersion.objects.select_for_update().order_by("pk"))
        current = next((mv for mv in versions if mv.is_active), None)
        if current is None:
            raise Conflict("No model is active, so there is nothing to roll back.")
        if current.previous_id is None:
            raise Conflict(f"{current.name} has no previously active model to roll back to.")
        return model_version_activate(
            model_version_id=current.previous_id, actor=actor, preannotate=preannotate, action="model_rolled_back", record_previous=False
        )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
