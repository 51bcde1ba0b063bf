"""What the annotator asks of the app layered above it, without importing it.

``annotator/`` is the lower layer: ``inference/`` imports it, never the reverse (a test scans the
source for that). Where the annotator needs something only inference knows (pre-annotating what an
import added; the active model and its curves on the admin pages), inference registers a function
here from its ``AppConfig.ready`` and the annotator calls it by name. With nothing registered (the
annotator alone) a call answers its default. Hooks carry calls, not business logic: each one is a
plain service function of the app that registers it.
"""
from __future__ import annotations

from typing import Any, Callable

# The hooks the annotator calls, and what each receives and answers.
PREANNOTATE = "preannotate"  # (radiograph_ids: list[int]) -> None: ask for suggestions for new radiographs
ACTIVE_MODEL = "active_model"  # () -> object with .name, .activated_at, or None
MODEL_CURVES = "model_curves"  # () -> list of {"id", "name", "active", "roc", "auc"} for the models page
LATEST_TRAINING_RUN = "latest_training_run"  # () -> the live training run, else the newest, or None (dashboard)
HOOKS = (PREANNOTATE, ACTIVE_MODEL, MODEL_CURVES, LATEST_TRAINING_RUN)

_registered: dict[str, Callable[..., Any]] = {}


def hook_register(name: str, function: Callable[..., Any]) -> None:
    """Register the function that answers hook ``name`` (called once, from an ``AppConfig.ready``)."""
    if name not in HOOKS:
        raise ValueError(f"unknown hook {name!r}")
    _registered[name] = function


def hook_call(name: str, *, default: Any = None, **kwargs: Any) -> Any:
    """Call hook ``name`` with ``kwargs``; ``default`` when no app registered it."""
    if name not in HOOKS:
        raise ValueError(f"unknown hook {name!r}")
    function = _registered.get(name)
    return default if function is None else function(**kwargs)
