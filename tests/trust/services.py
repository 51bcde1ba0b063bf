"""Throw-away PostgreSQL and Redis servers for fault tests (restarting the shared ones would break
everyone else's tests). Each runs on a free loopback port out of a temporary folder and is stopped
and removed at the end. Found through ``PG_BIN`` (the folder of ``initdb``/``pg_ctl``), ``PATH``
or ``pg_config``; tests skip when a server program is missing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres_bin() -> Path | None:
    """The folder of the server programs: ``PG_BIN``, next to ``initdb`` on PATH, or ``pg_config --bindir``."""
    candidates = [os.environ.get("PG_BIN", "")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(result.stdout.strip())
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` on a random port, trust auth, user ``postgres``, socket in its folder.

    As root, the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
    """

    def __init__(self) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL server programs (initdb, pg_ctl) not found; set PG_BIN")
        self.root = Path(tempfile.mkdtemp(prefix="lungmark-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def _pg(self, *args: str, timeout: float = 60) -> None:
        command = [*self.run_as, str(self.bin / args[0]), *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> "PrivatePostgres":
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._ctl("start")
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", action, *extra)

    def restart(self, *, down_for: float = 0.0) -> tuple[float, float]:
        """Stop (fast: every open connection is cut), stay down ``down_for`` seconds, start again,
        like a database failover. Returns the monotonic times it went down and came back."""
        down = time.monotonic()
        self._ctl("stop", "-m", "fast")
        time.sleep(down_for)
        self._ctl("start")
        return down, time.monotonic()

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._ctl("stop", "-m", "immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class PrivateRedis:
    """``redis-server`` on a random port. ``persistent`` keeps an append-only file, as the production
    Redis does (docker-compose.yml), so that a restart keeps the queue."""

    def __init__(self, *, persistent: bool = True) -> None:
        self.program = shutil.which("redis-server")
        if self.program is None:
            raise FileNotFoundError("redis-server not found")
        self.root = Path(tempfile.mkdtemp(prefix="lungmark-redis-"))
        self.port = free_port()
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        args = [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        with open(self.root / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port)
        return self

    def restart(self, *, down_for: float = 1.0) -> None:
        """Shut down (SIGTERM: Redis flushes and exits), stay down a moment, start again."""
        self.shutdown()
        time.sleep(down_for)
        self.start()

    def shutdown(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def stop(self) -> None:
        self.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)
