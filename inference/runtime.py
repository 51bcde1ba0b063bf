"""The model held by a worker process: loaded once, keyed by the checkpoint's sha256.

A worker keeps one ``training.serve.Predictor``; a task for another model version (a promotion
happened) loads that one and drops the old, so memory holds one model at a time. Loading happens
lazily in the process that runs the task (the prefork child), never in the parent, so CUDA is
initialised after the fork.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings

from annotator.storage import storage_fetch, storage_local_path, worker_cache


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
    """A local file with the version's checkpoint: the stored file itself (a local media folder), or
    a copy in the worker's cache (a bucket), named by its sha256 so it is fetched once per host and
    checked against that sha256 when fetched."""
    local = storage_local_path(model_version.checkpoint.name)
    if local is not None:
        return str(local)
    cached = worker_cache("models") / f"{model_version.sha256}.pt"
    if not cached.is_file():
        started = time.monotonic()
        storage_fetch(model_version.checkpoint.name, cached, sha256=model_version.sha256)
        logger.info("fetched model %s (%s) into the cache in %.2fs", model_version.name, model_version.sha256[:12], time.monotonic() - started)
    return str(cached)


def predictor_cache_clear() -> None:
    """Forget the loaded model (tests; a worker never needs it)."""
    with _lock:
        _cache.clear()


def loaded_shas() -> list[str]:
    """The sha256 of the model(s) this process holds (at most one)."""
    return list(_cache)
