"""The two workspaces: the annotator's (lung boxes, labels) and the radiologist's (findings review).

The page is a shell; the ES module loads the radiograph through the REST API. What the module
needs (ids, endpoints, the vocabulary of labels) comes in one ``json_script`` block.
"""
from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse

from .. import selectors
from ..constants import FINDINGS, ExclusionReason, FindingLabel, InterstitialSubtype, View
from ..permissions import can, page_requires


VIEW_LABELS = {View.PA: "PA", View.AP: "AP", View.AP_SUPINE: "AP supine", View.UNKNOWN: "Unknown"}


def _nice(value: str) -> str:
    return value.replace("_", " ").capitalize()


def finding_choices() -> list[list[str]]:
    return [[v, _nice(v)] for v in FindingLabel.values if v != FindingLabel.UNKNOWN]


def finding_table() -> list[dict]:
    """The findings table as the pages read it (label, name, COCO id, colour, description)."""
    return [asdict(finding) for finding in FINDINGS]


def subtype_choices() -> list[list[str]]:
    return [[v, _nice(v)] for v in InterstitialSubtype.values]


# Stand-ins reversed into a URL and then replaced by the "{name}" the page's ``fillUrl`` fills.
_INT_STANDIN = 987654321


def url_template(name: str, **slots: str) -> str:
    """A reversed URL with ``{placeholder}`` slots for the page's ``fillUrl``; ``slots`` maps each URL
    keyword to its placeholder (``region_id="id"``). Keywords ending in ``_id`` are integers."""
    standins = {key: _INT_STANDIN + i if key.endswith("_id") else f"__{key}__" for i, key in enumerate(slots)}
    url = reverse(name, kwargs=standins)
    for key, standin in standins.items():
        url = url.replace(str(standin), "{" + slots[key] + "}", 1)
    return url


def workspace_config(request, radiograph_id: int, *, mode: str) -> dict:
    one = {"radiograph_id": radiograph_id}
    return {
        "id": radiograph_id,
        "mode": mode,
        "user": request.user.get_username(),
        # Renew the lease well before it runs out (a third of LEASE_SECONDS) while the page is open.
        "lease_renew_ms": max(10, settings.LEASE_SECONDS // 3) * 1000,
        "can": {action: can(request.user, action) for action in ("annotate", "review", "export")},
        "urls": {
            "detail": reverse("api-radiograph", kwargs=one),
            "annotation": reverse("api-annotation", kwargs=one),
            "exclude": reverse("api-exclude", kwargs=one),
            "skip": reverse("api-skip", kwargs=one),
            "lease": reverse("api-lease", kwargs=one),
            "accept": reverse("api-accept", kwargs=one),
            "return": reverse("api-return", kwargs=one),
            "events": reverse("api-events", kwargs=one),
            "regions": reverse("api-regions", kwargs=one),
            "region": url_template("api-region", region_id="id"),
            "region_decision": url_template("api-region-decision", region_id="id", decision="decision"),
            "annotate_next": reverse("api-queue-next", kwargs={"queue": "annotate"}),
            "review_next": reverse("api-queue-next", kwargs={"queue": "review"}),
            "annotate_page": url_template("annotate-workspace", radiograph_id="id"),
            "review_page": url_template("review-workspace", radiograph_id="id"),
            "annotate_queue": reverse("annotate-queue"),
            "review_queue": reverse("review-queue"),
            "radiograph_page": url_template("radiograph-detail", radiograph_id="id"),
        },
        "vocab": {
            "findings": finding_choices(),
            "finding_table": finding_table(),
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
            "finding_table": finding_table(),
            "subtypes": subtype_choices(),
        },
    )
