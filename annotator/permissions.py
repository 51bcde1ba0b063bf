"""Permissions as data: one table of role × action, used by every API view and page.

Views declare the action they need (``required_action``, or a per-method mapping); ``HasRole``
checks it against this table. Tests are generated from the same table.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from rest_framework.permissions import BasePermission

from .constants import Role

ACTIONS = ("view", "annotate", "review", "import", "export", "manage_models", "manage_users")

# role -> the actions it may perform. "anonymous" may perform none.
PERMISSIONS: dict[str, frozenset[str]] = {
    "anonymous": frozenset(),
    Role.ANNOTATOR: frozenset({"view", "annotate"}),
    Role.RADIOLOGIST: frozenset({"view", "annotate", "review"}),
    Role.ADMIN: frozenset(ACTIONS),
}


def user_roles(user) -> set[str]:
    """The roles of a user: Django groups named after roles; superusers are admins."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_lungmark_roles", None)
    if cached is None:
        cached = {name for name in user.groups.values_list("name", flat=True) if name in PERMISSIONS}
        if user.is_superuser:
            cached.add(Role.ADMIN)
        user._lungmark_roles = cached
    return cached


def capabilities(user) -> frozenset[str]:
    """Every action the user's roles allow (the union over their roles)."""
    roles = user_roles(user) or {"anonymous"}
    return frozenset().union(*(PERMISSIONS[role] for role in roles))


def can(user, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return action in capabilities(user)


class HasRole(BasePermission):
    """DRF permission: the view's ``required_action`` (or ``required_actions[method]``) must be allowed."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        per_method = getattr(view, "required_actions", None) or {}
        action = per_method.get(request.method) or getattr(view, "required_action", None)
        if action is None:
            return False  # a view that declares nothing allows nothing
        if not request.user or not request.user.is_authenticated:
            return False
        return can(request.user, action)


def page_requires(action: str) -> Callable:
    """Decorator for server-rendered pages: login first, then the role check (403 if not allowed)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect(f"{reverse('login')}?next={request.path}")
            if not can(request.user, action):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        wrapper.required_action = action
        return wrapper

    return decorator
