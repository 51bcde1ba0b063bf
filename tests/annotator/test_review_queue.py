"""The review queue's "most uncertain first" shows the uncertainty it sorts by."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from annotator.models import Radiograph

from .factories import RadiographFactory

pytestmark = pytest.mark.django_db


def test_most_uncertain_first_shows_the_uncertainty_it_sorts_by(radiologist):
    Radiograph.objects.all().delete()  # data other tests committed
    sure, unsure, unseen = (RadiographFactory(state="lungs_done", uncertainty=u) for u in (0.2, 0.9, None))
    client = Client()
    client.force_login(radiologist, backend="django.contrib.auth.backends.ModelBackend")
    html = client.get("/review/?order=uncertainty").content.decode()
    assert "Uncertainty (bits)" in html and "0 bits when it is sure, 1 bit when it is a coin toss" in html
    rows = re.findall(r'<a href="/radiographs/(\d+)/">.*?data-testid="uncertainty">(.*?)</td>', html, re.S)
    assert [(int(i), value.strip()) for i, value in rows] == [
        (unsure.id, "0.900"), (sure.id, "0.200"), (unseen.id, '<span class="muted" title="No model suggestion yet">not scored</span>'),
    ]
