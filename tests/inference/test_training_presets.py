"""The named presets of ``training.presets`` are the one definition of a run: the admin page's start,
the periodic retraining and the bootstrap all train with one of them (the device's by default)."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from annotator.constants import AnnotationSource, LungStatus
from annotator.models import Radiograph
from annotator.services.annotation_import import lung_annotation_save
from inference.models import TrainingRun
from inference.selectors import training_images_count
from inference.services import training_run_execute, training_run_start_if_due
from tests.annotator.factories import RadiographFactory
from training.presets import PRESETS, preset_for_device

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("predictor_reset")]


def spy_training(monkeypatch) -> list:
    """Training replaced by a recorder of the TrainConfig it is given (it then fails the run)."""
    configs = []

    def train(config, progress=None, should_stop=None):
        configs.append(config)
        raise RuntimeError("recorded")

    monkeypatch.setattr("training.train.train", train)
    return configs


@pytest.fixture
def accepted():
    """A few accepted radiographs with their lung boxes: something to export and to count."""
    Radiograph.objects.all().delete()  # data other tests committed
    radiographs = [RadiographFactory(state="accepted") for _ in range(3)]
    for radiograph in radiographs:
        lung_annotation_save(
            radiograph=radiograph, right_box=[10, 20, 90, 140], left_box=[110, 20, 190, 140],
            status=LungStatus.ACCEPTED, source=AnnotationSource.RADIOLOGIST,
        )
    return radiographs


def test_the_admin_page_lists_the_presets_with_the_default_and_an_estimate(client_for, admin_user, accepted):
    data = client_for(admin_user).get("/api/training-presets/").json()
    assert data["default"] == preset_for_device(settings.INFERENCE_DEVICE).name  # TRAINING_PRESET is "auto"
    assert data["images"] == training_images_count() >= 3
    listed = {p["name"]: p for p in data["presets"]}
    assert set(listed) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert listed[name]["estimate_seconds"] == round(preset.estimate_seconds(data["images"]))
        assert listed[name]["epochs"] == preset.train_config(export_dir="", run_dir="").epochs


def test_a_run_started_on_the_admin_page_trains_with_the_chosen_preset_and_overrides(client_for, admin_user, accepted, monkeypatch):
    configs = spy_training(monkeypatch)
    response = client_for(admin_user).post("/api/training-runs/", {"preset": "paper", "epochs": 2}, format="json")
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["config"]["preset"] == "paper" and run["config"]["overrides"] == {"epochs": 2}
    expected = PRESETS["paper"].estimate_seconds(training_images_count()) * 2 / PRESETS["paper"].train_config(export_dir="", run_dir="").epochs
    assert run["config"]["estimate_seconds"] == round(expected)

    training_run_execute(training_run_id=run["id"])
    [config] = configs
    paper = PRESETS["paper"].train_config(export_dir="", run_dir="")
    assert (config.model.width, config.model.image_size, config.epochs, config.resume) == (paper.model.width, paper.model.image_size, 2, True)
    assert "preset paper" in TrainingRun.objects.get(pk=run["id"]).log


def test_an_unknown_preset_is_refused(client_for, admin_user):
    response = client_for(admin_user).post("/api/training-runs/", {"preset": "huge"}, format="json")
    assert response.status_code == 400 and "Unknown training preset 'huge'" in response.json()["detail"]
    assert not TrainingRun.objects.exists()


@override_settings(RETRAIN_MIN_NEW_ACCEPTED=1, TRAINING_PRESET="cpu", TRAINING_OVERRIDES={"epochs": 3})
def test_periodic_retraining_uses_the_configured_preset(accepted, monkeypatch):
    configs = spy_training(monkeypatch)
    run = training_run_start_if_due()
    assert run.trigger == "periodic" and run.config["preset"] == "cpu" and run.config["overrides"] == {"epochs": 3}
    training_run_execute(training_run_id=run.pk)
    cpu = PRESETS["cpu"].train_config(export_dir="", run_dir="")
    assert (configs[0].model.width, configs[0].model.image_size, configs[0].epochs) == (cpu.model.width, cpu.model.image_size, 3)
