"""The annotation and review workflow: leases, saves with optimistic locking, state changes.

The rules (which step goes from which state to which, for whom, and what it does to the lease) are
the table in ``annotator.workflow``; ``transition_apply`` is the one function that changes a
radiograph's workflow row by them. It checks, in one UPDATE, that the change is based on the current
``version``, that the table allows the step from the current state to the user's capabilities, and
that nobody else holds a live lease; then it records the event. A refused change is explained: a
stale version (409 with the current state), a step the state does not allow (409), or a colleague's
lease (409 naming them).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from .. import workflow
from ..apis.serializers import AnnotationStateSerializer
from ..constants import AnnotationSource, ExclusionReason, LungStatus, Provenance, RegionStatus, State, Tri, View
from ..errors import DomainError, InvalidInput, InvalidTransition, LeaseHeld, NotAllowed, NotFound, StaleVersion, VersionRequired
from ..geometry import box_validate
from ..models import LungAnnotation, Radiograph
from ..permissions import can, capabilities
from .events import event_record
from .suggestion_metrics import suggestion_outcome_lungs_record

LABEL_FIELDS = ("healthy", "covid", "other_disease")


def annotation_state(radiograph: Radiograph, lungs: LungAnnotation | None = None) -> dict[str, Any]:
    """The image-level annotation as clients see it (also sent back with a 409)."""
    context = {"lungs": lungs} if lungs is not None else {}
    return AnnotationStateSerializer(radiograph, context=context).data


def radiograph_actions(*, radiograph: Radiograph, user, now=None) -> list[str]:
    """The workflow actions ``user`` may take on ``radiograph`` now: those the table allows their
    capabilities in its state, none while a colleague holds a live lease on it."""
    if radiograph.lease_holder_id(now) not in (None, user.pk):
        return []
    return workflow.actions_for(state=radiograph.state, capabilities=capabilities(user))


def _capable(user, capability: str) -> bool:
    if user is None:
        return capability == workflow.SYSTEM
    return capability != workflow.SYSTEM and can(user, capability)


def _role_source(user) -> str:
    return Provenance.RADIOLOGIST if can(user, "review") else Provenance.ANNOTATOR


def _version_int(version: Any) -> int:
    if version is None:
        raise VersionRequired("Send the version your edit is based on ('version').")
    try:
        return int(version)
    except (TypeError, ValueError):
        raise InvalidInput("'version' must be an integer.") from None


def _lease_free_or_held_by(user, now) -> Q:
    """Rows nobody holds a live lease on, or that ``user`` holds (an expired lease holds nothing)."""
    return Q(leased_to__isnull=True) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now) | Q(leased_to=user)


def lease_held_error(radiograph: Radiograph) -> LeaseHeld:
    """The refusal for a change to a radiograph that a colleague holds (their name in the message)."""
    holder = radiograph.leased_to.get_username() if radiograph.leased_to_id else "someone else"
    return LeaseHeld(
        f"{holder} holds this radiograph (they have it open): it cannot be changed by anyone else until "
        "they finish or their lease runs out. Your change was not saved.",
        extra={"leased_to": holder, "lease_expires_at": radiograph.lease_expires_at, "current": annotation_state(radiograph)},
    )


def _refusal(*, radiograph_id: int, user, version: int, action: str) -> DomainError:
    """Why a change to a radiograph was refused, as read after the refused UPDATE."""
    current = Radiograph.objects.select_related("leased_to").filter(pk=radiograph_id).first()
    if current is None:
        return NotFound("No such radiograph.")
    if current.version != version:
        return StaleVersion(
            "Someone else saved this radiograph after you opened it. Reload to see their changes; "
            "your edit was not saved.",
            extra={"current": annotation_state(current)},
        )
    rule = workflow.step(action, current.state)
    if rule is None or not _capable(user, rule.capability):
        return InvalidTransition(
            f"A radiograph that is {current.state.replace('_', ' ')} cannot be changed this way by your role.",
            extra={"current": annotation_state(current)},
        )
    if user is not None and current.lease_holder_id() not in (None, user.pk):
        return lease_held_error(current)
    return StaleVersion("This radiograph changed meanwhile: reload it.", extra={"current": annotation_state(current)})


def transition_apply(
    *,
    radiograph_id: int,
    user,
    action: str,
    version: Any,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    loaded: Radiograph | None = None,
    model_version_id: int | None = None,
) -> Radiograph:
    """Take the workflow step ``action`` (``annotator.workflow.TRANSITIONS``) on a radiograph, with
    ``changes`` to its other fields, and record the event; ``user`` None is the pre-annotation worker.

    One UPDATE decides: it applies only to the radiograph at ``version``, in the state the step was
    looked up from, not held by a colleague. ``loaded`` is the row as the caller read it in this
    transaction (read here when not given): when the UPDATE succeeds it was at ``version``, so applying
    the changes to it gives the stored row without reading it again (a save's hot path).
    """
    expected = _version_int(version)
    if loaded is None:
        loaded = Radiograph.objects.filter(pk=radiograph_id).first()
        if loaded is None:
            raise NotFound("No such radiograph.")
    source = loaded.state
    rule = workflow.step(action, source)
    if rule is None or not _capable(user, rule.capability) or loaded.version != expected:
        raise _refusal(radiograph_id=radiograph_id, user=user, version=expected, action=action)
    now = timezone.now()
    changes = {**(changes or {}), "state": rule.target}
    if rule.lease == "take":
        changes.update(leased_to=user, lease_expires_at=now + timedelta(seconds=settings.LEASE_SECONDS))
    elif rule.lease == "renew":
        changes["lease_expires_at"] = Case(When(leased_to=user, then=Value(now + timedelta(seconds=settings.LEASE_SECONDS))), default=F("lease_expires_at"))
    elif rule.lease == "release":
        changes.update(leased_to=None, lease_expires_at=None)
    rows = Radiograph.objects.filter(pk=radiograph_id, version=expected, state=source)
    if user is not None:
        rows = rows.filter(_lease_free_or_held_by(user, now))
    if not rows.update(version=F("version") + 1, updated_at=now, **changes):
        raise _refusal(radiograph_id=radiograph_id, user=user, version=expected, action=action)
    for name, value in changes.items():
        if not hasattr(value, "resolve_expression"):
            setattr(loaded, name, value)
    loaded.version, loaded.updated_at = expected + 1, now
    event_record(
        radiograph=loaded,
        actor=user,
        action=rule.event,
        from_state=source,
        to_state=rule.target,
        model_version_id=model_version_id,
        data={"version": loaded.version, **(data or {})},
    )
    return loaded


def lease_check(*, radiograph_id: int, user, action: str) -> None:
    """Before changing what belongs to a radiograph (its regions): refused unless the table allows
    ``action`` to the user in its state and no colleague holds a live lease on it. The user's own
    lease is renewed (a free radiograph stays free: deciding a region does not take it from the queue).
    The UPDATE also locks the row, so concurrent changes to one radiograph's regions queue up here."""
    now = timezone.now()
    states = workflow.sources(action, capabilities=capabilities(user))
    until = now + timedelta(seconds=settings.LEASE_SECONDS)
    allowed = (
        Radiograph.objects.filter(pk=radiograph_id, state__in=states)
        .filter(_lease_free_or_held_by(user, now))
        .update(lease_expires_at=Case(When(leased_to=user, then=Value(until)), default=F("lease_expires_at")))
    )
    if allowed:
        return
    current = Radiograph.objects.select_related("leased_to").filter(pk=radiograph_id).first()
    if current is None:
        raise NotFound("No such radiograph.")
    if current.state not in states:
        raise InvalidTransition(f"The regions of a radiograph that is {current.state.replace('_', ' ')} cannot be changed.")
    raise lease_held_error(current)


def _labels_changes(labels: dict[str, Any] | None, *, user) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if labels is None:
        return changes
    if not isinstance(labels, dict):
        raise InvalidInput("'labels' must be an object.")
    for name, value in labels.items():
        if name not in LABEL_FIELDS:
            raise InvalidInput(f"Unknown label {name!r}; expected one of {', '.join(LABEL_FIELDS)}.")
        if value not in Tri.values:
            raise InvalidInput(f"Label {name} must be one of {', '.join(Tri.values)}.")
        changes[name] = value
        changes[f"{name}_source"] = _role_source(user) if value != Tri.UNKNOWN else Provenance.NONE
    return changes


def annotation_save(
    *,
    radiograph_id: int,
    user,
    version: int | None,
    right: Any = None,
    left: Any = None,
    labels: dict[str, str] | None = None,
    view: str | None = None,
    submit: bool = False,
) -> tuple[Radiograph, LungAnnotation | None]:
    """Save the annotator's work (lung boxes, image labels, view); ``submit`` sends it to review.

    A save holds the radiograph for its author (renewing their lease); a submit gives it back.
    """
    if not can(user, "annotate"):
        raise NotAllowed("Your role does not allow annotating.")
    changes = _labels_changes(labels, user=user)
    if view is not None:
        if view not in View.values or view in (View.LATERAL, View.CT):
            raise InvalidInput("'view' must be a frontal view (PA, AP, AP_SUPINE, UNKNOWN); exclude other views.")
        changes["view"] = view
    with transaction.atomic():
        loaded = Radiograph.objects.filter(pk=radiograph_id).first()
        if loaded is None:
            raise NotFound("No such radiograph.")
        before = loaded.state
        boxes = {
            "right": box_validate(right, width=loaded.width, height=loaded.height, name="right") if right is not None else None,
            "left": box_validate(left, width=loaded.width, height=loaded.height, name="left") if left is not None else None,
        }
        if submit and (boxes["right"] is None or boxes["left"] is None):
            raise InvalidInput("Draw both lung boxes (patient right and left) before submitting.")
        if submit:
            changes.update(annotated_by=user, return_comment="")
        radiograph = transition_apply(
            radiograph_id=radiograph_id,
            user=user,
            action="submit" if submit else "save",
            version=version,
            changes=changes,
            loaded=loaded,
            data={"right": boxes["right"], "left": boxes["left"], **({"labels": labels} if labels else {})},
        )
        lungs = LungAnnotation.objects.create(
            radiograph=radiograph,
            version=radiograph.version,
            right_box=boxes["right"],
            left_box=boxes["left"],
            # An edit after submitting (before review starts) stays submitted.
            status=LungStatus.SUBMITTED if submit or before == State.LUNGS_DONE else LungStatus.DRAFT,
            source=AnnotationSource.RADIOLOGIST if _role_source(user) == Provenance.RADIOLOGIST else AnnotationSource.ANNOTATOR,
            author=user,
        )
        if submit:
            suggestion_outcome_lungs_record(radiograph=radiograph, lungs=lungs, user=user)
    return radiograph, lungs


def radiograph_exclude(*, radiograph_id: int, user, version: int | None, reason: str, note: str = "") -> Radiograph:
    """Take a radiograph out of the frontal workflow (lateral view, CT, unreadable...)."""
    if not can(user, "annotate"):
        raise NotAllowed("Your role does not allow this.")
    if reason not in ExclusionReason.values:
        raise InvalidInput(f"'reason' must be one of {', '.join(ExclusionReason.values)}.")
    with transaction.atomic():
        return transition_apply(
            radiograph_id=radiograph_id,
            user=user,
            action="exclude",
            version=version,
            changes={"excluded_reason": reason, "excluded_note": str(note)[:2000]},
            data={"reason": reason, "note": note},
        )


def radiograph_skip(*, radiograph_id: int, user, reason: str) -> None:
    """Give a leased radiograph back to the queue with a reason; it is not handed to this user again."""
    if not can(user, "annotate"):
        raise NotAllowed("Your role does not allow this.")
    if not str(reason or "").strip():
        raise InvalidInput("Say why you skip this radiograph ('reason').")
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            raise NotFound("No such radiograph.")
        if radiograph.leased_to_id == user.id:
            Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=None, lease_expires_at=None)
        event_record(radiograph=radiograph, actor=user, action="skipped", from_state=radiograph.state, to_state=radiograph.state, data={"reason": str(reason)[:2000]})


