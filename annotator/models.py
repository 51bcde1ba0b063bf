"""The data model of the annotation workflow: datasets, subjects, radiographs, their annotations,
the append-only event log, imports and export snapshots.

Annotations are versioned for optimistic concurrency: a radiograph's ``version`` guards its
image-level work (lung boxes, labels, view, state); each finding region has its own ``version``.
Every saved state is also appended to a revision table, so nothing is ever overwritten silently.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .constants import (
    AnnotationSource,
    ExclusionReason,
    ExportStatus,
    FindingLabel,
    ImportStatus,
    InterstitialSubtype,
    LungStatus,
    PreannotationStatus,
    Provenance,
    RegionStatus,
    State,
    Tri,
    View,
)
from .workflow import QUEUES


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Subject(models.Model):
    """A patient, known only by a keyed pseudonym; its split is frozen once exported."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="subjects")
    key = models.CharField(max_length=64, help_text="Pseudonymous patient key.")
    split = models.CharField(max_length=8, blank=True, choices=[("train", "train"), ("test", "test")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "key"], name="subject_unique_key")]

    def __str__(self) -> str:
        return f"{self.dataset}/{self.key}"


def radiograph_upload_to(instance: "Radiograph", filename: str) -> str:
    """Server-chosen names, one folder per dataset (the caller names files with a random stem)."""
    return f"radiographs/{instance.dataset_id}/{filename}"


class Radiograph(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="radiographs")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="radiographs")
    # File names often carry a patient's name, a record number or a UID: the name itself is kept only
    # where settings.KEEP_SOURCE_NAMES allows (and shown to admins only); a keyed hash of it always
    # is, so annotation files that refer to images by file name still find them.
    source_name = models.CharField(max_length=255, blank=True, help_text="The file name it was imported under (admins only, when kept).")
    source_key = models.CharField(max_length=64, blank=True, db_index=True, help_text="Keyed hash of the file name it was imported under.")
    sha256 = models.CharField(max_length=64, help_text="Of the imported file's bytes.")
    kind = models.CharField(max_length=8, help_text="png, jpeg or dicom (recognised by content).")
    # The stored original (de-identified DICOM, or the re-encoded PNG), full bit depth pixels
    # (16-bit PNG when deeper than 8 bits), the 8-bit display image, and the viewer's preview.
    original = models.FileField(upload_to=radiograph_upload_to, max_length=255)
    pixels = models.FileField(upload_to=radiograph_upload_to, max_length=255, blank=True)
    display = models.FileField(upload_to=radiograph_upload_to, max_length=255)
    preview = models.FileField(upload_to=radiograph_upload_to, max_length=255)
    preview_mime = models.CharField(max_length=32, default="image/jpeg")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField(default=8)
    window_center = models.FloatField(null=True, blank=True)
    window_width = models.FloatField(null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    view = models.CharField(max_length=16, choices=View.choices, default=View.UNKNOWN)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IMPORTED, db_index=True)
    excluded_reason = models.CharField(max_length=16, choices=ExclusionReason.choices, blank=True)
    excluded_note = models.TextField(blank=True)
    return_comment = models.TextField(blank=True)
    skip_reason = models.TextField(blank=True)
    # True once every finding is marked (radiologist accepted, or a complete imported finding set).
    findings_complete = models.BooleanField(default=False)
    # The paper's image-level labels H, C, O with their provenance.
    healthy = models.CharField(max_length=8, choices=Tri.choices, default=Tri.UNKNOWN)
    healthy_source = models.CharField(max_length=12, choices=Provenance.choices, default=Provenance.NONE)
    covid = models.CharField(max_length=8, choices=Tri.choices, default=Tri.UNKNOWN)
    covid_source = models.CharField(max_length=12, choices=Provenance.choices, default=Provenance.NONE)
    other_disease = models.CharField(max_length=8, choices=Tri.choices, default=Tri.UNKNOWN)
    other_disease_source = models.CharField(max_length=12, choices=Provenance.choices, default=Provenance.NONE)
    source_metadata = models.JSONField(default=dict, blank=True)
    # Optimistic lock for the image-level work (boxes, labels, view, state).
    version = models.PositiveIntegerField(default=1)
    # Queue lease: who holds it and until when.
    leased_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    annotated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Pre-annotation bookkeeping (attempts counts worker deaths, so a poison image stops being retried).
    preannotation_status = models.CharField(max_length=12, choices=PreannotationStatus.choices, default=PreannotationStatus.PENDING, db_index=True)
    preannotation_attempts = models.PositiveSmallIntegerField(default=0)
    preannotation_error = models.TextField(blank=True)
    uncertainty = models.FloatField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="radiograph_unique_content")]
        indexes = [
            models.Index(fields=["dataset", "state"]),
            models.Index(fields=["state", "lease_expires_at"]),
            # The queues hand out their oldest free radiograph: each walks an index of its own rows by
            # id rather than the primary key over every radiograph already done (the planner cannot
            # know that done rows gather at the low ids).
            models.Index(fields=["id"], name="radiograph_annotate_queue", condition=Q(state__in=QUEUES["annotate"].states)),
            models.Index(fields=["id"], name="radiograph_review_queue", condition=Q(state__in=QUEUES["review"].states)),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """The server-chosen name everyone sees: stable, and identifying nobody."""
        return f"{self.dataset.name} #{self.pk}"

    @property
    def admin_file_name(self) -> str:
        """The uploaded file name where it is kept and may be shown (to admins: callers check)."""
        return self.source_name if settings.KEEP_SOURCE_NAMES else ""

    def lease_holder_id(self, now=None) -> int | None:
        """The id of the user whose lease is still running, or None (an expired lease holds nothing)."""
        if self.leased_to_id is None or self.lease_expires_at is None:
            return None
        return self.leased_to_id if self.lease_expires_at > (now or timezone.now()) else None

    @property
    def is_excluded(self) -> bool:
        return self.state == State.EXCLUDED


class LungAnnotation(models.Model):
    """One saved state of a radiograph's two lung boxes (append-only; the latest is current).

    Boxes are ``[x0, y0, x1, y1]`` in original-image pixels, half-open; right/left are the
    patient's sides. ``mask_png`` optionally holds a finer lung outline (e.g. imported polygons),
    cropped to ``mask_bbox``.
    """

    radiograph = models.ForeignKey(Radiograph, on_delete=models.CASCADE, related_name="lung_annotations")
    version = models.PositiveIntegerField(help_text="The radiograph version this state was saved as.")
    right_box = models.JSONField(null=True, blank=True)
    left_box = models.JSONField(null=True, blank=True)
    mask_png = models.BinaryField(null=True, blank=True)
    mask_bbox = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=LungStatus.choices)
    source = models.CharField(max_length=12, choices=AnnotationSource.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version", "-id"]
        indexes = [models.Index(fields=["radiograph", "-version"])]


class FindingRegion(models.Model):
    """A disease region: a binary mask (PNG, cropped to ``bbox``) with its finding label.

    Suggested regions come from the model; a radiologist accepts, edits, rejects or adds them.
    Only accepted regions are ground truth. Each save bumps ``version`` and appends a revision.
    """

    radiograph = models.ForeignKey(Radiograph, on_delete=models.CASCADE, related_name="regions")
    label = models.CharField(max_length=24, choices=FindingLabel.choices)
    subtype = models.CharField(max_length=16, choices=InterstitialSubtype.choices, blank=True)
    source_label = models.CharField(max_length=64, blank=True, help_text="The label as the source wrote it.")
    flagged = models.BooleanField(default=False, help_text="Source label not in the findings list.")
    description = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=RegionStatus.choices, db_index=True)
    source = models.CharField(max_length=12, choices=AnnotationSource.choices)
    confidence = models.FloatField(null=True, blank=True)
    bbox = models.JSONField(help_text="[x0, y0, x1, y1] of the mask crop in image pixels.")
    mask_png = models.BinaryField(help_text="0/255 PNG of the region inside bbox.")
    area = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    prediction = models.ForeignKey(
        "inference.Prediction", null=True, blank=True, on_delete=models.SET_NULL, related_name="suggested_regions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]


class FindingRegionRevision(models.Model):
    """Append-only history of a region: the suggestion, every edit, the final decision."""

    region = models.ForeignKey(FindingRegion, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    label = models.CharField(max_length=24)
    subtype = models.CharField(max_length=16, blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=12)
    bbox = models.JSONField()
    mask_png = models.BinaryField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["region", "version"], name="region_revision_unique")]
        ordering = ["region_id", "version"]


