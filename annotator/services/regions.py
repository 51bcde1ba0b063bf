"""Finding regions under review: accept, reject, edit (new mask or label) and add.

Each region has its own ``version``; every save appends a revision (``region_revision``, also used
for the model's suggestions), so the model's suggestion, each edit and the final mask are all kept.
A region is changed only in the states where ``annotator.workflow`` allows ``edit_regions``, and only
while no colleague holds the radiograph's lease (a change renews the author's own lease).
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..apis.serializers import RegionCurrentSerializer
from ..constants import AnnotationSource, FindingLabel, InterstitialSubtype, RegionStatus
from ..errors import InvalidImage, InvalidInput, LeaseHeld, NotAllowed, NotFound, StaleVersion, VersionRequired
from ..geometry import box_validate, mask_crop
from ..imaging.encode import decode_mask_png, mask_png_bytes
from ..models import FindingRegion, FindingRegionRevision, Radiograph
from ..permissions import can
from .events import event_record
from .suggestion_metrics import suggestion_outcome_region_record
from .workflow import lease_check

MAX_DESCRIPTION = 4000


def region_state(region: FindingRegion) -> dict[str, Any]:
    """A region's current state as clients see it (a stale edit's 409 carries it as ``current``)."""
    return RegionCurrentSerializer(region).data


def _validate_label(label: Any, subtype: Any) -> tuple[str, str]:
    if label not in FindingLabel.values or label == FindingLabel.UNKNOWN:
        raise InvalidInput(f"'label' must be one of {', '.join(v for v in FindingLabel.values if v != 'unknown')}.")
    subtype = subtype or ""
    if subtype and (label != FindingLabel.INTERSTITIAL_SHADOW or subtype not in InterstitialSubtype.values):
        raise InvalidInput("A subtype (reticular, nodular, ground_glass) applies only to interstitial_shadow.")
    return label, subtype


def mask_from_payload(*, radiograph: Radiograph, bbox: Any, mask_png_b64: Any) -> tuple[list[int], bytes, int]:
    """A region mask sent by a client: the box it covers and a 0/255 PNG of that box (base64).

    Returns the tight box, the re-encoded cropped PNG and the area; an empty mask is an error.
    """
    box = box_validate(bbox, width=radiograph.width, height=radiograph.height, name="bbox")
    if not isinstance(mask_png_b64, str):
        raise InvalidInput("'mask' must be a base64 PNG.")
    if mask_png_b64.startswith("data:"):
        mask_png_b64 = mask_png_b64.split(",", 1)[-1]
    try:
        data = base64.b64decode(mask_png_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("'mask' is not valid base64.") from None
    try:
        mask = decode_mask_png(data, expected_shape=(box[3] - box[1], box[2] - box[0]))
    except InvalidImage as exc:
        raise InvalidInput(f"'mask': {exc.message}") from exc
    cropped = mask_crop(mask)
    if cropped is None:
        raise InvalidInput("The region's mask is empty: reject the region instead.")
    inner, crop = cropped
    tight = [box[0] + inner[0], box[1] + inner[1], box[0] + inner[2], box[1] + inner[3]]
    return tight, mask_png_bytes(crop), int(crop.sum())


def region_revision(region: FindingRegion, *, author=None) -> FindingRegionRevision:
    """The revision row that records a region as it now stands (unsaved: callers create or bulk-create it)."""
    return FindingRegionRevision(
        region=region,
        version=region.version,
        label=region.label,
        subtype=region.subtype,
        description=region.description,
        status=region.status,
        bbox=region.bbox,
        mask_png=region.mask_png,
        author=author if getattr(author, "is_authenticated", False) else None,
    )


def _raise_if_stale(region: FindingRegion, *, version: int) -> None:
    current = FindingRegion.objects.filter(pk=region.pk).first()
    if current is None or current.version != version:
        raise StaleVersion(
            "Someone else changed this region after you opened it. Reload to see it; your edit was not saved.",
            extra={"current": region_state(current) if current else None},
        )


def _revise(region: FindingRegion, *, user, version: Any, changes: dict[str, Any], action: str) -> FindingRegion:
    if version is None:
        raise VersionRequired("Send the region version your edit is based on ('version').")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise InvalidInput("'version' must be an integer.") from None
    with transaction.atomic():
        try:
            lease_check(radiograph_id=region.radiograph_id, user=user, action="edit_regions")
        except LeaseHeld:
            # As for the radiograph's own saves: a stale version is the first thing to know (reload).
            _raise_if_stale(region, version=version)
            raise
        now = timezone.now()
        updated = FindingRegion.objects.filter(pk=region.pk, version=version).update(
            version=F("version") + 1, updated_at=now, author=user, **changes
        )
        if not updated:
            _raise_if_stale(region, version=version)
        if region.version == version:
            # The row was the one the caller loaded (every change bumps the version): apply the change
            # to it instead of reading the row again (a decision's hot path).
            for name, value in changes.items():
                setattr(region, name, value)
            region.version, region.updated_at, region.author = version + 1, now, user
        else:
            region = FindingRegion.objects.select_related("radiograph", "prediction").get(pk=region.pk)
        region_revision(region, author=user).save()
        event_record(
            radiograph=region.radiograph,
            actor=user,
            action=f"region_{action}",
            data={"region": region.id, "version": region.version, "label": region.label, "status": region.status},
            model_version_id=region.prediction.model_version_id if region.prediction_id else None,
        )
        suggestion_outcome_region_record(region=region, user=user)
    return region


def region_decide(*, region: FindingRegion, user, version: Any, decision: str) -> FindingRegion:
    """Accept or reject a region as it stands."""
    if not can(user, "review"):
        raise NotAllowed("Only radiologists review regions.")
    status = {"accept": RegionStatus.ACCEPTED, "reject": RegionStatus.REJECTED}.get(decision)
    if status is None:
        raise InvalidInput("decision must be 'accept' or 'reject'.")
    return _revise(region, user=user, version=version, changes={"status": status}, action=f"{decision}ed")


def region_edit(
    *,
    region: FindingRegion,
    user,
    version: Any,
    bbox: Any = None,
    mask: Any = None,
    label: Any = None,
    subtype: Any = None,
    description: Any = None,
    status: Any = RegionStatus.ACCEPTED,
) -> FindingRegion:
    """Edit a region (mask and/or label and description); an edited region is accepted by default."""
    if not can(user, "review"):
        raise NotAllowed("Only radiologists edit regions.")
    changes: dict[str, Any] = {}
    if mask is not None or bbox is not None:
        tight, png, area = mask_from_payload(radiograph=region.radiograph, bbox=bbox, mask_png_b64=mask)
        changes.update(bbox=tight, mask_png=png, area=area)
    if label is not None or subtype is not None:
        changes["label"], changes["subtype"] = _validate_label(label or region.label, subtype if subtype is not None else region.subtype)
        changes["flagged"] = False
    if description is not None:
        changes["description"] = str(description)[:MAX_DESCRIPTION]
    if status not in (RegionStatus.ACCEPTED, RegionStatus.REJECTED, RegionStatus.SUGGESTED):
        raise InvalidInput("status must be accepted, rejected or suggested.")
    changes["status"] = status
    return _revise(region, user=user, version=version, changes=changes, action="edited")


def region_add(
    *, radiograph: Radiograph, user, label: Any, subtype: Any = "", description: Any = "", bbox: Any, mask: Any
) -> FindingRegion:
    """A radiologist adds a region the model missed; it is accepted."""
    if not can(user, "review"):
        raise NotAllowed("Only radiologists add regions.")
    label, subtype = _validate_label(label, subtype)
    tight, png, area = mask_from_payload(radiograph=radiograph, bbox=bbox, mask_png_b64=mask)
    with transaction.atomic():
        lease_check(radiograph_id=radiograph.pk, user=user, action="edit_regions")
        region = FindingRegion.objects.create(
            radiograph=radiograph,
            label=label,
            subtype=subtype,
            description=str(description or "")[:MAX_DESCRIPTION],
            status=RegionStatus.ACCEPTED,
            source=AnnotationSource.RADIOLOGIST,
            bbox=tight,
            mask_png=png,
            area=area,
            author=user,
        )
        region_revision(region, author=user).save()
        event_record(radiograph=radiograph, actor=user, action="region_added", data={"region": region.id, "label": label})
    return region


def region_mask_png(region: FindingRegion) -> bytes:
    if not region.mask_png:
        raise NotFound("This region has no mask.")
    return bytes(region.mask_png)
