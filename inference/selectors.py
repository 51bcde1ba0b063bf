"""Reads of the inference app: model versions, training runs and pre-annotation progress."""
from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet

from annotator.constants import FRONTAL_VIEWS, LungStatus, State, Tri
from annotator.errors import NotFound
from annotator.models import Radiograph

from .models import ModelVersion, PreannotationBatch, PreannotationItem, TrainingRun

Item = PreannotationItem.Status


def _get(qs: QuerySet, pk, what: str):
    try:
        return qs.get(pk=int(pk))
    except (qs.model.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"No such {what}.") from None


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("previous", "export").order_by("-created_at", "-pk")


def model_version_get(*, model_version_id) -> ModelVersion:
    return _get(model_version_list(), model_version_id, "model version")


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_curves(*, limit: int = 12) -> list[dict]:
    """The newest model versions' COVID ROC curves for the models page (left out of the API: bulky)."""
    return [
        {"id": mv.id, "name": mv.name, "active": mv.is_active, "roc": (mv.metrics or {}).get("covid_roc"), "auc": (mv.metrics or {}).get("covid_auc")}
        for mv in ModelVersion.objects.order_by("-created_at")[:limit]
    ]


def annotated_count() -> int:
    """Radiographs a training run learns from: accepted by a radiologist, or with imported (accepted)
    lung annotations; excluded ones never."""
    return (
        Radiograph.objects.exclude(state=State.EXCLUDED)
        .filter(Q(state=State.ACCEPTED) | Q(lung_annotations__status=LungStatus.ACCEPTED))
        .values("pk")
        .distinct()
        .count()
    )


def training_images_count() -> int:
    """About how many radiographs an export for training would hold (frontal, not excluded, with
    accepted lungs, a complete finding set or an image label): what a run's time is estimated on."""
    labelled = ~Q(healthy=Tri.UNKNOWN) | ~Q(covid=Tri.UNKNOWN) | ~Q(other_disease=Tri.UNKNOWN)
    return (
        Radiograph.objects.exclude(state=State.EXCLUDED)
        .filter(view__in=list(FRONTAL_VIEWS))
        .filter(Q(lung_annotations__status=LungStatus.ACCEPTED) | Q(findings_complete=True) | labelled)
        .values("pk")
        .distinct()
        .count()
    )


def training_run_list() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("candidate", "baseline", "created_by").order_by("-created_at", "-pk")


def training_run_latest() -> TrainingRun | None:
    """The live training run, else the latest one (the dashboard follows it while it runs)."""
    # ``live`` is True or NULL; NULLs would sort first in a descending order on PostgreSQL.
    return TrainingRun.objects.order_by(F("live").desc(nulls_last=True), "-created_at", "-pk").first()


def training_run_get(*, training_run_id) -> TrainingRun:
    return _get(training_run_list(), training_run_id, "training run")


def preannotation_batch_list() -> QuerySet[PreannotationBatch]:
    """Batches, newest first, each annotated with its item counts (``n_<status>`` and ``n_total``)."""
    counts = {f"n_{status}": Count("items", filter=Q(items__status=status)) for status in Item.values}
    return PreannotationBatch.objects.select_related("model_version").annotate(n_total=Count("items"), **counts).order_by("-created_at", "-pk")


def preannotation_batch_get(*, batch_id) -> PreannotationBatch:
    return _get(preannotation_batch_list(), batch_id, "pre-annotation batch")


def preannotation_batch_progress(batch: PreannotationBatch) -> dict:
    """done/total for the progress bar: an item is finished once done, skipped or failed."""
    if not hasattr(batch, "n_total"):
        batch = preannotation_batch_get(batch_id=batch.pk)
    counts = {status: getattr(batch, f"n_{status}") for status in Item.values}
    finished = counts[Item.DONE] + counts[Item.SKIPPED] + counts[Item.FAILED]
    total = batch.n_total
    return {
        "total": total,
        "finished": finished,
        "fraction": 1.0 if total == 0 else round(finished / total, 4),
        "complete": finished == total,
        **counts,
    }


def training_run_artefacts(*, run: TrainingRun) -> list[str]:
    """The stored artefacts of a run a person may look at (log, metrics, loss curves, its config)."""
    from .services.run_files import RunFolder

    return RunFolder(run).artefacts()
