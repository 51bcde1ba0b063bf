"""Human words for stored values: what the pages show instead of ``lungs_done`` or ``AP_SUPINE``.

The words of each vocabulary are the display labels of its choices in ``constants``; the history's
event actions, which are not choices, are phrased here. Templates use the ``word`` filter
(``{% load words %}``); scripts read the same table from the ``human-words`` JSON block in
``base.html``, so the two never disagree.
"""
from __future__ import annotations

from django.db import models

from .constants import (
    AnnotationSource,
    ExclusionReason,
    FindingLabel,
    InterstitialSubtype,
    LungStatus,
    Provenance,
    RegionStatus,
    Role,
    State,
    Tri,
    View,
)

CHOICES: dict[str, type[models.TextChoices]] = {
    "state": State,
    "view": View,
    "tri": Tri,
    "provenance": Provenance,
    "source": AnnotationSource,
    "lung_status": LungStatus,
    "finding": FindingLabel,
    "subtype": InterstitialSubtype,
    "region_status": RegionStatus,
    "exclusion": ExclusionReason,
    "role": Role,
}

# What an event in a radiograph's history says its actor did.
EVENT_ACTIONS = {
    "imported": "imported it",
    "imported_lung_boxes": "imported its lung boxes",
    "imported_findings": "imported its findings",
    "preannotated": "pre-annotated it",
    "preannotation_failed": "could not pre-annotate it",
    "saved": "saved a draft",
    "edited": "edited it",
    "submitted": "submitted the lung boxes",
    "review_started": "started the review",
    "accepted": "accepted it",
    "returned": "returned it to the annotator",
    "excluded": "excluded it",
    "skipped": "skipped it",
    "region_accepted": "accepted a region",
    "region_rejected": "rejected a region",
    "region_edited": "edited a region",
    "region_added": "added a region",
}

# The image-level labels by field name (history entries name the field that changed).
LABEL_FIELDS = {"healthy": "Healthy", "covid": "COVID", "other_disease": "Other disease"}


def humanize(value: str) -> str:
    """A value no vocabulary knows, made readable: ``some_value`` → ``Some value``."""
    text = str(value).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def words() -> dict[str, dict[str, str]]:
    """Every vocabulary as ``{kind: {value: words}}``."""
    table = {kind: {str(value): str(label) for value, label in choices.choices} for kind, choices in CHOICES.items()}
    table["action"] = dict(EVENT_ACTIONS)
    table["label_field"] = dict(LABEL_FIELDS)
    return table


def word(*, kind: str, value: str | None) -> str:
    """The words for ``value`` in vocabulary ``kind``; empty for no value."""
    if value in (None, ""):
        return ""
    table = CHOICES.get(kind)
    if table is not None:
        try:
            return str(table(value).label)
        except ValueError:
            return humanize(value)
    extra = {"action": EVENT_ACTIONS, "label_field": LABEL_FIELDS}.get(kind, {})
    return extra.get(value, humanize(value))
