"""The import page in a real browser: burned-in DICOM are excluded unless the admin ticks the opt-in,
and the radiographs are listed under their display names, never the uploaded file names."""
from __future__ import annotations

import io
import re

import pydicom
import pytest
from playwright.sync_api import expect

from tests.conftest import SAMPLE

pytestmark = pytest.mark.browser

RSNA = SAMPLE / "dicom" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def test_import_page_excludes_burned_in_text_unless_opted_in(page, live_server, login, shot, make_user, tmp_path):
    from annotator.models import Radiograph

    if not RSNA.is_file():
        pytest.skip("sample data not available")
    ds = pydicom.dcmread(RSNA)
    ds.BurnedInAnnotation = "YES"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    upload = tmp_path / "SURNAME_GIVEN_MRN12345.dcm"
    upload.write_bytes(buffer.getvalue())
    login(page, make_user("admin", username="importer"))

    page.goto(f"{live_server.url}/manage/import/")
    page.get_by_label("Dataset").fill("burned")
    page.locator("#import-files").set_input_files([str(upload)])
    page.get_by_role("button", name="Import").click()
    report = page.get_by_test_id("import-report")
    expect(report.get_by_test_id("report-excluded")).to_have_text("1")
    expect(report).to_contain_text(re.compile("burned.in text", re.IGNORECASE))
    assert Radiograph.objects.get(dataset__name="burned").state == "excluded"

    page.get_by_label("Dataset").fill("burned-ok")
    page.get_by_label("Import DICOM with burned-in text into the queue").check()
    page.get_by_role("button", name="Import").click()
    expect(report.get_by_test_id("report-imported")).to_have_text("1")
    radiograph = Radiograph.objects.get(dataset__name="burned-ok")
    assert radiograph.state == "imported"
    shot(page, "import-burned-in")

    page.goto(f"{live_server.url}/radiographs/?dataset=burned-ok")
    expect(page.locator("table.data")).to_contain_text(radiograph.display_name)
    expect(page.locator("body")).not_to_contain_text("MRN12345")
