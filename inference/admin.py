"""Django admin for the model registry, predictions and training runs."""
from django.contrib import admin

from . import models


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "sha256", "created_at", "activated_at")
    readonly_fields = ("sha256",)


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("radiograph", "model_version", "covid_prob", "healthy_prob", "uncertainty", "created_at")
    raw_id_fields = ("radiograph",)
    exclude = ("lung_mask_png",)


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "trigger", "progress", "promoted", "created_at")
