"""Request guards that run before any view reads the request, and the page side of the error contract.

- ``RefuseNulBytes``: a NUL character in the path, the query string or a cookie is a 400 before
  any view (PostgreSQL cannot store or search for one, and no real link or cookie has one).
- ``EarlyRefusal``: a request with a body to a view that declares its action (``required_action(s)``
  on API views, ``page_requires`` on pages) is refused for its role (403) or its declared size
  (413) from the headers alone, before the body is read: the CSRF check and the parsers would
  otherwise read (and spool to disk) a whole upload only to refuse it.
- ``PageErrors``: domain errors, refused database values and a database briefly away, raised by
  server-rendered pages, get their HTTP status (as ``annotator.apis.exception_handler`` gives DRF
  views) and an error page.
"""
from __future__ import annotations

import logging
from urllib.parse import unquote

from django.conf import settings
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.contrib.auth.views import redirect_to_login
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from .authentication import EARLY_TOKEN_ATTRIBUTE
from .errors import DomainError, FileTooLarge
from .permissions import can
from .views.errors import error_response

logger = logging.getLogger(__name__)

BODY_METHODS = ("POST", "PUT", "PATCH")
# Room for the multipart framing and the small form fields sent along with the largest file.
MULTIPART_OVERHEAD = 1024 * 1024


class RefuseNulBytes:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        query = unquote(request.META.get("QUERY_STRING", ""), errors="replace")
        if "\x00" in request.path or "\x00" in query:
            return error_response(request, status=400, message="The address contains a NUL character.")
        # The session cookie is looked up in the database (a NUL there would fail the query).
        if any("\x00" in value for value in request.COOKIES.values()):
            return error_response(request, status=400, message="A cookie contains a NUL character.")
        return self.get_response(request)


def declared_action(view_func, method: str) -> str | None:
    """The action a view declares for ``method`` (None: the view checks nothing itself, e.g. login)."""
    cls = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    if cls is not None:
        per_method = getattr(cls, "required_actions", None) or {}
        return per_method.get(method) or getattr(cls, "required_action", None)
    return getattr(view_func, "required_action", None)


def body_limit(view_func) -> tuple[int, bool]:
    """The largest body a view accepts, and whether it takes files: the setting its
    ``body_limit_setting`` names (uploads), or Django's limit for bodies held in memory."""
    cls = getattr(view_func, "cls", None)
    name = getattr(cls, "body_limit_setting", None) or getattr(view_func, "body_limit_setting", None)
    if name:
        return getattr(settings, name) + MULTIPART_OVERHEAD, True
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE + MULTIPART_OVERHEAD, False


class EarlyRefusal:
    """Must come after ``AuthenticationMiddleware`` and before ``CsrfViewMiddleware`` (whose
    ``process_view`` reads the body of a form post)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method not in BODY_METHODS:
            return None
        action = declared_action(view_func, request.method)
        if action is None:
            return None
        is_api = getattr(view_func, "cls", None) is not None
        try:
            user = request.user
            if is_api and not user.is_authenticated:
                authenticated = TokenAuthentication().authenticate(request)  # reads headers only
                if authenticated is not None:
                    user = authenticated[0]
                    setattr(request, EARLY_TOKEN_ATTRIBUTE, authenticated)  # DRF reuses it
            if not user.is_authenticated:
                if is_api:
                    # DRF refuses it without reading the body (no session: no CSRF check to read it).
                    return None
                return redirect_to_login(request.get_full_path())
            allowed = can(user, action)
        except (AuthenticationFailed, DatabaseError):
            # A bad token, or the database briefly away: the view answers as it always does, and
            # refuses without reading the body (neither leaves a session whose CSRF check reads it).
            return None
        if not allowed:
            return error_response(request, status=403, message="Your role does not allow this.")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(request, status=400, message="The Content-Length header is not a number.")
        limit, is_upload = body_limit(view_func)
        if length > limit:
            # Same code as the upload views' own size errors (FileTooLarge) where the view takes files.
            code = FileTooLarge.code if is_upload else "too_large"
            return error_response(request, status=413, message=f"The request body is larger than the {limit} bytes allowed here.", code=code)
        return None


class PageErrors:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError):
            return error_response(request, status=exception.http_status, message=exception.message, code=exception.code)
        if isinstance(exception, DataError):
            logger.warning("invalid data in %s: %s", request.path, exception)
            return error_response(request, status=400, message="A value in the request cannot be stored or searched for.")
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable in %s: %s", request.path, exception)
            response = error_response(request, status=503, message="The database is briefly unavailable. Try again in a moment.", code="unavailable")
            response["Retry-After"] = "2"
            return response
        return None
