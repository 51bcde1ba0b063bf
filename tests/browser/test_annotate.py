"""The annotator's day: sign in, take the next radiograph, fix the suggested lung boxes, submit."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import View, drag, wait_saved

pytestmark = pytest.mark.browser

RIGHT = [300, 400, 900, 1600]  # the model's suggestion, patient right = image left
LEFT = [1100, 400, 1700, 1600]


def test_annotator_drags_a_suggested_box_and_submits(page, live_server, login, shot, import_sample, make_user, model_version):
    from annotator.models import LungAnnotation, Radiograph
    from inference.models import Prediction

    (radiograph,) = import_sample("00870a9c.jpg")  # 2000 x 2000
    Prediction.objects.create(
        radiograph=radiograph, model_version=model_version, lung_mask_png=b"", right_box=RIGHT, left_box=LEFT,
        healthy_prob=0.08, covid_prob=0.83, other_disease_prob=0.2, uncertainty=0.31,
    )
    annotator = make_user("annotator", username="ann1")

    login(page, annotator)
    expect(page.get_by_role("heading", name="Annotation queue")).to_be_visible()
    expect(page.get_by_test_id("queue-total")).to_have_text("1")
    shot(page, "annotate-queue")
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(rf".*/annotate/{radiograph.id}/$"))
    expect(page.locator("#viewer-loading")).to_have_count(0)
    # The boxes start from the model's suggestion, named by the patient's side.
    expect(page.get_by_test_id("box-right")).to_contain_text("[300, 400, 900, 1600]")
    expect(page.get_by_test_id("box-left")).to_contain_text("[1100, 400, 1700, 1600]")
    expect(page.get_by_test_id("model-version")).to_have_text("cmtnet-test-1")
    shot(page, "annotate-workspace")

    # 1. At the fitted zoom, drag the right box by its body.
    view = View.fitted(page, 2000, 2000)
    start = view.screen(600, 1000)
    drag(page, start, (start[0] + 40, start[1] + 25))
    moved_right = [RIGHT[0] + round(40 / view.scale), RIGHT[1] + round(25 / view.scale), RIGHT[2] + round(40 / view.scale), RIGHT[3] + round(25 / view.scale)]

    # 2. Zoom in twice (keyboard: about the centre), select the left box, drag its top-left handle.
    page.keyboard.press("=")
    page.keyboard.press("=")
    zoomed = view.zoomed(1.25).zoomed(1.25)
    assert zoomed.scale != pytest.approx(1.0)
    inside_left = zoomed.screen(1400, 1000)
    page.mouse.click(*inside_left)
    corner = zoomed.screen(LEFT[0], LEFT[1])
    drag(page, corner, (corner[0] - 30, corner[1] + 20))
    resized_left = [LEFT[0] + round(-30 / zoomed.scale), LEFT[1] + round(20 / zoomed.scale), LEFT[2], LEFT[3]]
    wait_saved(page)
    shot(page, "annotate-workspace-edited")

    page.get_by_test_id("submit").click()
    page.wait_for_url(re.compile(r".*/annotate/\?empty=1$"))
    expect(page.get_by_text("The queue is empty")).to_be_visible()

    radiograph = Radiograph.objects.get(pk=radiograph.pk)
    assert radiograph.state == "lungs_done"
    lungs = LungAnnotation.objects.filter(radiograph=radiograph).first()
    assert lungs.status == "submitted" and lungs.author == annotator
    for got, want in zip(lungs.right_box, moved_right):
        assert abs(got - want) <= 1, (lungs.right_box, moved_right)
    for got, want in zip(lungs.left_box, resized_left):
        assert abs(got - want) <= 1, (lungs.left_box, resized_left)
    assert lungs.right_box != RIGHT and lungs.left_box != LEFT


def test_without_a_model_the_annotator_draws_both_boxes_with_undo_and_submits_from_the_keyboard(page, live_server, login, shot, import_sample, make_user):
    from annotator.models import LungAnnotation, Radiograph

    (radiograph,) = import_sample("16663_1_1.jpg")  # 2200 x 2200, no prediction
    annotator = make_user("annotator", username="ann1")
    login(page, annotator)
    page.goto(f"{live_server.url}/annotate/{radiograph.id}/")
    expect(page.locator("#viewer-loading")).to_have_count(0)
    expect(page.get_by_test_id("box-right")).to_contain_text("not drawn")
    expect(page.locator("#boxes-source")).to_contain_text("No suggestion")
    # Opened directly rather than from the queue, the page still holds the radiograph while it is open.
    for _ in range(50):
        if Radiograph.objects.filter(pk=radiograph.id, leased_to=annotator).exists():
            break
        page.wait_for_timeout(100)
    assert Radiograph.objects.get(pk=radiograph.id).leased_to == annotator

    page.keyboard.press("=")  # one zoom step about the centre
    view = View.fitted(page, 2200, 2200).zoomed(1.25)
    drag(page, view.screen(420, 500), view.screen(1000, 1700))  # the first box drawn is the patient's right
    drag(page, view.screen(1200, 480), view.screen(1800, 1650))  # then the left
    right = [420, 500, 1000, 1700]
    left = [1200, 480, 1800, 1650]
    expect(page.get_by_test_id("box-left")).not_to_contain_text("not drawn")

    page.keyboard.press("Control+z")
    expect(page.get_by_test_id("box-left")).to_contain_text("not drawn")
    page.keyboard.press("Control+Shift+z")
    expect(page.get_by_test_id("box-left")).not_to_contain_text("not drawn")
    wait_saved(page)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/annotate/\?empty=1$"))

    lungs = LungAnnotation.objects.filter(radiograph_id=radiograph.id).first()
    assert Radiograph.objects.get(pk=radiograph.id).state == "lungs_done" and lungs.status == "submitted"
    for got, want in zip(lungs.right_box + lungs.left_box, right + left):
        assert abs(got - want) <= view.tolerance, (lungs.right_box, lungs.left_box, view.tolerance)
