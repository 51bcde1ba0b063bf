"""Production settings: the base settings hardened; refuses to start without a real SECRET_KEY.

``manage.py check --deploy`` is clean with these settings (``tests/trust/test_security.py``).
"""
from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import env_bool, env_int

# SECRET_KEY: required, at least 50 characters, and never the development default.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production (it signs sessions and keys pseudonyms).")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-insecure") or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("SECRET_KEY is too weak for production: use 50 or more random characters.")
if not os.environ.get("PSEUDONYM_KEY"):
    PSEUDONYM_KEY = f"pseudonym:{SECRET_KEY}"

DEBUG = env_bool("DEBUG", False)
# SECURE_SSL_REDIRECT: redirect to HTTPS what really came in as plain HTTP. Behind deploy/nginx.conf
# nothing does (nginx redirects port 80 itself); a request is HTTPS when nginx says so in
# X-Forwarded-Proto, which it always sets, replacing the client's.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# TRUSTED_PROXY_COUNT: nginx in front (docker-compose.yml); the login lockout counts the address it appends.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1)
# SECURE_HSTS_SECONDS: how long browsers must use HTTPS only.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
