"""Permissions as data: tests generated from the URL resolver and the role × action table.

Every API route and page is found by walking the URL patterns; each declares the action it needs
(``required_action`` / ``required_actions`` per method on API views, ``page_requires`` on pages).
For every route, method and role the test expects what ``PERMISSIONS`` says: refused (401/403, or
a redirect to the login page for anonymous page visits) or let through. A new endpoint is covered
as soon as it is routed; one that declares no action fails here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from annotator.constants import Role
from annotator.models import AuditLog
from annotator.permissions import ACTIONS, PERMISSIONS
from tests.annotator.factories import RadiographFactory, region_for

from .conftest import token_client

ROLES = ("anonymous", Role.ANNOTATOR, Role.RADIOLOGIST, Role.ADMIN)
# Routes that deliberately declare no action: they authenticate people, describe the API, are the
# Django admin (which checks staff status itself), or only send each role on to its own start page
# ("home": tested on its own below).
ALLOWLIST = {"login", "logout", "api-schema", "api-docs", "home"}
ALLOWLIST_NAMESPACES = {"admin"}
# Values for path parameters that name something other than an id.
STRING_PARAMS = {"kind": "preview", "decision": "accept", "queue": "annotate"}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Route:
    name: str
    route: str  # the pattern, e.g. "api/radiographs/<int:radiograph_id>/"
    view: object
    is_api: bool

    def path(self, objects: dict[str, int]) -> str:
        def fill(match: re.Match) -> str:
            converter, name = match.group(1) or "str", match.group(2)
            if converter == "int":
                return str(objects.get(name, 999_999))
            return STRING_PARAMS.get(name, "x")

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.route)

    def methods(self) -> dict[str, str | None]:
        """HTTP method → declared action (None when the view declares nothing for it)."""
        if self.is_api:
            cls = self.view.cls
            per_method = getattr(cls, "required_actions", None) or {}
            implemented = [m.upper() for m in cls.http_method_names if m not in ("options", "head") and hasattr(cls, m)]
            return {m: per_method.get(m) or getattr(cls, "required_action", None) for m in implemented}
        action = getattr(self.view, "required_action", None) or getattr(getattr(self.view, "view_class", None), "required_action", None)
        return {"GET": action}


def walk(patterns, prefix: str = "", namespace: str | None = None):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or namespace
            yield from walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            if namespace in ALLOWLIST_NAMESPACES:
                continue
            cls = getattr(entry.callback, "cls", None)
            is_api = isinstance(cls, type) and issubclass(cls, APIView)
            yield Route(name=entry.name or str(entry.pattern), route=prefix + str(entry.pattern), view=entry.callback, is_api=is_api)


ROUTES = [r for r in walk(get_resolver().url_patterns) if r.name not in ALLOWLIST]
CASES = [(route, method, action) for route in ROUTES for method, action in route.methods().items()]


def _case_id(case) -> str:
    route, method, _ = case
    return f"{method} /{route.route}"


def test_the_table_is_the_documented_policy():
    assert set(ACTIONS) == {"view", "annotate", "review", "import", "export", "manage_models", "manage_users"}
    assert PERMISSIONS["anonymous"] == frozenset()
    assert PERMISSIONS[Role.ANNOTATOR] == {"view", "annotate"}
    assert PERMISSIONS[Role.RADIOLOGIST] == {"view", "annotate", "review"}
    assert PERMISSIONS[Role.ADMIN] == set(ACTIONS)


def test_every_routed_view_was_found():
    """The walk sees the API and the pages (so that the generated tests below cover them)."""
    routes = {r.route for r in ROUTES}
    assert "api/radiographs/<int:radiograph_id>/annotation/" in routes
    assert "api/imports/" in routes
    assert any(not r.is_api for r in ROUTES), "no page was found"
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_every_endpoint_declares_a_known_action(case):
    route, method, action = case
    assert action is not None, f"{method} {route.route} declares no required action: add one (or allowlist it with a reason)"
    assert action in ACTIONS, f"{method} {route.route} declares unknown action {action!r}"


def test_exports_and_downloads_are_admin_only_posts():
    """Only admins export; whatever hands out data (an export zip, an original) is a POST: CSRF-
    protected, audited, never a link an image tag or a crawler could follow. The GETs that need
    ``export`` only describe exports (checked in the matrix: no GET answers with an attachment)."""
    assert [role for role in ROLES if "export" in PERMISSIONS[role]] == [Role.ADMIN]
    export_methods = {(route.route, method) for route, method, action in CASES if action == "export"}
    downloads = {(r, m) for r, m in export_methods if r.endswith(("download/", "/image/<str:kind>"))}
    assert ("api/radiographs/<int:radiograph_id>/image/<str:kind>", "POST") in downloads
    assert all(method == "POST" for _, method in downloads), downloads
    assert any("export" in r for r, _ in downloads), "no export download endpoint was found"


@pytest.fixture
def objects(db):
    radiograph = RadiographFactory()
    region = region_for(radiograph)
    return {"radiograph_id": radiograph.id, "region_id": region.id}


def _user_for(role: str, make_user):
    return None if role == "anonymous" else make_user(role, username=f"perm-{role}")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_generated_role_matrix(case, role, objects, make_user, settings, client):
    route, method, action = case
    if action is None:
        pytest.fail(f"{method} {route.route} declares no required action")
    settings.CELERY_TASK_ALWAYS_EAGER = False  # nothing is enqueued: the db fixture never commits
    allowed = action in PERMISSIONS[role]
    user = _user_for(role, make_user)
    path = route.path(objects)
    if route.is_api:
        api = token_client(user)
        response = getattr(api, method.lower())(path, {}, format="json") if method != "GET" else api.get(path)
        if allowed:
            assert response.status_code not in (401, 403), (role, method, path, response.content[:300])
            assert response.status_code < 500, (role, method, path, response.content[:300])
            if method == "GET":
                assert "attachment" not in response.get("Content-Disposition", ""), f"GET {path} is a download: make it a POST"
        else:
            assert response.status_code in (401, 403), (role, method, path, response.status_code)
            assert response.json()["code"] in ("not_authenticated", "not_allowed")
    else:
        if user is not None:
            client.force_login(user)
        response = client.get(path)
        if role == "anonymous":
            assert response.status_code == 302 and response["Location"].startswith(resolve_url(django_settings.LOGIN_URL))
        elif allowed:
            assert response.status_code in (200, 404), (role, path, response.status_code)
        else:
            assert response.status_code == 403, (role, path, response.status_code)


@pytest.mark.django_db
def test_home_sends_each_role_to_a_page_it_may_see(client, make_user):
    from django.urls import resolve

    assert client.get("/")["Location"].startswith(resolve_url(django_settings.LOGIN_URL))
    for role in (Role.ANNOTATOR, Role.RADIOLOGIST, Role.ADMIN):
        client.force_login(make_user(role, username=f"home-{role}"))
        response = client.get("/")
        assert response.status_code == 302, role
        target = resolve(response["Location"].split("?")[0]).func
        assert getattr(target, "required_action", None) in PERMISSIONS[role], (role, response["Location"])
    client.force_login(make_user(None, username="home-nobody"))
    assert client.get("/").status_code == 403


# --- media ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_media_goes_through_the_web_servers_internal_redirect_after_the_check(settings, make_user):
    settings.MEDIA_INTERNAL_REDIRECT = "/protected/"
    radiograph = RadiographFactory()
    viewer = token_client(make_user(Role.ANNOTATOR, username="media-viewer"))
    for kind, field in (("preview", radiograph.preview), ("display", radiograph.display)):
        response = viewer.get(f"/api/radiographs/{radiograph.id}/image/{kind}")
        assert response.status_code == 200
        assert response["X-Accel-Redirect"] == f"/protected/{field.name}"
        assert response.content == b"", "Django must leave the body to the web server"
        assert "private" in response["Cache-Control"]
    anonymous = token_client(None).get(f"/api/radiographs/{radiograph.id}/image/display")
    assert anonymous.status_code in (401, 403) and "X-Accel-Redirect" not in anonymous
    # A session-less browser request is refused too, and nothing is redirected.
    assert token_client(None).post(f"/api/radiographs/{radiograph.id}/image/original").status_code in (401, 403)


@pytest.mark.django_db
def test_originals_are_admin_downloads_by_post_and_audited(settings, make_user):
    settings.MEDIA_INTERNAL_REDIRECT = "/protected/"
    radiograph = RadiographFactory()
    url = f"/api/radiographs/{radiograph.id}/image/original"
    for role in (Role.ANNOTATOR, Role.RADIOLOGIST):
        client = token_client(make_user(role, username=f"orig-{role}"))
        assert client.post(url).status_code == 403
        assert client.get(url).status_code == 400  # not a link anyone can follow
    admin = make_user(Role.ADMIN, username="orig-admin")
    response = token_client(admin).post(url)
    assert response.status_code == 200 and response["X-Accel-Redirect"] == f"/protected/{radiograph.original.name}"
    assert response["Content-Disposition"].startswith("attachment;") and response.content == b""
    assert AuditLog.objects.filter(actor=admin, action="download_original", target=str(radiograph.id)).exists()


@pytest.mark.django_db
def test_media_files_are_never_served_by_path(client, make_user):
    radiograph = RadiographFactory()
    client.force_login(make_user(Role.ADMIN, username="media-admin"))
    for name in (radiograph.display.name, radiograph.preview.name):
        response = client.get(f"{django_settings.MEDIA_URL}{name}")
        assert response.status_code == 404, f"{name} is reachable without the permission check"
