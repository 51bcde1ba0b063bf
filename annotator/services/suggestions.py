"""The model's suggestions applied to a radiograph: the pre-annotation worker's one way in.

``inference/`` computes a prediction and calls ``suggestions_apply``; everything that touches the
workflow (the state change, the version, the event, the region rows and their revisions, the lung
suggestion) happens here, by the same rules and helpers as a person's edits. Human work is never
overwritten: only the model's untouched suggestions are replaced (regions still ``suggested`` at
version 1, and a lung suggestion nobody has edited).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .. import workflow
from ..constants import AnnotationSource, LungStatus, RegionStatus
from ..models import FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph
from .regions import region_revision
from .workflow import transition_apply


class RegionSuggestion(Protocol):
    """One suggested region: its box ``[x0, y0, x1, y1]``, the 0/255 PNG of the box's mask."""

    bbox: list[int]
    mask_png: bytes
    area: int
    confidence: float


def suggestions_apply(
    *,
    radiograph: Radiograph,
    prediction_id: int,
    model_version_id: int,
    right_box: list[int] | None,
    left_box: list[int] | None,
    regions: Sequence[RegionSuggestion],
    label: str,
) -> bool:
    """Replace the model's untouched suggestions on ``radiograph`` with a prediction's, and record the
    ``preannotate`` step. The caller holds the row lock (``select_for_update``).

    Returns False, changing nothing, when the radiograph's state no longer takes suggestions.
    Bulk writes: two INSERTs for all regions and their first revisions, not two per region.
    """
    if workflow.step("preannotate", radiograph.state) is None:
        return False
    stale = list(
        FindingRegion.objects.filter(
            radiograph=radiograph, source=AnnotationSource.MODEL, status=RegionStatus.SUGGESTED, version=1
        ).values_list("pk", flat=True)
    )
    if stale:  # (the common first pre-annotation has none: skip the delete's extra queries)
        FindingRegion.objects.filter(pk__in=stale).delete()
    created = FindingRegion.objects.bulk_create(
        [
            FindingRegion(
                radiograph=radiograph,
                label=label,
                status=RegionStatus.SUGGESTED,
                source=AnnotationSource.MODEL,
                confidence=suggested.confidence,
                bbox=suggested.bbox,
                mask_png=suggested.mask_png,
                area=suggested.area,
                prediction_id=prediction_id,
            )
            for suggested in regions
        ]
    )
    FindingRegionRevision.objects.bulk_create([region_revision(region) for region in created])
    current = radiograph.lung_annotations.first()
    untouched = current is None or (current.source == AnnotationSource.MODEL and current.status == LungStatus.SUGGESTED)
    lungs = untouched and (right_box is not None or left_box is not None)
    radiograph = transition_apply(
        radiograph_id=radiograph.pk,
        user=None,
        action="preannotate",
        version=radiograph.version,
        loaded=radiograph,
        model_version_id=model_version_id,
        data={"prediction": prediction_id, "regions": len(created), "lungs": lungs, "right": right_box, "left": left_box},
    )
    if lungs:
        LungAnnotation.objects.create(
            radiograph=radiograph,
            version=radiograph.version,
            right_box=right_box,
            left_box=left_box,
            status=LungStatus.SUGGESTED,
            source=AnnotationSource.MODEL,
            model_version_id=model_version_id,
        )
    return True
