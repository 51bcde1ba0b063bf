"""Login lockout behind the documented proxy: nobody can lock a user out of every address.

Requests come through one trusted proxy (``TRUSTED_PROXY_COUNT = 1``): the socket's peer is the
proxy's address for everyone, and the client's real address is the last ``X-Forwarded-For`` entry,
the one the proxy appended (deploy/nginx.conf sends ``$proxy_add_x_forwarded_for``).
"""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from annotator.constants import Role
from tests.conftest import PASSWORD

PROXY = "10.0.0.2"
ATTACKER = "203.0.113.5"
OWNER = "198.51.100.7"


@pytest.fixture(autouse=True)
def behind_one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_ADDRESS_FAILURE_LIMIT = 12


def through_proxy(client_supplied: str = "", *, address: str) -> Client:
    """A browser at ``address``; the proxy appends it to whatever X-Forwarded-For the client sent."""
    forwarded = f"{client_supplied}, {address}" if client_supplied else address
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)


def sign_in(browser: Client, username: str, password: str = PASSWORD) -> bool:
    response = browser.post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code in (200, 302, 429), response.status_code
    return "_auth_user_id" in browser.session


@pytest.mark.django_db
def test_an_attacker_cannot_lock_the_admin_out_from_another_address(make_user):
    make_user(Role.ADMIN, username="admin")
    attacker = through_proxy(address=ATTACKER)
    for attempt in range(10):
        assert not sign_in(attacker, "admin", f"guess-{attempt}")
    # The attacker's address is locked for this account, even with the right password...
    response = attacker.post("/accounts/login/", {"username": "admin", "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in attacker.session
    # ...but the admin, at another address behind the same proxy, signs in.
    assert sign_in(through_proxy(address=OWNER), "admin")


@pytest.mark.django_db
def test_a_forged_forwarded_for_header_does_not_move_the_lockout(make_user):
    """The attacker claims to be the owner's address; the proxy appends the real one, which counts."""
    make_user(Role.ADMIN, username="admin")
    attacker = through_proxy(OWNER, address=ATTACKER)
    for attempt in range(10):
        assert not sign_in(attacker, "admin", f"guess-{attempt}")
    assert not sign_in(attacker, "admin")
    assert sign_in(through_proxy(address=OWNER), "admin")


@pytest.mark.django_db
def test_one_address_trying_many_names_is_locked_without_locking_them_elsewhere(make_user, settings):
    make_user(Role.ANNOTATOR, username="colleague")
    sprayer = through_proxy(address=ATTACKER)
    for attempt in range(settings.AXES_ADDRESS_FAILURE_LIMIT):
        assert not sign_in(sprayer, f"name-{attempt}", "password1")
    # The address is locked for every name, a right password included...
    assert not sign_in(through_proxy(address=ATTACKER), "colleague")
    # ...and the same person elsewhere is not.
    assert sign_in(through_proxy(address=OWNER), "colleague")


@pytest.mark.django_db
def test_a_few_typos_in_a_shared_office_lock_only_that_account_there(make_user):
    make_user(Role.ANNOTATOR, username="typist")
    make_user(Role.ANNOTATOR, username="neighbour")
    office = through_proxy(address=ATTACKER)
    for attempt in range(5):
        assert not sign_in(office, "typist", f"typo-{attempt}")
    assert not sign_in(through_proxy(address=ATTACKER), "typist")
    assert sign_in(through_proxy(address=ATTACKER), "neighbour")


@pytest.mark.django_db
def test_the_admin_lifts_a_lockout_with_a_management_command(make_user):
    make_user(Role.ADMIN, username="admin")
    office = through_proxy(address=OWNER)
    for attempt in range(5):
        assert not sign_in(office, "admin", f"typo-{attempt}")
    assert not sign_in(through_proxy(address=OWNER), "admin")
    call_command("axes_reset_username", "admin")
    assert sign_in(through_proxy(address=OWNER), "admin")


@pytest.mark.django_db
def test_without_a_proxy_the_peer_address_counts_and_forwarded_for_is_ignored(make_user, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    make_user(Role.ADMIN, username="admin")
    attacker = Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=OWNER)
    for attempt in range(5):
        assert not sign_in(attacker, "admin", f"guess-{attempt}")
    assert not sign_in(Client(REMOTE_ADDR=ATTACKER), "admin")
    assert sign_in(Client(REMOTE_ADDR=OWNER), "admin")
