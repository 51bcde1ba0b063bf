"""Debian's nginx, run from ``deploy/nginx.conf``, in front of a real gunicorn on production settings.

The production file is used as it is, with only its ports, upstream address, certificate and media
paths substituted (each substitution must match exactly once, so a changed file fails here rather
than being silently skipped). Checks: TLS ends at nginx and nothing loops (plain HTTP is
redirected by nginx, HTTPS reaches Django marked as such); slow clients do not starve normal
requests; media go out only through Django's permission check (X-Accel-Redirect); oversize bodies
are refused with 413 from their Content-Length.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import urllib3
from django.conf import settings as django_settings

from annotator.constants import Role
from annotator.middleware import MULTIPART_OVERHEAD
from tests.annotator.factories import RadiographFactory
from tests.conftest import PASSWORD, REPO

from .services import free_port, wait_for_port

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
NGINX_CONF = REPO / "deploy" / "nginx.conf"
MIB = 1024 * 1024
GUNICORN_WORKERS = 2


def _substitute(text: str, replacements: list[tuple[str, str]]) -> str:
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"deploy/nginx.conf no longer has exactly one {pattern!r}"
    return text


class Stack:
    """nginx (HTTP and HTTPS ports) → gunicorn (production settings) → the test database."""

    def __init__(self, root: Path, database_url: str, media_root: Path) -> None:
        self.root = root
        self.http_port, self.https_port, self.app_port = free_port(), free_port(), free_port()
        self.cert = root / "lungmark.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(root / "lungmark.key"), "-out", str(self.cert)],
            check=True, capture_output=True,
        )
        site = _substitute(
            NGINX_CONF.read_text(),
            [
                (r"server web:8000;", f"server 127.0.0.1:{self.app_port};"),
                (r"listen 80;", f"listen 127.0.0.1:{self.http_port};"),
                (r"listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
                (r"/etc/nginx/certs/lungmark\.crt", str(self.cert)),
                (r"/etc/nginx/certs/lungmark\.key", str(root / "lungmark.key")),
                (r"alias /data/media/;", f"alias {media_root}/;"),
            ],
        )
        (root / "site.conf").write_text(site)
        temp = "\n".join(f"  {kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        mime = "  include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
        # As root, the workers run as root too: the media folder is the test's private temp folder.
        user = "user root root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"{user}\ndaemon off;\nworker_processes 1;\npid {root / 'nginx.pid'};\nerror_log {root / 'error.log'} info;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{\n{mime}\n  access_log {root / 'access.log'};\n{temp}\n  include {root / 'site.conf'};\n}}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")}
        self.env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            SECRET_KEY=secrets.token_urlsafe(64),
            DATABASE_URL=database_url,
            MEDIA_ROOT=str(media_root),
            MEDIA_INTERNAL_REDIRECT="/protected/",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            TRUSTED_PROXY_COUNT="1",
            DB_CONN_MAX_AGE="0",
        )
        self.processes: list[subprocess.Popen] = []

    def start(self) -> "Stack":
        # Production's worker shape (docker-compose.yml), scaled to a small machine.
        # A hook marks each worker once it has loaded the app: the slow-client check needs both busy.
        ready = self.root / "ready"
        ready.mkdir()
        (self.root / "gunicorn_hooks.py").write_text(
            "from pathlib import Path\n\n\ndef post_worker_init(worker):\n"
            f"    Path({str(ready)!r}, str(worker.pid)).touch()\n"
        )
        gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.app_port}",
                    "--workers", str(GUNICORN_WORKERS), "--threads", "2", "--timeout", "60",
                    "--config", str(self.root / "gunicorn_hooks.py")]
        with open(self.root / "gunicorn.log", "ab") as log:
            self.processes.append(subprocess.Popen(gunicorn, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        nginx = [shutil.which("nginx"), "-c", str(self.root / "nginx.conf"), "-p", str(self.root)]
        check = subprocess.run([*nginx, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        with open(self.root / "nginx.log", "ab") as log:
            self.processes.append(subprocess.Popen(nginx, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        for port in (self.app_port, self.http_port, self.https_port):
            wait_for_port(port, timeout=60)
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < GUNICORN_WORKERS:
            assert time.monotonic() < deadline, f"gunicorn's workers did not all start:\n{(self.root / 'gunicorn.log').read_text()[-3000:]}"
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    def session(self) -> requests.Session:
        browser = requests.Session()
        browser.verify = False  # the throw-away self-signed certificate; TLS itself is not under test
        browser.trust_env = False  # (a CA bundle named in the environment would override ``verify``)
        return browser

    def sign_in(self, username: str) -> requests.Session:
        """Through the login form, as a browser does (CSRF token, Referer over HTTPS)."""
        browser = self.session()
        form = browser.get(self.url("/accounts/login/"), timeout=30)
        assert form.status_code == 200, form.status_code
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        response = browser.post(
            self.url("/accounts/login/"),
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": self.url("/accounts/login/")},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, (response.status_code, response.text[:300])
        return browser

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n" + (self.root / name).read_text(errors="replace")[-3000:] for name in ("gunicorn.log", "error.log") if (self.root / name).exists())


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    if shutil.which("nginx") is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed (make test installs nginx)")
    from django.db import connection

    database = connection.settings_dict
    database_url = f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    root = Path(tempfile.mkdtemp(prefix="lungmark-nginx-"))
    running = Stack(root, database_url, Path(django_settings.MEDIA_ROOT))
    try:
        yield running.start()
    except Exception:
        print(running.logs())
        raise
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def people(transactional_db, make_user):
    """Committed rows, as gunicorn (another process) reads them."""
    from django.contrib.auth.hashers import Argon2PasswordHasher

    hasher = Argon2PasswordHasher()  # one the production settings verify (the test settings hash faster)

    users = {role: make_user(role, username=f"nginx-{role}") for role in (Role.ANNOTATOR,)}
    users["norole"] = make_user(None, username="nginx-norole")
    for user in users.values():
        user.password = hasher.encode(PASSWORD, hasher.salt())
        user.save(update_fields=["password"])
    return users


def test_tls_ends_at_nginx_without_a_redirect_loop(stack, people):
    plain = requests.get(f"http://127.0.0.1:{stack.http_port}/radiographs/?page=2", allow_redirects=False, timeout=30)
    assert plain.status_code == 301 and plain.headers["Location"] == "https://127.0.0.1/radiographs/?page=2"
    # A client's own X-Forwarded-Proto over plain HTTP changes nothing: nginx redirects it itself.
    spoofed = requests.get(f"http://127.0.0.1:{stack.http_port}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=30)
    assert spoofed.status_code == 301
    # Over HTTPS Django answers (no redirect to where the request already is), with HSTS and secure cookies.
    page = stack.session().get(stack.url("/accounts/login/"), allow_redirects=False, timeout=30)
    assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    assert "Secure" in page.headers["Set-Cookie"]
    # Signing in works through the proxy (CSRF origin checks see the HTTPS origin) and lands on a page.
    browser = stack.sign_in("nginx-annotator")
    home = browser.get(stack.url("/"), timeout=30)
    assert home.status_code == 200 and home.url.endswith("/annotate/"), home.url
    # The app itself, asked directly without the proxy's header, would redirect: the header is what counts.
    direct = requests.get(f"http://127.0.0.1:{stack.app_port}/accounts/login/", allow_redirects=False, timeout=30)
    assert direct.status_code == 301 and direct.headers["Location"].startswith("https://")


def test_media_are_sent_only_after_the_permission_check(stack, people):
    radiograph = RadiographFactory()
    stored = Path(django_settings.MEDIA_ROOT, radiograph.preview.name).read_bytes()
    image = f"/api/radiographs/{radiograph.id}/image/preview"

    viewer = stack.sign_in("nginx-annotator")
    response = viewer.get(stack.url(image), timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.content == stored
    assert "X-Accel-Redirect" not in response.headers

    for refused in (stack.session(), stack.sign_in("nginx-norole")):
        response = refused.get(stack.url(image), timeout=30)
        assert response.status_code == 403, response.status_code
        assert stored not in response.content
    # The internal location cannot be asked for directly.
    direct = stack.session().get(stack.url(f"/protected/{radiograph.preview.name}"), timeout=30)
    assert direct.status_code == 404 and stored not in direct.content


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _slow_clients(port: int, *, count: int, tls: bool, stop: threading.Event) -> list[socket.socket]:
    """``count`` connections that send a request's headers one byte every 0.2 s until ``stop``."""
    sockets = []
    context = _tls_context() if tls else None
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        sockets.append(context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw)

    def drip() -> None:
        request = b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4000
        for byte in range(len(request)):
            if stop.is_set():
                return
            for sock in sockets:
                try:
                    sock.sendall(request[byte : byte + 1])
                except OSError:
                    pass
            time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    return sockets


