"""The annotation and review workflow through the REST API: versions, leases, decisions."""
from __future__ import annotations

import base64
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone
from django.test.utils import CaptureQueriesContext

from annotator.models import FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph, ReviewEvent

from .factories import RadiographFactory, png, region_for

RIGHT = [10, 20, 90, 140]
LEFT = [110, 20, 190, 140]


def _b64_mask(h: int, w: int, fill_rows: slice = slice(None)) -> str:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[fill_rows] = 255
    return base64.b64encode(png(mask)).decode()


@pytest.mark.django_db
def test_annotator_saves_and_submits_with_versions(client_for, annotator):
    radiograph = RadiographFactory()
    client = client_for(annotator)
    detail = client.get(f"/api/radiographs/{radiograph.id}/").json()
    response = client.put(
        f"/api/radiographs/{radiograph.id}/annotation/",
        {"version": detail["version"], "right": RIGHT, "left": LEFT, "labels": {"covid": "positive"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    saved = response.json()
    assert saved["version"] == detail["version"] + 1
    assert saved["lungs"]["right"] == RIGHT and saved["labels"]["covid"] == "positive"
    response = client.put(
        f"/api/radiographs/{radiograph.id}/annotation/",
        {"version": saved["version"], "right": RIGHT, "left": LEFT, "submit": True},
        format="json",
    )
    assert response.status_code == 200
    radiograph.refresh_from_db()
    assert radiograph.state == "lungs_done" and radiograph.annotated_by == annotator
    assert radiograph.covid == "positive" and radiograph.covid_source == "annotator"
    assert list(LungAnnotation.objects.filter(radiograph=radiograph).values_list("status", flat=True)) == ["submitted", "draft"]
    assert ReviewEvent.objects.filter(radiograph=radiograph, action="submitted", actor=annotator).exists()


@pytest.mark.django_db
def test_stale_save_gets_409_with_current_state_and_missing_version_428(client_for, annotator, make_user):
    radiograph = RadiographFactory()
    other = make_user("annotator", username="ann2")
    first = client_for(annotator).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "left": LEFT}, format="json"
    )
    assert first.status_code == 200
    stale = client_for(other).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": LEFT, "left": RIGHT}, format="json"
    )
    assert stale.status_code == 409
    body = stale.json()
    assert body["code"] == "stale_version" and "reload" in body["detail"].lower()
    assert body["current"]["lungs"]["right"] == RIGHT and body["current"]["version"] == 2
    missing = client_for(other).put(f"/api/radiographs/{radiograph.id}/annotation/", {"right": RIGHT}, format="json")
    assert missing.status_code == 428 and missing.json()["code"] == "version_required"
    # The refused saves changed nothing.
    assert LungAnnotation.objects.filter(radiograph=radiograph).count() == 1


@pytest.mark.django_db
def test_bad_boxes_are_refused_clearly(client_for, annotator):
    radiograph = RadiographFactory()
    client = client_for(annotator)
    for bad in ([0, 0, 0, 0], [500, 500, 600, 600], [1, 2, 3], ["a", 1, 2, 3]):
        response = client.put(f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": bad}, format="json")
        assert response.status_code == 400, bad
        assert response.json()["code"] == "invalid_input"
    submit_one = client.put(f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "submit": True}, format="json")
    assert submit_one.status_code == 400 and "both lung boxes" in submit_one.json()["detail"]


@pytest.mark.django_db
def test_save_uses_few_queries(client_for, annotator):
    radiograph = RadiographFactory()
    client = client_for(annotator)
    with CaptureQueriesContext(connection) as queries:
        response = client.put(
            f"/api/radiographs/{radiograph.id}/annotation/",
            {"version": 1, "right": RIGHT, "left": LEFT, "labels": {"covid": "negative"}},
            format="json",
        )
    assert response.status_code == 200
    assert len(queries) <= 10, [q["sql"][:80] for q in queries]


