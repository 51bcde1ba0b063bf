"""Real-browser tests: Playwright driving Debian's chromium against pytest-django's live server.

Each test creates the data it needs (the live server's database is flushed after every test),
signs in through the real login form, and leaves a screenshot of each page it visits in
``test-artifacts/screenshots/``.
"""
from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.browser
# Playwright's sync API keeps an event loop running in the test thread; Django's ORM calls from the
# test body are still synchronous and safe there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
PASSWORD = "correct-horse-battery-staple"
CHROMIUM = Path("/usr/bin/chromium")
FIT_MARGIN = 16  # the viewer's documented "fit" margin, in CSS pixels


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--headless=new",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session", autouse=True)
def _close_live_server_connections():
    """The live server's request threads close their connections after each request, so the test
    database can be dropped at the end of the session."""
    from django.db import connections

    connections["default"].settings_dict["CONN_MAX_AGE"] = 0
    yield


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}}


@pytest.fixture(autouse=True)
def _empty_database(transactional_db):
    """Start from an empty database. pytest-django runs the ``db`` tests first, and the session-wide
    sample import they share is committed, so the first browser test would otherwise find it."""
    from django.core.management import call_command

    from annotator.models import Dataset

    if Dataset.objects.exists():
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _fail_on_page_errors(page):
    """A JavaScript error or a CSP violation fails the test that caused it."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield errors
    assert not errors, "\n".join(errors)


@pytest.fixture
def shot():
    """``shot(page, "name")`` writes test-artifacts/screenshots/name.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = False) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def login(live_server):
    def sign_in(page, user) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("User name").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/(annotate|review|manage)/$"))

    return sign_in


@pytest.fixture
def import_sample(transactional_db):
    """Import the named files of the real sample into dataset ``sample``; returns the radiographs."""
    if not SAMPLE.is_dir():
        pytest.skip("sample data not available")
    from annotator.models import Radiograph
    from annotator.selectors import radiographs_by_file_name
    from annotator.services.imports import dataset_get_or_create, folder_sources, radiographs_import

    def run(*names: str, dataset: str = "sample") -> list:
        sources, metadata = folder_sources(SAMPLE)
        chosen = [s for s in sources if s.name in names]
        assert len(chosen) == len(names), f"missing sample files: {set(names) - {s.name for s in chosen}}"
        report = radiographs_import(dataset=dataset_get_or_create(name=dataset), sources=chosen, metadata=metadata)
        assert not report.errors, report.errors
        by_name = radiographs_by_file_name(dataset=dataset_get_or_create(name=dataset), names=names)
        return [by_name[n] for n in names]

    return run


@pytest.fixture
def model_version(transactional_db):
    """A registered (inactive) model version, for predictions and suggested regions."""
    from django.core.files.base import ContentFile
    from inference.models import ModelVersion

    mv = ModelVersion(name="cmtnet-test-1", sha256="0" * 64, metrics={"covid_auc": 0.91})
    mv.checkpoint.save("cmtnet-test-1.pt", ContentFile(b"not a real checkpoint"), save=False)
    mv.save()
    return mv


def mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((mask > 0).astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data)))) > 0


@dataclass
class View:
    """The viewer's image↔screen mapping, computed independently of the page's code from what the
    user sees: the canvas's box on screen, the image size, "fit" (centred, 16 px margin), and each
    zoom step (×1.25 about the canvas centre)."""

    left: float
    top: float
    width: float
    height: float
    image_width: int
    image_height: int
    scale: float = 0.0
    ox: float = 0.0
    oy: float = 0.0

    @classmethod
    def fitted(cls, page, image_width: int, image_height: int) -> "View":
        box = page.get_by_test_id("viewer-canvas").bounding_box()
        view = cls(box["x"], box["y"], box["width"], box["height"], image_width, image_height)
        view.scale = min((view.width - 2 * FIT_MARGIN) / image_width, (view.height - 2 * FIT_MARGIN) / image_height)
        view.ox = (view.width - image_width * view.scale) / 2
        view.oy = (view.height - image_height * view.scale) / 2
        return view

    def zoomed(self, factor: float) -> "View":
        cx, cy = self.width / 2, self.height / 2
        return View(self.left, self.top, self.width, self.height, self.image_width, self.image_height,
                    self.scale * factor, cx - (cx - self.ox) * factor, cy - (cy - self.oy) * factor)

    def screen(self, x: float, y: float) -> tuple[float, float]:
        """Image point → page coordinates for ``page.mouse``."""
        return self.left + self.ox + x * self.scale, self.top + self.oy + y * self.scale

    @property
    def tolerance(self) -> int:
        """One screen pixel, in image pixels (what a mouse can resolve at this zoom)."""
        return max(1, math.ceil(1 / self.scale))


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def wait_saved(page, timeout: float = 10_000) -> None:
    """Wait until the status bar says the draft is saved on the server."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("save-state")).to_have_attribute("data-status", "saved", timeout=timeout)
