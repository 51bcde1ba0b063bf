"""Append-only event and audit records."""
from __future__ import annotations

from typing import Any

from ..models import AuditLog, Radiograph, ReviewEvent


def event_record(
    *,
    radiograph: Radiograph | None,
    actor,
    action: str,
    from_state: str = "",
    to_state: str = "",
    model_version=None,
    model_version_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> ReviewEvent:
    """Append one event: who did what to which radiograph, under which model version (the object,
    or its id where the caller has only that)."""
    return ReviewEvent.objects.create(
        radiograph=radiograph,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        from_state=from_state,
        to_state=to_state,
        model_version_id=model_version.pk if model_version is not None else model_version_id,
        data=data or {},
    )


def audit_record(*, actor, action: str, target: str = "", data: dict[str, Any] | None = None) -> AuditLog:
    return AuditLog.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target=target,
        data=data or {},
    )
