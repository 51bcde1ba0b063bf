"""REST API (DRF): thin views that check permission, validate input, call one service, serialize.

Domain errors are mapped to HTTP once, in ``exception_handler``.
"""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DomainError

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Domain errors → their HTTP status with ``{"code", "detail", ...}``; the rest as DRF does,
    with a stable ``code`` added; the database being unreachable (restarting, failing over) → 503
    ``unavailable`` with ``Retry-After``, so a client knows to retry the same save; anything
    unexpected is logged and answered 500 without internals."""
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The transaction was rolled back with the lost connection (or, if the connection died during
        # COMMIT, possibly stored): a retry with the same version either saves or gets 409 showing it.
        logger.warning("database unavailable in %s: %s", context.get("view"), exc)
        return Response(
            {"code": "unavailable", "detail": "The database is briefly unavailable. Try again in a moment."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, DataError):
        # PostgreSQL refused a value (a NUL character, a number out of range) that came from the client.
        logger.warning("invalid data in %s: %s", context.get("view"), exc)
        return Response({"code": "invalid_input", "detail": "A value in the request cannot be stored or searched for."}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response({"code": "too_large", "detail": "The request body is larger than the server accepts."}, status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response({"code": "invalid_input", "detail": "The request is not valid."}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RecursionError):
        # Only the JSON parser recurses on client input: a body nested thousands of levels deep.
        return Response({"code": "invalid_input", "detail": "The request body is nested too deeply."}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None:
        code = {
            exceptions.NotAuthenticated: "not_authenticated",
            exceptions.AuthenticationFailed: "not_authenticated",
            exceptions.PermissionDenied: "not_allowed",
            exceptions.NotFound: "not_found",
            exceptions.ValidationError: "invalid_input",
            exceptions.ParseError: "invalid_input",
            exceptions.UnsupportedMediaType: "unsupported_media_type",
            exceptions.MethodNotAllowed: "method_not_allowed",
            exceptions.Throttled: "throttled",
            exceptions.NotAcceptable: "not_acceptable",
        }.get(type(exc), "error")
        if isinstance(exc, (Http404,)):
            code = "not_found"
        if isinstance(exc, PermissionDenied):
            code = "not_allowed"
        data = response.data if isinstance(response.data, dict) else {"detail": response.data}
        if "detail" not in data:
            data = {"detail": "The request is not valid.", "errors": data}
        data.setdefault("code", code)
        response.data = data
        return response
    logger.exception("unhandled error in %s", context.get("view"))
    return Response({"code": "error", "detail": "An unexpected error occurred."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
