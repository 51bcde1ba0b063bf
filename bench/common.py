"""What the benchmarks share: the repository's paths and a throw-away PostgreSQL database.

The scripts run as ``python bench/<name>.py`` (each puts the repository root on ``sys.path`` first)
and are imported as ``bench.<name>`` by tests; either way they import this module as ``bench.common``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
SAMPLE = Path(os.environ.get("LUNGMARK_SAMPLE_DATA", REPO.parent / "shared" / "data" / "cxr-sample"))


def throwaway_postgres(url: str) -> tuple[str, Callable[[], None]]:
    """Create a fresh database on the server of ``url``; returns its URL and a function that drops it."""
    import psycopg

    parts = urlsplit(url)
    name = f"lungmark_bench_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(parts._replace(path=f"/{name}")), drop