def lease_renew(*, radiograph_id: int, user) -> Radiograph:
    """Hold (or keep holding) a radiograph that ``user`` has open, for another ``LEASE_SECONDS``.

    The workspace calls this while the page is open, so a radiograph someone reads for a long time
    without saving is not handed to a colleague by the queue. Whoever may edit it in its state may
    hold it (an annotator still correcting a submitted one keeps it out of review meanwhile). A live
    lease of someone else is not taken over (``LeaseHeld``); accepted or excluded radiographs are in
    no queue (``InvalidTransition``).
    No version is bumped: a lease is not part of the annotation.
    """
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            raise NotFound("No such radiograph.")
        if radiograph.state not in workflow.queued_states():
            raise InvalidTransition(f"This radiograph is {radiograph.state.replace('_', ' ')}: it is in no queue.")
        if radiograph.state not in workflow.sources("save", capabilities=capabilities(user)):
            raise NotAllowed("Your role cannot work on this radiograph in its present state.")
        now = timezone.now()
        if radiograph.lease_holder_id(now) not in (None, user.pk):
            raise lease_held_error(radiograph)
        radiograph.leased_to, radiograph.lease_expires_at = user, now + timedelta(seconds=settings.LEASE_SECONDS)
        Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=user, lease_expires_at=radiograph.lease_expires_at)
    return radiograph


