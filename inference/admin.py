"""Django admin for the model registry (promote / roll back), predictions, training runs and
pre-annotation batches. Writes go through the services, so the admin site keeps the same rules
(one active model, atomic swap, audit records) as the API."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from annotator.errors import DomainError
from annotator.permissions import can

from . import models, selectors
from .services import model_version_activate, model_version_rollback


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "sha256", "created_at", "activated_at", "previous")
    readonly_fields = ("checkpoint", "sha256", "config", "metrics", "export", "is_active", "previous", "created_at", "activated_at")
    fields = ("name", "notes", *readonly_fields)
    actions = ("activate_selected", "roll_back")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registered by upload (API) or `manage.py register_model`, which validate the file

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None or not obj.is_active

    def get_actions(self, request: HttpRequest) -> dict:
        # The bulk delete would not spare the active model (it checks no object): one at a time.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _allowed(self, request: HttpRequest) -> bool:
        if can(request.user, "manage_models"):
            return True
        self.message_user(request, "Only admins manage models.", messages.ERROR)
        return False

    @admin.action(description="Promote the selected model to active")
    def activate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self._allowed(request):
            return
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to promote.", messages.ERROR)
            return
        try:
            model_version = model_version_activate(model_version_id=queryset.get().pk, actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{model_version.name} is now the active model.", messages.SUCCESS)

    @admin.action(description="Roll back to the previously active model")
    def roll_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self._allowed(request):
            return
        try:
            model_version = model_version_rollback(actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"Rolled back: {model_version.name} is the active model again.", messages.SUCCESS)


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("radiograph", "model_version", "covid_prob", "healthy_prob", "uncertainty", "created_at")
    list_filter = ("model_version",)
    raw_id_fields = ("radiograph",)
    exclude = ("lung_mask_png",)


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "trigger", "percent", "promoted", "candidate", "baseline", "created_at", "finished_at")
    list_filter = ("status", "trigger", "promoted")
    readonly_fields = (
        "status", "trigger", "created_by", "export", "candidate", "baseline", "config", "percent", "history", "decision",
        "promoted", "log", "accepted_count", "created_at", "started_at", "finished_at",
    )
    exclude = ("progress",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from the API or by beat, so the one-at-a-time rule holds

    @admin.display(description="progress")
    def percent(self, obj: models.TrainingRun) -> str:
        return f"{obj.progress:.0%}"


@admin.register(models.PreannotationBatch)
class PreannotationBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "reason", "created_at", "progress")
    list_filter = ("reason",)
    readonly_fields = ("model_version", "reason", "created_by", "created_at", "progress")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.preannotation_batch_list()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="done / total")
    def progress(self, obj: models.PreannotationBatch) -> str:
        p = selectors.preannotation_batch_progress(obj)
        failed = f", {p['failed']} failed" if p["failed"] else ""
        return f"{p['finished']} / {p['total']}{failed}"
