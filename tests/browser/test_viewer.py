"""The shared viewer: the compressed preview first, full pixels only when needed; window/level,
invert, zoom, reset; the radiograph page with its history."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from .conftest import View

pytestmark = pytest.mark.browser


def canvas_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.get_by_test_id("viewer-canvas").screenshot())).convert("L"), dtype=float)


def test_large_image_opens_from_the_preview_and_fetches_more_only_when_needed(page, live_server, login, shot, import_sample, make_user):
    radiograph, dicom = import_sample("16663_1_1.jpg", "CR-MONO1-10-chest.dcm")  # 2200 x 2200 JPEG; 10-bit DICOM
    user = make_user("annotator", username="ann1")
    requests: list[tuple[str, int]] = []
    page.on("response", lambda r: requests.append((r.url, int(r.headers.get("content-length") or 0))) if "/image/" in r.url else None)
    login(page, user)

    page.goto(f"{live_server.url}/radiographs/{radiograph.id}/")
    expect(page.locator("#viewer-loading")).to_have_count(0)
    assert [u for u, _ in requests if u.endswith("/image/preview")], requests
    preview_size = next(size for url, size in requests if url.endswith("/image/preview"))
    assert 0 < preview_size < 300_000
    assert not [u for u, _ in requests if u.endswith("/image/display") or u.endswith("/image/pixels")]
    expect(page.locator("#st-size")).to_contain_text("2200×2200 · preview")
    shot(page, "radiograph-page")

    # Zooming to 100% goes past the preview's resolution: the full-resolution image is fetched once.
    with page.expect_response(re.compile(r".*/image/display$")):
        page.keyboard.press("1")
    expect(page.locator("#st-zoom")).to_have_text("Zoom 100%")
    expect(page.locator("#st-size")).to_contain_text("2200×2200 · display")
    page.keyboard.press("0")

    # The 10-bit DICOM: window/level fetches the full bit depth on first use, not before.
    requests.clear()
    page.goto(f"{live_server.url}/radiographs/{dicom.id}/")
    expect(page.locator("#viewer-loading")).to_have_count(0)
    assert not [u for u, _ in requests if u.endswith("/image/pixels")]
    before = canvas_pixels(page)
    page.keyboard.press("w")
    view = View.fitted(page, dicom.width, dicom.height)
    centre = view.screen(dicom.width / 2, dicom.height / 2)
    with page.expect_response(re.compile(r".*/image/pixels$")):
        page.mouse.move(*centre)
        page.mouse.down()
    page.mouse.move(centre[0] - 120, centre[1] + 80, steps=8)
    page.mouse.up()
    expect(page.locator("#st-wl")).to_contain_text("10-bit")
    windowed = canvas_pixels(page)
    assert abs(windowed.mean() - before.mean()) > 3, "window/level changed what is shown"
    shot(page, "viewer-window-level")

    page.keyboard.press("i")
    inverted = canvas_pixels(page)
    inner = (slice(int(view.oy + 20), int(view.oy + dicom.height * view.scale - 20)), slice(int(view.ox + 20), int(view.ox + dicom.width * view.scale - 20)))
    assert np.corrcoef(windowed[inner].ravel(), inverted[inner].ravel())[0, 1] < -0.9, "invert flips the grey levels"

    page.keyboard.press("r")
    expect(page.locator("#st-wl")).to_contain_text("W/L default")
    reset = canvas_pixels(page)
    assert np.abs(reset[inner] - before[inner]).mean() < 2, "reset brings back the default view"


def test_radiograph_page_shows_who_did_what(page, live_server, login, import_sample, make_user):
    from annotator.services.queues import queue_next
    from annotator.services.workflow import annotation_save, radiograph_return

    (radiograph,) = import_sample("00870a9c.jpg")
    ann = make_user("annotator", username="ann1")
    rad = make_user("radiologist", username="rad1")
    annotation_save(radiograph_id=radiograph.id, user=ann, version=1, right=[300, 400, 900, 1600], left=[1100, 400, 1700, 1600], submit=True)
    leased = queue_next(user=rad, queue="review")
    radiograph_return(radiograph_id=radiograph.id, user=rad, version=leased.version, comment="Left box misses the base")

    login(page, ann)
    expect(page.get_by_text("Left box misses the base")).to_be_visible()  # returned, on the annotator's home
    page.goto(f"{live_server.url}/radiographs/{radiograph.id}/")
    history = page.get_by_test_id("history")
    expect(history.locator("li")).to_have_count(4)
    expect(history.locator("li").nth(0)).to_contain_text("rad1 returned it to the annotator")
    expect(history.locator("li").nth(0)).to_contain_text("Left box misses the base")
    expect(history.locator("li").nth(1)).to_contain_text("rad1 started the review")
    expect(history.locator("li").nth(2)).to_contain_text("ann1 submitted the lung boxes")
    expect(history.locator("li").nth(3)).to_contain_text("Imported with the dataset")


def test_overlays_are_drawn_where_the_image_coordinates_say_on_a_high_dpi_screen(browser, live_server, import_sample, make_user, model_version):
    """On a 2x screen the lung box outline lands on the screen pixels its image coordinates map to."""
    from inference.models import Prediction

    from .conftest import PASSWORD

    (radiograph,) = import_sample("00870a9c.jpg")
    Prediction.objects.create(radiograph=radiograph, model_version=model_version, lung_mask_png=b"", right_box=[300, 400, 900, 1600], left_box=[1100, 400, 1700, 1600])
    make_user("annotator", username="ann1")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/{radiograph.id}/")
    page.get_by_label("User name").fill("ann1")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#viewer-loading")).to_have_count(0)
    page.keyboard.press("=")
    view = View.fitted(page, 2000, 2000).zoomed(1.25)
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    cyan = (np.abs(shot - [0x38, 0xBD, 0xF8]).sum(axis=2) < 60)  # the patient-right box colour
    x, y = view.screen(300, 1000)  # the middle of the box's left edge, in CSS pixels
    row = cyan[int(round(y * 2))]
    columns = np.flatnonzero(row[int(x * 2) - 12:int(x * 2) + 12])
    assert columns.size, "the outline is near its image position"
    assert abs((columns.mean() + int(x * 2) - 12) / 2 - x) <= 1.5
    context.close()
