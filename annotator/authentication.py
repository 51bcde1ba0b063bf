"""Token authentication that reuses what the early-refusal middleware already looked up.

``EarlyRefusal`` authenticates an API token from the headers to refuse a write before its body is
read; without this class DRF would look the same token (and the user's roles) up again, two more
queries on every write.
"""
from __future__ import annotations

from rest_framework.authentication import TokenAuthentication

# Where the middleware leaves the (user, token) pair it found on the Django request.
EARLY_TOKEN_ATTRIBUTE = "_lungmark_token_auth"


class EarlyTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        early = getattr(getattr(request, "_request", request), EARLY_TOKEN_ATTRIBUTE, None)
        return early if early is not None else super().authenticate(request)
