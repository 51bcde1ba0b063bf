"""Template context: the signed-in user's roles, for the navigation."""
from __future__ import annotations

from .permissions import user_roles


def roles(request) -> dict:
    return {"user_roles": user_roles(request.user) if hasattr(request, "user") else set()}
