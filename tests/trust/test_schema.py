"""Schemathesis against ``/api/schema/``: every operation, generated requests, in-process (WSGI).

As an admin (a DRF token), so that every operation is reached. Checks: never a server error; the
response's status code, content type, headers and body are the ones the schema documents.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import utils as cu
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.annotator.factories import RadiographFactory, region_for



def _many_more(self) -> bool:
    """``many.more()`` as hypothesis-jsonschema 0.23 (under schemathesis 3.39) calls it; newer
    Hypothesis releases only offer ``with many(...) as e: for _ in e:``. Same choices, same spans."""
    if self._depth is None:
        self.__enter__()
        self._compat_iterator = iter(self)
    try:
        next(self._compat_iterator)
    except StopIteration:
        self.__exit__(None)
        return False
    return True


if not hasattr(cu.many, "more"):
    cu.many.more = _many_more

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance)
# Operations whose documented body does not match yet, outside the annotator app (reported to its
# owner): every other check still runs on them. Remove an entry once its schema is fixed.
KNOWN_BODY_MISMATCHES = {
    "GET /api/preannotations/": "documented as a list, answered paginated (inference/apis.py)",
    "GET /api/training-runs/": "documented as a list, answered paginated (inference/apis.py)",
    "POST /api/training-runs/": "'export' is null until the run exports, documented as a non-null integer",
}


@pytest.fixture
def api_token(db, make_user) -> str:
    admin = make_user("admin", username="schema-admin")
    radiograph = RadiographFactory()
    region_for(radiograph)
    return Token.objects.create(user=admin).key


@pytest.fixture
def web_schema(api_token):
    """The schema as the WSGI app serves it. Like Django's test client, requests keep the test's
    database connection (Django would close it at each request start: it is inside a transaction)."""
    from django.core import signals
    from django.db import close_old_connections

    from config.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.from_wsgi("/api/schema/", application, headers={"Authorization": f"Token {api_token}"})
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


schema = schemathesis.from_pytest_fixture("web_schema")


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
def test_api_conforms_to_its_schema(case, api_token, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    response = case.call_wsgi(headers={"Authorization": f"Token {api_token}"})
    known = f"{case.operation.method.upper()} {case.operation.path}" in KNOWN_BODY_MISMATCHES
    case.validate_response(response, checks=CHECKS, excluded_checks=(response_schema_conformance,) if known else ())
