"""The Django admin site: every model admin registered on it, Django's and other apps' included,
checks the ids of a list action before running it, so a forged or garbled selection is a clear 400
instead of a server error (Django casts them straight into the query)."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest


class SelectedIdsChecked:
    """Mixed into each registered ModelAdmin: the selected ids must be valid primary keys."""

    def response_action(self, request, queryset):
        pk = self.model._meta.pk
        try:
            for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
                if "\x00" in value:
                    raise ValidationError("a NUL byte")
                pk.get_prep_value(pk.to_python(value))
        except (ValidationError, ValueError, TypeError, OverflowError):
            return HttpResponseBadRequest("The selection holds an id that is not one of this list's.")
        return super().response_action(request, queryset)


class LungmarkAdminSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options):
        base = admin_class or admin.ModelAdmin
        checked = type(base.__name__, (SelectedIdsChecked, base), {"__module__": base.__module__})
        super().register(model_or_iterable, checked, **options)


class LungmarkAdminConfig(AdminConfig):
    """``django.contrib.admin`` in INSTALLED_APPS, with ``LungmarkAdminSite`` as ``admin.site``."""

    default_site = "annotator.admin_site.LungmarkAdminSite"
