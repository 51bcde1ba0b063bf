"""Server-rendered pages: who may open which, where each role lands, and that every page keeps to
the strict Content-Security-Policy (no inline script or style)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from annotator.constants import FindingLabel

PASSWORD = "correct-horse-battery-staple"
STATIC_PAGES = ["/annotate/", "/review/", "/radiographs/", "/manage/", "/manage/import/", "/manage/exports/", "/manage/models/", "/manage/training/", "/manage/users/"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def pages_for(radiograph_id: int) -> list[str]:
    return [*STATIC_PAGES, f"/annotate/{radiograph_id}/", f"/review/{radiograph_id}/", f"/radiographs/{radiograph_id}/"]


class InlineFinder(HTMLParser):
    """Collects what the CSP would block: inline scripts, style attributes, <style> blocks."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "style" in attrs:
            self.problems.append(f"style attribute on <{tag}>")
        if any(name.startswith("on") for name in attrs):
            self.problems.append(f"inline handler on <{tag}>")
        if tag == "style":
            self.problems.append("<style> block")
        if tag == "script":
            self.scripts.append(attrs)
            if "src" not in attrs and attrs.get("type") != "application/json":
                self.problems.append("inline <script>")


@pytest.fixture
def radiograph_id(sample_import) -> int:
    return sample_import["report"].radiograph_ids[0]


