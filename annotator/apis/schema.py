"""The error contract in the OpenAPI schema: every operation documents the errors it can answer.

Every error body has the same shape, ``{"code", "detail", ...}`` (``exception_handler``); without
this, the schema documents only the happy path and clients (and schemathesis) cannot tell a
documented 409 from an accident. It is the project's ``DEFAULT_SCHEMA_CLASS``, so every DRF view,
whichever app it lives in, documents its errors.
"""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    "Error",
    {
        "code": serializers.CharField(help_text="Stable machine-readable code, e.g. stale_version."),
        "detail": serializers.CharField(help_text="What went wrong, for a person."),
    },
)

# status → when it is answered. Reads can fail validation (query), authentication, permission, a
# missing object or a database restart; writes can also conflict, miss their version, be too big.
READ_ERRORS = {
    "400": "The request is not valid (code invalid_input and friends).",
    "401": "Not signed in (code not_authenticated).",
    "403": "Your role does not allow this (code not_allowed), or a missing CSRF token.",
    "404": "No such object (code not_found).",
    "503": "The database is briefly unavailable (code unavailable); try again.",
}
WRITE_ERRORS = {
    **READ_ERRORS,
    "409": "A stale version (code stale_version, with the current state) or a step the state does not allow.",
    "413": "The upload or body is larger than allowed.",
    "415": "The body is not in a format this operation reads.",
    "428": "The version the edit is based on is missing (code version_required).",
}


class ErrorDocumentingSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the documented error responses, and path parameters
    described as the URL converters match them (no negative ids, no slash in a name)."""

    def _resolve_path_parameters(self, variables):
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if schema.get("type") == "integer":
                schema.setdefault("minimum", 0)
            elif schema.get("type") == "string" and "enum" not in schema:
                schema.setdefault("pattern", "^[^/]+$")
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        if direction != "response":
            return responses
        errors = READ_ERRORS if self.method in ("GET", "HEAD", "OPTIONS") else WRITE_ERRORS
        for code, description in errors.items():
            if code not in responses:
                response = self._get_response_for_code(OpenApiResponse(ErrorSerializer, description=description), code)
                responses[code] = response
        return responses
