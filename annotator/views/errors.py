"""Error pages: what a person (or a script under /api/) sees for a 400, 403, 404 or 500.

Django calls these for errors raised outside DRF (``handler400`` ... in ``config/urls.py``), and
``annotator.middleware.PageErrors`` uses ``error_response`` for domain errors raised by pages. API
clients get the same ``{"code", "detail"}`` body as ``annotator.apis.exception_handler`` answers.
"""
from __future__ import annotations

from os.path import commonprefix

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import reverse

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 413: "Too large", 500: "Something went wrong", 503: "Briefly unavailable"}
CODES = {400: "invalid_input", 403: "not_allowed", 404: "not_found", 413: "too_large", 500: "error"}


def _api_root() -> str:
    """Where the REST APIs are mounted: the part both apps' API URLs share (``/api/``), so that an
    unknown address under it is answered in JSON too."""
    return commonprefix([reverse("api-datasets"), reverse("api-models")])


def error_response(request: HttpRequest, *, status: int, message: str, code: str | None = None) -> HttpResponse:
    if request.path.startswith(_api_root()):
        return JsonResponse({"code": code or CODES.get(status, "error"), "detail": message}, status=status)
    try:
        html = render_to_string("error.html", {"title": TITLES.get(status, "Error"), "status": status, "message": message}, request=request)
    except Exception:  # noqa: BLE001 - the error page itself must not fail (e.g. the database is down)
        html = f"<!doctype html><title>{TITLES.get(status, 'Error')}</title><h1>{TITLES.get(status, 'Error')}</h1>"
    return HttpResponse(html, status=status)


def bad_request(request, exception=None):
    return error_response(request, status=400, message="The request is not valid.")


def permission_denied(request, exception=None):
    message = str(exception) if exception and str(exception) else "Your role does not allow this."
    return error_response(request, status=403, message=message)


def page_not_found(request, exception=None):
    return error_response(request, status=404, message="There is nothing at this address.")


def server_error(request):
    return error_response(request, status=500, message="An unexpected error occurred; it has been logged.")
