"""API routes of the inference app (mounted under /api/): model registry, training runs, pre-annotation."""
from django.urls import path

from . import apis

urlpatterns = [
    path("models/", apis.ModelListApi.as_view(), name="api-models"),
    path("models/rollback/", apis.ModelRollbackApi.as_view(), name="api-model-rollback"),
    path("models/<int:model_version_id>/", apis.ModelDetailApi.as_view(), name="api-model"),
    path("models/<int:model_version_id>/activate/", apis.ModelActivateApi.as_view(), name="api-model-activate"),
    path("training-runs/", apis.TrainingRunListApi.as_view(), name="api-training-runs"),
    path("training-presets/", apis.TrainingPresetListApi.as_view(), name="api-training-presets"),
    path("training-runs/<int:training_run_id>/", apis.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path("training-runs/<int:training_run_id>/artefacts/<str:name>", apis.TrainingRunArtefactApi.as_view(), name="api-training-run-artefact"),
    path("preannotations/", apis.PreannotationListApi.as_view(), name="api-preannotations"),
    path("preannotations/<int:batch_id>/", apis.PreannotationDetailApi.as_view(), name="api-preannotation"),
    path("radiographs/<int:radiograph_id>/preannotate/", apis.RadiographPreannotateApi.as_view(), name="api-radiograph-preannotate"),
]
