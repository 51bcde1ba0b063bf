"""The workspace as a new user meets it: help on ``?``, hints that leave, keys that do not act while
typing, degenerate regions refused, overlay labels apart, and human words on every page."""
from __future__ import annotations

import re
from itertools import combinations

import pytest
from playwright.sync_api import expect

from .conftest import View
from .test_review import suggested

pytestmark = pytest.mark.browser

RIGHT, LEFT = [300, 400, 900, 1600], [1100, 400, 1700, 1600]


def lung_boxes(radiograph) -> tuple[list[int], list[int]]:
    """RIGHT and LEFT (drawn for a 2000 px square) scaled to this radiograph's size."""
    sx, sy = radiograph.width / 2000, radiograph.height / 2000
    return tuple([round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)] for box in (RIGHT, LEFT))


def submitted(radiograph, annotator, **labels):
    """The annotator's lung boxes submitted: the radiograph waits for review."""
    from annotator.models import Radiograph
    from annotator.services.workflow import annotation_save

    right, left = lung_boxes(radiograph)
    annotation_save(radiograph_id=radiograph.id, user=annotator, version=radiograph.version, right=right, left=left,
                    labels=labels or None, submit=True)
    return Radiograph.objects.get(pk=radiograph.pk)


def opened(page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#viewer-loading")).to_have_count(0)
    expect(page.locator("#history")).not_to_contain_text("Loading")


def toast(page):
    return page.locator("#viewer-toast")


def test_help_overlay_lists_the_page_shortcuts_on_every_workspace_page(page, live_server, login, shot, import_sample, make_user):
    (radiograph,) = import_sample("00870a9c.jpg")
    admin = make_user("admin", username="boss")  # an admin may open all three workspaces
    login(page, admin)

    pages = {
        "annotate": (f"/annotate/{radiograph.id}/", "Box tool"),
        "radiograph": (f"/radiographs/{radiograph.id}/", "Toggle findings"),
    }
    for name, (path, own_binding) in pages.items():
        opened(page, live_server.url + path)
        help_box = page.get_by_test_id("help")
        expect(help_box).to_have_count(0)

        page.keyboard.press("?")
        expect(help_box).to_be_visible()
        shot(page, f"help-{name}")
        # The overlay and the side panel are both rendered from the page's bindings.
        listed = help_box.locator("dl").inner_text()
        assert listed == page.locator("#shortcuts").inner_text()
        assert own_binding in listed and "Show or hide this help" in listed and "Fit the image" in listed
        if name == "annotate":
            # No findings layer on this page, so no key for it.
            assert "Toggle findings" not in listed
            expect(page.locator("[data-layer=regions]")).to_have_count(0)
        if name == "radiograph":
            assert "Undo" not in listed  # read-only: nothing to undo

        # A key behind the overlay does nothing: the view stays as it is.
        page.keyboard.press("i")
        expect(page.locator("[data-action=invert]")).not_to_have_attribute("aria-pressed", "true")

        page.keyboard.press("?")
        expect(help_box).to_be_hidden()
        page.keyboard.press("?")
        expect(help_box).to_be_visible()
        page.keyboard.press("Escape")
        expect(help_box).to_be_hidden()
        page.keyboard.press("?")
        expect(help_box).to_be_visible()
        page.mouse.click(20, 20)
        expect(help_box).to_be_hidden()

    # The review workspace, on a radiograph waiting for review (the admin's lease from above ran out).
    from annotator.models import Radiograph

    Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=None, lease_expires_at=None)
    radiograph = submitted(Radiograph.objects.get(pk=radiograph.pk), make_user("annotator", username="ann1"))
    opened(page, f"{live_server.url}/review/{radiograph.id}/")
    page.keyboard.press("?")
    help_box = page.get_by_test_id("help")
    expect(help_box).to_be_visible()
    listed = help_box.locator("dl").inner_text()
    assert "Polygon" in listed and "Toggle findings" in listed and "Accept the radiograph, then next" in listed
    assert listed == page.locator("#shortcuts").inner_text()
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()
    page.locator("[data-action=help]").click()  # the same help from the toolbar
    expect(help_box).to_be_visible()
    page.keyboard.press("?")
    expect(help_box).to_be_hidden()


