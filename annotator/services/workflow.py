"""The annotation and review workflow: leases, saves with optimistic locking, state changes.

States: imported → preannotated → lungs_done → in_review → accepted, or returned (to the annotator,
with a comment), or excluded (with a reason). The radiograph's ``version`` guards image-level work:
a save names the version it started from; a stale one is refused with the current state.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..constants import ANNOTATE_QUEUE, REVIEW_QUEUE, AnnotationSource, ExclusionReason, LungStatus, Provenance, RegionStatus, Role, State, Tri, View
from ..errors import Conflict, InvalidInput, InvalidTransition, NotAllowed, NotFound, StaleVersion, VersionRequired
from ..geometry import box_validate
from ..models import LungAnnotation, Radiograph, ReviewEvent
from ..permissions import can, user_roles
from .events import event_record
from .suggestion_metrics import suggestion_outcome_lungs_record

# States in which each role may change the lung boxes and labels.
EDITABLE = {
    Role.ANNOTATOR: {State.IMPORTED, State.PREANNOTATED, State.RETURNED, State.LUNGS_DONE},
    Role.RADIOLOGIST: {State.IMPORTED, State.PREANNOTATED, State.RETURNED, State.LUNGS_DONE, State.IN_REVIEW},
    Role.ADMIN: {State.IMPORTED, State.PREANNOTATED, State.RETURNED, State.LUNGS_DONE, State.IN_REVIEW},
}
LABEL_FIELDS = ("healthy", "covid", "other_disease")


def annotation_state(radiograph: Radiograph, lungs: LungAnnotation | None = None) -> dict[str, Any]:
    """The image-level annotation as clients see it (also sent back with a 409)."""
    if lungs is None:
        lungs = radiograph.lung_annotations.first()
    return {
        "id": radiograph.id,
        "version": radiograph.version,
        "state": radiograph.state,
        "view": radiograph.view,
        "labels": {name: getattr(radiograph, name) for name in LABEL_FIELDS},
        "label_sources": {name: getattr(radiograph, f"{name}_source") for name in LABEL_FIELDS},
        "lungs": {
            "right": lungs.right_box if lungs else None,
            "left": lungs.left_box if lungs else None,
            "status": lungs.status if lungs else None,
            "source": lungs.source if lungs else None,
            "version": lungs.version if lungs else None,
        },
        "excluded_reason": radiograph.excluded_reason,
        "return_comment": radiograph.return_comment,
    }


def _editable_states(user) -> set[str]:
    states: set[str] = set()
    for role in user_roles(user):
        states |= EDITABLE.get(role, set())
    return states


def _role_source(user) -> str:
    return Provenance.RADIOLOGIST if can(user, "review") else Provenance.ANNOTATOR


def _claim(
    *, radiograph_id: int, user, version: int | None, states, changes: dict[str, Any], loaded: Radiograph | None = None
) -> Radiograph:
    """Bump the version of a radiograph in one of ``states`` if it is still at ``version``.

    One UPDATE decides: either this save is based on the current version, or nothing changes and
    the caller learns why (stale version, or a state that does not allow it). ``loaded`` is the row
    as the caller read it in this transaction: when the UPDATE succeeds it was at ``version``, so
    applying ``changes`` to it gives the stored row without reading it again (a save's hot path).
    """
    if version is None:
        raise VersionRequired("Send the version your edit is based on ('version').")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise InvalidInput("'version' must be an integer.") from None
    now = timezone.now()
    updated = Radiograph.objects.filter(pk=radiograph_id, version=version, state__in=list(states)).update(
        version=F("version") + 1, updated_at=now, **changes
    )
    if updated and loaded is not None and loaded.version == version:
        for name, value in changes.items():
            setattr(loaded, name, value)
        loaded.version, loaded.updated_at = version + 1, now
        return loaded
    radiograph = Radiograph.objects.filter(pk=radiograph_id).first()
    if radiograph is None:
        raise NotFound("No such radiograph.")
    if not updated:
        if radiograph.version != version:
            raise StaleVersion(
                "Someone else saved this radiograph after you opened it. Reload to see their changes; "
                "your edit was not saved.",
                extra={"current": annotation_state(radiograph)},
            )
        raise InvalidTransition(
            f"A radiograph that is {radiograph.state} cannot be changed this way by your role.",
            extra={"current": annotation_state(radiograph)},
        )
    return radiograph


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
    """Save the annotator's work (lung boxes, image labels, view); ``submit`` sends it to review."""
    if not can(user, "annotate"):
        raise NotAllowed("Your role does not allow annotating.")
    states = _editable_states(user)
    changes = _labels_changes(labels, user=user)
    if view is not None:
        if view not in View.values or view in (View.LATERAL, View.CT):
            raise InvalidInput("'view' must be a frontal view (PA, AP, AP_SUPINE, UNKNOWN); exclude other views.")
        changes["view"] = view
    now = timezone.now()
    with transaction.atomic():
        loaded = Radiograph.objects.filter(pk=radiograph_id).first()
        if loaded is None:
            raise NotFound("No such radiograph.")
        current = {"width": loaded.width, "height": loaded.height, "state": loaded.state}
        boxes = {
            "right": box_validate(right, width=current["width"], height=current["height"], name="right") if right is not None else None,
            "left": box_validate(left, width=current["width"], height=current["height"], name="left") if left is not None else None,
        }
        if submit and (boxes["right"] is None or boxes["left"] is None):
            raise InvalidInput("Draw both lung boxes (patient right and left) before submitting.")
        if submit:
            if current["state"] == State.IN_REVIEW:
                raise InvalidTransition("This radiograph is already in review.")
            changes.update(state=State.LUNGS_DONE, annotated_by=user, leased_to=None, lease_expires_at=None, return_comment="")
        else:
            changes.update(leased_to=user, lease_expires_at=now + timedelta(seconds=settings.LEASE_SECONDS))
        radiograph = _claim(radiograph_id=radiograph_id, user=user, version=version, states=states, changes=changes, loaded=loaded)
        lungs = LungAnnotation.objects.create(
            radiograph=radiograph,
            version=radiograph.version,
            right_box=boxes["right"],
            left_box=boxes["left"],
            # An edit after submitting (before review starts) stays submitted.
            status=LungStatus.SUBMITTED if submit or current["state"] == State.LUNGS_DONE else LungStatus.DRAFT,
            source=AnnotationSource.RADIOLOGIST if _role_source(user) == Provenance.RADIOLOGIST else AnnotationSource.ANNOTATOR,
            author=user,
        )
        ReviewEvent.objects.create(
            radiograph=radiograph,
            actor=user,
            action="submitted" if submit else "saved",
            from_state=current["state"],
            to_state=radiograph.state,
            data={"version": radiograph.version, "right": boxes["right"], "left": boxes["left"], **({"labels": labels} if labels else {})},
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
    return _transition(
        radiograph_id=radiograph_id,
        user=user,
        version=version,
        states=_editable_states(user),
        changes={"state": State.EXCLUDED, "excluded_reason": reason, "excluded_note": str(note)[:2000]},
        action="excluded",
        data={"reason": reason, "note": note},
    )


def _transition(*, radiograph_id: int, user, version: int | None, states, changes: dict[str, Any], action: str, data: dict) -> Radiograph:
    """Move a radiograph to ``changes["state"]`` (releasing its lease) if it is in one of ``states``
    at ``version``, and record the event, in one transaction."""
    with transaction.atomic():
        before = Radiograph.objects.filter(pk=radiograph_id).values_list("state", flat=True).first()
        radiograph = _claim(
            radiograph_id=radiograph_id, user=user, version=version, states=states, changes={**changes, "leased_to": None, "lease_expires_at": None}
        )
        event_record(radiograph=radiograph, actor=user, action=action, from_state=before or "", to_state=changes["state"], data=data)
    return radiograph


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
    lease of someone else is not taken over (``Conflict``); accepted or excluded radiographs are in
    no queue (``InvalidTransition``).
    No version is bumped: a lease is not part of the annotation.
    """
    with transaction.atomic():
        radiograph = Radiograph.objects.select_for_update().filter(pk=radiograph_id).first()
        if radiograph is None:
            raise NotFound("No such radiograph.")
        if radiograph.state not in (*ANNOTATE_QUEUE, *REVIEW_QUEUE):
            raise InvalidTransition(f"This radiograph is {radiograph.state.replace('_', ' ')}: it is in no queue.")
        if radiograph.state not in _editable_states(user):
            raise NotAllowed("Your role cannot work on this radiograph in its present state.")
        now = timezone.now()
        if radiograph.lease_holder_id(now) not in (None, user.pk):
            raise Conflict(f"{radiograph.leased_to.get_username()} holds this radiograph.")
        radiograph.leased_to, radiograph.lease_expires_at = user, now + timedelta(seconds=settings.LEASE_SECONDS)
        Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=user, lease_expires_at=radiograph.lease_expires_at)
    return radiograph


def queue_next(*, user, queue: str, dataset: str | None = None, order: str = "oldest") -> Radiograph | None:
    """Lease the next radiograph of a queue to ``user`` (resuming one they already hold).

    The lease is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent callers never get
    the same radiograph; an abandoned lease expires after ``LEASE_SECONDS``.
    """
    if queue == "annotate":
        required, states = "annotate", ANNOTATE_QUEUE
    elif queue == "review":
        required, states = "review", REVIEW_QUEUE
    else:
        raise InvalidInput("queue must be 'annotate' or 'review'.")
    if not can(user, required):
        raise NotAllowed("Your role does not work this queue.")
    now = timezone.now()
    if queue == "annotate" and connection.vendor == "postgresql":
        return _annotate_lease(user=user, dataset=dataset, now=now)
    base = Radiograph.objects.filter(state__in=states)
    if dataset:
        base = base.filter(dataset__name=dataset)
    with transaction.atomic():
        held = base.filter(leased_to=user, lease_expires_at__gt=now).order_by("id").first()
        if held is not None:
            return _lease(held, user=user, now=now, queue=queue)
        skipped = ReviewEvent.objects.filter(actor=user, action="skipped").values("radiograph_id")
        candidates = base.filter(Q(leased_to__isnull=True) | Q(lease_expires_at__lte=now)).exclude(pk__in=skipped)
        if queue == "review" and order == "uncertainty":
            groups = [candidates.order_by(F("uncertainty").desc(nulls_last=True), "id")]
        elif queue == "annotate":
            # Returned work first, then pre-annotated, then the rest; oldest first within each. One
            # query per state, in that order: each walks the queue's index and stops at the first free
            # row, where ordering by state and id together sorted every open radiograph each time.
            groups = [candidates.filter(state=state).order_by("id") for state in ANNOTATE_QUEUE]
        else:
            groups = [candidates.order_by("id")]
        for group in groups:
            picked = group.select_for_update(skip_locked=True, of=("self",)).first()
            if picked is not None:
                return _lease(picked, user=user, now=now, queue=queue)
        return None


def _annotate_lease(*, user, dataset: str | None, now) -> Radiograph | None:
    """The annotate queue's lease in one statement (PostgreSQL): every annotator asks for it after
    every save, so it is the busiest request there is.

    The radiograph the user already holds, else the oldest free one that is returned, else
    pre-annotated, else imported (one that the user skipped is never handed back). ``COALESCE``
    evaluates its candidates in that order and stops at the first; each walks the queue's partial
    index (``radiograph_annotate_queue``) to its first free row, skipping rows another transaction
    is leasing (``FOR UPDATE SKIP LOCKED``), so concurrent callers never get the same radiograph.
    The same rules as the ORM path below.
    """
    table = Radiograph._meta.db_table
    events = ReviewEvent._meta.db_table
    datasets = Radiograph._meta.get_field("dataset").related_model._meta.db_table
    in_dataset = f"AND r.dataset_id = (SELECT id FROM {datasets} WHERE name = %(dataset)s)" if dataset else ""
    free = (
        "(r.leased_to_id IS NULL OR r.lease_expires_at <= %(now)s) "
        # The user's skips as one hashed set (evaluated once), not a join against every event.
        f"AND r.id NOT IN (SELECT e.radiograph_id FROM {events} e WHERE e.actor_id = %(user)s AND e.action = 'skipped')"
    )

    def oldest(state: str) -> str:
        return (
            f"(SELECT r.id FROM {table} r WHERE r.state = '{state}' AND {free} {in_dataset} "
            "ORDER BY r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED)"
        )

    states = ", ".join(f"'{s}'" for s in ANNOTATE_QUEUE)
    held = (
        f"(SELECT r.id FROM {table} r WHERE r.leased_to_id = %(user)s AND r.lease_expires_at > %(now)s "
        f"AND r.state IN ({states}) {in_dataset} ORDER BY r.id LIMIT 1)"
    )
    sql = (
        f"UPDATE {table} SET leased_to_id = %(user)s, lease_expires_at = %(until)s "
        f"WHERE id = COALESCE({held}, {', '.join(oldest(s) for s in ANNOTATE_QUEUE)}) RETURNING *"
    )
    params = {"user": user.pk, "now": now, "until": now + timedelta(seconds=settings.LEASE_SECONDS), "dataset": dataset}
    with transaction.atomic():
        leased = list(Radiograph.objects.raw(sql, params))
    return leased[0] if leased else None


def _lease(radiograph: Radiograph, *, user, now, queue: str) -> Radiograph:
    changes: dict[str, Any] = {"leased_to": user, "lease_expires_at": now + timedelta(seconds=settings.LEASE_SECONDS)}
    if queue == "review" and radiograph.state == State.LUNGS_DONE:
        changes.update(state=State.IN_REVIEW, version=radiograph.version + 1)
        event_record(radiograph=radiograph, actor=user, action="review_started", from_state=State.LUNGS_DONE, to_state=State.IN_REVIEW)
    Radiograph.objects.filter(pk=radiograph.pk).update(**changes)
    for key, value in changes.items():
        setattr(radiograph, key, value)
    return radiograph


def radiograph_return(*, radiograph_id: int, user, version: int | None, comment: str) -> Radiograph:
    """Send a radiograph back to the annotator with a comment."""
    if not can(user, "review"):
        raise NotAllowed("Only radiologists can return a radiograph.")
    if not str(comment or "").strip():
        raise InvalidInput("Say what the annotator should change ('comment').")
    return _transition(
        radiograph_id=radiograph_id,
        user=user,
        version=version,
        states={State.LUNGS_DONE, State.IN_REVIEW},
        changes={"state": State.RETURNED, "return_comment": str(comment)[:4000]},
        action="returned",
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
        changes.update(state=State.ACCEPTED, reviewed_by=user, findings_complete=True, leased_to=None, lease_expires_at=None)
        before = radiograph.state
        radiograph = _claim(
            radiograph_id=radiograph_id, user=user, version=version, states={State.LUNGS_DONE, State.IN_REVIEW}, changes=changes, loaded=radiograph
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
        accepted = list(radiograph.regions.filter(status=RegionStatus.ACCEPTED).values_list("id", flat=True))
        event_record(
            radiograph=radiograph,
            actor=user,
            action="accepted",
            from_state=before,
            to_state=State.ACCEPTED,
            data={"regions": accepted, "right": right_box, "left": left_box, "labels": {n: getattr(radiograph, n) for n in LABEL_FIELDS}},
        )
    return radiograph