def radiograph_return(*, radiograph_id: int, user, version: int | None, comment: str) -> Radiograph:
    """Send a radiograph back to the annotator with a comment."""
    if not can(user, "review"):
        raise NotAllowed("Only radiologists can return a radiograph.")
    if not str(comment or "").strip():
        raise InvalidInput("Say what the annotator should change ('comment').")
    with transaction.atomic():
        return transition_apply(
            radiograph_id=radiograph_id,
            user=user,
            action="return",
            version=version,
            changes={"return_comment": str(comment)[:4000]},
            data={"comment": comment},
        )


def radiograph_accept(
    *, radiograph_id: int, user, version: int | None, labels: dict[str, str] | None = None, right: Any = None, left: Any = None
) -> Radiograph:
    """The radiologist's final decision: lung boxes, labels and every region become ground truth.

    Refused while suggested regions are still undecided, so no suggestion slips into the truth or
    out of it without a decision.
    """
    if not can(user, "review"):
        raise NotAllowed("Only radiologists can accept a radiograph.")
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            raise NotFound("No such radiograph.")
        undecided = radiograph.regions.filter(status=RegionStatus.SUGGESTED).count()
        if undecided:
            raise InvalidInput(f"{undecided} suggested region(s) are still undecided: accept or reject each first.")
        lungs = radiograph.lung_annotations.first()
        right_box = box_validate(right, width=radiograph.width, height=radiograph.height, name="right") if right is not None else (lungs.right_box if lungs else None)
        left_box = box_validate(left, width=radiograph.width, height=radiograph.height, name="left") if left is not None else (lungs.left_box if lungs else None)
        if right_box is None or left_box is None:
            raise InvalidInput("Both lung boxes are needed before a radiograph can be accepted.")
        changes = _labels_changes(labels, user=user)
        for name in LABEL_FIELDS:
            # Confirming a label makes the radiologist its source.
            if name not in changes and getattr(radiograph, name) != Tri.UNKNOWN:
                changes[f"{name}_source"] = Provenance.RADIOLOGIST
        changes.update(reviewed_by=user, findings_complete=True)
        accepted = list(radiograph.regions.filter(status=RegionStatus.ACCEPTED).values_list("id", flat=True))
        final_labels = {name: changes.get(name, getattr(radiograph, name)) for name in LABEL_FIELDS}
        radiograph = transition_apply(
            radiograph_id=radiograph_id,
            user=user,
            action="accept",
            version=version,
            changes=changes,
            loaded=radiograph,
            data={"regions": accepted, "right": right_box, "left": left_box, "labels": final_labels},
        )
        LungAnnotation.objects.create(
            radiograph=radiograph,
            version=radiograph.version,
            right_box=right_box,
            left_box=left_box,
            mask_png=lungs.mask_png if lungs else None,
            mask_bbox=lungs.mask_bbox if lungs else None,
            status=LungStatus.ACCEPTED,
            source=AnnotationSource.RADIOLOGIST,
            author=user,
        )
    return radiograph
