"""Django admin for every model of the workflow (events and audit records are read-only)."""
from django.contrib import admin, messages

from . import models
from .errors import DomainError


@admin.action(description="Export the selected datasets as a mask snapshot")
def export_datasets(modeladmin, request, queryset) -> None:
    from .services.exports import export_create

    try:
        snapshot = export_create(user=request.user, datasets=sorted(queryset.values_list("name", flat=True)))
    except DomainError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return
    modeladmin.message_user(request, f"Export {snapshot.id} is queued; its progress is on the export snapshots page.")


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    actions = [export_datasets]


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


@admin.action(description="Download the selected export (zip)")
def download_export(modeladmin, request, queryset):
    from django.http import StreamingHttpResponse

    from .services.exports import export_download_check, export_zip_stream

    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one export to download.", messages.ERROR)
        return None
    snapshot = queryset.get()
    try:
        root = export_download_check(user=request.user, snapshot=snapshot)
    except DomainError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return None
    name = f"lungmark-export-{snapshot.id}"
    response = StreamingHttpResponse(export_zip_stream(root, prefix=name), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response


@admin.register(models.ExportSnapshot)
class ExportSnapshotAdmin(ReadOnlyAdmin):
    """Snapshots are immutable: created from the datasets page (or the API), downloaded from here."""

    list_display = ("id", "status", "progress", "created_by", "created_at", "finished_at", "manifest_sha256")
    list_filter = ("status",)
    actions = [download_export]

    def has_view_permission(self, request, obj=None) -> bool:
        from .permissions import can

        return can(request.user, "export")
