"""Login lockout that cannot be turned against a user.

Failed logins are counted per (user name, client address) pair and per client address, never per
user name alone: someone guessing at one address locks that pair (after ``AXES_FAILURE_LIMIT``
failures) and, if they try many names, that address (after ``AXES_ADDRESS_FAILURE_LIMIT``), but the
account's owner still signs in from anywhere else. The client address is the real one behind
``TRUSTED_PROXY_COUNT`` reverse proxies (nginx appends it to ``X-Forwarded-For``); without that,
every user behind the proxy would share the proxy's address and one person's typos would lock out
everyone. An administrator lifts a lockout with ``manage.py axes_reset_username NAME`` or
``manage.py axes_reset_ip ADDRESS`` (see README, Production).
"""
from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from axes.attempts import get_cool_off_threshold
from axes.helpers import get_client_ip_address
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The address of whoever sent the request: with ``TRUSTED_PROXY_COUNT`` proxies in front, the
    entry that many places from the right of ``X-Forwarded-For`` (each trusted proxy appends the
    address it saw; anything further left was written by the client and proves nothing)."""
    count = settings.TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR", "")
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < count:
        # Not sent through the whole proxy chain (a direct request to the app server).
        return remote
    return forwarded[-count][:45]  # the longest textual IPv6 address


class PairAndAddressLockout(AxesDatabaseHandler):
    """django-axes' database handler with ``AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]``
    plus a separate, higher limit for all failures from one address."""

    def is_locked(self, request, credentials=None) -> bool:
        if super().is_locked(request, credentials):
            return True
        if not settings.AXES_LOCK_OUT_AT_FAILURE:
            return False
        address = getattr(request, "axes_ip_address", None) or get_client_ip_address(request)
        attempts = AccessAttempt.objects.filter(ip_address=address)
        if settings.AXES_COOLOFF_TIME is not None:
            attempts = attempts.filter(attempt_time__gte=get_cool_off_threshold(request))
        failures = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
        return failures >= settings.AXES_ADDRESS_FAILURE_LIMIT
