"""The product measures its own suggestions: an annotator edits the model's lung box and submits, a
radiologist accepts, edits and rejects suggested regions, and the admin dashboard shows, for the
model version, the share accepted unchanged and the IoU/Dice of the edits."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from annotator.constants import AnnotationSource, LungStatus
from annotator.models import SuggestionOutcome
from annotator.services.annotation_import import lung_annotation_save
from inference.models import ModelVersion, Prediction

from .factories import RadiographFactory, region_for
from .test_workflow import _b64_mask

pytestmark = pytest.mark.django_db

MODEL_RIGHT = [20, 30, 90, 140]
MODEL_LEFT = [110, 30, 180, 140]


def suggested(model: ModelVersion, *, healthy: float, covid: float):
    """A radiograph carrying the model's prediction and its lung-box suggestion."""
    radiograph = RadiographFactory(state="preannotated")
    prediction = Prediction.objects.create(
        radiograph=radiograph, model_version=model, lung_mask_png=b"", right_box=MODEL_RIGHT, left_box=MODEL_LEFT,
        healthy_prob=healthy, covid_prob=covid,
    )
    lung_annotation_save(
        radiograph=radiograph, right_box=MODEL_RIGHT, left_box=MODEL_LEFT, status=LungStatus.SUGGESTED,
        source=AnnotationSource.MODEL, model_version=model,
    )
    return radiograph, prediction


def submit(client, radiograph, *, right, left, labels):
    version = client.get(f"/api/radiographs/{radiograph.id}/").json()["version"]
    response = client.put(
        f"/api/radiographs/{radiograph.id}/annotation/",
        {"version": version, "right": right, "left": left, "labels": labels, "submit": True},
        format="json",
    )
    assert response.status_code == 200, response.content


def iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def dashboard_row(admin, model_name: str) -> dict[str, str]:
    client = Client()
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    html = client.get("/manage/").content.decode()
    row = re.search(rf'<tr data-model="{re.escape(model_name)}">(.*?)</tr>', html, re.S)
    assert row, "the dashboard has no row for the model"
    return {field: value.strip() for field, value in re.findall(r'data-field="([\w-]+)">(.*?)</td>', row.group(1), re.S)}


def test_the_dashboard_shows_how_the_models_suggestions_were_treated(client_for, annotator, radiologist, admin_user):
    model = ModelVersion.objects.create(name="cmtnet-test", checkpoint="models/test.pt", sha256="a" * 64)
    annotate = client_for(annotator)

    # The annotator pulls the right lung box up by 20 px and says "not COVID" where the model said COVID.
    edited, _ = suggested(model, healthy=0.2, covid=0.9)
    moved = [MODEL_RIGHT[0], MODEL_RIGHT[1], MODEL_RIGHT[2], MODEL_RIGHT[3] - 20]
    submit(annotate, edited, right=moved, left=MODEL_LEFT, labels={"healthy": "negative", "covid": "negative"})
    # ... and keeps the model's boxes and labels on another radiograph.
    kept, prediction = suggested(model, healthy=0.2, covid=0.9)
    submit(annotate, kept, right=MODEL_RIGHT, left=MODEL_LEFT, labels={"healthy": "negative", "covid": "positive"})

    outcome = SuggestionOutcome.objects.get(radiograph=edited, kind="lungs")
    assert (outcome.outcome, outcome.labels_changed, outcome.model_version) == ("edited", True, model)
    assert outcome.right_iou == pytest.approx(iou(MODEL_RIGHT, moved)) and outcome.left_iou == 1.0

    # The radiologist accepts one suggested region as drawn, halves another (top half kept), rejects a third.
    review = client_for(radiologist)
    regions = [region_for(kept, bbox=(20, 30, 60, 70)) for _ in range(3)]
    for region in regions:
        region.prediction = prediction
        region.save()
    assert review.post(f"/api/regions/{regions[0].id}/accept/", {"version": 1}, format="json").status_code == 200
    response = review.patch(
        f"/api/regions/{regions[1].id}/",
        {"version": 1, "bbox": [20, 30, 60, 70], "mask": _b64_mask(40, 40, slice(0, 20))},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert review.post(f"/api/regions/{regions[2].id}/reject/", {"version": 1}, format="json").status_code == 200

    expected_dice = 2 * (40 * 20) / (40 * 40 + 40 * 20)
    row = dashboard_row(admin_user, model.name)
    assert row == {
        "lungs-n": "2",
        "lungs-unchanged": "50%",
        "lungs-right-iou": f"{iou(MODEL_RIGHT, moved):.3f}",
        "lungs-left-iou": "1.000",  # the edited radiograph's left box was kept
        "lungs-labels-changed": "50%",
        "regions-n": "3",
        "regions-unchanged": "33%",
        "regions-dice": f"{expected_dice:.3f}",
        "regions-rejected": "33%",
    }

    # Undoing the rejection (back to suggested) takes that decision out of the figures.
    response = review.patch(f"/api/regions/{regions[2].id}/", {"version": 2, "status": "suggested"}, format="json")
    assert response.status_code == 200, response.content
    row = dashboard_row(admin_user, model.name)
    assert (row["regions-n"], row["regions-unchanged"], row["regions-rejected"]) == ("2", "50%", "0%")


def test_work_without_a_model_suggestion_is_not_counted(client_for, annotator, radiologist):
    radiograph = RadiographFactory(state="preannotated")
    submit(client_for(annotator), radiograph, right=MODEL_RIGHT, left=MODEL_LEFT, labels={"covid": "positive"})
    added = region_for(radiograph, status="accepted", source="radiologist")
    review = client_for(radiologist)
    assert review.post(f"/api/regions/{added.id}/reject/", {"version": 1}, format="json").status_code == 200
    assert not SuggestionOutcome.objects.exists()
