"""REST API (DRF): thin views that check permission, validate input, call one service, serialize.

Domain errors are mapped to HTTP once, in ``exception_handler``.
"""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DomainError

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Domain errors → their HTTP status with ``{"code", "detail", ...}``; the rest as DRF does,
    with a stable ``code`` added; anything unexpected is logged and answered 500 without internals."""
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
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
