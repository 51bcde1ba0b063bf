"""Template context: the signed-in user's roles, for the navigation."""
from __future__ import annotations

from .permissions import user_roles

ROLE_ORDER = ("admin", "radiologist", "annotator")


def roles(request) -> dict:
    found = user_roles(request.user) if hasattr(request, "user") else set()
    return {"user_roles": found, "user_role_list": [r for r in ROLE_ORDER if r in found]}
