"""The findings import: anatomy outlines are no findings, and a mask must be the size of its radiograph."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from annotator.models import FindingRegion
from annotator.services.imports import source_key

from .factories import RadiographFactory, png

pytestmark = pytest.mark.django_db


def write_mask(folder, name: str, shape: tuple[int, int], rows: slice) -> str:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[rows, 40:120] = 255
    (folder / "masks").mkdir(exist_ok=True)
    (folder / "masks" / name).write_bytes(png(mask))
    return f"masks/{name}"


@pytest.fixture
def findings_file(tmp_path):
    """One 200x160 radiograph and a findings file: a consolidation, the cardiomediastinum, a lung
    outline, and a ground-glass mask drawn on a copy of the image 10% larger."""
    name = "chest-1.png"
    radiograph = RadiographFactory(state="imported", findings_complete=False, source_name=name, source_key=source_key(name))
    shape = (radiograph.height, radiograph.width)
    rows = [
        ("consolidation", write_mask(tmp_path, "a.png", shape, slice(20, 60))),
        ("cardiomediastinum", write_mask(tmp_path, "b.png", shape, slice(60, 150))),
        ("left_lung", write_mask(tmp_path, "c.png", shape, slice(10, 150))),
        ("ground_glass_opacity", write_mask(tmp_path, "d.png", (176, 220), slice(80, 120))),
    ]
    path = tmp_path / "findings.csv"
    path.write_text("file,label,mask\n" + "".join(f"{name},{label},{mask}\n" for label, mask in rows))
    return radiograph, name, path


def test_anatomy_is_skipped_and_a_mask_of_another_size_is_refused_by_row(findings_file):
    radiograph, name, path = findings_file
    out = io.StringIO()
    call_command("import_annotations", dataset=radiograph.dataset.name, findings=path, report=path.parent / "report.json", stdout=out)
    report = json.loads((path.parent / "report.json").read_text())["findings"]

    stored = {(r.source_label, r.label, r.status) for r in FindingRegion.objects.filter(radiograph=radiograph)}
    assert stored == {("consolidation", "consolidation", "accepted")}  # no cardiomediastinum "unknown" finding
    assert report["flagged_labels"] == []
    assert "cardiomediastinum: 1 mask(s) skipped (anatomy, not a finding)" in report["notes"]
    assert "left_lung: 1 mask(s) kept as lung outline" in report["notes"]
    lungs = radiograph.lung_annotations.first()
    assert lungs is not None and lungs.left_box == [40, 10, 120, 150]

    [error] = report["errors"]
    assert (error["file"], error["line"], error["label"]) == (name, 5, "ground_glass_opacity")
    assert "220x176" in error["error"] and "200x160" in error["error"], error["error"]
    assert "line 5" in out.getvalue()
    # A finding row was refused: the image's finding set is not complete, so absence means nothing.
    radiograph.refresh_from_db()
    assert radiograph.findings_complete is False