def test_pages_send_anonymous_visitors_to_sign_in(db, radiograph_id):
    client = Client()
    for url in ["/", *pages_for(radiograph_id)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_each_role_lands_on_its_own_home(make_user):
    for role, home in (("annotator", "/annotate/"), ("radiologist", "/review/"), ("admin", "/manage/")):
        response = client_for(make_user(role, username=f"home-{role}")).get("/")
        assert response.status_code == 302 and response["Location"] == home, role
    response = client_for(make_user(None, username="nobody")).get("/")
    assert response.status_code == 403
    assert b"No role yet" in response.content


def test_roles_see_only_their_pages(make_user, radiograph_id):
    allowed = {
        "annotator": {"/annotate/", "/radiographs/", f"/annotate/{radiograph_id}/", f"/radiographs/{radiograph_id}/"},
        "radiologist": {"/annotate/", "/review/", "/radiographs/", f"/annotate/{radiograph_id}/", f"/review/{radiograph_id}/", f"/radiographs/{radiograph_id}/"},
        "admin": set(pages_for(radiograph_id)),
    }
    for role, urls in allowed.items():
        client = client_for(make_user(role, username=f"see-{role}"))
        for url in pages_for(radiograph_id):
            status = client.get(url).status_code
            assert status == (200 if url in urls else 403), (role, url, status)


def test_no_page_needs_inline_script_or_style(admin_user, radiograph_id):
    client = client_for(admin_user)
    for url in [*pages_for(radiograph_id)]:
        response = client.get(url)
        assert response.status_code == 200, url
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        finder = InlineFinder()
        finder.feed(response.content.decode())
        assert not finder.problems, (url, finder.problems)
    login = Client().get("/accounts/login/")
    finder = InlineFinder()
    finder.feed(login.content.decode())
    assert login.status_code == 200 and not finder.problems


def test_workspace_pages_carry_their_config_and_modules(make_user, radiograph_id):
    client = client_for(make_user("radiologist", username="cfg"))
    html = client.get(f"/review/{radiograph_id}/").content.decode()
    config = json.loads(re.search(r'<script id="workspace-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert config["id"] == radiograph_id and config["mode"] == "review" and config["user"] == "cfg"
    assert config["urls"]["annotation"] == f"/api/radiographs/{radiograph_id}/annotation/"
    assert [v for v, _ in config["vocab"]["findings"]] == [v for v in FindingLabel.values if v != "unknown"]
    assert [v for v, _ in config["vocab"]["subtypes"]] == ["reticular", "nodular", "ground_glass"]
    assert '<script type="module" src="/static/js/pages/review.js">' in html
    assert "Keyboard shortcuts" in html


@pytest.mark.parametrize("url", ["/annotate/", "/review/", "/manage/import/", "/manage/exports/", "/manage/models/", "/manage/training/"])
def test_forms_run_by_scripts_cannot_be_submitted_before_their_script_has_loaded(admin_user, url):
    """A click before the module binds its handler would submit the form natively (a reload that
    drops the action): such buttons come disabled and the module enables them (``armForm``)."""
    html = client_for(admin_user).get(url).content.decode()
    (form,) = re.findall(r'<form[^>]*id="(?:queue|import|upload|train|export)-form".*?</form>', html, flags=re.S)
    buttons = re.findall(r'<button[^>]*type="submit"[^>]*>', form)
    assert buttons and all("disabled" in b and "data-needs-js" in b for b in buttons), buttons


def test_every_static_module_the_pages_import_exists():
    """ES modules are not bundled: a broken relative import would only show in a browser."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "static" / "js"
    for module in root.rglob("*.js"):
        for target in re.findall(r'from\s+"(\.{1,2}/[^"]+)"|import\("(\.{1,2}/[^"]+)"\)', module.read_text()):
            path = (module.parent / (target[0] or target[1])).resolve()
            assert path.is_file(), f"{module.relative_to(root)} imports missing {target[0] or target[1]}"


def test_admin_creates_users_and_changes_roles(admin_user):
    from django.contrib.auth import get_user_model

    client = client_for(admin_user)
    response = client.post("/manage/users/", {"action": "create", "username": "newbie", "password": "a-long-enough-passphrase", "roles": ["annotator"]}, follow=True)
    assert b"User newbie created." in response.content
    newbie = get_user_model().objects.get(username="newbie")
    assert list(newbie.groups.values_list("name", flat=True)) == ["annotator"]
    assert newbie.check_password("a-long-enough-passphrase")

    client.post("/manage/users/", {"action": "update", "user": newbie.pk, "roles": ["radiologist"], "is_active": "on"})
    assert list(newbie.groups.values_list("name", flat=True)) == ["radiologist"]
    client.post("/manage/users/", {"action": "update", "user": newbie.pk, "roles": []})
    newbie.refresh_from_db()
    assert not newbie.is_active and not newbie.groups.exists()

    response = client.post("/manage/users/", {"action": "create", "username": "weak", "password": "password"}, follow=True)
    assert not get_user_model().objects.filter(username="weak").exists()
    assert b"too common" in response.content or b"too short" in response.content


def test_admin_cannot_lock_themselves_out(admin_user):
    response = client_for(admin_user).post("/manage/users/", {"action": "update", "user": admin_user.pk, "roles": ["annotator"], "is_active": "on"}, follow=True)
    assert b"cannot remove your own admin role" in response.content
    assert admin_user.groups.filter(name="admin").exists()


def test_queues_show_what_waits(make_user, sample_import):
    from annotator.models import Radiograph

    waiting = Radiograph.objects.filter(state__in=["imported", "preannotated", "returned"]).count()
    html = client_for(make_user("annotator", username="q")).get("/annotate/").content.decode()
    assert re.search(rf'data-testid="queue-total">{waiting}<', html)
    html = client_for(make_user("radiologist", username="r")).get("/review/?order=uncertainty").content.decode()
    assert "Most uncertain first" in html


def test_dashboard_counts_progress_per_dataset(admin_user, sample_import):
    from annotator.models import Radiograph

    html = client_for(admin_user).get("/manage/").content.decode()
    total = Radiograph.objects.filter(dataset__name="sample").count()
    row = re.search(r'<td><a href="/radiographs/\?dataset=sample">sample</a></td>(.*?)</tr>', html, re.S).group(1)
    assert re.search(rf'<td class="num">{total}</td>', row)


def test_dashboard_agreement_compares_two_peoples_boxes_masks_and_labels(admin_user, make_user, sample_import):
    import io as _io

    import numpy as np
    from PIL import Image

    from annotator.models import FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph, ReviewEvent

    def png(width, height):
        buf = _io.BytesIO()
        Image.fromarray(np.full((height, width), 255, dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    radiograph = Radiograph.objects.get(pk=sample_import["report"].radiograph_ids[1])
    one, two = make_user("radiologist", username="ra"), make_user("radiologist", username="rb")
    for person, right, labels in ((one, [0, 0, 20, 20], {"healthy": "negative", "covid": "positive", "other_disease": "unknown"}),
                                  (two, [0, 0, 20, 10], {"healthy": "negative", "covid": "negative", "other_disease": "unknown"})):
        LungAnnotation.objects.create(radiograph=radiograph, version=99, right_box=right, left_box=[30, 0, 50, 20], status="submitted", source="radiologist", author=person)
        ReviewEvent.objects.create(radiograph=radiograph, actor=person, action="submitted", data={"labels": labels})
    region = FindingRegion.objects.create(radiograph=radiograph, label="consolidation", status="accepted", source="model", bbox=[0, 0, 10, 10], mask_png=png(10, 10), area=100)
    FindingRegionRevision.objects.create(region=region, version=2, label="consolidation", status="accepted", bbox=[0, 0, 10, 10], mask_png=png(10, 10), author=one)
    FindingRegionRevision.objects.create(region=region, version=3, label="consolidation", status="accepted", bbox=[5, 0, 15, 10], mask_png=png(10, 10), author=two)

    html = client_for(admin_user).get("/manage/").content.decode()
    row = re.search(r"<tr><td>ra · rb</td>(.*?)</tr>", html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells == ["1", "0.50", "1.00", "0.86", "0.50", "67%"]  # IoU R, IoU L, lung Dice 2*600/1400, mask Dice 2*50/200