class ReviewEvent(models.Model):
    """Append-only log: every change of state and every decision, by whom, under which model."""

    radiograph = models.ForeignKey(Radiograph, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=40, db_index=True)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Review events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Review events are append-only.")


class ImportJob(models.Model):
    """One import (command line or upload), with its report."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    origin = models.CharField(max_length=16, default="command")
    status = models.CharField(max_length=12, choices=ImportStatus.choices, default=ImportStatus.RUNNING)
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class ExportSnapshot(models.Model):
    """An immutable mask dataset in export format v1, stored as exports/<id>-<created>/ in the media storage."""

    datasets = models.ManyToManyField(Dataset, related_name="exports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    progress = models.FloatField(default=0.0)
    counts = models.JSONField(default=dict, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    path = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class AuditLog(models.Model):
    """Append-only record of administrative actions (exports, downloads, imports, promotions)."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(action=""), name="auditlog_action_not_empty"),
        ]


class SuggestionOutcome(models.Model):
    """What became of one model suggestion once a person decided it: the measure of whether the
    suggestions are worth accepting (one row per suggestion, rewritten when the decision changes).

    ``lungs``: the annotator's submitted boxes against the model's (IoU per side), and whether the
    image labels differ from the model's. ``region``: a suggested finding region accepted as it was,
    edited (Dice of the suggestion to the final mask) or rejected.
    """

    class Kind(models.TextChoices):
        LUNGS = "lungs"
        REGION = "region"

    class Outcome(models.TextChoices):
        UNCHANGED = "unchanged", "Accepted unchanged"
        EDITED = "edited"
        REJECTED = "rejected"

    radiograph = models.ForeignKey(Radiograph, on_delete=models.CASCADE, related_name="suggestion_outcomes")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    region = models.ForeignKey(FindingRegion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    right_iou = models.FloatField(null=True, blank=True)
    left_iou = models.FloatField(null=True, blank=True)
    labels_changed = models.BooleanField(null=True, blank=True, help_text="Lungs: labels differ from the model's.")
    dice = models.FloatField(null=True, blank=True, help_text="Region: Dice of the suggested to the final mask.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["radiograph"], condition=Q(kind="lungs"), name="one_lung_outcome_per_radiograph"),
            models.UniqueConstraint(fields=["region"], condition=Q(kind="region"), name="one_outcome_per_region"),
        ]
        indexes = [models.Index(fields=["model_version", "kind"])]
