"""SQL per request on the benchmark's hot paths, through the real token authentication
(Label Studio issues 73 queries per save and 45 per next-task request; Lungmark's budget is 10)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator.models import Radiograph
from tests.annotator.factories import RadiographFactory, region_for

from .conftest import LEFT, RIGHT, token_client

BUDGET = 10


def counted(call):
    with CaptureQueriesContext(connection) as queries:
        response = call()
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    return response, statements


@pytest.mark.django_db
def test_the_annotator_loop_stays_within_the_query_budget(make_user):
    for _ in range(30):  # a queue with something in it, and more than one candidate to skip over
        RadiographFactory()
    Radiograph.objects.filter(pk__in=Radiograph.objects.order_by("id").values("pk")[:3]).update(state="returned")
    client = token_client(make_user("annotator", username="budget-ann"))
    for _ in range(3):
        lease, next_sql = counted(lambda: client.post("/api/queue/annotate/next/", {}, format="json"))
        assert lease.status_code == 200 and len(next_sql) <= BUDGET, next_sql
        body = {"version": lease.json()["version"], "right": RIGHT, "left": LEFT, "labels": {"covid": "positive"}, "submit": True}
        saved, save_sql = counted(lambda: client.put(f"/api/radiographs/{lease.json()['id']}/annotation/", body, format="json"))
        assert saved.status_code == 200 and len(save_sql) <= BUDGET, save_sql


@pytest.mark.django_db
def test_the_radiologist_loop_stays_within_the_query_budget(make_user):
    radiograph = RadiographFactory()
    token_client(make_user("annotator", username="budget-ann2")).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "left": LEFT, "submit": True}, format="json"
    )
    region = region_for(radiograph)
    client = token_client(make_user("radiologist", username="budget-rad"))
    lease, sql = counted(lambda: client.post("/api/queue/review/next/", {}, format="json"))
    assert lease.status_code == 200 and len(sql) <= BUDGET, sql
    detail, sql = counted(lambda: client.get(f"/api/radiographs/{radiograph.id}/"))
    assert detail.status_code == 200 and len(sql) <= BUDGET, sql
    decided, sql = counted(lambda: client.post(f"/api/regions/{region.id}/accept/", {"version": 1}, format="json"))
    assert decided.status_code == 200 and len(sql) <= BUDGET, sql
    accepted, sql = counted(lambda: client.post(f"/api/radiographs/{radiograph.id}/accept/", {"version": detail.json()["version"]}, format="json"))
    assert accepted.status_code == 200 and len(sql) <= BUDGET + 3, sql  # the final decision writes the truth and its record