@pytest.mark.django_db
def test_queue_leases_are_exclusive_and_expire(client_for, make_user, settings):
    first = RadiographFactory()
    second = RadiographFactory(dataset=first.dataset)
    queue = {"dataset": first.dataset.name}
    a, b, c = (make_user("annotator", username=f"q{i}") for i in range(3))
    got_a = client_for(a).post("/api/queue/annotate/next/", queue, format="json").json()["id"]
    got_b = client_for(b).post("/api/queue/annotate/next/", queue, format="json").json()["id"]
    assert {got_a, got_b} == {first.id, second.id}
    # Asking again resumes the same lease.
    assert client_for(a).post("/api/queue/annotate/next/", queue, format="json").json()["id"] == got_a
    assert client_for(c).post("/api/queue/annotate/next/", queue, format="json").status_code == 204
    # An abandoned lease expires.
    Radiograph.objects.filter(pk=got_a).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert client_for(c).post("/api/queue/annotate/next/", queue, format="json").json()["id"] == got_a


@pytest.mark.django_db
def test_annotate_queue_hands_out_returned_then_preannotated_then_imported_oldest_first(client_for, make_user):
    imported = RadiographFactory(state="imported")
    dataset = imported.dataset
    older_pre, newer_pre = (RadiographFactory(dataset=dataset, state="preannotated") for _ in range(2))
    returned = RadiographFactory(dataset=dataset, state="returned")
    done = RadiographFactory(dataset=dataset, state="lungs_done")
    queue = {"dataset": dataset.name}
    order = [client_for(make_user("annotator", username=f"order{i}")).post("/api/queue/annotate/next/", queue, format="json").json()["id"] for i in range(4)]
    assert order == [returned.id, older_pre.id, newer_pre.id, imported.id]
    assert done.id not in order
    assert client_for(make_user("annotator", username="order-late")).post("/api/queue/annotate/next/", queue, format="json").status_code == 204


