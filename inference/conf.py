"""Settings of the inference app, read from Django settings first and the environment second.

They belong in ``config/settings/base.py`` with the other CELERY_*/PREANNOTATE_*/RETRAIN_* settings;
until they are there, each is read here with its environment variable and default, so deployments
and test workers can set them the same way (an env var of the same name).
"""
from __future__ import annotations

import os
from typing import Any

from django.conf import settings

# name -> (type, default, one-line meaning)
_SETTINGS: dict[str, tuple[type, Any, str]] = {
    # Finding label given to model-suggested disease regions (CMTNet predicts a mask, not a finding);
    # the radiologist changes it while reviewing.
    "PREANNOTATE_REGION_LABEL": (str, "consolidation", "label of suggested regions"),
    # Probability above which a pixel is lung / disease.
    "PREANNOTATE_MASK_THRESHOLD": (float, 0.5, "mask threshold"),
    # Smallest suggested disease region, as a fraction of the image's pixels (smaller specks are noise).
    "PREANNOTATE_MIN_REGION_FRACTION": (float, 0.001, "minimum region size"),
    # Most suggested regions kept per radiograph (the largest ones).
    "PREANNOTATE_MAX_REGIONS": (int, 10, "maximum regions"),
    # Hard time limit (s) of one pre-annotation task; the soft limit is 30 s less.
    "PREANNOTATE_TIME_LIMIT": (int, 600, "pre-annotation time limit"),
    # Test only: seconds a pre-annotation waits after counting its attempt (to kill a worker mid-task).
    "PREANNOTATE_TEST_DELAY": (float, 0.0, "test delay"),
    # Device for model work: "auto" uses CUDA when the worker has it.
    "INFERENCE_DEVICE": (str, "auto", "inference device"),
    # CPU threads for inference in a worker process (0 = one per usable core).
    "INFERENCE_THREADS": (int, 0, "inference threads"),
    # Largest checkpoint accepted by the registry (bytes).
    "MODEL_MAX_BYTES": (int, 2 * 1024**3, "largest checkpoint"),
    # Gate tolerance: a candidate may be this much below the active model on a gate metric.
    "PROMOTION_TOLERANCE": (float, 0.0, "promotion tolerance"),
}


def setting(name: str) -> Any:
    """The value of an inference setting: Django settings, else the environment, else the default."""
    kind, default, _ = _SETTINGS[name]
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return kind(raw)
