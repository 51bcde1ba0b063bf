"""Uploads are refused from their headers: the role and the declared size are checked before one
byte of the body is read. The requests go through the real WSGI application with a request body
that counts what the server reads from it (a 200 MB upload never has to exist)."""
from __future__ import annotations

import io
from contextlib import contextmanager

import pytest
from django.core import signals
from django.db import close_old_connections
from django.test import Client

from annotator.constants import Role

from .conftest import token_client

UPLOAD = 200 * 1024 * 1024
BOUNDARY = "lungmark-test-boundary"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="dataset"\r\n\r\nbig\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; filename="big.zip"\r\n'
    "Content-Type: application/zip\r\n\r\n"
).encode()


class CountingBody:
    """``wsgi.input`` of ``size`` bytes (a multipart head, then zeros) that counts the bytes read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def read(self, n: int | None = -1) -> bytes:
        remaining = self.size - self.read_bytes
        n = remaining if n is None or n < 0 else min(n, remaining)
        start = self.read_bytes
        self.read_bytes += n
        head = HEAD[start : start + n]
        return head + b"\0" * (n - len(head))

    def readline(self, limit: int = -1) -> bytes:
        return self.read(min(limit, 65536) if limit and limit > 0 else 65536)


@contextmanager
def same_connection():
    """WSGI requests keep the test's database connection (it holds the test's transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def post_upload(path: str, *, size: int = UPLOAD, cookies: Client | None = None, headers: dict | None = None) -> tuple[int, bytes, CountingBody]:
    from config.wsgi import application

    body = CountingBody(size)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(size),
        "wsgi.input": body,
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **(headers or {}),
    }
    if cookies is not None:
        environ["HTTP_COOKIE"] = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.cookies.items())
        environ["HTTP_X_CSRFTOKEN"] = cookies.cookies["csrftoken"].value
    status: list[str] = []
    with same_connection():
        chunks = application(environ, lambda s, h, exc_info=None: status.append(s))
        content = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
    return int(status[0].split()[0]), content, body


def signed_in(user) -> Client:
    """A browser session of ``user`` with its CSRF cookie, as the import page has it."""
    browser = Client()
    browser.force_login(user)
    assert browser.get("/accounts/login/").status_code in (200, 302)
    return browser


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/imports/", "/api/models/"])
def test_an_annotators_large_upload_is_refused_before_its_body_is_read(path, make_user):
    browser = signed_in(make_user(Role.ANNOTATOR, username="early-ann"))
    status, content, body = post_upload(path, cookies=browser)
    assert status == 403, content[:300]
    assert b"not_allowed" in content
    assert body.read_bytes == 0, f"{body.read_bytes} bytes of the upload were read before refusing it"


@pytest.mark.django_db
def test_a_script_with_an_annotator_token_is_refused_before_its_body_is_read(make_user):
    token = token_client(make_user(Role.ANNOTATOR, username="early-script"))._credentials["HTTP_AUTHORIZATION"]
    status, content, body = post_upload("/api/imports/", headers={"HTTP_AUTHORIZATION": token})
    assert status == 403 and body.read_bytes == 0


@pytest.mark.django_db
def test_an_anonymous_upload_is_refused_before_its_body_is_read(make_user):
    status, content, body = post_upload("/api/imports/", headers={"HTTP_COOKIE": "csrftoken=" + "a" * 32, "HTTP_X_CSRFTOKEN": "a" * 32})
    assert status in (401, 403) and body.read_bytes == 0


@pytest.mark.django_db
def test_an_admins_upload_over_the_limit_is_refused_from_its_length(make_user, settings):
    settings.MAX_ZIP_BYTES = 8 * 1024 * 1024
    browser = signed_in(make_user(Role.ADMIN, username="early-admin"))
    status, content, body = post_upload("/api/imports/", size=32 * 1024 * 1024, cookies=browser)
    assert status == 413, content[:300]
    assert b"too_large" in content and body.read_bytes == 0
    # Within the limit, the same admin's upload is read and answered on its merits (not a zip).
    status, content, body = post_upload("/api/imports/", size=1024 * 1024, cookies=browser)
    assert status == 400, content[:300]
    assert body.read_bytes == 1024 * 1024
