"""Sign-in landing, the per-role homes (annotation queue, review queue) and the radiograph pages."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from .. import selectors, selectors_stats
from ..constants import State
from ..permissions import can, page_requires
from ..selectors import RADIOGRAPH_FILTERS
from .workspace import url_template, workspace_config


def home(request):
    """Each user lands on the first home their permissions open: the dashboard (admins), the review
    queue (radiologists), the annotation queue (annotators)."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    for action, page in (("manage_users", "manage-dashboard"), ("review", "review-queue"), ("annotate", "annotate-queue")):
        if can(request.user, action):
            return redirect(page)
    return render(request, "annotator/no_role.html", status=403)


@page_requires("annotate")
def annotate_queue(request):
    summary = selectors_stats.queue_summary(user=request.user, queue="annotate")
    return render(
        request,
        "annotator/annotate_queue.html",
        {
            "section": "annotate",
            "summary": summary,
            "returned": selectors_stats.returned_to_user(user=request.user),
            "recent": selectors_stats.user_recent_events(user=request.user),
            "datasets": selectors.dataset_list(user=request.user),
            "queue_config": {"queue": "annotate", "next_url": reverse("api-queue-next", kwargs={"queue": "annotate"}), "workspace": url_template("annotate-workspace", radiograph_id="id")},
        },
    )


@page_requires("review")
def review_queue(request):
    order = request.GET.get("order", "uncertainty")
    if order not in ("uncertainty", "oldest"):
        order = "uncertainty"
    return render(
        request,
        "annotator/review_queue.html",
        {
            "section": "review",
            "summary": selectors_stats.queue_summary(user=request.user, queue="review"),
            "candidates": selectors_stats.review_candidates(user=request.user, order=order),
            "order": order,
            "now": timezone.now(),
            "recent": selectors_stats.user_recent_events(user=request.user),
            "datasets": selectors.dataset_list(user=request.user),
            "queue_config": {"queue": "review", "next_url": reverse("api-queue-next", kwargs={"queue": "review"}), "workspace": url_template("review-workspace", radiograph_id="id")},
        },
    )


@page_requires("view")
def radiograph_list(request):
    filters = {k: request.GET.get(k) for k in RADIOGRAPH_FILTERS if request.GET.get(k)}
    qs = selectors.radiograph_list(user=request.user, filters=filters, ordering=request.GET.get("ordering", "-id"))
    page = Paginator(qs.select_related("dataset", "leased_to"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "annotator/radiograph_list.html",
        {
            "section": "radiographs",
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "states": [s.value for s in State],
            "datasets": selectors.dataset_list(user=request.user),
        },
    )


@page_requires("view")
def radiograph_detail(request, radiograph_id: int):
    """Any radiograph, read-only: the viewer with its overlays, its labels and its full history."""
    radiograph = selectors.radiograph_get(user=request.user, radiograph_id=radiograph_id)
    return render(
        request,
        "annotator/radiograph.html",
        {
            "section": "radiographs",
            "radiograph": radiograph,
            "can_annotate": can(request.user, "annotate"),
            "can_review": can(request.user, "review"),
            "config": workspace_config(request, radiograph.id, mode="view"),
        },
    )
