"""No 5xx from input: every routed page and API view, as every role, with hostile path values,
query strings and bodies, answers 2xx/3xx/4xx, never a server error.

Routes come from Django's URL resolver (the same walk as the permission matrix), so a new route is
crawled as soon as it exists. Path parameters get an existing id, a missing one, one far beyond any
database integer, a negative one, a NUL byte and a word; query strings carry NUL bytes, huge and
negative numbers and unknown names; writes get bodies of the wrong type, broken JSON and NUL bytes.
"""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import get_resolver

from annotator.constants import Role
from tests.annotator.factories import RadiographFactory, region_for

from .test_permissions import ROLES, STRING_PARAMS, walk

# Every route, the allowlisted ones (login, schema, docs, home) included; the Django admin is
# Django's own and checks staff status before anything else.
CRAWLED = list(walk(get_resolver().url_patterns))

HUGE = str(10**30)
# Integer path values beyond the real one: those the <int:> converter matches reach the view (a
# missing id, one far beyond any database integer); the others must be a clean 404 from the resolver.
VIEW_IDS = ["999999", HUGE, "0"]
RESOLVER_IDS = ["-1", "%00", "1.5"]
WORDS = ["%00", "x" * 300, "..%2F..%2Fetc", "%FF"]
QUERIES = [
    "%00",
    "dataset=%00&state=%00&view=%00&kind=%00&covid=%00&healthy=%00&ordering=%00&order=%00",
    f"limit={HUGE}&offset={HUGE}&page={HUGE}",
    "limit=-1&offset=-5&page=-1",
    "limit=abc&offset=1.5&page=x&since=not-a-date&version=%00",
    "dataset=" + "x" * 5000,
    "%FF%FE=%FF&next=%00",
]
JSON_BODIES = [
    '{"version": "x", "right": "%00", "left": [1e400], "labels": 5, "label": {}, "bbox": "x", "mask": 1}',
    f'{{"version": {HUGE}, "right": [-1, 0, {HUGE}, 2], "left": null, "comment": "\\u0000", "reason": "\\u0000"}}',
    "[]",
    "null",
    "{",
]
FORM_BODY = {"dataset": "\x00", "name": "\x00", "version": "-1", "role": "\x00", "username": "\x00", "comment": "\x00", "id": HUGE}
MULTIPART_GARBAGE = b'--y\r\nContent-Disposition: form-data; name="files"; filename="\x00"\r\n\r\n\x00\r\n'


def _fill(route: str, values: dict[str, str]) -> str:
    def fill(match: re.Match) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        if converter == "int":
            return values.get(name, values.get("*int", "1"))
        return values.get(name, STRING_PARAMS.get(name, "x"))

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)


def _paths(route: str, real: dict[str, str]) -> list[tuple[str, bool]]:
    """(path, reaches the view): the route with real values first, then each parameter in turn
    set to each hostile value."""
    params = re.findall(r"<(?:(\w+):)?(\w+)>", route)
    paths = [(_fill(route, real), True)]
    for converter, name in params:
        values = [(v, True) for v in VIEW_IDS] + [(v, False) for v in RESOLVER_IDS] if converter == "int" else [(v, True) for v in WORDS]
        paths.extend((_fill(route, {**real, name: value}), reaches) for value, reaches in values)
    return paths


def _methods(route) -> list[str]:
    if route.is_api:
        cls = route.view.cls
        return [m.upper() for m in cls.http_method_names if m not in ("options", "head", "trace") and hasattr(cls, m)]
    return ["GET", "POST"]


@pytest.fixture
def crawl_data(db, make_user):
    radiograph = RadiographFactory()
    region = region_for(radiograph)
    users = {role: make_user(role, username=f"crawl-{role}") for role in ROLES if role != "anonymous"}
    real = {"radiograph_id": str(radiograph.id), "region_id": str(region.id), "*int": str(radiograph.id)}
    return users, real


@pytest.mark.timeout(120)
@pytest.mark.parametrize("role", ROLES)
def test_no_input_gives_a_server_error(role, crawl_data):
    users, real = crawl_data
    browser = Client(raise_request_exception=False)
    failures: list[str] = []
    requests = 0

    def check(method: str, path: str, response) -> None:
        nonlocal requests
        requests += 1
        if response.status_code >= 500:
            failures.append(f"{method} {path} -> {response.status_code}")

    for route in CRAWLED:
        if role != "anonymous":
            browser.force_login(users[role])  # again: the crawl also signs out
        writes = [m for m in _methods(route) if m != "GET"]
        for index, (path, reaches_view) in enumerate(_paths(route.route, real)):
            # The real path with every hostile query string and body; each hostile path once per method.
            queries, bodies = (QUERIES, JSON_BODIES) if index == 0 else (QUERIES[:1], JSON_BODIES[:1])
            for query in queries:
                check("GET", f"{path}?{query}", browser.get(f"{path}?{query}"))
            for method in writes if reaches_view else []:
                send = getattr(browser, method.lower())
                for body in bodies:
                    check(method, f"{path} json {body[:20]!r}", send(path, body, content_type="application/json"))
                if index == 0:
                    form = send(path, FORM_BODY) if method == "POST" else send(path, "a=%00&version=x", content_type="application/x-www-form-urlencoded")
                    check(method, f"{path} form", form)
                    check(method, f"{path} multipart", send(path, MULTIPART_GARBAGE, content_type="multipart/form-data; boundary=y"))
    assert requests > 300, requests
    assert not failures, f"{len(failures)} of {requests} requests answered 5xx:\n" + "\n".join(failures[:60])


@pytest.mark.django_db
def test_a_nul_byte_in_a_list_filter_is_a_clear_client_error(make_user):
    browser = Client(raise_request_exception=False)
    browser.force_login(make_user(Role.ADMIN, username="nul-admin"))
    for url in ("/radiographs/?dataset=%00", "/api/radiographs/?dataset=a%00b"):
        response = browser.get(url)
        assert response.status_code == 400, (url, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("radiograph_id", ["999999", HUGE])
def test_pages_of_a_missing_radiograph_are_not_found(radiograph_id, make_user):
    browser = Client(raise_request_exception=False)
    browser.force_login(make_user(Role.ADMIN, username="missing-admin"))
    for page in ("annotate", "review", "radiographs"):
        response = browser.get(f"/{page}/{radiograph_id}/")
        assert response.status_code == 404, (page, response.status_code)
        assert b"No such radiograph" in response.content


@pytest.mark.django_db
def test_a_nul_byte_in_the_session_cookie_is_a_clear_client_error():
    browser = Client(raise_request_exception=False)
    browser.cookies["sessionid"] = "abc\x00defghijk"
    for method, url in (("get", "/radiographs/"), ("post", "/api/radiographs/1/exclude/"), ("get", "/api/radiographs/")):
        response = getattr(browser, method)(url)
        assert response.status_code == 400, (url, response.status_code)