def test_hints_leave_at_the_next_action_and_by_themselves(page, live_server, login, shot, import_sample, make_user):
    (radiograph,) = import_sample("00870a9c.jpg")  # 2000 x 2000
    radiograph = submitted(radiograph, make_user("annotator", username="ann1"))
    login(page, make_user("radiologist", username="rad1"))
    opened(page, f"{live_server.url}/review/{radiograph.id}/")
    view = View.fitted(page, 2000, 2000)

    # A new region, painted, then Esc: the hint asks for a second Esc. Saving is the next action.
    page.get_by_test_id("add-region").click()
    page.get_by_label("Finding").select_option("consolidation")
    page.get_by_role("button", name="Brush").click()
    page.mouse.move(*view.screen(500, 900))
    page.mouse.down()
    page.mouse.move(*view.screen(700, 1000), steps=8)
    page.mouse.up()
    page.keyboard.press("Escape")
    expect(toast(page)).to_contain_text("Press Esc again")
    page.get_by_test_id("region-save").click()
    expect(page.get_by_test_id("editor")).to_be_hidden()
    expect(toast(page)).to_be_hidden(timeout=1000)

    # The brush with no region being edited hints how to start; Ctrl+Z is the next action.
    page.keyboard.press("b")
    page.mouse.click(*view.screen(1400, 900))
    expect(toast(page)).to_contain_text("Select a region and press E")
    shot(page, "hint-shown")
    page.keyboard.press("Control+z")
    expect(toast(page)).to_be_hidden(timeout=1000)
    shot(page, "hint-gone-after-undo")

    # Left alone, a hint leaves by itself.
    page.mouse.click(*view.screen(1400, 900))
    expect(toast(page)).to_be_visible()
    page.mouse.move(*view.screen(1000, 1000))
    expect(toast(page)).to_be_hidden(timeout=6000)


def test_tool_keys_wait_while_typing_and_degenerate_regions_are_refused(page, live_server, login, shot, import_sample, make_user):
    from annotator.models import FindingRegion

    (radiograph,) = import_sample("00870a9c.jpg")  # 2000 x 2000
    radiograph = submitted(radiograph, make_user("annotator", username="ann1"))
    login(page, make_user("radiologist", username="rad1"))
    opened(page, f"{live_server.url}/review/{radiograph.id}/")
    view = View.fitted(page, 2000, 2000)
    brush = page.locator("[data-tool=brush]")
    polygon = page.locator("[data-tool=polygon]")

    page.keyboard.press("Shift+A")
    page.get_by_label("Finding").select_option("pleural_effusion")
    description = page.get_by_label("Description")
    description.click()
    description.press_sequentially("blunted angle, p")
    # Typed letters stay text: the brush is still the tool.
    expect(description).to_have_value("blunted angle, p")
    expect(brush).to_have_attribute("aria-pressed", "true")
    expect(polygon).to_have_attribute("aria-pressed", "false")

    # A click on the image takes the keyboard back (and paints nothing): P now picks the polygon.
    page.mouse.move(*view.screen(1000, 300))
    page.mouse.down()
    page.mouse.up()
    page.keyboard.press("p")
    expect(polygon).to_have_attribute("aria-pressed", "true")
    expect(description).to_have_value("blunted angle, p")

    # Two corners and Enter: not a polygon; refused with a warning, nothing drawn.
    page.mouse.click(*view.screen(300, 1400))
    page.mouse.click(*view.screen(600, 1400))
    page.keyboard.press("Enter")
    expect(toast(page)).to_contain_text("only 2 distinct points")
    page.keyboard.press("Control+s")
    expect(page.locator("#notice")).to_contain_text("no area")

    # Four clicks with the brush still on: four dots, not a region.
    page.keyboard.press("b")
    for x, y in [(300, 1400), (600, 1400), (600, 1600), (300, 1600)]:
        page.mouse.click(*view.screen(x, y))
    page.keyboard.press("Control+s")
    expect(page.locator("#notice")).to_contain_text("separate dots")
    shot(page, "dots-refused")
    assert not FindingRegion.objects.filter(radiograph=radiograph).exists()

    # A contenteditable field counts as typing too.
    page.evaluate("""() => { const d = document.createElement('div'); d.contentEditable = 'true'; d.id = 'scratch';
                      document.querySelector('#editor').append(d); }""")
    page.locator("#scratch").click()
    page.keyboard.press("p")
    expect(brush).to_have_attribute("aria-pressed", "true")

    # Undo the dots; the region outlined properly saves.
    page.locator("#scratch").evaluate("d => d.remove()")
    for _ in range(4):
        page.keyboard.press("Control+z")
    page.get_by_role("button", name="Polygon").click()
    corners = [(300, 1400), (600, 1400), (600, 1600), (300, 1600)]
    for x, y in corners + corners[:1]:
        page.mouse.click(*view.screen(x, y))
    page.get_by_test_id("region-save").click()
    expect(page.get_by_test_id("editor")).to_be_hidden()
    region = FindingRegion.objects.get(radiograph=radiograph)
    assert region.label == "pleural_effusion" and region.description == "blunted angle, p"
    assert region.area >= 0.9 * 300 * 200


