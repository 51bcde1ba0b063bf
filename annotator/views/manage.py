"""Admin pages: dashboard (progress, throughput, agreement), import, exports, model registry,
training runs, users and roles.

Tables are rendered here; plots are drawn by ES modules from JSON passed with ``json_script``.
Exports, models and training runs act through their REST APIs, whose reversed URLs each page gets
in its ``admin-urls`` JSON (``admin_urls``); users and roles are managed with plain forms on this page.
"""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import redirect, render
from django.urls import reverse

from .. import selectors, selectors_stats
from ..errors import DomainError
from ..hooks import ACTIVE_MODEL, LATEST_TRAINING_RUN, MODEL_CURVES, hook_call
from ..permissions import page_requires
from ..services.users import ROLES, user_create, user_update
from .workspace import url_template


def admin_urls() -> dict[str, str]:
    """The URLs the admin pages' scripts call, reversed; ``{id}`` slots are filled by ``fillUrl``."""
    return {
        "imports": reverse("api-imports"),
        "radiograph_list": reverse("radiograph-list"),
        "exports": reverse("api-exports"),
        "models": reverse("api-models"),
        "model_activate": url_template("api-model-activate", model_version_id="id"),
        "model_rollback": reverse("api-model-rollback"),
        "training_runs": reverse("api-training-runs"),
        "training_run": url_template("api-training-run", training_run_id="id"),
        "training_presets": reverse("api-training-presets"),
    }


@page_requires("manage_users")
def dashboard(request):
    user = request.user
    progress = selectors_stats.dataset_progress(user=user)
    throughput = selectors_stats.throughput(user=user)
    agreement = selectors_stats.agreement(user=user)
    return render(
        request,
        "manage/dashboard.html",
        {
            "section": "dashboard",
            "urls": admin_urls(),
            "totals": selectors_stats.totals(user=user),
            "progress": progress,
            "throughput": throughput,
            "agreement": agreement,
            "suggestions": selectors_stats.suggestion_agreement(user=user),
            "active_model": _active_model(),
            "training": hook_call(LATEST_TRAINING_RUN),
            "charts": {"progress": progress, "throughput": throughput, "states": selectors_stats.STATE_ORDER},
        },
    )


@page_requires("import")
def imports(request):
    return render(
        request,
        "manage/import.html",
        {
            "section": "import",
            "urls": admin_urls(),
            "datasets": selectors.dataset_list(user=request.user),
            "jobs": selectors_stats.recent_imports(user=request.user),
        },
    )


@page_requires("export")
def exports(request):
    return render(
        request,
        "manage/exports.html",
        {"section": "exports", "urls": admin_urls(), "datasets": selectors.dataset_list(user=request.user)},
    )


@page_requires("manage_models")
def models(request):
    # The ROC curves are left out of the API's answers (bulky); the page reads them here.
    curves = hook_call(MODEL_CURVES, default=[])
    return render(request, "manage/models.html", {"section": "models", "urls": admin_urls(), "curves": curves})


@page_requires("manage_models")
def training(request):
    return render(request, "manage/training.html", {"section": "training", "urls": admin_urls()})


# ---- users and roles -------------------------------------------------------------------------------
class NewUserForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    roles = forms.MultipleChoiceField(choices=[(r, r) for r in ROLES], required=False, widget=forms.CheckboxSelectMultiple)


@page_requires("manage_users")
def users(request):
    form = NewUserForm()
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "create":
                form = NewUserForm(request.POST)
                if form.is_valid():
                    created = user_create(actor=request.user, **form.cleaned_data)
                    messages.success(request, f"User {created.username} created.")
                    return redirect("manage-users")
            elif action == "update":
                roles = [r for r in request.POST.getlist("roles") if r in ROLES]
                target = user_update(actor=request.user, user_id=request.POST.get("user"), roles=roles, active=request.POST.get("is_active") == "on")
                messages.success(request, f"Saved {target.username}.")
                return redirect("manage-users")
        except DomainError as exc:
            if action == "create":
                form.add_error(None, str(exc))
            else:
                messages.error(request, str(exc))
                return redirect("manage-users")
    people = [
        {"user": person, "roles": {g.name for g in person.groups.all()}, "superuser": person.is_superuser}
        for person in get_user_model().objects.order_by("username").prefetch_related("groups")
    ]
    return render(request, "manage/users.html", {"section": "users", "people": people, "roles": ROLES, "form": form})


def _active_model():
    return hook_call(ACTIVE_MODEL)

