"""Test settings: the base settings against real PostgreSQL and Redis (``make test`` sets the URLs)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .base import *  # noqa: F401,F403

# MEDIA_ROOT: a throw-away folder per test session unless given.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or tempfile.mkdtemp(prefix="lungmark-media-"))
# Each save is checked by tests; lockout is exercised explicitly where tested.
AXES_FAILURE_LIMIT = 5
LEASE_SECONDS = 600
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="lungmark-static-"))
