"""The two workspaces: the annotator's (lung boxes, labels) and the radiologist's (findings review).

The page is a shell; the ES module loads the radiograph through the REST API. What the module
needs (ids, endpoints, the vocabulary of labels) comes in one ``json_script`` block.
"""
from __future__ import annotations

from django.conf import settings
from django.shortcuts import render

from .. import selectors
from ..constants import FINDING_INPUT_CHOICES, FRONTAL_VIEWS, ExclusionReason, InterstitialSubtype, View
from ..permissions import can, page_requires

# The views a person may choose in the workspaces (the others are excluded, not annotated).
VIEW_LABELS = {value: label for value, label in View.choices if value in FRONTAL_VIEWS}


def finding_choices() -> list[list[str]]:
    return [[value, str(label)] for value, label in FINDING_INPUT_CHOICES]


def subtype_choices() -> list[list[str]]:
    return [[value, str(label)] for value, label in InterstitialSubtype.choices]


def workspace_config(request, radiograph_id: int, *, mode: str) -> dict:
    base = f"/api/radiographs/{radiograph_id}/"
    return {
        "id": radiograph_id,
        "mode": mode,
        "user": request.user.get_username(),
        # Renew the lease well before it runs out (a third of LEASE_SECONDS) while the page is open.
        "lease_renew_ms": max(10, settings.LEASE_SECONDS // 3) * 1000,
        "can": {action: can(request.user, action) for action in ("annotate", "review", "export")},
        "urls": {
            "detail": base,
            "annotation": f"{base}annotation/",
            "exclude": f"{base}exclude/",
            "skip": f"{base}skip/",
            "lease": f"{base}lease/",
            "accept": f"{base}accept/",
            "return": f"{base}return/",
            "events": f"{base}events/",
            "regions": f"{base}regions/",
            "region": "/api/regions/{id}/",
            "region_decision": "/api/regions/{id}/{decision}/",
            "annotate_next": "/api/queue/annotate/next/",
            "review_next": "/api/queue/review/next/",
            "annotate_page": "/annotate/{id}/",
            "review_page": "/review/{id}/",
            "annotate_queue": "/annotate/",
            "review_queue": "/review/",
            "radiograph_page": "/radiographs/{id}/",
        },
        "vocab": {
            "findings": finding_choices(),
            "subtypes": subtype_choices(),
            "views": [[v, label] for v, label in VIEW_LABELS.items()],
            "exclusion_reasons": [[v, label] for v, label in ExclusionReason.choices],
        },
    }


@page_requires("annotate")
def annotate_workspace(request, radiograph_id: int):
    radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
    return render(
        request,
        "annotator/annotate.html",
        {
            "section": "annotate",
            "radiograph": radiograph,
            "config": workspace_config(request, radiograph.id, mode="annotate"),
            "exclusion_reasons": ExclusionReason.choices,
        },
    )


@page_requires("review")
def review_workspace(request, radiograph_id: int):
    radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
    return render(
        request,
        "annotator/review.html",
        {
            "section": "review",
            "radiograph": radiograph,
            "config": workspace_config(request, radiograph.id, mode="review"),
            "findings": finding_choices(),
            "subtypes": subtype_choices(),
        },
    )
