"""Admin pages: an export created and downloaded from the page (with a real worker writing it),
and the dashboard, import, users, model registry and training pages doing what they show."""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pytest
from playwright.sync_api import expect

from tests.conftest import SAMPLE
from tests.inference.worker import celery_worker  # noqa: F401  (fixture: a real Celery worker process)

pytestmark = pytest.mark.browser

RIGHT, LEFT = [300, 400, 900, 1600], [1100, 400, 1700, 1600]


def annotate_and_accept(radiograph, annotator, radiologist, *, right=RIGHT, left=LEFT):
    from annotator.services.queues import queue_next
    from annotator.services.workflow import annotation_save, radiograph_accept

    annotation_save(radiograph_id=radiograph.id, user=annotator, version=radiograph.version, right=RIGHT, left=LEFT,
                    labels={"healthy": "negative", "covid": "positive", "other_disease": "unknown"}, submit=True)
    leased = queue_next(user=radiologist, queue="review")
    assert leased.id == radiograph.id
    radiograph_accept(radiograph_id=radiograph.id, user=radiologist, version=leased.version, right=right, left=left,
                      labels={"healthy": "negative", "covid": "positive", "other_disease": "negative"})


def test_admin_creates_an_export_and_downloads_it(page, live_server, login, shot, import_sample, make_user, celery_worker, tmp_path):  # noqa: F811
    from annotator.models import ExportSnapshot

    first, _ = import_sample("00870a9c.jpg", "000001-12.jpg")
    annotate_and_accept(first, make_user("annotator", username="ann1"), make_user("radiologist", username="rad1"))
    celery_worker()
    admin = make_user("admin", username="boss")

    login(page, admin)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Exports", exact=True).click()
    page.get_by_label("sample").check()
    page.get_by_test_id("create-export").click()
    expect(page.locator("#export-status")).to_contain_text("requested")
    snapshot = ExportSnapshot.objects.get()
    row = page.get_by_test_id(f"export-{snapshot.id}")
    expect(row).to_have_attribute("data-status", "done", timeout=120_000)
    expect(row).to_contain_text("sample")
    shot(page, "exports")

    with page.expect_download() as info:
        row.get_by_role("button", name="Download zip").click()
    path = tmp_path / "export.zip"
    info.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest_name = next(n for n in names if n.endswith("manifest.json"))
        manifest = json.loads(archive.read(manifest_name))
        labels = list(csv.DictReader(io.StringIO(archive.read(next(n for n in names if n.endswith("labels.csv"))).decode())))
    assert manifest["format"] == "lungmark-export/1"
    assert any(n.endswith(".png") and "/images/" in n for n in names)
    accepted = [row for row in labels if row["has_lung_mask"] in ("1", "true", "True")]
    assert len(accepted) >= 1


