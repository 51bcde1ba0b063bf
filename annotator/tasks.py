"""Celery tasks of the annotator app (queue ``default``): thin wrappers that take ids and call a service."""
from __future__ import annotations

import logging

from celery import shared_task

from .errors import DomainError

logger = logging.getLogger(__name__)


@shared_task(name="annotator.export_build", acks_late=True, ignore_result=True)
def export_build(export_id: int) -> None:
    """Write an export snapshot. Safe to run twice: a finished export is left alone, and a snapshot
    only appears (by an atomic rename) once complete. The outcome is recorded on the export."""
    from .services.exports import export_build as build

    try:
        build(export_id=export_id)
    except DomainError as exc:
        # Recorded on the export as its error; retrying would fail the same way.
        logger.warning("export %s failed: %s", export_id, exc.message)
