"""The vocabulary fixed by the design: workflow states, views, findings, labels and roles.

The states are named here; what may happen in each (transitions, edits, queues) is ``annotator.workflow``.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class State(models.TextChoices):
    IMPORTED = "imported", "Imported"
    PREANNOTATED = "preannotated", "Pre-annotated"
    LUNGS_DONE = "lungs_done", "Waiting for review"
    IN_REVIEW = "in_review", "In review"
    ACCEPTED = "accepted", "Accepted"
    RETURNED = "returned", "Returned to the annotator"
    EXCLUDED = "excluded", "Excluded"



class View(models.TextChoices):
    PA = "PA", "PA"
    AP = "AP", "AP"
    AP_SUPINE = "AP_SUPINE", "AP supine"
    LATERAL = "LATERAL", "Lateral"
    CT = "CT", "CT slice"
    UNKNOWN = "UNKNOWN", "Unknown view"


FRONTAL_VIEWS = {View.PA, View.AP, View.AP_SUPINE, View.UNKNOWN}


class ExclusionReason(models.TextChoices):
    LATERAL = "lateral_view", "Lateral view"
    CT = "ct", "CT slice"
    UNREADABLE = "unreadable", "Unreadable"
    NOT_CHEST = "not_chest", "Not a chest radiograph"
    BURNED_IN_TEXT = "burned_in_text", "Burned-in text"
    OTHER = "other", "Other"


class Tri(models.TextChoices):
    """An image-level label value: unknown means no label (its loss switch is off)."""

    POSITIVE = "positive", "Yes"
    NEGATIVE = "negative", "No"
    UNKNOWN = "unknown", "Not labelled"


class Provenance(models.TextChoices):
    METADATA = "metadata", "The dataset's metadata"
    ANNOTATOR = "annotator", "An annotator"
    RADIOLOGIST = "radiologist", "A radiologist"
    MODEL = "model", "The model"
    IMPORTED = "imported", "Imported with the dataset"
    NONE = "none", "Not set"


@dataclass(frozen=True)
class Finding:
    """One finding label: its value, display name, COCO category id, overlay colour and meaning."""

    label: str
    name: str
    coco_id: int
    colour: str
    description: str


# The findings, one row each: adding a finding is adding a row here. COCO category ids are written
# in the row, never derived from positions: every export snapshot numbers a label the same way, so
# a new label takes the next unused id and no existing id ever changes (1 and 2 are the lungs).
FINDINGS: tuple[Finding, ...] = (
    Finding("atelectasis", "Atelectasis", 3, "#a78bfa", "Collapsed or incompletely expanded lung."),
    Finding("consolidation", "Consolidation", 4, "#f87171", "Airspaces filled with fluid, pus or cells: dense opacity."),
    Finding("interstitial_shadow", "Interstitial shadow", 5, "#34d399", "Reticular, nodular or ground-glass interstitial opacity."),
    Finding("pneumothorax", "Pneumothorax", 6, "#60a5fa", "Air in the pleural space."),
    Finding("pleural_effusion", "Pleural effusion", 7, "#22d3ee", "Fluid in the pleural space."),
    Finding("pleural_thickening", "Pleural thickening", 8, "#fbbf24", "Thickened pleura."),
    Finding("cardiomegaly", "Cardiomegaly", 9, "#f472b6", "An enlarged cardiac silhouette."),
    Finding("lung_lesion", "Lung lesion", 10, "#fb923c", "A nodule, mass or other focal lesion."),
    Finding("unknown", "Unknown (flagged)", 11, "#9ca3af", "An imported source label outside this list, kept and flagged."),
)
FINDINGS_BY_LABEL: dict[str, Finding] = {f.label: f for f in FINDINGS}
FindingLabel = models.TextChoices("FindingLabel", [(f.label.upper(), (f.label, f.name)) for f in FINDINGS], module=__name__)

# The labels a person may give a region (an unknown label is only ever imported, and flagged).
FINDING_INPUT_CHOICES = [c for c in FindingLabel.choices if c[0] != FindingLabel.UNKNOWN]


class InterstitialSubtype(models.TextChoices):
    RETICULAR = "reticular", "Reticular"
    NODULAR = "nodular", "Nodular"
    GROUND_GLASS = "ground_glass", "Ground-glass"


# Source labels seen in public datasets, mapped onto the design's findings: (label, subtype).
SOURCE_FINDING_MAP: dict[str, tuple[str, str]] = {
    "atelectasis": ("atelectasis", ""),
    "consolidation": ("consolidation", ""),
    "interstitial_shadow": ("interstitial_shadow", ""),
    "interstitial_shadows": ("interstitial_shadow", ""),
    "reticular": ("interstitial_shadow", "reticular"),
    "nodular": ("interstitial_shadow", "nodular"),
    "ground_glass_opacity": ("interstitial_shadow", "ground_glass"),
    "ground_glass": ("interstitial_shadow", "ground_glass"),
    "ggo": ("interstitial_shadow", "ground_glass"),
    "pneumothorax": ("pneumothorax", ""),
    "pleural_effusion": ("pleural_effusion", ""),
    "effusion": ("pleural_effusion", ""),
    "pleural_thickening": ("pleural_thickening", ""),
    "cardiomegaly": ("cardiomegaly", ""),
    "lung_lesion": ("lung_lesion", ""),
    "lesion": ("lung_lesion", ""),
    "nodule": ("lung_lesion", ""),
    "mass": ("lung_lesion", ""),
}
# Source labels that outline a lung rather than a finding.
SOURCE_LUNG_LABELS = {"left_lung": "left", "right_lung": "right", "lung": ""}
# Source labels that outline other anatomy, not a finding: skipped by the findings import.
SOURCE_ANATOMY_LABELS = {"cardiomediastinum", "heart", "mediastinum", "trachea", "clavicle", "clavicles", "diaphragm", "spine"}


class PreannotationStatus(models.TextChoices):
    """Where a radiograph's pre-annotation stands (attempts and errors are kept beside it)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportStatus(models.TextChoices):
    RUNNING = "running"
    DONE = "done"


class ExportStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RegionStatus(models.TextChoices):
    SUGGESTED = "suggested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AnnotationSource(models.TextChoices):
    MODEL = "model", "The model"
    ANNOTATOR = "annotator", "An annotator"
    RADIOLOGIST = "radiologist", "A radiologist"
    IMPORTED = "imported", "Imported with the dataset"


class LungStatus(models.TextChoices):
    SUGGESTED = "suggested"
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"


class Role(models.TextChoices):
    ANNOTATOR = "annotator"
    RADIOLOGIST = "radiologist"
    ADMIN = "admin"