def test_overlay_labels_do_not_cover_each_other(page, live_server, login, shot, import_sample, make_user):
    (radiograph,) = import_sample("00870a9c.jpg")  # 2000 x 2000
    radiograph = submitted(radiograph, make_user("annotator", username="ann1"))
    # Regions whose corners crowd the lung boxes' corners, where every label would go.
    for label, bbox in [("consolidation", [300, 400, 600, 700]), ("atelectasis", [310, 410, 700, 800]),
                        ("lung_lesion", [1100, 400, 1300, 600]), ("pleural_effusion", [1110, 395, 1500, 650]),
                        ("cardiomegaly", [880, 420, 1150, 900])]:
        suggested(radiograph, label, bbox, 0.7)
    login(page, make_user("radiologist", username="rad1"))
    opened(page, f"{live_server.url}/radiographs/{radiograph.id}/")
    canvas = page.get_by_test_id("viewer-canvas")
    expect(canvas).to_have_attribute("data-labels", re.compile(r"Cardiomegaly"))
    shot(page, "labels-apart")

    def labels():
        import json

        return json.loads(canvas.get_attribute("data-labels"))

    def apart(rects):
        for a, b in combinations(rects, 2):
            overlap = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
            assert not overlap, (a, b)

    placed = labels()
    texts = sorted(r["text"] for r in placed)
    assert len(placed) == 7, texts
    assert any(t.startswith("R · patient right") for t in texts) and any(t.startswith("Pleural effusion 70%") for t in texts)
    apart(placed)
    box = canvas.bounding_box()
    assert all(0 <= r["x"] and r["x"] + r["w"] <= box["width"] + 0.5 and 0 <= r["y"] for r in placed)

    # Zoomed out, the boxes shrink and their corners crowd each other even more.
    before = canvas.get_attribute("data-labels")
    for _ in range(3):
        page.keyboard.press("-")
    expect(canvas).not_to_have_attribute("data-labels", before)
    placed = labels()
    assert len(placed) == 7
    apart(placed)


FORBIDDEN = re.compile(r"\b(lungs_done|in_review|preannotated|AP_SUPINE|UNKNOWN|other_disease|None|undefined|NaN)\b")
# "imported" as a raw value: where a person, a source or a state belongs.
RAW_IMPORTED = re.compile(r"(?:\bby|\bfrom|Source:|→)\s*imported\b|\(imported\)|^imported$", re.MULTILINE)


def assert_human(page, where: str) -> None:
    text = page.locator("body").inner_text()
    for pattern in (FORBIDDEN, RAW_IMPORTED):
        found = pattern.search(text)
        assert not found, f"{where}: raw value {found.group(0)!r} in …{text[max(0, found.start() - 80):found.end() + 80]}…"


