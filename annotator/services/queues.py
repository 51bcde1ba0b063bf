"""The queues: which radiograph a user gets next, leased to them so nobody else gets it meanwhile.

Which states make up each queue, and who works it, is ``workflow.QUEUES``; starting a review from
the review queue goes through ``transition_apply`` like every other step.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from .. import workflow
from ..errors import InvalidInput, NotAllowed
from ..models import Radiograph, ReviewEvent
from ..permissions import can
from .workflow import transition_apply


def queue_next(*, user, queue: str, dataset: str | None = None, order: str = "oldest") -> Radiograph | None:
    """Lease the next radiograph of a queue to ``user`` (resuming one they already hold).

    The lease is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent callers never get
    the same radiograph; an abandoned lease expires after ``LEASE_SECONDS``.
    """
    if queue not in workflow.QUEUES:
        raise InvalidInput(f"queue must be one of {', '.join(workflow.QUEUES)}.")
    states = workflow.QUEUES[queue].states
    if not can(user, workflow.QUEUES[queue].capability):
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
            # The queue's states in its order, oldest first within each. One query per state, in that
            # order: each walks the queue's index and stops at the first free row, where ordering by
            # state and id together sorted every open radiograph each time.
            groups = [candidates.filter(state=state).order_by("id") for state in states]
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

    The radiograph the user already holds, else the oldest free one of the queue's first state, then
    of its next (``workflow.QUEUES``; one that the user skipped is never handed back). ``COALESCE``
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

    order = workflow.QUEUES["annotate"].states
    states = ", ".join(f"'{s}'" for s in order)
    held = (
        f"(SELECT r.id FROM {table} r WHERE r.leased_to_id = %(user)s AND r.lease_expires_at > %(now)s "
        f"AND r.state IN ({states}) {in_dataset} ORDER BY r.id LIMIT 1)"
    )
    sql = (
        f"UPDATE {table} SET leased_to_id = %(user)s, lease_expires_at = %(until)s "
        f"WHERE id = COALESCE({held}, {', '.join(oldest(s) for s in order)}) RETURNING *"
    )
    params = {"user": user.pk, "now": now, "until": now + timedelta(seconds=settings.LEASE_SECONDS), "dataset": dataset}
    with transaction.atomic():
        leased = list(Radiograph.objects.raw(sql, params))
    return leased[0] if leased else None


def _lease(radiograph: Radiograph, *, user, now, queue: str) -> Radiograph:
    """Hold a radiograph picked from a queue; the review queue starts the review of a submitted one."""
    if queue == "review" and workflow.step("start_review", radiograph.state) is not None:
        return transition_apply(radiograph_id=radiograph.pk, user=user, action="start_review", version=radiograph.version, loaded=radiograph)
    changes: dict[str, Any] = {"leased_to": user, "lease_expires_at": now + timedelta(seconds=settings.LEASE_SECONDS)}
    Radiograph.objects.filter(pk=radiograph.pk).update(**changes)
    for key, value in changes.items():
        setattr(radiograph, key, value)
    return radiograph
