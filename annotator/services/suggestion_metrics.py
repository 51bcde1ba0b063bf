"""How people treat the model's suggestions, measured where they decide them.

- An annotator submits lung boxes: the boxes are compared with the model's latest lung suggestion
  for that radiograph (IoU per patient side) and the submitted image labels with the model's (its
  probabilities at 0.5).
- A radiologist decides a suggested finding region: accepted as the model drew it, edited (Dice of
  the suggested mask to the final one) or rejected. An undo back to "suggested" takes the outcome away.

One ``SuggestionOutcome`` row per suggestion, rewritten when the decision changes (a resubmission
after a return, a region edited again), so the figures always describe the final decisions. The
model's suggestions are read from annotator's own rows (``LungAnnotation``/``FindingRegion`` with
source ``model`` and their first revision); the label probabilities through the radiograph's
``predictions`` relation, without importing the inference app.
"""
from __future__ import annotations

from django.utils import timezone

from ..constants import AnnotationSource, RegionStatus, Tri
from training.boxes import box_iou

from ..geometry import mask_dice, masks_frame, masks_union
from ..models import FindingRegion, LungAnnotation, Radiograph, SuggestionOutcome

# The model's label for an image: positive at or above this probability.
LABEL_THRESHOLD = 0.5
# The image labels and the prediction fields holding the model's probability for each.
LABEL_PROBABILITIES = {"healthy": "healthy_prob", "covid": "covid_prob", "other_disease": "other_disease_prob"}

Outcome = SuggestionOutcome.Outcome


def suggestion_outcome_lungs_record(*, radiograph: Radiograph, lungs: LungAnnotation, user) -> SuggestionOutcome | None:
    """After a submit: how far the submitted boxes moved from the model's suggestion, and whether the
    labels differ from the model's. None when the radiograph never had a model suggestion."""
    suggestion = (
        radiograph.lung_annotations.filter(source=AnnotationSource.MODEL).exclude(pk=lungs.pk).order_by("-version", "-id").first()
    )
    if suggestion is None:
        return None
    unchanged = lungs.right_box == suggestion.right_box and lungs.left_box == suggestion.left_box
    outcome, _ = SuggestionOutcome.objects.update_or_create(
        radiograph=radiograph,
        kind=SuggestionOutcome.Kind.LUNGS,
        defaults={
            "model_version_id": suggestion.model_version_id,
            "outcome": Outcome.UNCHANGED if unchanged else Outcome.EDITED,
            "right_iou": box_iou(suggestion.right_box, lungs.right_box),
            "left_iou": box_iou(suggestion.left_box, lungs.left_box),
            "labels_changed": _labels_changed(radiograph, model_version_id=suggestion.model_version_id),
            "actor": user if getattr(user, "is_authenticated", False) else None,
            "region": None,
            "dice": None,
            "decided_at": timezone.now(),
        },
    )
    return outcome


def _labels_changed(radiograph: Radiograph, *, model_version_id: int | None) -> bool | None:
    """Whether any label the model gave differs from the radiograph's (None: the model gave none)."""
    if model_version_id is None:
        return None
    probabilities = radiograph.predictions.filter(model_version_id=model_version_id).values(*LABEL_PROBABILITIES.values()).first()
    if not probabilities:
        return None
    compared = changed = 0
    for name, field in LABEL_PROBABILITIES.items():
        probability = probabilities[field]
        if probability is None:
            continue
        compared += 1
        model_label = Tri.POSITIVE if probability >= LABEL_THRESHOLD else Tri.NEGATIVE
        changed += getattr(radiograph, name) != model_label
    return bool(changed) if compared else None


def suggestion_outcome_region_record(*, region: FindingRegion, user) -> SuggestionOutcome | None:
    """After a region decision: accepted unchanged, edited (with Dice) or rejected. Regions people
    added or imported are no suggestions; an undo back to ``suggested`` removes the outcome."""
    if region.source != AnnotationSource.MODEL:
        return None
    if region.status == RegionStatus.SUGGESTED:
        SuggestionOutcome.objects.filter(region=region, kind=SuggestionOutcome.Kind.REGION).delete()
        return None
    if region.status == RegionStatus.REJECTED:
        kind, dice = Outcome.REJECTED, None
    else:
        suggested = region.revisions.order_by("version").first()
        if suggested is None:
            return None
        same_mask = suggested.bbox == region.bbox and bytes(suggested.mask_png) == bytes(region.mask_png)
        same_label = (suggested.label, suggested.subtype) == (region.label, region.subtype)
        kind = Outcome.UNCHANGED if same_mask and same_label else Outcome.EDITED
        frame = masks_frame([suggested, region])
        dice = 1.0 if same_mask else mask_dice(masks_union([suggested], frame), masks_union([region], frame))
    fields = {
        "radiograph_id": region.radiograph_id,
        "model_version_id": region.prediction.model_version_id if region.prediction_id else None,
        "outcome": kind,
        "dice": dice,
        "decided_at": timezone.now(),
        "actor": user if getattr(user, "is_authenticated", False) else None,
    }
    # A decision runs under the region's version check, so two first decisions of one region cannot
    # race: an UPDATE, and an INSERT only the first time (update_or_create would lock and read first).
    outcome = SuggestionOutcome(region=region, kind=SuggestionOutcome.Kind.REGION, **fields)
    if not SuggestionOutcome.objects.filter(region=region, kind=SuggestionOutcome.Kind.REGION).update(**fields):
        outcome.save(force_insert=True)
    return outcome
