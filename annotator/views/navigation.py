"""The main navigation, built from permissions: a page is listed for whoever may open it.

Each entry names a page's URL; the action it needs is read from the page itself (``page_requires``
marks each page view with its ``required_action``), so the menu and the page's own check cannot
disagree, and a new role that may export sees Exports without any change here.
"""
from __future__ import annotations

from functools import cache

from django.urls import resolve, reverse

from ..permissions import can

# (URL name, label, section) in menu order; the section marks the current page.
NAVIGATION = (
    ("annotate-queue", "Annotate", "annotate"),
    ("review-queue", "Review", "review"),
    ("radiograph-list", "Radiographs", "radiographs"),
    ("manage-dashboard", "Dashboard", "dashboard"),
    ("manage-import", "Import", "import"),
    ("manage-exports", "Exports", "exports"),
    ("manage-models", "Models", "models"),
    ("manage-training", "Training", "training"),
    ("manage-users", "Users", "users"),
)


@cache
def _entries() -> tuple[tuple[str, str, str, str], ...]:
    """(url, label, section, required action) of every entry (resolved once per process)."""
    entries = []
    for name, label, section in NAVIGATION:
        url = reverse(name)
        entries.append((url, label, section, resolve(url).func.required_action))
    return tuple(entries)


def navigation_for(user) -> list[dict[str, str]]:
    """The menu entries ``user`` may open, in order."""
    return [{"url": url, "label": label, "section": section} for url, label, section, action in _entries() if can(user, action)]
