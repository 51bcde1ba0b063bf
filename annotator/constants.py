"""The vocabulary fixed by the design: workflow states, views, findings, labels and roles."""
from __future__ import annotations

from django.db import models


class State(models.TextChoices):
    IMPORTED = "imported"
    PREANNOTATED = "preannotated"
    LUNGS_DONE = "lungs_done"
    IN_REVIEW = "in_review"
    ACCEPTED = "accepted"
    RETURNED = "returned"
    EXCLUDED = "excluded"


# The states each work queue hands out, in the order it hands them out (returned work first).
ANNOTATE_QUEUE = (State.RETURNED, State.PREANNOTATED, State.IMPORTED)
REVIEW_QUEUE = (State.IN_REVIEW, State.LUNGS_DONE)


class View(models.TextChoices):
    PA = "PA"
    AP = "AP"
    AP_SUPINE = "AP_SUPINE", "AP supine"
    LATERAL = "LATERAL"
    CT = "CT", "CT slice"
    UNKNOWN = "UNKNOWN"


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

    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class Provenance(models.TextChoices):
    METADATA = "metadata"
    ANNOTATOR = "annotator"
    RADIOLOGIST = "radiologist"
    MODEL = "model"
    IMPORTED = "imported"
    NONE = "none"


class FindingLabel(models.TextChoices):
    ATELECTASIS = "atelectasis"
    CONSOLIDATION = "consolidation"
    INTERSTITIAL_SHADOW = "interstitial_shadow"
    PNEUMOTHORAX = "pneumothorax"
    PLEURAL_EFFUSION = "pleural_effusion"
    PLEURAL_THICKENING = "pleural_thickening"
    CARDIOMEGALY = "cardiomegaly"
    LUNG_LESION = "lung_lesion"
    UNKNOWN = "unknown", "Unknown (flagged)"


# The labels a person may give a region (an unknown label is only ever imported, and flagged).
FINDING_INPUT_CHOICES = [c for c in FindingLabel.choices if c[0] != FindingLabel.UNKNOWN]


class InterstitialSubtype(models.TextChoices):
    RETICULAR = "reticular"
    NODULAR = "nodular"
    GROUND_GLASS = "ground_glass"


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


class RegionStatus(models.TextChoices):
    SUGGESTED = "suggested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AnnotationSource(models.TextChoices):
    MODEL = "model"
    ANNOTATOR = "annotator"
    RADIOLOGIST = "radiologist"
    IMPORTED = "imported"


class LungStatus(models.TextChoices):
    SUGGESTED = "suggested"
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"


class Role(models.TextChoices):
    ANNOTATOR = "annotator"
    RADIOLOGIST = "radiologist"
    ADMIN = "admin"
