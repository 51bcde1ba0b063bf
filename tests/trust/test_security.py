"""Security baseline: deploy checks, the secret key, CSP, Argon2, login lockout, CSRF, query strings.

Production settings are exercised in subprocesses (they are read once per process).
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import make_password
from django.test import Client

from annotator.constants import Role
from tests.annotator.factories import DatasetFactory, RadiographFactory
from tests.conftest import PASSWORD

from .conftest import token_client
from .test_permissions import CASES, ROUTES, WRITE_METHODS

REPO = Path(__file__).resolve().parents[2]
PROJECT_HASHERS = list(django_settings.PASSWORD_HASHERS)


@pytest.fixture(autouse=True)
def real_password_hashers(fast_passwords, settings):
    """This module checks the hashing itself: the project's hashers, Argon2 first."""
    settings.PASSWORD_HASHERS = PROJECT_HASHERS


def _production(args: list[str], **env) -> subprocess.CompletedProcess:
    # Not the test process's own overrides (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE).
    skip = ("SECRET_KEY", "DEBUG", "PSEUDONYM_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    environment = {k: v for k, v in os.environ.items() if k not in skip}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    result = _production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], SECRET_KEY=secrets.token_urlsafe(64))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("key", [None, "", "dev-insecure-key-change-me", "short-secret"])
def test_production_refuses_to_start_without_a_real_secret_key(key):
    env = {} if key is None else {"SECRET_KEY": key}
    # What gunicorn does first: load the WSGI application.
    result = _production(["-c", "import config.wsgi"], **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr


# --- content security policy ---------------------------------------------------------------------

PAGES = sorted({r.path({}) for r in ROUTES if not r.is_api and "<" not in r.route} | {"/accounts/login/"})


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_an_enforced_content_security_policy(path, client, make_user):
    if path != "/accounts/login/":
        client.force_login(make_user(Role.ADMIN, username="csp-admin"))
    response = client.get(path, follow=True)  # "/" sends each role to its start page
    assert response.status_code == 200, (path, response.status_code)
    assert "Content-Security-Policy-Report-Only" not in response, "a report-only policy protects nobody"
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in response["Content-Security-Policy"].split(";") if part.strip()
    )
    assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive] and "'unsafe-eval'" not in policy[directive]
    # The policy does not break the page: no inline scripts, handlers or style attributes it would block.
    html = response.content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        # Data blocks (type="application/json") are not run; anything else must come from a file.
        assert "src=" in tag or "application/json" in tag, f"{path} has an inline script: {tag}"
    assert not re.search(r"\son[a-z]+\s*=", html), f"{path} has an inline event handler"
    assert not re.search(r"\sstyle\s*=", html), f"{path} has an inline style attribute"


# --- passwords and login lockout -------------------------------------------------------------------


@pytest.mark.django_db
def test_passwords_are_stored_with_argon2_and_old_hashes_are_upgraded_at_login(make_user):
    from django.contrib.auth.models import User

    assert make_user(Role.ANNOTATOR, username="argon").password.startswith("argon2$")
    legacy = make_user(Role.ANNOTATOR, username="legacy")
    User.objects.filter(pk=legacy.pk).update(password=make_password(PASSWORD, hasher="pbkdf2_sha256"))
    response = Client().post("/accounts/login/", {"username": "legacy", "password": PASSWORD})
    assert response.status_code == 302
    assert User.objects.get(pk=legacy.pk).password.startswith("argon2$")


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(make_user, settings):
    make_user(Role.ANNOTATOR, username="target")
    make_user(Role.ANNOTATOR, username="bystander")
    browser = Client()
    assert browser.get("/accounts/login/").status_code == 200
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        response = browser.post("/accounts/login/", {"username": "target", "password": f"guess-{attempt}"})
        assert "_auth_user_id" not in browser.session
    response = browser.post("/accounts/login/", {"username": "target", "password": PASSWORD})
    assert response.status_code in (403, 429), response.status_code
    assert "_auth_user_id" not in browser.session
    assert browser.get("/").status_code == 302  # still sent to the login page
    # The lockout is per account: someone else at the same address can still log in.
    other = Client()
    assert other.post("/accounts/login/", {"username": "bystander", "password": PASSWORD}).status_code == 302
    assert "_auth_user_id" in other.session


# --- CSRF ------------------------------------------------------------------------------------------