def test_admin_pages_show_and_change_what_they_say(page, live_server, login, shot, import_sample, make_user, tmp_path):
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from inference.models import ModelVersion, TrainingRun
    from inference.services.registry import model_version_activate

    first, second = import_sample("00870a9c.jpg", "16663_1_1.jpg")
    ann, rad = make_user("annotator", username="ann1"), make_user("radiologist", username="rad1")
    annotate_and_accept(first, ann, rad, right=[300, 400, 900, 1500])  # the radiologist shortens the right box
    versions = []
    for i, auc in ((1, 0.81), (2, 0.88)):
        mv = ModelVersion(name=f"cmtnet-v{i}", sha256=f"{i}" * 64, metrics={
            "covid_auc": auc, "lung_dice": 0.9, "covid_roc": {"fpr": [0, 0.1, 0.3, 1], "tpr": [0, 0.6, 0.85 + i / 100, 1]}})
        mv.checkpoint.save(f"v{i}.pt", ContentFile(b"x"), save=False)
        mv.save()
        versions.append(mv)
    model_version_activate(model_version_id=versions[0].id, preannotate=False)
    TrainingRun.objects.create(status="succeeded", live=None, progress=1.0, candidate=versions[1], baseline=versions[0],
                               history=[{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 6)],
                               decision={"promote": False, "reason": "not better on the test split"})
    admin = make_user("admin", username="boss")

    login(page, admin)
    progress = page.get_by_test_id("progress")
    expect(progress.get_by_role("row", name=re.compile("sample"))).to_contain_text("2")
    throughput = page.get_by_test_id("throughput")
    expect(throughput.get_by_role("row", name=re.compile("ann1"))).to_be_visible()
    expect(throughput.get_by_role("row", name=re.compile("rad1"))).to_be_visible()
    pair = page.get_by_test_id("agreement").get_by_role("row", name=re.compile("ann1 · rad1"))
    cells = pair.locator("td")
    expect(cells.nth(1)).to_have_text("1")  # one radiograph seen by both
    expect(cells.nth(2)).to_have_text("0.92")  # right-box IoU: 1100 of 1200 rows kept
    expect(cells.nth(3)).to_have_text("1.00")  # left box unchanged
    expect(cells.nth(4)).to_have_text("0.98")  # Dice of the filled boxes: 2 x 1.38M / 2.82M
    expect(cells.nth(6)).to_have_text("67%")  # two of the three labels agree
    expect(page.locator("#progress-chart svg rect").first).to_be_visible()
    shot(page, "dashboard", full_page=True)

    # Import from the page, with its report.
    page.goto(f"{live_server.url}/manage/import/")
    page.get_by_label("Dataset").fill("uploads")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    page.locator("#import-files").set_input_files([str(SAMPLE / "images" / "000001-12.jpg"), str(broken)])
    page.get_by_role("button", name="Import").click()
    report = page.get_by_test_id("import-report")
    expect(report.get_by_test_id("report-imported")).to_have_text("1")
    expect(report.get_by_test_id("report-errors")).to_have_text("1")
    expect(report).to_contain_text("broken.png")
    shot(page, "import")

    # Users and roles.
    page.goto(f"{live_server.url}/manage/users/")
    page.get_by_label("User name").fill("newbie")
    page.get_by_label("Password").fill("a-long-enough-passphrase")
    page.locator("form:has(input[value=create])").get_by_label("radiologist").check()
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("User newbie created.")).to_be_visible()
    row = page.get_by_test_id("user-newbie")
    row.get_by_label("annotator").check()
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved newbie.")).to_be_visible()
    newbie = get_user_model().objects.get(username="newbie")
    assert sorted(newbie.groups.values_list("name", flat=True)) == ["annotator", "radiologist"]
    shot(page, "users")

    # Model registry: metrics, ROC, promote and roll back.
    page.goto(f"{live_server.url}/manage/models/")
    expect(page.get_by_test_id(f"model-{versions[0].id}")).to_contain_text("active")
    expect(page.get_by_test_id(f"model-{versions[1].id}")).to_contain_text("0.880")
    expect(page.locator("#roc svg path.curve")).to_have_count(2)
    shot(page, "models")
    page.get_by_test_id(f"model-{versions[1].id}").get_by_role("button", name="Promote").click()
    expect(page.get_by_test_id(f"model-{versions[1].id}")).to_contain_text("active")
    assert ModelVersion.objects.get(is_active=True) == versions[1]
    page.get_by_test_id("rollback").click()
    expect(page.get_by_test_id(f"model-{versions[0].id}")).to_contain_text("active")
    assert ModelVersion.objects.get(is_active=True) == versions[0]

    # Training runs with their curves.
    page.goto(f"{live_server.url}/manage/training/")
    run = page.get_by_test_id("run-list").locator("tr[data-testid^=run-]")
    expect(run).to_have_count(1)
    expect(run).to_contain_text("succeeded")
    expect(page.locator("#history-chart svg path.curve")).to_have_count(2)
    expect(page.locator("#run-detail")).to_contain_text("not better on the test split")
    shot(page, "training")

    for name, url in (("review-queue", "/review/"), ("radiograph-list", "/radiographs/")):
        page.goto(f"{live_server.url}{url}")
        shot(page, name)
