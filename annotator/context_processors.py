"""Template context: the signed-in user's roles (badges) and the navigation their permissions open."""
from __future__ import annotations

from .permissions import user_roles
from .views.navigation import navigation_for

ROLE_ORDER = ("admin", "radiologist", "annotator")


def roles(request) -> dict:
    user = getattr(request, "user", None)
    found = user_roles(user) if user is not None else set()
    return {
        "user_roles": found,
        "user_role_list": [r for r in ROLE_ORDER if r in found],
        "navigation": navigation_for(user) if user is not None else [],
    }
