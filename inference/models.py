"""Model registry, stored predictions and training runs."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A registered CMTNet checkpoint. Exactly one may be active at a time."""

    name = models.CharField(max_length=100, unique=True)
    checkpoint = models.FileField(upload_to="models/", max_length=255)
    sha256 = models.CharField(max_length=64)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Test metrics on its snapshot's split.")
    export = models.ForeignKey(
        "annotator.ExportSnapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="models"
    )
    is_active = models.BooleanField(default=False)
    # The version that was active when this one was promoted: where a rollback goes back to.
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model"),
        ]

    def __str__(self) -> str:
        return self.name


class Prediction(models.Model):
    """CMTNet's output for one radiograph under one model version (idempotent: unique pair)."""

    radiograph = models.ForeignKey("annotator.Radiograph", on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    lung_mask_png = models.BinaryField(help_text="Lung mask at original size (1-bit PNG).")
    right_box = models.JSONField(null=True, blank=True)
    left_box = models.JSONField(null=True, blank=True)
    # Probabilities and uncertainty are empty when the checkpoint lacks the head that gives them.
    healthy_prob = models.FloatField(null=True, blank=True, help_text="Probability that the image is healthy.")
    covid_prob = models.FloatField(null=True, blank=True)
    other_disease_prob = models.FloatField(null=True, blank=True)
    uncertainty = models.FloatField(null=True, blank=True)
    regions = models.JSONField(default=list, blank=True, help_text="Suggested regions: bbox, area, confidence.")
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["radiograph", "model_version"], name="one_prediction_per_model"),
        ]
        ordering = ["-created_at"]


class PreannotationBatch(models.Model):
    """One request to pre-annotate radiographs with one model version; its items give the progress."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="batches")
    reason = models.CharField(max_length=16, help_text="import, request, promotion or retraining.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class PreannotationItem(models.Model):
    """One radiograph of a batch: queued until its task stores a prediction, skips it or gives up."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        SKIPPED = "skipped"
        FAILED = "failed"

    batch = models.ForeignKey(PreannotationBatch, on_delete=models.CASCADE, related_name="items")
    radiograph = models.ForeignKey("annotator.Radiograph", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    detail = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["batch", "radiograph"], name="preannotation_item_unique")]
        indexes = [models.Index(fields=["batch", "status"])]


class TrainingRun(models.Model):
    """One (re)training: export → train → evaluate → register → maybe promote."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=16, default="manual")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    export = models.ForeignKey("annotator.ExportSnapshot", null=True, blank=True, on_delete=models.SET_NULL)
    candidate = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    baseline = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    config = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    history = models.JSONField(default=list, blank=True, help_text="Per-epoch metrics.")
    decision = models.JSONField(default=dict, blank=True, help_text="The promotion gate's comparison.")
    promoted = models.BooleanField(default=False)
    log = models.TextField(blank=True)
    live = models.BooleanField(null=True, default=True, editable=False)
    accepted_count = models.PositiveIntegerField(default=0, help_text="Accepted radiographs when it started.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Never two trainings at once: ``live`` is True while queued or running, NULL after.
            models.UniqueConstraint(fields=["live"], name="one_training_at_a_time"),
        ]
