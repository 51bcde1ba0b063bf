"""Django admin for every model of the workflow (events and audit records are read-only)."""
from django.contrib import admin

from . import models


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(models.Subject)
class SubjectAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "split")
    list_filter = ("dataset", "split")
    search_fields = ("key",)


@admin.register(models.Radiograph)
class RadiographAdmin(admin.ModelAdmin):
    list_display = ("id", "source_name", "dataset", "state", "view", "healthy", "covid", "other_disease", "version")
    list_filter = ("dataset", "state", "view", "kind", "covid")
    search_fields = ("source_name", "sha256")
    raw_id_fields = ("subject", "leased_to", "annotated_by", "reviewed_by")
    readonly_fields = ("sha256", "version", "created_at", "updated_at")


@admin.register(models.LungAnnotation)
class LungAnnotationAdmin(admin.ModelAdmin):
    list_display = ("radiograph", "version", "status", "source", "author", "created_at")
    list_filter = ("status", "source")
    raw_id_fields = ("radiograph",)
    exclude = ("mask_png",)


@admin.register(models.FindingRegion)
class FindingRegionAdmin(admin.ModelAdmin):
    list_display = ("id", "radiograph", "label", "subtype", "status", "source", "confidence", "version")
    list_filter = ("label", "status", "source", "flagged")
    raw_id_fields = ("radiograph", "prediction")
    exclude = ("mask_png",)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.FindingRegionRevision)
class FindingRegionRevisionAdmin(ReadOnlyAdmin):
    list_display = ("region", "version", "label", "status", "author", "created_at")
    exclude = ("mask_png",)


@admin.register(models.ReviewEvent)
class ReviewEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "radiograph", "actor", "action", "from_state", "to_state", "model_version")
    list_filter = ("action",)


@admin.register(models.AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "target")
    list_filter = ("action",)


@admin.register(models.ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "origin", "status", "created_by", "created_at")


@admin.register(models.ExportSnapshot)
class ExportSnapshotAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "created_by", "created_at", "manifest_sha256")
    readonly_fields = ("manifest_sha256", "counts", "path")
