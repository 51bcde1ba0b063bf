"""The workflow table (``annotator.workflow``) against the real API, one case per row and role.

Every (action, state, role) is tried through the endpoint a person uses: it succeeds, moving the
radiograph to the table's target and recording the event, exactly when the table has that step and
the role's permissions include its capability; otherwise it is refused and nothing changes. Then
the lease rule: every write by someone other than the live lease holder is refused naming the holder
(an expired lease counts for nothing), and the detail answer offers exactly the table's actions.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import workflow
from annotator.constants import Role, State
from annotator.models import LungAnnotation, Radiograph, ReviewEvent
from annotator.permissions import PERMISSIONS
from annotator.services.suggestions import suggestions_apply

from .factories import RadiographFactory, region_for

RIGHT = [10, 20, 90, 140]
LEFT = [110, 20, 190, 140]
ROLES = (Role.ANNOTATOR, Role.RADIOLOGIST, Role.ADMIN)
PERSON_ACTIONS = tuple(a for a in workflow.ACTIONS if a != "preannotate")


def _radiograph_in(state: str) -> tuple[Radiograph, int]:
    """A radiograph in ``state`` with both lung boxes drawn and one suggested region (for region decisions)."""
    radiograph = RadiographFactory(state=state)
    LungAnnotation.objects.create(radiograph=radiograph, version=1, right_box=RIGHT, left_box=LEFT, status="draft", source="annotator")
    region = region_for(radiograph)
    return radiograph, region.id


def _attempt(client, action: str, radiograph: Radiograph, region_id: int):
    """Ask for ``action`` the way the pages do (accept is asked with the region already decided)."""
    base = f"/api/radiographs/{radiograph.id}/"
    version = radiograph.version
    if action == "save":
        return client.put(f"{base}annotation/", {"version": version, "right": RIGHT, "left": LEFT}, format="json")
    if action == "submit":
        return client.put(f"{base}annotation/", {"version": version, "right": RIGHT, "left": LEFT, "submit": True}, format="json")
    if action == "exclude":
        return client.post(f"{base}exclude/", {"version": version, "reason": "unreadable"}, format="json")
    if action == "edit_regions":
        return client.post(f"/api/regions/{region_id}/accept/", {"version": 1}, format="json")
    if action == "start_review":
        return client.post("/api/queue/review/next/", {"dataset": radiograph.dataset.name}, format="json")
    if action == "return":
        return client.post(f"{base}return/", {"version": version, "comment": "Redraw the left box."}, format="json")
    if action == "accept":
        return client.post(f"{base}accept/", {"version": version}, format="json")
    raise AssertionError(f"no request for {action}")


def _allowed(action: str, state: str, role: str) -> workflow.Transition | None:
    rule = workflow.step(action, state)
    return rule if rule is not None and rule.capability in PERMISSIONS[role] else None


CASES = [(action, state, role) for action in PERSON_ACTIONS for state in State.values for role in ROLES]


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "state", "role"), CASES, ids=[f"{a}-{s}-{r}" for a, s, r in CASES])
def test_each_action_in_each_state_for_each_role_follows_the_table(client_for, make_user, action, state, role):
    radiograph, region_id = _radiograph_in(state)
    if action == "accept":
        # Accepting needs every suggestion decided first; that is region editing, not the step tested.
        radiograph.regions.update(status="accepted")
    user = make_user(role, username=f"{role}-table")
    events_before = ReviewEvent.objects.filter(radiograph=radiograph).count()
    response = _attempt(client_for(user), action, radiograph, region_id)
    stored = Radiograph.objects.get(pk=radiograph.pk)
    rule = _allowed(action, state, role)
    if rule is not None:
        assert response.status_code == 200, response.content
        assert stored.state == rule.target
        if action == "edit_regions":  # the region's own version and history, not the radiograph's
            assert stored.regions.get().version == 2
            assert ReviewEvent.objects.filter(radiograph=radiograph, action="region_accepted", actor=user).exists()
        else:
            assert stored.version == radiograph.version + 1
            assert ReviewEvent.objects.filter(radiograph=radiograph, action=rule.event, from_state=state, to_state=rule.target, actor=user).exists()
        if rule.lease == "take":
            assert stored.lease_holder_id() == user.pk
        elif rule.lease == "renew":
            assert stored.lease_holder_id() is None  # a free radiograph stays free
        elif rule.lease == "release":
            assert stored.lease_holder_id() is None
    else:
        # (The review queue answers 200 when it hands out a radiograph already in review: no step taken.)
        assert response.status_code in (204, 403, 409) or action == "start_review", response.content
        assert (stored.state, stored.version) == (state, radiograph.version)
        assert ReviewEvent.objects.filter(radiograph=radiograph).count() == events_before
        assert stored.regions.get().version == 1


@pytest.mark.django_db
@pytest.mark.parametrize("state", State.values)
def test_suggestions_reach_only_the_states_the_table_opens_to_the_model(state):
    radiograph, _ = _radiograph_in(state)
    radiograph = Radiograph.objects.select_for_update().get(pk=radiograph.pk)
    rule = workflow.step("preannotate", state)
    applied = suggestions_apply(
        radiograph=radiograph, prediction_id=None, model_version_id=None, right_box=RIGHT, left_box=LEFT, regions=[], label="consolidation"
    )
    stored = Radiograph.objects.get(pk=radiograph.pk)
    assert applied is (rule is not None)
    if rule is None:
        assert (stored.state, stored.version) == (state, 1)
    else:
        assert stored.state == rule.target and stored.version == 2
        assert ReviewEvent.objects.filter(radiograph=radiograph, action="preannotated", actor=None).exists()


LEASED_CASES = [(t.action, t.source) for t in workflow.TRANSITIONS if t.capability != workflow.SYSTEM and t.action != "start_review"]


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "state"), LEASED_CASES, ids=[f"{a}-{s}" for a, s in LEASED_CASES])
def test_no_write_while_a_colleague_holds_the_lease_and_an_expired_lease_holds_nothing(client_for, make_user, action, state):
    radiograph, region_id = _radiograph_in(state)
    if action == "accept":
        radiograph.regions.update(status="accepted")
    holder = make_user("radiologist", username="holder")
    colleague = make_user("admin", username="colleague")  # an admin may take every step a person takes
    Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=holder, lease_expires_at=timezone.now() + timedelta(minutes=5))

    refused = _attempt(client_for(colleague), action, radiograph, region_id)
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "lease_held" and body["leased_to"] == "holder" and "holder" in body["detail"]
    stored = Radiograph.objects.get(pk=radiograph.pk)
    assert (stored.state, stored.version, stored.leased_to_id) == (state, radiograph.version, holder.id)
    assert stored.regions.get().version == 1
    detail = client_for(colleague).get(f"/api/radiographs/{radiograph.id}/").json()
    assert detail["leased_to"] == "holder" and detail["editable"] is False and detail["actions"] == []

    Radiograph.objects.filter(pk=radiograph.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert _attempt(client_for(colleague), action, radiograph, region_id).status_code == 200


@pytest.mark.django_db
def test_the_holders_own_save_and_region_decision_renew_the_lease(client_for, annotator, radiologist):
    radiograph, region_id = _radiograph_in(State.PREANNOTATED)
    for user, write in (
        (annotator, lambda c: c.put(f"/api/radiographs/{radiograph.id}/annotation/", {"version": 1, "right": RIGHT, "left": LEFT}, format="json")),
        (radiologist, lambda c: c.post(f"/api/regions/{region_id}/accept/", {"version": 1}, format="json")),
    ):
        soon = timezone.now() + timedelta(seconds=5)
        Radiograph.objects.filter(pk=radiograph.pk).update(leased_to=user, lease_expires_at=soon)
        assert write(client_for(user)).status_code == 200
        stored = Radiograph.objects.get(pk=radiograph.pk)
        assert stored.leased_to_id == user.id and stored.lease_expires_at > soon + timedelta(seconds=60)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("state", State.values)
def test_the_detail_answer_offers_exactly_the_tables_actions(client_for, make_user, role, state):
    radiograph, _ = _radiograph_in(state)
    detail = client_for(make_user(role, username=f"{role}-detail")).get(f"/api/radiographs/{radiograph.id}/").json()
    expected = [a for a in workflow.ACTIONS if _allowed(a, state, role)]
    assert sorted(detail["actions"]) == sorted(expected)
    assert detail["editable"] is ("save" in expected)
