"""The one family of domain errors.

Services raise these; a single DRF exception handler (``annotator.apis.exception_handler``)
maps them to HTTP. Each carries a stable machine-readable ``code`` and a human message.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a request that cannot be carried out, for a reason the user can act on."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.message, **self.extra}


class InvalidInput(DomainError):
    code = "invalid_input"


class InvalidImage(DomainError):
    """A file that is not a usable radiograph: corrupt, truncated, unsupported, a bomb, too big."""

    code = "invalid_image"


class FileTooLarge(InvalidImage):
    code = "file_too_large"
    http_status = 413


class NotAllowed(DomainError):
    code = "not_allowed"
    http_status = 403


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class StaleVersion(DomainError):
    """A save based on an out-of-date version; ``extra["current"]`` holds the current state."""

    code = "stale_version"
    http_status = 409


class VersionRequired(DomainError):
    code = "version_required"
    http_status = 428


class InvalidTransition(DomainError):
    """A workflow step that is not allowed from the radiograph's current state."""

    code = "invalid_transition"
    http_status = 409


class Conflict(DomainError):
    """The thing already exists or is already running (duplicate task, a second training...)."""

    code = "conflict"
    http_status = 409


class LeaseHeld(DomainError):
    """Someone else holds a live lease on the radiograph: only they may change it until it runs out.

    ``extra`` names the holder (``leased_to``) and carries the current state (``current``)."""

    code = "lease_held"
    http_status = 409
