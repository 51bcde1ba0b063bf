"""Users and their roles: accounts created by an admin, roles as Django groups, every change audited.

Roles are the groups named in ``ROLES`` (``permissions.user_roles`` reads them). An admin cannot take
away their own admin role or deactivate themselves, so the last admin cannot lock everyone out.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from ..constants import Role
from ..errors import Conflict, InvalidInput, NotAllowed, NotFound
from ..permissions import can
from .events import audit_record

ROLES = (Role.ANNOTATOR.value, Role.RADIOLOGIST.value, Role.ADMIN.value)


def _roles_clean(roles: Iterable[str]) -> set[str]:
    roles = set(roles)
    unknown = roles - set(ROLES)
    if unknown:
        raise InvalidInput(f"Unknown role(s): {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}.")
    return roles


def user_roles_set(user, roles: Iterable[str]) -> None:
    """Give ``user`` exactly these roles (creating the role groups on first use)."""
    roles = _roles_clean(roles)
    for name in ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        if name in roles:
            user.groups.add(group)
        else:
            user.groups.remove(group)


def user_create(*, actor, username: str, password: str, roles: Iterable[str] = (), **extra):
    """Create an account with a validated password and these roles.

    ``actor`` None is the command line (``bootstrap_demo``); otherwise it must be allowed to manage
    users. ``extra`` goes to ``create_user`` (``is_staff``, ``is_superuser``).
    """
    if actor is not None and not can(actor, "manage_users"):
        raise NotAllowed("Only admins manage users.")
    User = get_user_model()
    username = str(username or "").strip()
    if not username:
        raise InvalidInput("A user name is needed.")
    roles = _roles_clean(roles)
    try:
        validate_password(password, user=User(username=username))
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from exc
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise Conflict("That user name is taken.")
        user = User.objects.create_user(username=username, password=password, **extra)
        user_roles_set(user, roles)
        audit_record(actor=actor, action="user_created", target=user.username, data={"roles": sorted(roles)})
    return user


def user_update(*, actor, user_id, roles: Iterable[str], active: bool):
    """Set a user's roles and whether the account is active."""
    if not can(actor, "manage_users"):
        raise NotAllowed("Only admins manage users.")
    roles = _roles_clean(roles)
    User = get_user_model()
    with transaction.atomic():
        target = User.objects.select_for_update().filter(pk=user_id).first() if str(user_id or "").isdigit() else None
        if target is None:
            raise NotFound("No such user.")
        if target.pk == actor.pk and (Role.ADMIN not in roles or not active):
            raise NotAllowed("You cannot remove your own admin role or deactivate yourself.")
        user_roles_set(target, roles)
        if target.is_active != active:
            target.is_active = active
            target.save(update_fields=["is_active"])
        audit_record(actor=actor, action="user_roles_changed", target=target.username, data={"roles": sorted(roles), "active": active})
    return target
