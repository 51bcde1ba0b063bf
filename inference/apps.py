"""The inference app: CMTNet pre-annotation, the model registry, retraining.

On start it registers the annotator's hooks (``annotator.hooks``) that only it can answer, so the
annotator never imports it.
"""
from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotator import hooks

        from . import selectors
        from .services import preannotation_request

        hooks.hook_register(hooks.PREANNOTATE, preannotation_request)
        hooks.hook_register(hooks.ACTIVE_MODEL, selectors.model_version_active)
        hooks.hook_register(hooks.MODEL_CURVES, selectors.model_curves)
        hooks.hook_register(hooks.LATEST_TRAINING_RUN, selectors.training_run_latest)