def _timed_get(url: str, *, verify, timeout: float) -> float | None:
    start = time.monotonic()
    try:
        response = requests.get(url, verify=verify, allow_redirects=False, timeout=timeout)
    except requests.RequestException:
        return None
    return time.monotonic() - start if response.status_code < 500 else None


def test_slow_clients_do_not_starve_normal_requests(stack):
    stop = threading.Event()
    # Directly against gunicorn, 40 slow clients take the worker threads: normal requests wait. Which
    # worker accepts which connection is the kernel's choice, so one worker may have a thread left:
    # several normal requests at once, spread over both workers, show the starvation either way.
    sockets = _slow_clients(stack.app_port, count=40, tls=False, stop=stop)
    try:
        time.sleep(1.0)
        with ThreadPoolExecutor(max_workers=6) as pool:
            direct = list(pool.map(lambda _: _timed_get(f"http://127.0.0.1:{stack.app_port}/accounts/login/", verify=False, timeout=3), range(6)))
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert None in direct, f"gunicorn alone answered every request ({direct}): the test no longer shows the problem"

    # Through nginx, the same slow clients cost nginx connections only.
    stop = threading.Event()
    sockets = _slow_clients(stack.https_port, count=40, tls=True, stop=stop)
    try:
        time.sleep(1.0)
        times = [_timed_get(stack.url("/accounts/login/"), verify=False, timeout=3) for _ in range(10)]
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert all(t is not None for t in times), f"normal requests timed out behind nginx: {times}"
    assert max(times) < 2.0, times


