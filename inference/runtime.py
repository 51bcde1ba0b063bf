"""The model held by a worker process: loaded once, keyed by the checkpoint's sha256.

A worker keeps one ``training.serve.Predictor``; a task for another model version (a promotion
happened) loads that one and drops the old, so memory holds one model at a time. Loading happens
lazily in the process that runs the task (the prefork child), never in the parent, so CUDA is
initialised after the fork.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.storage import default_storage


if TYPE_CHECKING:  # pragma: no cover
    from training.serve import Predictor

    from .models import ModelVersion

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[str, "Predictor"] = {}


def predictor_for(model_version: "ModelVersion") -> "Predictor":
    """The loaded predictor of ``model_version`` (loading it, and dropping any other, on first use)."""
    with _lock:
        predictor = _cache.get(model_version.sha256)
        if predictor is not None:
            return predictor
        from training.serve import Predictor

        started = time.monotonic()
        threads = settings.INFERENCE_THREADS or None
        if _cache:  # a promotion happened: drop the old model before loading the new one
            _cache.clear()
            _release_gpu_memory()
        predictor = Predictor(checkpoint_local_path(model_version), device=settings.INFERENCE_DEVICE, threads=threads)
        _cache[model_version.sha256] = predictor
        logger.info("loaded model %s (%s) in %.2fs on %s", model_version.name, model_version.sha256[:12], time.monotonic() - started, predictor.device)
        return predictor


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def checkpoint_local_path(model_version: "ModelVersion") -> str:
    """A local file with the version's checkpoint: the stored file itself, or (remote storage such
    as S3) a copy in the temporary folder, named by its sha256 so it is fetched once."""
    try:
        return default_storage.path(model_version.checkpoint.name)
    except NotImplementedError:
        local = Path(tempfile.gettempdir()) / "lungmark-models" / f"{model_version.sha256}.pt"
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_suffix(f".{os.getpid()}.part")
            with default_storage.open(model_version.checkpoint.name, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, local)
        return str(local)


def predictor_cache_clear() -> None:
    """Forget the loaded model (tests; a worker never needs it)."""
    with _lock:
        _cache.clear()


def loaded_shas() -> list[str]:
    """The sha256 of the model(s) this process holds (at most one)."""
    return list(_cache)
