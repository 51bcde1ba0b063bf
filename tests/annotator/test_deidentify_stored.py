"""De-identification end to end: a marked DICOM imported through the service leaves no trace in
anything the tool stores (media files, database rows, events, the import report)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotator.models import ImportJob, Radiograph
from annotator.services.imports import SourceFile, dataset_get_or_create, radiographs_import

from .dicom_markers import DATE, MARKER, PATIENT_ID, marked_dataset, to_bytes
from .test_deidentify import all_uids, rsna_path  # noqa: F401

TABLES = ["annotator_radiograph", "annotator_reviewevent", "annotator_importjob", "annotator_subject"]


@pytest.mark.django_db
def test_nothing_stored_carries_the_markers(rsna_path):
    ds = marked_dataset(rsna_path)
    original_uids = all_uids(ds)
    data = to_bytes(ds)
    assert data.count(MARKER.encode()) > 100
    dataset = dataset_get_or_create(name="deid")
    report = radiographs_import(
        dataset=dataset,
        sources=[SourceFile(name="marked.dcm", size=len(data), read=lambda limit: data[:limit])],
        metadata={},
    )
    assert report.imported == 1, report.errors
    radiograph = Radiograph.objects.get(dataset=dataset)
    stored_files = [radiograph.original, radiograph.display, radiograph.preview, radiograph.pixels]
    planted = [MARKER, PATIENT_ID, DATE, *original_uids]
    for field in stored_files:
        if not field:
            continue
        content = (Path(settings.MEDIA_ROOT) / field.name).read_bytes()
        for value in planted:
            assert value.encode() not in content, f"{value} survived in {field.name}"
    # Database rows: radiograph metadata, subject key, events and the import report.
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT row_to_json(t)::text FROM {table} t")  # noqa: S608 (fixed table names)
            text = "\n".join(row[0] for row in cursor.fetchall())
            for value in planted:
                assert value not in text, f"{value} survived in {table}"
    assert MARKER not in json.dumps(ImportJob.objects.get(dataset=dataset).report)
    assert radiograph.kind == "dicom" and radiograph.original.name.endswith(".dcm")
    assert "marked" not in radiograph.original.name  # stored under a server-chosen name