def test_every_page_speaks_human_words_to_every_role(page, live_server, login, shot, import_sample, make_user, model_version):
    from annotator.models import LungAnnotation, Radiograph
    from annotator.services.queues import queue_next

    first, second, third, lateral = import_sample("00870a9c.jpg", "000001-12.jpg", "16663_1_1.jpg", "000005-5-b.jpg")
    ann, rad = make_user("annotator", username="ann1"), make_user("radiologist", username="rad1")
    # Waiting for review, with labels, an AP supine view, and suggested regions.
    Radiograph.objects.filter(pk=first.pk).update(view="AP_SUPINE")
    first = submitted(first, ann, healthy="negative", covid="positive", other_disease="unknown")
    suggested(first, "interstitial_shadow", [1200, 800, 1500, 1100], 0.64, subtype="ground_glass")
    # In review (held by the radiologist).
    second = submitted(second, ann)
    # Lung boxes and a label imported with the dataset, unknown view.
    right, left = lung_boxes(third)
    LungAnnotation.objects.create(radiograph=third, version=third.version, right_box=right, left_box=left, status="submitted", source="imported")
    Radiograph.objects.filter(pk=third.pk).update(view="UNKNOWN", other_disease="positive", other_disease_source="imported")
    assert queue_next(user=rad, queue="review") is not None
    # Excluded as a lateral view.
    Radiograph.objects.filter(pk=lateral.pk).update(view="LATERAL", state="excluded", excluded_reason="lateral_view")

    visits = {
        ann: ["/annotate/", f"/annotate/{third.id}/", f"/annotate/{lateral.id}/", "/radiographs/", f"/radiographs/{first.id}/", f"/radiographs/{third.id}/"],
        rad: ["/review/", f"/review/{first.id}/", f"/radiographs/?state=lungs_done", f"/radiographs/{second.id}/"],
        make_user("admin", username="boss"): ["/manage/", "/manage/import/", "/manage/exports/", "/manage/models/", "/manage/training/",
                                              "/manage/users/", "/radiographs/", f"/radiographs/{third.id}/"],
    }
    for user, paths in visits.items():
        page.context.clear_cookies()
        login(page, user)
        for path in paths:
            page.goto(live_server.url + path)
            page.wait_for_load_state("networkidle")
            if page.locator("#history").count():
                expect(page.locator("#history")).not_to_contain_text("Loading")
                expect(page.locator("#viewer-loading")).to_have_count(0)
            assert_human(page, f"{user.username} {path}")
            shot(page, f"words-{user.username}-{path.strip('/').replace('/', '-').replace('?', '-') or 'home'}")

    # What the annotator was told about the imported boxes, and the labels' provenance.
    page.context.clear_cookies()
    login(page, ann)
    page.goto(f"{live_server.url}/annotate/{third.id}/")
    expect(page.locator("#boxes-source")).to_have_text(re.compile(r"^Imported with the dataset"))
    expect(page.locator("[data-source=other_disease]")).to_have_text("Source: Imported with the dataset")
    page.goto(f"{live_server.url}/annotate/{lateral.id}/")
    expect(page.locator("#notice")).to_contain_text("This radiograph is excluded")
    expect(page.locator("#view option:checked")).to_have_text("Lateral")
    page.goto(f"{live_server.url}/radiographs/{first.id}/")
    expect(page.get_by_test_id("state")).to_have_text("Waiting for review")
    expect(page.locator(".kv")).to_contain_text("AP supine")
    expect(page.get_by_test_id("history")).to_contain_text("COVID: yes")


def test_dashboard_throughput_fits_its_card_at_1280(page, live_server, login, shot, import_sample, make_user):
    from annotator.services.workflow import annotation_save

    radiographs = import_sample("00870a9c.jpg", "000001-12.jpg")
    for i, radiograph in enumerate(radiographs):
        right, left = lung_boxes(radiograph)
        annotation_save(radiograph_id=radiograph.id, user=make_user("annotator", username=f"annotator-with-a-long-name-{i}"),
                        version=radiograph.version, right=right, left=left, submit=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    login(page, make_user("admin", username="boss"))
    table = page.get_by_test_id("throughput")
    expect(table).to_be_visible()
    shot(page, "dashboard-1280", full_page=True)
    sizes = table.evaluate("""t => { const card = t.closest('.card'); const wrap = t.parentElement;
        return {table: t.getBoundingClientRect().right, card: card.getBoundingClientRect().right,
                scroll: wrap.scrollWidth, client: wrap.clientWidth}; }""")
    assert sizes["scroll"] <= sizes["client"], sizes
    assert sizes["table"] <= sizes["card"], sizes


def test_rollback_is_offered_only_when_there_is_a_model_to_go_back_to(page, live_server, login, make_user, model_version):
    from django.core.files.base import ContentFile
    from inference.models import ModelVersion
    from inference.services.registry import model_version_activate

    login(page, make_user("admin", username="boss"))
    rollback = page.get_by_test_id("rollback")
    page.goto(f"{live_server.url}/manage/models/")
    expect(page.get_by_test_id(f"model-{model_version.id}")).to_be_visible()
    expect(rollback).to_be_disabled()  # registered, none active

    model_version_activate(model_version_id=model_version.id, preannotate=False)
    page.reload()
    expect(page.get_by_test_id(f"model-{model_version.id}")).to_contain_text("active")
    expect(rollback).to_be_disabled()  # active, but it replaced nothing
    expect(rollback).to_have_attribute("title", re.compile("nothing to roll back to"))

    second = ModelVersion(name="cmtnet-test-2", sha256="2" * 64, metrics={})
    second.checkpoint.save("cmtnet-test-2.pt", ContentFile(b"not a real checkpoint"), save=False)
    second.save()
    model_version_activate(model_version_id=second.id, preannotate=False)
    page.reload()
    expect(rollback).to_be_enabled()
    expect(rollback).to_have_attribute("title", "Make cmtnet-test-1 active again")