@pytest.mark.django_db
def test_an_open_radiograph_keeps_its_lease_and_a_colleagues_live_lease_is_not_taken(client_for, make_user):
    radiograph = RadiographFactory(state="preannotated")
    queue = {"dataset": radiograph.dataset.name}
    a, b, c = (make_user("annotator", username=f"lease{i}") for i in range(3))
    assert client_for(a).post("/api/queue/annotate/next/", queue, format="json").json()["id"] == radiograph.id
    soon = timezone.now() + timedelta(seconds=30)  # a's lease is about to run out
    Radiograph.objects.filter(pk=radiograph.pk).update(lease_expires_at=soon)
    version = Radiograph.objects.get(pk=radiograph.pk).version

    renewed = client_for(a).post(f"/api/radiographs/{radiograph.id}/lease/", {}, format="json")
    assert renewed.status_code == 200 and renewed.json()["leased_to"] == "lease0"
    held = Radiograph.objects.get(pk=radiograph.pk)
    assert held.leased_to == a and held.lease_expires_at > soon + timedelta(seconds=60) and held.version == version
    refused = client_for(b).post(f"/api/radiographs/{radiograph.id}/lease/", {}, format="json")
    assert refused.status_code == 409 and "lease0" in refused.json()["detail"]
    assert client_for(b).get(f"/api/radiographs/{radiograph.id}/").json()["leased_to"] == "lease0"

    # Once a's lease has run out, b may hold it; the queue then hands it to nobody else.
    Radiograph.objects.filter(pk=radiograph.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert client_for(b).get(f"/api/radiographs/{radiograph.id}/").json()["leased_to"] is None
    assert client_for(b).post(f"/api/radiographs/{radiograph.id}/lease/", {}, format="json").status_code == 200
    assert client_for(c).post("/api/queue/annotate/next/", queue, format="json").status_code == 204


@pytest.mark.django_db
def test_a_radiograph_in_no_queue_cannot_be_leased(client_for, annotator):
    accepted = RadiographFactory(state="accepted")
    response = client_for(annotator).post(f"/api/radiographs/{accepted.id}/lease/", {}, format="json")
    assert response.status_code == 409 and "no queue" in response.json()["detail"]
    assert client_for(annotator).post("/api/radiographs/999999/lease/", {}, format="json").status_code == 404


@pytest.mark.django_db
def test_who_may_edit_a_radiograph_in_its_state_may_hold_it(client_for, make_user, annotator, radiologist):
    submitted = RadiographFactory(state="lungs_done")  # an annotator may still correct it
    in_review = RadiographFactory(dataset=submitted.dataset, state="in_review")
    assert client_for(annotator).post(f"/api/radiographs/{submitted.id}/lease/", {}, format="json").status_code == 200
    assert client_for(annotator).post(f"/api/radiographs/{in_review.id}/lease/", {}, format="json").status_code == 403
    assert client_for(radiologist).post(f"/api/radiographs/{in_review.id}/lease/", {}, format="json").status_code == 200
    # Both are held now: the review queue hands neither to another radiologist.
    other = make_user("radiologist", username="rad-other")
    assert client_for(other).post("/api/queue/review/next/", {"dataset": submitted.dataset.name}, format="json").status_code == 204
    Radiograph.objects.filter(pk=submitted.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert client_for(other).post("/api/queue/review/next/", {"dataset": submitted.dataset.name}, format="json").json()["id"] == submitted.id


@pytest.mark.django_db
def test_skip_needs_a_reason_and_is_not_handed_back(client_for, annotator):
    radiograph = RadiographFactory()
    client = client_for(annotator)
    queue = {"dataset": radiograph.dataset.name}
    assert client.post("/api/queue/annotate/next/", queue, format="json").json()["id"] == radiograph.id
    assert client.post(f"/api/radiographs/{radiograph.id}/skip/", {"reason": ""}, format="json").status_code == 400
    assert client.post(f"/api/radiographs/{radiograph.id}/skip/", {"reason": "too blurry to tell"}, format="json").status_code == 204
    assert client.post("/api/queue/annotate/next/", queue, format="json").status_code == 204


@pytest.mark.django_db
def test_exclude_records_reason(client_for, annotator):
    radiograph = RadiographFactory()
    response = client_for(annotator).post(f"/api/radiographs/{radiograph.id}/exclude/", {"version": 1, "reason": "lateral_view"}, format="json")
    assert response.status_code == 200
    radiograph.refresh_from_db()
    assert radiograph.state == "excluded" and radiograph.excluded_reason == "lateral_view"
    assert ReviewEvent.objects.get(radiograph=radiograph, action="excluded").data["reason"] == "lateral_view"


def _submitted(client_for, annotator) -> Radiograph:
    radiograph = RadiographFactory()
    client_for(annotator).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "left": LEFT, "submit": True}, format="json"
    )
    radiograph.refresh_from_db()
    return radiograph


