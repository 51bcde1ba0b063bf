"""A worker's slim install (``requirements-worker.txt``): what only the web process uses is left
out, and the worker's code runs without it."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.inference.worker import REPO

# Web-only requirements and the module each provides.
WEB_ONLY = {"gunicorn": "gunicorn", "whitenoise": "whitenoise", "drf-spectacular-sidecar": "drf_spectacular_sidecar"}

# Run in a fresh interpreter in which the web-only modules cannot be imported, as on a worker host.
PROBE = """
import importlib.abc, os, sys
blocked = set(sys.argv[1].split(","))

class WebOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, WebOnly())
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
import django
django.setup()
from config.celery import app
app.loader.import_default_modules()
import annotator.tasks, inference.tasks, inference.services.retraining, inference.runtime, training.train
assert {"inference.preannotate", "inference.train", "annotator.export_build"} <= set(app.tasks), sorted(app.tasks)
print("worker modules loaded")
"""


def requirement_names(path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0].lower())
    return names


def test_the_worker_requirements_are_the_full_ones_less_the_web_only_ones():
    full = set(requirement_names(REPO / "requirements.txt"))
    worker = set(requirement_names(REPO / "requirements-worker.txt"))
    assert worker == full - set(WEB_ONLY)


def test_the_worker_code_loads_without_the_web_only_packages():
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(WEB_ONLY.values())], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker modules loaded" in done.stdout