def _status_for_length(stack: Stack, path: str, length: int) -> int:
    """Send only the headers of a POST declaring ``length`` bytes; nginx answers from them."""
    context = _tls_context()
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=30) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode(errors="replace")
    return int(head.split()[1])


def _nginx_limit(text: str, location: str | None) -> int:
    if location is None:
        match = re.search(r"ssl;.*?client_max_body_size (\d+)m;", text, re.S)
    else:
        match = re.search(r"location = " + re.escape(location) + r" \{\s*client_max_body_size (\d+)m;", text)
    assert match, location
    return int(match.group(1)) * MIB


def test_body_limits_match_what_django_accepts():
    text = NGINX_CONF.read_text()
    assert _nginx_limit(text, None) == django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + MULTIPART_OVERHEAD
    assert _nginx_limit(text, "/api/imports/") == django_settings.MAX_ZIP_BYTES + MULTIPART_OVERHEAD
    assert _nginx_limit(text, "/api/models/") == django_settings.MODEL_MAX_BYTES + MULTIPART_OVERHEAD


def test_oversize_bodies_are_refused_with_413(stack):
    text = NGINX_CONF.read_text()
    for path, location in (("/api/radiographs/1/annotation/", None), ("/api/imports/", "/api/imports/"), ("/api/models/", "/api/models/")):
        limit = _nginx_limit(text, location)
        assert _status_for_length(stack, path, limit + 1) == 413, path
        # At the limit nginx waits for the body (and would pass it on): no 413 from the headers.
        context = _tls_context()
        with socket.create_connection(("127.0.0.1", stack.https_port), timeout=2) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {limit}\r\n\r\n".encode())
            with pytest.raises(socket.timeout):
                sock.recv(4096)
