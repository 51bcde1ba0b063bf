"""A radiograph a colleague has open: the page says who holds it and offers no editing, and a save
sent anyway (the lease taken after the page opened) is refused with the holder's name."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from .test_conflict import open_as

pytestmark = pytest.mark.browser


def test_a_colleagues_live_lease_makes_the_page_read_only_and_names_them(browser, live_server, shot, import_sample, make_user):
    from annotator.models import LungAnnotation, Radiograph

    (radiograph,) = import_sample("00870a9c.jpg")
    holder = make_user("annotator", username="alice")
    colleague = make_user("annotator", username="bob")
    Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=holder, lease_expires_at=timezone.now() + timedelta(minutes=5))

    page = open_as(browser, live_server, colleague, radiograph.id)
    notice = page.locator("#notice")
    expect(notice).to_contain_text("alice holds this radiograph")
    expect(page.get_by_label("COVID")).to_be_disabled()
    shot(page, "lease-held")
    # Nothing the page did took the lease from its holder.
    assert Radiograph.objects.get(pk=radiograph.pk).leased_to_id == holder.id
    page.context.close()

    # The lease runs out: the colleague's page opens for editing; the holder takes it back meanwhile,
    # and the colleague's save is refused, naming her; nothing of it is stored.
    Radiograph.objects.filter(pk=radiograph.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    page = open_as(browser, live_server, colleague, radiograph.id)
    expect(page.get_by_label("COVID")).to_be_enabled()
    Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=holder, lease_expires_at=timezone.now() + timedelta(minutes=5))
    page.get_by_label("COVID").select_option("negative")
    state = page.get_by_test_id("save-state")
    expect(state).to_have_attribute("data-status", "error")
    expect(state).to_contain_text("alice holds this radiograph")
    stored = Radiograph.objects.get(pk=radiograph.pk)
    assert (stored.version, stored.covid, stored.leased_to_id) == (radiograph.version, radiograph.covid, holder.id)
    assert not LungAnnotation.objects.filter(radiograph=radiograph, author=colleague).exists()
    page.context.close()
