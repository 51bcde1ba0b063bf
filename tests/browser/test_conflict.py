"""One radiograph edited in two windows: the save based on an older version is refused, nothing is
silently lost. (Two people cannot both edit it: whoever holds the lease is the only one who may save,
``test_lease.py``; so the windows here are one person's, e.g. a laptop and a workstation.)"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, View, drag, wait_saved

pytestmark = pytest.mark.browser

RIGHT = [300, 400, 900, 1600]
LEFT = [1100, 400, 1700, 1600]


def open_as(browser, live_server, user, radiograph_id):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/{radiograph_id}/")
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/annotate/{radiograph_id}/")
    expect(page.locator("#viewer-loading")).to_have_count(0)
    return page


def test_second_save_is_refused_and_kept_until_the_user_chooses(browser, live_server, shot, import_sample, make_user, model_version):
    from annotator.models import LungAnnotation
    from inference.models import Prediction

    (radiograph,) = import_sample("00870a9c.jpg")
    Prediction.objects.create(radiograph=radiograph, model_version=model_version, lung_mask_png=b"", right_box=RIGHT, left_box=LEFT)
    assert radiograph.covid == "positive" and radiograph.other_disease == "unknown"
    ann = make_user("annotator", username="ann1")

    first = open_as(browser, live_server, ann, radiograph.id)
    second = open_as(browser, live_server, ann, radiograph.id)

    # The first window saves a label change.
    first.get_by_label("COVID").select_option("negative")
    wait_saved(first)
    radiograph.refresh_from_db()
    assert radiograph.covid == "negative" and radiograph.version == 2

    # The second window, still on version 1, changes another label and moves a box: refused.
    second.get_by_label("Other disease").select_option("positive")
    view = View.fitted(second, 2000, 2000)
    start = view.screen(600, 1000)
    drag(second, start, (start[0] + 30, start[1]))
    conflict = second.get_by_test_id("conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text("Your changes were not saved")
    expect(conflict).to_contain_text("ann1")
    expect(second.get_by_test_id("save-state")).to_have_attribute("data-status", "conflict")
    shot(second, "conflict")
    moved = re.search(r"\[[^\]]*\]", second.get_by_test_id("box-right").inner_text()).group(0)
    assert moved != "[300, 400, 900, 1600]"
    # Nothing of the second edit reached the database; the first edit is intact.
    radiograph.refresh_from_db()
    assert (radiograph.version, radiograph.covid, radiograph.other_disease) == (2, "negative", "unknown")

    # The refused edit survives a reload (kept in this browser) until the user chooses.
    second.reload()
    expect(second.locator("#viewer-loading")).to_have_count(0)
    expect(second.get_by_test_id("conflict")).to_be_visible()
    expect(second.get_by_label("Other disease")).to_have_value("positive")
    expect(second.get_by_test_id("box-right")).to_contain_text(moved)

    # Keep mine on top of theirs: both windows' changes end up saved.
    second.get_by_test_id("keep-mine").click()
    wait_saved(second)
    expect(second.get_by_test_id("conflict")).to_be_hidden()
    radiograph.refresh_from_db()
    assert (radiograph.covid, radiograph.other_disease) == ("negative", "positive")
    lungs = LungAnnotation.objects.filter(radiograph=radiograph).first()
    assert lungs.right_box != RIGHT and lungs.right_box[0] > RIGHT[0]
    assert lungs.left_box == LEFT

    # The first window, now behind, edits again: refused; they reload the other version.
    first.get_by_label("Healthy / unhealthy").select_option("positive")
    expect(first.get_by_test_id("conflict")).to_be_visible()
    first.get_by_test_id("use-theirs").click()
    expect(first.get_by_test_id("conflict")).to_be_hidden()
    expect(first.get_by_label("Other disease")).to_have_value("positive")
    expect(first.get_by_label("Healthy / unhealthy")).to_have_value(radiograph.healthy)
    radiograph.refresh_from_db()
    assert radiograph.other_disease == "positive" and radiograph.covid == "negative"
    first.context.close()
    second.context.close()
