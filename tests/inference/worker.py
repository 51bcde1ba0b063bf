"""A real Celery worker process for tests (not eager mode), reusable by any test package.

Use the ``celery_worker`` fixture (a factory) from a test that has ``transactional_db``: the worker
is a separate process and sees only committed data. It gets the test database, the broker and
MEDIA_ROOT of the test process through its environment, plus any overrides::

    def test_x(transactional_db, celery_worker):
        worker = celery_worker(env={"PREANNOTATE_TEST_DELAY": "5"})
        ...
        worker.kill()            # SIGKILL, like a machine that dies
        celery_worker()          # a fresh one

Every worker started is stopped at the end of the test, and the Redis database of the broker is
purged before and after. Other packages reuse it with
``from tests.inference.worker import celery_worker  # noqa: F401`` in their conftest.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for a Django database settings dict (PostgreSQL or SQLite)."""
    if "sqlite" in settings_dict["ENGINE"]:
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings_dict['NAME']}"


def broker_purge(url: str) -> None:
    """Empty the broker's Redis database (each test session uses its own db number)."""
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def wait_for(condition, *, timeout: float, what: str | Callable[[], str], worker: Worker | None = None):
    """Poll ``condition`` until it returns something truthy (returned), or fail after ``timeout`` s
    saying what was awaited (with the end of the worker's log when there is one). ``what`` may be a
    function, called on failure: logs read then show what happened while waiting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    log = f"\nworker log:\n{worker.log()[-4000:]}" if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}{log}")


class Worker:
    """One ``celery -A config worker`` subprocess in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], *, queues: str = "gpu,default", pool: str = "solo", concurrency: int = 1) -> None:
        self.env = env
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.args = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", queues, "--pool", pool, "-c", str(concurrency), "-n", self.name,
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        fd, log = tempfile.mkstemp(prefix="lungmark-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "Worker":
        """Launch the process and wait until it consumes."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> "Worker":
        """Launch the process without waiting (it starts while the test does other things)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the worker was not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        """Pids of the pool processes (prefork) of this worker."""
        if not self.alive:
            return []
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def kill_children(self) -> list[int]:
        """SIGKILL the pool processes (what the OOM killer does to a child running a big model)."""
        pids = self.children()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def kill(self) -> None:
        """SIGKILL the worker and its children at once: no shutdown, no acknowledgements."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def worker_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker that shares the test process's database, broker and media."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_BROKER_FOLDER=str(settings.CELERY_BROKER_FOLDER),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
        AXES_ENABLED="0",
    )
    env.update(overrides or {})
    return env


@pytest.fixture
def celery_worker(transactional_db):
    """Factory: ``celery_worker(env={...}, queues=..., pool=...)`` starts a ready worker process."""
    from django.conf import settings

    broker_purge(settings.CELERY_BROKER_URL)
    workers: list[Worker] = []

    def start(env: dict[str, str] | None = None, **kwargs) -> Worker:
        worker = Worker(worker_env(env), **kwargs)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
    broker_purge(settings.CELERY_BROKER_URL)
    for worker in workers:
        worker.log_path.unlink(missing_ok=True)