@pytest.mark.django_db
def test_radiologist_review_accept_edit_reject_add_then_accept(client_for, annotator, radiologist):
    radiograph = _submitted(client_for, annotator)
    keep, edit, drop = (region_for(radiograph, bbox=b) for b in ([10, 10, 40, 40], [50, 50, 90, 90], [100, 20, 140, 60]))
    client = client_for(radiologist)
    lease = client.post("/api/queue/review/next/", {"dataset": radiograph.dataset.name}, format="json").json()
    assert lease["id"] == radiograph.id and lease["state"] == "in_review"
    assert client.post(f"/api/regions/{keep.id}/accept/", {"version": 1}, format="json").status_code == 200
    edited = client.patch(
        f"/api/regions/{edit.id}/",
        {"version": 1, "bbox": [50, 50, 90, 90], "mask": _b64_mask(40, 40, slice(0, 20)), "description": "upper half only"},
        format="json",
    )
    assert edited.status_code == 200, edited.content
    assert edited.json()["bbox"] == [50, 50, 90, 70] and edited.json()["area"] == 800 and edited.json()["status"] == "accepted"
    assert client.post(f"/api/regions/{drop.id}/reject/", {"version": 1}, format="json").status_code == 200
    added = client.post(
        f"/api/radiographs/{radiograph.id}/regions/",
        {"label": "interstitial_shadow", "subtype": "reticular", "description": "basal reticulation", "bbox": [150, 100, 170, 120], "mask": _b64_mask(20, 20)},
        format="json",
    )
    assert added.status_code == 201, added.content
    radiograph.refresh_from_db()
    accepted = client.post(f"/api/radiographs/{radiograph.id}/accept/", {"version": radiograph.version, "labels": {"covid": "positive"}}, format="json")
    assert accepted.status_code == 200, accepted.content
    radiograph.refresh_from_db()
    assert radiograph.state == "accepted" and radiograph.findings_complete and radiograph.covid_source == "radiologist"
    statuses = dict(FindingRegion.objects.filter(radiograph=radiograph).values_list("id", "status"))
    assert statuses[keep.id] == "accepted" and statuses[edit.id] == "accepted" and statuses[drop.id] == "rejected"
    assert statuses[added.json()["id"]] == "accepted"
    # History keeps the suggestion and the edit.
    assert list(FindingRegionRevision.objects.filter(region=edit).values_list("version", "status")) == [(1, "suggested"), (2, "accepted")]
    truth = radiograph.lung_annotations.first()
    assert truth.status == "accepted" and truth.right_box == RIGHT
    # Accepted work is read-only to annotators.
    response = client_for(annotator).put(
        f"/api/radiographs/{radiograph.id}/annotation/", {"version": radiograph.version, "right": LEFT, "left": RIGHT}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "invalid_transition"


@pytest.mark.django_db
def test_accept_refused_while_suggestions_are_undecided(client_for, annotator, radiologist):
    radiograph = _submitted(client_for, annotator)
    region_for(radiograph)
    response = client_for(radiologist).post(f"/api/radiographs/{radiograph.id}/accept/", {"version": radiograph.version}, format="json")
    assert response.status_code == 400 and "undecided" in response.json()["detail"]
    radiograph.refresh_from_db()
    assert radiograph.state == "lungs_done"


@pytest.mark.django_db
def test_return_to_annotator_with_comment(client_for, annotator, radiologist):
    radiograph = _submitted(client_for, annotator)
    response = client_for(radiologist).post(f"/api/radiographs/{radiograph.id}/return/", {"version": radiograph.version, "comment": "left box misses the base"}, format="json")
    assert response.status_code == 200
    radiograph.refresh_from_db()
    assert radiograph.state == "returned" and radiograph.return_comment == "left box misses the base"
    assert client_for(annotator).post("/api/queue/annotate/next/", {"dataset": radiograph.dataset.name}, format="json").json()["id"] == radiograph.id


@pytest.mark.django_db
def test_stale_region_edit_is_refused(client_for, annotator, radiologist, make_user):
    radiograph = _submitted(client_for, annotator)
    region = region_for(radiograph)
    other = make_user("radiologist", username="rad2")
    assert client_for(radiologist).post(f"/api/regions/{region.id}/accept/", {"version": 1}, format="json").status_code == 200
    response = client_for(other).post(f"/api/regions/{region.id}/reject/", {"version": 1}, format="json")
    assert response.status_code == 409 and response.json()["current"]["status"] == "accepted"
    assert client_for(other).post(f"/api/regions/{region.id}/reject/", {}, format="json").status_code == 428


@pytest.mark.django_db
def test_events_show_who_did_what(client_for, annotator, radiologist):
    radiograph = _submitted(client_for, annotator)
    events = client_for(radiologist).get(f"/api/radiographs/{radiograph.id}/events/").json()
    assert [e["action"] for e in events][-1] == "submitted"
    assert events[-1]["actor"] == annotator.username
