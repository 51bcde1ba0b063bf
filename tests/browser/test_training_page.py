"""The admin's Training page: the preset a run would get and roughly how long it takes are shown
before anything starts; the chosen preset and epochs are what the queued run trains with."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_training_page_shows_the_preset_and_its_estimate_before_starting(page, live_server, login, shot, make_user):
    from django.conf import settings
    from inference.models import TrainingRun
    from training.presets import PRESETS, preset_for_device

    admin = make_user("admin", username="admin1")
    login(page, admin)
    page.goto(f"{live_server.url}/manage/training/")
    default = preset_for_device(settings.INFERENCE_DEVICE)
    expect(page.get_by_test_id("preset")).to_have_value(default.name)
    plan = page.get_by_test_id("train-plan")
    epochs = default.train_config(export_dir="", run_dir="").epochs
    expect(plan).to_contain_text(f"{default.title} on {default.device}, {epochs} epochs: about")

    page.get_by_test_id("preset").select_option("paper")
    page.locator("#epochs").fill("2")
    expect(plan).to_contain_text(f"{PRESETS['paper'].title} on cuda, 2 epochs: about")
    shot(page, "training-plan")
    page.get_by_test_id("start-training").click()
    expect(page.locator("#train-status")).to_have_text(re.compile(r"Training run #\d+ queued \(preset paper, about .+\)\."))
    run = TrainingRun.objects.get()
    assert (run.config["preset"], run.config["overrides"], run.created_by) == ("paper", {"epochs": 2}, admin)
    expect(page.get_by_test_id(f"run-{run.id}")).to_contain_text("paper")
    expect(page.get_by_test_id("run-summary")).to_contain_text('preset paper · overrides {"epochs":2}')