WRITES = [(route, method) for route, method, _ in CASES if route.is_api and method in WRITE_METHODS]


@pytest.fixture
def session_browser(db, make_user):
    """A logged-in browser that, like a real one, does not skip CSRF checks."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user(Role.ADMIN, username="csrf-admin"))
    browser.get("/accounts/login/")  # a page with a form: sets the csrftoken cookie
    return browser


@pytest.mark.parametrize("route,method", WRITES, ids=[f"{m} /{r.route}" for r, m in WRITES])
def test_every_session_write_needs_the_csrf_token(route, method, session_browser):
    path = route.path({"radiograph_id": RadiographFactory().id})

    def send(**headers):
        if method == "POST":  # a form post: what a cross-site page can send (and every view parses)
            return session_browser.post(path, {}, **headers)
        return getattr(session_browser, method.lower())(path, "{}", content_type="application/json", **headers)

    refused = send()
    assert refused.status_code == 403, (method, path, refused.status_code)
    assert "CSRF" in refused.json()["detail"]
    accepted = send(HTTP_X_CSRFTOKEN=session_browser.cookies[django_settings.CSRF_COOKIE_NAME].value)
    assert accepted.status_code != 403, (method, path, accepted.content[:200])


@pytest.mark.django_db
def test_the_login_form_needs_the_csrf_token(make_user):
    make_user(Role.ANNOTATOR, username="formuser")
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/accounts/login/", {"username": "formuser", "password": PASSWORD}).status_code == 403
    assert "_auth_user_id" not in browser.session


# --- query strings never reach the ORM -------------------------------------------------------------

HOSTILE_QUERIES = [
    {"dataset__name__startswith": "a"},
    {"state__in": "accepted"},
    {"id__gt": "1"},
    {"leased_to__password__startswith": "argon2"},
    {"subject__key__contains": "0"},
    {"ordering": "password"},
    {"ordering": "leased_to__password"},
    {"ordering": "-subject__key"},
    {"ordering": "dataset__name,-id"},
    {"o": "-id", "sort": "-id", "order_by": "-id"},
    {"search": "' OR 1=1 --"},
]
LISTS = [r for r in ROUTES if r.is_api and "GET" in r.methods() and "<" not in r.route]


@pytest.fixture
def mixed_data(db, make_user):
    from annotator.models import Radiograph as Stored

    Stored.objects.all().delete()  # only this test's radiographs (rows others committed go in this transaction)
    for name, states in (("alpha", ["preannotated", "accepted", "returned"]), ("beta", ["imported", "lungs_done"])):
        dataset = DatasetFactory(name=name)
        for state in states:
            RadiographFactory(dataset=dataset, state=state)
    admin = make_user(Role.ADMIN, username="orm-admin")
    from annotator.models import Radiograph

    Radiograph.objects.filter(state="returned").update(leased_to=admin)
    return token_client(admin)


@pytest.mark.parametrize("route", LISTS, ids=[f"/{r.route}" for r in LISTS])
def test_client_supplied_orm_expressions_are_ignored(route, mixed_data):
    path = route.path({})
    baseline = mixed_data.get(path)
    assert baseline.status_code == 200, (path, baseline.status_code)
    for query in HOSTILE_QUERIES:
        response = mixed_data.get(path, query)
        assert response.status_code in (200, 400, 404), (path, query, response.status_code)
        if response.status_code == 200:
            # Pagination links echo the query string; the data must not change.
            strip = lambda body: {k: v for k, v in body.items() if k not in ("next", "previous")} if isinstance(body, dict) else body  # noqa: E731
            assert strip(response.json()) == strip(baseline.json()), (path, query)
        assert b"argon2" not in response.content and b"pbkdf2" not in response.content


@pytest.mark.django_db
def test_the_declared_radiograph_filters_still_work(mixed_data):
    everything = mixed_data.get("/api/radiographs/").json()["results"]
    assert len(everything) == 5
    alpha = mixed_data.get("/api/radiographs/", {"dataset": "alpha", "dataset__name": "beta"}).json()["results"]
    assert {r["dataset"] for r in alpha} == {"alpha"} and len(alpha) == 3
    newest_first = mixed_data.get("/api/radiographs/", {"ordering": "-id"}).json()["results"]
    assert [r["id"] for r in newest_first] == sorted((r["id"] for r in everything), reverse=True)
