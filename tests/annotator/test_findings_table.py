"""The findings table: COCO category ids never move (every export snapshot numbers a label the same
way, so models are compared on the same categories), and the pages get the table from the server."""
from __future__ import annotations

import json
import re

import pytest

from annotator.constants import FINDINGS, FindingLabel
from annotator.services.export_files import FINDING_CATEGORIES, LUNG_CATEGORIES

from .factories import RadiographFactory

# The ids as exported since format v1. A new label takes a new id; these never change.
PINNED = {
    "atelectasis": 3,
    "consolidation": 4,
    "interstitial_shadow": 5,
    "pneumothorax": 6,
    "pleural_effusion": 7,
    "pleural_thickening": 8,
    "cardiomegaly": 9,
    "lung_lesion": 10,
    "unknown": 11,
}


def test_coco_ids_of_existing_findings_never_move():
    assert {label: FINDING_CATEGORIES[label] for label in PINNED} == PINNED
    assert {cid for cid, _ in LUNG_CATEGORIES.values()} == {1, 2}


def test_every_finding_has_its_own_id_colour_and_description():
    ids = [f.coco_id for f in FINDINGS]
    assert len(set(ids)) == len(ids) and not set(ids) & {1, 2}
    assert all(re.fullmatch(r"#[0-9a-f]{6}", f.colour) and f.description for f in FINDINGS)
    assert FindingLabel.values == [f.label for f in FINDINGS]


@pytest.mark.django_db
def test_the_review_page_carries_the_findings_table(client, radiologist):
    radiograph = RadiographFactory()
    client.force_login(radiologist)
    html = client.get(f"/review/{radiograph.id}/").content.decode()
    config = json.loads(re.search(r'<script id="workspace-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    table = {row["label"]: row for row in config["vocab"]["finding_table"]}
    assert {label: row["coco_id"] for label, row in table.items()} == {f.label: f.coco_id for f in FINDINGS}
    assert table["consolidation"]["colour"] == next(f.colour for f in FINDINGS if f.label == "consolidation")
