"""No lost edits: concurrent saves against real PostgreSQL, append-only history, read-only accepted work.

(``tests/annotator/test_workflow.py`` covers the single-client 409/428 answers and the review flow;
these tests add what only real concurrency and the full history show.)
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from annotator.models import FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph, ReviewEvent
from tests.annotator.factories import RadiographFactory, region_for

from .conftest import LEFT, RIGHT, token_client

THREADS = 8


def run_together(calls) -> list:
    """Run each call in its own thread (own database connection), released at the same instant."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:  # reported by the test, not lost in the thread
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a concurrent save hung"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_one_version_store_exactly_one(make_user):
    radiograph = RadiographFactory()
    users = [make_user("annotator", username=f"racer{i}") for i in range(THREADS)]
    clients = [token_client(user) for user in users]
    boxes = [[10 + i, 20, 90, 140] for i in range(THREADS)]

    def save(i):
        return lambda: clients[i].put(
            f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": boxes[i], "left": LEFT}, format="json"
        )

    responses = run_together([save(i) for i in range(THREADS)])
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: THREADS - 1}, codes
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    # Every loser is told who won: the 409 carries the stored state, which is the winner's boxes.
    for response in responses:
        if response.status_code == 409:
            assert response.json()["current"]["version"] == 2
            assert response.json()["current"]["lungs"]["right"] == boxes[winner]
    radiograph.refresh_from_db()
    assert radiograph.version == 2 and radiograph.leased_to_id == users[winner].id
    assert list(LungAnnotation.objects.filter(radiograph=radiograph).values_list("right_box", flat=True)) == [boxes[winner]]
    assert ReviewEvent.objects.filter(radiograph=radiograph, action="saved").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_on_one_region_version_keep_exactly_one(make_user, annotator):
    radiograph = RadiographFactory()
    token_client(annotator).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "left": LEFT, "submit": True}, format="json"
    )
    region = region_for(radiograph)
    clients = [token_client(make_user("radiologist", username=f"rad-racer{i}")) for i in range(THREADS)]
    decisions = ["accept" if i % 2 else "reject" for i in range(THREADS)]

    def decide(i):
        return lambda: clients[i].post(f"/api/regions/{region.id}/{decisions[i]}/", {"version": 1}, format="json")

    responses = run_together([decide(i) for i in range(THREADS)])
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: THREADS - 1}, codes
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    region.refresh_from_db()
    assert region.version == 2 and region.status == {"accept": "accepted", "reject": "rejected"}[decisions[winner]]
    assert list(FindingRegionRevision.objects.filter(region=region).values_list("version", "status")) == [
        (1, "suggested"),
        (2, region.status),
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_queue_requests_never_hand_out_one_radiograph_twice(make_user):
    radiographs = [RadiographFactory() for _ in range(THREADS - 2)]
    clients = [token_client(make_user("annotator", username=f"queuer{i}")) for i in range(THREADS)]
    responses = run_together([(lambda c=c: c.post("/api/queue/annotate/next/", {}, format="json")) for c in clients])
    handed = [r.json()["id"] for r in responses if r.status_code == 200]
    assert sorted(handed) == sorted(r.id for r in radiographs)  # each one exactly once
    assert Counter(r.status_code for r in responses)[204] == 2  # the queue ran dry for the last two


@pytest.mark.django_db
def test_review_events_cannot_be_changed_or_deleted(reviewed_work):
    events = list(ReviewEvent.objects.filter(radiograph=reviewed_work["accepted"]))
    assert [e.action for e in events] == ["submitted", "region_accepted", "accepted"]
    event = events[-1]
    event.action = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    # Nor through the API: the history is read-only for every role.
    admin = reviewed_work["radiologist"]
    client = token_client(admin)
    url = f"/api/radiographs/{reviewed_work['accepted'].id}/events/"
    for method in ("put", "patch", "delete", "post"):
        assert getattr(client, method)(url, {}, format="json").status_code in (403, 405)
    assert ReviewEvent.objects.get(pk=event.pk).action == "accepted"


@pytest.mark.django_db
def test_history_keeps_the_suggestion_every_edit_and_the_final_mask(client_for, annotator, radiologist):
    """The model's suggestion, each annotator save, each radiologist edit and the accepted result all
    remain readable after acceptance, each with its own version."""
    import base64

    import numpy as np

    from tests.annotator.factories import png

    radiograph = RadiographFactory()
    LungAnnotation.objects.create(
        radiograph=radiograph, version=1, right_box=[0, 0, 50, 50], left_box=[100, 0, 150, 50], status="suggested", source="model"
    )
    region = region_for(radiograph, bbox=(20, 30, 60, 70))
    ann, rad = client_for(annotator), client_for(radiologist)
    v = radiograph.version
    for right in ([5, 20, 90, 140], [10, 20, 90, 140]):
        response = ann.put(f"/api/radiographs/{radiograph.id}/annotation/", {"version": v, "right": right, "left": LEFT}, format="json")
        assert response.status_code == 200
        v = response.json()["version"]
    assert ann.put(f"/api/radiographs/{radiograph.id}/annotation/", {"version": v, "right": RIGHT, "left": LEFT, "submit": True}, format="json").status_code == 200
    assert rad.post("/api/queue/review/next/", {}, format="json").json()["id"] == radiograph.id
    masks = []
    for version, rows in ((1, slice(0, 20)), (2, slice(0, 10))):
        mask = np.zeros((40, 40), np.uint8)
        mask[rows] = 255
        masks.append(mask)
        response = rad.patch(
            f"/api/regions/{region.id}/",
            {"version": version, "bbox": [20, 30, 60, 70], "mask": base64.b64encode(png(mask)).decode()},
            format="json",
        )
        assert response.status_code == 200, response.content
    radiograph.refresh_from_db()
    assert rad.post(f"/api/radiographs/{radiograph.id}/accept/", {"version": radiograph.version}, format="json").status_code == 200

    lungs = list(LungAnnotation.objects.filter(radiograph=radiograph).order_by("version", "id").values_list("source", "status", "right_box"))
    assert lungs[0] == ("model", "suggested", [0, 0, 50, 50])
    assert [row[2] for row in lungs[1:3]] == [[5, 20, 90, 140], [10, 20, 90, 140]]
    assert lungs[-2][:2] == ("annotator", "submitted") and lungs[-1][:2] == ("radiologist", "accepted")
    revisions = list(FindingRegionRevision.objects.filter(region=region).order_by("version"))
    assert [(r.version, r.status) for r in revisions] == [(1, "suggested"), (2, "accepted"), (3, "accepted")]
    assert [r.bbox for r in revisions] == [[20, 30, 60, 70], [20, 30, 60, 50], [20, 30, 60, 40]]
    # The suggestion's full mask is still there next to the final one.
    assert revisions[0].mask_png != revisions[2].mask_png and bytes(revisions[2].mask_png) == bytes(FindingRegion.objects.get(pk=region.pk).mask_png)
    actions = list(ReviewEvent.objects.filter(radiograph=radiograph).values_list("action", flat=True))
    assert actions.count("saved") == 2 and actions.count("region_edited") == 2 and actions[-1] == "accepted"


@pytest.mark.django_db
def test_accepted_work_is_read_only_to_annotators(reviewed_work, make_user):
    accepted = reviewed_work["accepted"]
    region = reviewed_work["region"]
    before = (accepted.version, accepted.state, list(LungAnnotation.objects.filter(radiograph=accepted).values_list("pk", flat=True)))
    client = token_client(make_user("annotator", username="late-annotator"))
    url = f"/api/radiographs/{accepted.id}"
    attempts = {
        "save": client.put(f"{url}/annotation/", {"version": accepted.version, "right": LEFT, "left": RIGHT}, format="json"),
        "submit": client.put(f"{url}/annotation/", {"version": accepted.version, "right": LEFT, "left": RIGHT, "submit": True}, format="json"),
        "exclude": client.post(f"{url}/exclude/", {"version": accepted.version, "reason": "unreadable"}, format="json"),
        "edit region": client.patch(f"/api/regions/{region.id}/", {"version": region.version + 1, "status": "rejected"}, format="json"),
        "reject region": client.post(f"/api/regions/{region.id}/reject/", {"version": region.version + 1}, format="json"),
        "add region": client.post(f"{url}/regions/", {"label": "atelectasis", "bbox": [0, 0, 4, 4], "mask": "x"}, format="json"),
    }
    for name, response in attempts.items():
        assert response.status_code in (403, 409), (name, response.status_code, response.content)
    assert attempts["save"].json()["code"] == "invalid_transition"
    assert client.post("/api/queue/annotate/next/", {}, format="json").status_code in (200, 204)
    accepted.refresh_from_db()
    after = (accepted.version, accepted.state, list(LungAnnotation.objects.filter(radiograph=accepted).values_list("pk", flat=True)))
    assert after == before
    assert Radiograph.objects.get(pk=accepted.pk).leased_to_id is None  # the queue does not hand it out
    # Even a radiologist cannot change regions of accepted work any more.
    radiologist = token_client(reviewed_work["radiologist"])
    region.refresh_from_db()
    response = radiologist.post(f"/api/regions/{region.id}/reject/", {"version": region.version}, format="json")
    assert response.status_code == 409 and FindingRegion.objects.get(pk=region.pk).status == "accepted"
