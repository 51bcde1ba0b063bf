"""Business logic of the inference app (writes): pre-annotation, the model registry, retraining.

``preannotation_request`` is what the import calls after a successful import.
"""
from .bootstrap import training_bootstrap, training_bootstrap_if_due
from .preannotation import preannotation_request
from .preannotation_worker import radiograph_preannotate, radiographs_preannotate
from .registry import model_version_activate, model_version_register, model_version_rollback
from .retraining import promotion_decide, training_run_execute, training_run_start, training_run_start_if_due

__all__ = [
    "model_version_activate",
    "model_version_register",
    "model_version_rollback",
    "preannotation_request",
    "promotion_decide",
    "radiograph_preannotate",
    "radiographs_preannotate",
    "training_bootstrap",
    "training_bootstrap_if_due",
    "training_run_execute",
    "training_run_start",
    "training_run_start_if_due",
]
