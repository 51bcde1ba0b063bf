"""Admin pages: dashboard (progress, throughput, agreement), import, exports, model registry,
training runs, users and roles.

Tables are rendered here; plots are drawn by ES modules from JSON passed with ``json_script``.
Exports, models and training runs act through their REST APIs (``/api/exports/``, ``/api/models/``,
``/api/training-runs/``); users and roles are managed with plain forms on this page.
"""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render

from .. import selectors, selectors_stats
from ..constants import Role
from ..permissions import page_requires
from ..services.events import audit_record

ROLES = [Role.ANNOTATOR.value, Role.RADIOLOGIST.value, Role.ADMIN.value]


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
            "totals": selectors_stats.totals(user=user),
            "progress": progress,
            "throughput": throughput,
            "agreement": agreement,
            "active_model": _active_model(),
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
            "datasets": selectors.dataset_list(user=request.user),
            "jobs": selectors_stats.recent_imports(user=request.user),
        },
    )


@page_requires("export")
def exports(request):
    return render(
        request,
        "manage/exports.html",
        {"section": "exports", "datasets": selectors.dataset_list(user=request.user)},
    )


@page_requires("manage_models")
def models(request):
    from inference.models import ModelVersion

    # The ROC curves are left out of the API's answers (bulky); the page reads them here.
    curves = [
        {"id": mv.id, "name": mv.name, "active": mv.is_active, "roc": (mv.metrics or {}).get("covid_roc"), "auc": (mv.metrics or {}).get("covid_auc")}
        for mv in ModelVersion.objects.order_by("-created_at")[:12]
    ]
    return render(request, "manage/models.html", {"section": "models", "curves": curves})


@page_requires("manage_models")
def training(request):
    return render(request, "manage/training.html", {"section": "training"})


# ---- users and roles -------------------------------------------------------------------------------
class NewUserForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    roles = forms.MultipleChoiceField(choices=[(r, r) for r in ROLES], required=False, widget=forms.CheckboxSelectMultiple)

    def clean_username(self) -> str:
        name = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username__iexact=name).exists():
            raise ValidationError("That user name is taken.")
        return name

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("username"):
            validate_password(data["password"], user=get_user_model()(username=data["username"]))
        return data


def _set_roles(target, roles: set[str]) -> None:
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    for name, group in groups.items():
        if name in roles:
            target.groups.add(group)
        else:
            target.groups.remove(group)


@page_requires("manage_users")
def users(request):
    User = get_user_model()
    form = NewUserForm()
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            form = NewUserForm(request.POST)
            if form.is_valid():
                with transaction.atomic():
                    created = User.objects.create_user(username=form.cleaned_data["username"], password=form.cleaned_data["password"])
                    _set_roles(created, set(form.cleaned_data["roles"]))
                    audit_record(actor=request.user, action="user_created", target=created.username, data={"roles": sorted(form.cleaned_data["roles"])})
                messages.success(request, f"User {created.username} created.")
                return redirect("manage-users")
        elif action == "update":
            target = User.objects.filter(pk=request.POST.get("user")).first()
            if target is None:
                messages.error(request, "No such user.")
                return redirect("manage-users")
            roles = {r for r in request.POST.getlist("roles") if r in ROLES}
            active = request.POST.get("is_active") == "on"
            if target == request.user and (Role.ADMIN not in roles or not active):
                messages.error(request, "You cannot remove your own admin role or deactivate yourself.")
                return redirect("manage-users")
            with transaction.atomic():
                _set_roles(target, roles)
                if target.is_active != active:
                    target.is_active = active
                    target.save(update_fields=["is_active"])
                audit_record(actor=request.user, action="user_roles_changed", target=target.username, data={"roles": sorted(roles), "active": active})
            messages.success(request, f"Saved {target.username}.")
            return redirect("manage-users")
    people = []
    for person in User.objects.order_by("username").prefetch_related("groups"):
        roles = {g.name for g in person.groups.all()}
        people.append({"user": person, "roles": roles, "superuser": person.is_superuser})
    return render(request, "manage/users.html", {"section": "users", "people": people, "roles": ROLES, "form": form})


def _active_model():
    from inference.models import ModelVersion

    return ModelVersion.objects.filter(is_active=True).first()

