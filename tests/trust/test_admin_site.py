"""The Django admin, as a superuser, answers hostile queries and ids with 2xx/3xx/4xx, never a
server error (the no-5xx crawl of the app's own routes leaves it out)."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client

from tests.annotator.factories import RadiographFactory, region_for

pytestmark = pytest.mark.django_db

HUGE = str(10**30)
QUERIES = [
    "q=%00",
    "q=" + "x" * 5000,
    "o=%00",
    "o=99.-42",
    f"p={HUGE}",
    "p=-1",
    "id__exact=%00",
    f"id__exact={HUGE}",
    "dataset__id__exact=x",
    "state__exact=%00",
    "covid__exact=maybe",
    "created_at__gte=not-a-date",
    "nope=1",
    "%FF%FE=%FF",
]
OBJECT_IDS = ["999999", HUGE, "-1", "%00", "x"]


@pytest.fixture
def superuser_client(django_user_model):
    user = django_user_model.objects.create_superuser(username="site-admin", password="x" * 16)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.timeout(180)
def test_no_admin_page_gives_a_server_error(superuser_client):
    radiograph = RadiographFactory()
    region_for(radiograph)
    failures, requests = [], 0
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        first = model.objects.order_by("pk").values_list("pk", flat=True).first()
        paths = [f"{base}?{query}" for query in ["", *QUERIES]] + [f"{base}add/"]
        paths += [f"{base}{pk}/change/" for pk in ([first] if first is not None else []) + OBJECT_IDS]
        paths += [f"{base}{pk}/history/" for pk in OBJECT_IDS[:2]]
        for path in paths:
            requests += 1
            response = superuser_client.get(path)
            if response.status_code >= 500:
                failures.append(f"GET {path} -> {response.status_code}")
        for body in ({"action": "delete_selected", "_selected_action": ["%00", HUGE]}, {"action": "\x00", "index": "x"}):
            requests += 1
            response = superuser_client.post(base, body)
            if response.status_code >= 500:
                failures.append(f"POST {base} {body} -> {response.status_code}")
    assert requests > 100, requests
    assert not failures, f"{len(failures)} of {requests} requests answered 5xx:\n" + "\n".join(failures[:60])


def test_a_list_action_on_a_real_selection_still_runs(superuser_client):
    radiograph = RadiographFactory()
    base = "/admin/annotator/radiograph/"
    garbled = superuser_client.post(base, {"action": "delete_selected", "_selected_action": [str(radiograph.pk), "x"]})
    assert garbled.status_code == 400 and b"not one of this list" in garbled.content
    confirm = superuser_client.post(base, {"action": "delete_selected", "_selected_action": [str(radiograph.pk)]})
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    assert type(radiograph).objects.filter(pk=radiograph.pk).exists()
