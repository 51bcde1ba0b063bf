"""Pre-annotation requests (placeholder until the worker side lands)."""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def preannotation_request(*, radiograph_ids: list[int]) -> int:
    """Ask the workers to pre-annotate these radiographs with the active model (on commit)."""
    from .models import ModelVersion

    if not ModelVersion.objects.filter(is_active=True).exists():
        logger.info("no active model: %d radiographs stay without suggestions", len(radiograph_ids))
        return 0
    return 0
