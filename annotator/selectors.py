"""Reads (selectors): objects fetched with the user's permissions applied."""
from __future__ import annotations

from typing import Iterable

from django.db.models import QuerySet

from .constants import LungStatus, State
from .errors import NotAllowed, NotFound
from .models import Dataset, ExportSnapshot, FindingRegion, Radiograph, ReviewEvent
from .permissions import can

# Filters a client may ask for: name -> ORM lookup. Nothing else reaches the ORM.
RADIOGRAPH_FILTERS = {
    "dataset": "dataset__name",
    "state": "state",
    "view": "view",
    "covid": "covid",
    "healthy": "healthy",
    "kind": "kind",
}
RADIOGRAPH_ORDERINGS = {
    "id": ("id",),
    "-id": ("-id",),
    "uncertainty": ("-uncertainty", "id"),
    "created": ("created_at", "id"),
    "-created": ("-created_at", "-id"),
    "updated": ("-updated_at", "-id"),
}


def _require(user, action: str) -> None:
    if not can(user, action):
        raise NotAllowed("Your role does not allow this.")


def dataset_list(*, user) -> QuerySet[Dataset]:
    _require(user, "view")
    return Dataset.objects.order_by("name")


def radiograph_list(*, user, filters: dict[str, str] | None = None, ordering: str = "id") -> QuerySet[Radiograph]:
    _require(user, "view")
    qs = Radiograph.objects.select_related("dataset")
    for key, value in (filters or {}).items():
        if key in RADIOGRAPH_FILTERS and value not in (None, ""):
            qs = qs.filter(**{RADIOGRAPH_FILTERS[key]: value})
    return qs.order_by(*RADIOGRAPH_ORDERINGS.get(ordering, ("id",)))


def radiograph_get(*, user, radiograph_id: int) -> Radiograph:
    _require(user, "view")
    try:
        return Radiograph.objects.select_related("dataset", "subject").get(pk=radiograph_id)
    except (Radiograph.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such radiograph.") from None


def region_get(*, user, region_id: int) -> FindingRegion:
    _require(user, "view")
    try:
        return FindingRegion.objects.select_related("radiograph", "prediction").get(pk=region_id)
    except (FindingRegion.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such region.") from None


def radiograph_events(*, user, radiograph: Radiograph) -> QuerySet[ReviewEvent]:
    _require(user, "view")
    return radiograph.events.select_related("actor", "model_version").order_by("created_at", "id")


def lung_annotation_current(radiograph: Radiograph):
    return radiograph.lung_annotations.first()


def lung_annotation_truth(radiograph: Radiograph):
    """The latest accepted lung annotation (ground truth), or None."""
    return radiograph.lung_annotations.filter(status=LungStatus.ACCEPTED).first()


def prediction_current(radiograph: Radiograph):
    """The prediction of the active model (or the newest one). Read through the reverse relation the
    inference app's model declares, so the annotator imports nothing of it."""
    preds = radiograph.predictions.select_related("model_version")
    return preds.filter(model_version__is_active=True).first() or preds.first()


def export_list(*, user) -> QuerySet[ExportSnapshot]:
    """Export snapshots, newest first (admins only)."""
    _require(user, "export")
    return ExportSnapshot.objects.select_related("created_by").prefetch_related("datasets").order_by("-created_at", "-id")


def export_get(*, user, export_id: int) -> ExportSnapshot:
    _require(user, "export")
    try:
        return ExportSnapshot.objects.select_related("created_by").prefetch_related("datasets").get(pk=export_id)
    except (ExportSnapshot.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such export.") from None


def radiographs_by_file_name(*, dataset: Dataset, names: Iterable[str], include_excluded: bool = True) -> dict[str, Radiograph]:
    """The radiographs of ``dataset`` imported under these file names, by name.

    Names are matched by their keyed hash: the names themselves need not be stored (an import
    service function, ``source_key``, is the one definition of that hash).
    """
    from .services.imports import source_key

    by_key = {source_key(name): name for name in names}
    found = Radiograph.objects.filter(dataset=dataset, source_key__in=list(by_key))
    if not include_excluded:
        found = found.exclude(state=State.EXCLUDED)
    return {by_key[radiograph.source_key]: radiograph for radiograph in found}
