"""The radiologist's review: decide every suggested region, add one, accept the radiograph."""
from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from .conftest import View, decode_mask, drag, mask_png

pytestmark = pytest.mark.browser


def disc(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx - width / 2 + 0.5) / (width / 2)) ** 2 + ((yy - height / 2 + 0.5) / (height / 2)) ** 2 <= 1.0


def suggested(radiograph, label, bbox, confidence, subtype=""):
    from annotator.models import FindingRegion

    x0, y0, x1, y1 = bbox
    mask = disc(x1 - x0, y1 - y0)
    return FindingRegion.objects.create(
        radiograph=radiograph, label=label, subtype=subtype, status="suggested", source="model",
        confidence=confidence, bbox=bbox, mask_png=mask_png(mask), area=int(mask.sum()),
    )


def full_mask(region, width, height) -> np.ndarray:
    full = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = region.bbox
    full[y0:y1, x0:x1] = decode_mask(region.mask_png)
    return full


def test_radiologist_reviews_regions_and_accepts(page, live_server, login, shot, import_sample, make_user, model_version):
    from annotator.models import FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph
    from annotator.services.workflow import annotation_save
    from inference.models import Prediction

    (radiograph,) = import_sample("00870a9c.jpg")  # 2000 x 2000
    annotator = make_user("annotator", username="ann1")
    annotation_save(radiograph_id=radiograph.id, user=annotator, version=radiograph.version,
                    right=[300, 400, 900, 1600], left=[1100, 400, 1700, 1600], submit=True)
    Prediction.objects.create(radiograph=radiograph, model_version=model_version, lung_mask_png=b"",
                              healthy_prob=0.05, covid_prob=0.9, other_disease_prob=0.3, uncertainty=0.4)
    accept_me = suggested(radiograph, "consolidation", [400, 900, 700, 1200], 0.82)
    edit_me = suggested(radiograph, "interstitial_shadow", [1200, 800, 1500, 1100], 0.64, subtype="ground_glass")
    reject_me = suggested(radiograph, "lung_lesion", [800, 300, 900, 400], 0.31)
    original_edit_mask = full_mask(edit_me, 2000, 2000)
    radiologist = make_user("radiologist", username="rad1")

    login(page, radiologist)
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(rf".*/review/{radiograph.id}/$"))
    expect(page.locator("#viewer-loading")).to_have_count(0)
    expect(page.get_by_test_id("undecided")).to_have_text("3 to decide")
    expect(page.get_by_test_id(f"region-{accept_me.id}")).to_contain_text("82%")
    expect(page.get_by_test_id("model-version")).to_have_text("cmtnet-test-1")
    shot(page, "review-workspace")

    # Accept the first as suggested.
    page.get_by_test_id(f"region-{accept_me.id}").get_by_role("button", name="Accept").click()
    expect(page.get_by_test_id(f"region-{accept_me.id}")).to_have_attribute("data-status", "accepted")

    # Edit the second with the brush: extend it to the right, outside its suggested box.
    page.get_by_test_id(f"region-{edit_me.id}").get_by_role("button", name="Edit").click()
    expect(page.get_by_test_id("editor")).to_be_visible()
    view = View.fitted(page, 2000, 2000)
    drag(page, view.screen(1480, 950), view.screen(1650, 950), steps=15)
    shot(page, "review-brush")
    page.get_by_test_id("region-save").click()
    expect(page.get_by_test_id(f"region-{edit_me.id}")).to_have_attribute("data-status", "accepted")

    # Reject the third from the keyboard.
    page.get_by_test_id(f"region-{reject_me.id}").click()
    page.keyboard.press("x")
    expect(page.get_by_test_id("undecided")).to_have_text("all decided")
    # A decision is undone and redone like any edit (each a new revision on the server).
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id(f"region-{reject_me.id}")).to_have_attribute("data-status", "suggested")
    expect(page.get_by_test_id("undecided")).not_to_have_text("all decided")
    page.keyboard.press("Control+Shift+z")
    expect(page.get_by_test_id(f"region-{reject_me.id}")).to_have_attribute("data-status", "rejected")
    expect(page.get_by_test_id("undecided")).to_have_text("all decided")

    # Add a region the model missed: a polygon, with its finding and a description.
    page.get_by_test_id("add-region").click()
    page.get_by_label("Finding").select_option("pleural_effusion")
    page.get_by_label("Description").fill("Small effusion, costophrenic angle blunted")
    page.get_by_role("button", name="Polygon").click()
    corners = [(300, 1400), (600, 1400), (600, 1600), (300, 1600)]
    for x, y in corners + corners[:1]:
        page.mouse.click(*view.screen(x, y))
    page.get_by_test_id("region-save").click()
    expect(page.get_by_test_id("regions").locator("[data-status=accepted]")).to_have_count(3)
    shot(page, "review-decided")

    page.get_by_test_id("accept-radiograph").click()
    page.wait_for_url(re.compile(r".*/review/\?empty=1$"))

    radiograph = Radiograph.objects.get(pk=radiograph.pk)
    assert radiograph.state == "accepted" and radiograph.reviewed_by == radiologist
    assert LungAnnotation.objects.filter(radiograph=radiograph).first().status == "accepted"
    regions = {r.id: r for r in FindingRegion.objects.filter(radiograph=radiograph)}
    assert len(regions) == 4

    accepted = regions[accept_me.id]
    assert (accepted.status, accepted.label, accepted.bbox) == ("accepted", "consolidation", [400, 900, 700, 1200])
    assert bytes(accepted.mask_png) == bytes(accept_me.mask_png)

    edited = regions[edit_me.id]
    assert (edited.status, edited.label, edited.subtype) == ("accepted", "interstitial_shadow", "ground_glass")
    edited_mask = full_mask(edited, 2000, 2000)
    assert edited_mask[950, 1600] and edited_mask[950, 1640], "the brush stroke is in the saved mask"
    assert edited_mask[950, 1350] and not edited_mask[700, 1350], "the rest of the mask is unchanged"
    assert (edited_mask & original_edit_mask).sum() == original_edit_mask.sum()
    assert edited.bbox[2] > 1650 and edited.bbox[0] == 1200

    assert regions[reject_me.id].status == "rejected"
    assert [r.status for r in FindingRegionRevision.objects.filter(region_id=reject_me.id).order_by("version")][-3:] == ["rejected", "suggested", "rejected"]

    (added,) = [r for r in regions.values() if r.id not in (accept_me.id, edit_me.id, reject_me.id)]
    assert (added.label, added.status, added.source) == ("pleural_effusion", "accepted", "radiologist")
    assert added.description == "Small effusion, costophrenic angle blunted"
    tol = view.tolerance + 1
    for got, want in zip(added.bbox, [300, 1400, 600, 1600]):
        assert abs(got - want) <= tol, (added.bbox, tol)
    added_mask = full_mask(added, 2000, 2000)
    assert added_mask[1500, 450] and added_mask.sum() >= 0.9 * 300 * 200
