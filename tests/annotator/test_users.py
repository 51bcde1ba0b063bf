"""Users and roles through the service the admin page uses: validation, self-protection, audit."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from annotator.errors import Conflict, InvalidInput, NotAllowed, NotFound
from annotator.models import AuditLog
from annotator.permissions import user_roles
from annotator.services.users import user_create, user_update

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-passphrase"


def test_admin_creates_a_user_with_roles_and_it_is_audited(make_user):
    admin = make_user("admin", username="boss")
    created = user_create(actor=admin, username="  reader ", password=PASSWORD, roles=["radiologist"])
    assert created.username == "reader" and created.check_password(PASSWORD)
    assert user_roles(get_user_model().objects.get(pk=created.pk)) == {"radiologist"}
    entry = AuditLog.objects.get(action="user_created", target="reader")
    assert entry.actor == admin and entry.data == {"roles": ["radiologist"]}


@pytest.mark.parametrize(
    ("username", "password", "roles", "error", "message"),
    [
        ("", PASSWORD, [], InvalidInput, "user name"),
        ("fresh", "password", [], InvalidInput, "too common"),
        ("fresh", PASSWORD, ["superhero"], InvalidInput, "Unknown role"),
        ("BOSS", PASSWORD, [], Conflict, "taken"),
    ],
)
def test_bad_new_users_are_refused_and_nothing_is_created(make_user, username, password, roles, error, message):
    admin = make_user("admin", username="boss")
    before = get_user_model().objects.count()
    with pytest.raises(error, match=message):
        user_create(actor=admin, username=username, password=password, roles=roles)
    assert get_user_model().objects.count() == before


def test_only_admins_manage_users(make_user):
    radiologist = make_user("radiologist", username="rad")
    with pytest.raises(NotAllowed):
        user_create(actor=radiologist, username="sneaky", password=PASSWORD, roles=["admin"])
    with pytest.raises(NotAllowed):
        user_update(actor=radiologist, user_id=radiologist.pk, roles=["admin"], active=True)
    assert user_roles(get_user_model().objects.get(pk=radiologist.pk)) == {"radiologist"}


def test_roles_and_activity_change_and_admins_cannot_lock_themselves_out(make_user):
    admin = make_user("admin", username="boss")
    person = make_user("annotator", username="person")
    user_update(actor=admin, user_id=person.pk, roles=["annotator", "radiologist"], active=False)
    person = get_user_model().objects.get(pk=person.pk)
    assert user_roles(person) == set() and not person.is_active  # inactive users have no roles
    assert set(person.groups.values_list("name", flat=True)) == {"annotator", "radiologist"}
    with pytest.raises(NotAllowed, match="your own admin role"):
        user_update(actor=admin, user_id=admin.pk, roles=["annotator"], active=True)
    with pytest.raises(NotFound):
        user_update(actor=admin, user_id="999999", roles=[], active=True)
    assert user_roles(get_user_model().objects.get(pk=admin.pk)) == {"admin"}
