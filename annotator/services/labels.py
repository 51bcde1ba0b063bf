"""Mapping of source metadata (free text as the sources wrote it) onto views and H/C/O labels."""
from __future__ import annotations

from dataclasses import dataclass

from ..constants import ExclusionReason, Tri, View

_VIEW_MAP = {
    "pa": View.PA,
    "ap": View.AP,
    "ap erect": View.AP,
    "ap upright": View.AP,
    "ap supine": View.AP_SUPINE,
    "supine": View.AP_SUPINE,
    "l": View.LATERAL,
    "ll": View.LATERAL,
    "rl": View.LATERAL,
    "lat": View.LATERAL,
    "lateral": View.LATERAL,
    "axial": View.CT,
    "coronal": View.CT,
    "sagittal": View.CT,
}


def view_from_text(view: str | None, modality: str | None = None) -> str:
    """A source's view text (``PA``, ``AP Supine``, ``L``, ``Axial``...) → a ``View``."""
    if (modality or "").strip().upper() == "CT":
        return View.CT
    return _VIEW_MAP.get((view or "").strip().lower(), View.UNKNOWN)


def exclusion_for_view(view: str) -> str:
    """The exclusion reason a view implies, or '' when the radiograph belongs in the frontal workflow."""
    if view == View.LATERAL:
        return ExclusionReason.LATERAL
    if view == View.CT:
        return ExclusionReason.CT
    return ""


@dataclass(frozen=True)
class ImageLabels:
    healthy: str
    covid: str
    other_disease: str

    @property
    def known(self) -> bool:
        return any(v != Tri.UNKNOWN for v in (self.healthy, self.covid, self.other_disease))


UNKNOWN_LABELS = ImageLabels(Tri.UNKNOWN, Tri.UNKNOWN, Tri.UNKNOWN)


def labels_from_finding(finding: str | None) -> ImageLabels:
    """The paper's H/C/O labels from a source's finding text.

    ``COVID-19`` → COVID positive and unhealthy; ``No Finding`` (any case) → healthy; any other
    disease → unhealthy, COVID negative, other disease positive; blank or ``todo`` → unknown.
    """
    text = (finding or "").strip()
    lowered = text.lower()
    if lowered in {"", "todo", "unknown", "?", "n/a", "na"}:
        return UNKNOWN_LABELS
    if lowered in {"no finding", "no findings", "normal", "healthy"}:
        return ImageLabels(Tri.POSITIVE, Tri.NEGATIVE, Tri.NEGATIVE)
    if "covid" in lowered or "sars-cov-2" in lowered:
        return ImageLabels(Tri.NEGATIVE, Tri.POSITIVE, Tri.UNKNOWN)
    return ImageLabels(Tri.NEGATIVE, Tri.NEGATIVE, Tri.POSITIVE)
