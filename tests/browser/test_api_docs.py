"""The API docs: served by the app itself under its content security policy, for signed-in users only."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_signed_in_user_reads_the_api_docs_without_csp_violations(page, live_server, login, shot, make_user, _fail_on_page_errors):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    login(page, make_user("annotator", username="docs-reader"))
    page.goto(f"{live_server.url}/api/docs/")
    # Operations rendered from the schema, grouped by tag.
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/radiographs/{radiograph_id}/annotation/").first).to_be_visible()
    page.locator(".opblock-summary-path", has_text="/api/imports/").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    shot(page, "api-docs")
    assert len(page.locator(".opblock").all()) >= 20
    foreign = [url for url in requests if not url.startswith(live_server.url) and not url.startswith("data:")]
    assert not foreign, f"the docs page loaded assets from elsewhere: {foreign}"
    # _fail_on_page_errors fails the test on any CSP violation or script error.
    assert not _fail_on_page_errors


def test_signed_out_visitors_are_sent_to_the_login_page(page, live_server):
    page.goto(f"{live_server.url}/api/docs/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/api/docs/$"))
    response = page.request.get(f"{live_server.url}/api/schema/")
    assert response.status in (401, 403)
    assert "openapi" not in response.text()
