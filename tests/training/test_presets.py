"""Training presets: one definition per device, used by the CLI, the admin page and retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.cli import main
from training.config import TrainConfig
from training.presets import PRESETS, Preset, get_preset, preset_for_device


def test_the_presets_exist_with_words_for_the_admin_page() -> None:
    assert set(PRESETS) == {"cpu", "cuda-small", "paper"}
    for name, preset in PRESETS.items():
        assert isinstance(preset, Preset) and preset.name == name
        assert preset.title and preset.description
    assert (PRESETS["cpu"].device, PRESETS["cuda-small"].device, PRESETS["paper"].device) == ("cpu", "cuda", "cuda")


def test_the_gpu_preset_without_imagenet_weights_is_the_cpu_recipe_on_cuda() -> None:
    cpu = get_preset("cpu").train_config(export_dir="e", run_dir="r").to_dict()
    small = get_preset("cuda-small").train_config(export_dir="e", run_dir="r").to_dict()
    assert small.pop("device") == "cuda" and cpu.pop("device") == "cpu"
    assert small == cpu
    assert small["amp"] is False  # fp32 on the GPU too: bf16 cost the small network box IoU (training/README.md)


def test_the_paper_preset_is_the_papers_configuration() -> None:
    config = get_preset("paper").train_config(export_dir="e", run_dir="r")
    assert (config.model.width, config.model.image_size, config.model.pretrained) == (1.0, 224, True)
    assert (config.batch_size, config.epochs) == (16, 30)
    assert (config.loss.health_weight, config.loss.diagnosis_weight) == (1.0, 1.0)  # eq. 8: equal weights
    assert config.lr is None  # 5e-5 with the ImageNet encoder (training.train.PAPER_LR)
    assert config.model.mirror_average is False  # the paper's single pass (the mirror was measured on the small network only)
    assert config.weight_average == 0  # the paper's weights as trained (the average was measured on the small network only)
    assert config.model.equalize is False and config.loss.disease_foreground_weight == 1.0  # the paper's inputs and BCE
    # Drawn lung boxes teach where the lungs end through the box term, not as filled rectangles.
    assert (config.loss.lung_box_weight, config.loss.lung_box_pairwise, config.loss.filled_boxes_as_mask) == (1.0, True, False)


def test_the_cpu_preset_is_the_small_network_and_overrides_replace_fields(tmp_path: Path) -> None:
    preset = get_preset("cpu")
    config = preset.train_config(export_dir=str(tmp_path / "export"), run_dir=str(tmp_path / "run"), epochs=3, seed=5)
    assert isinstance(config, TrainConfig)
    assert (config.model.width, config.model.image_size, config.device) == (0.25, 128, "cpu")
    assert (config.epochs, config.seed) == (3, 5)
    # Cross-validation chose the classification losses at a quarter weight on the CPU (training/README.md).
    assert (config.loss.lung_weight, config.loss.disease_weight) == (1.0, 1.0)
    assert (config.loss.health_weight, config.loss.diagnosis_weight) == (0.25, 0.25)
    # ... and the lungs learning from boxes through the box term, never from filled rectangles.
    assert (config.loss.lung_box_weight, config.loss.lung_box_pairwise, config.loss.filled_boxes_as_mask) == (1.0, True, False)
    assert config.model.mirror_average is True  # answers with the mean over the image and its mirror
    assert config.weight_average == 0.99  # keeps a moving average of its weights
    assert config.model.equalize is True  # histogram-equalised inputs
    assert config.loss.disease_foreground_weight == 5.0  # disease pixels weigh 5 times in the disease BCE
    assert config.export_dir == str(tmp_path / "export") and config.run_dir == str(tmp_path / "run")
    with pytest.raises(ValueError, match="unknown training setting.*epoch_count"):
        preset.train_config(export_dir="e", run_dir="r", epoch_count=3)


def test_an_unknown_preset_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="cpu, cuda-small, paper"):
        get_preset("fast")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: the place torchvision looks for the ImageNet weights offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def imagenet_weights_put(hub: Path) -> None:
    from torchvision.models import VGG16_BN_Weights

    target = hub / "checkpoints" / VGG16_BN_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"weights")


@pytest.mark.parametrize(
    ("device", "weights", "expected"),
    [
        ("cpu", False, "cpu"), ("cpu", True, "cpu"),
        ("cuda", True, "paper"), ("cuda:1", True, "paper"), ("CUDA:0", True, "paper"),
        ("cuda", False, "cuda-small"), ("cuda:1", False, "cuda-small"),
    ],
)
def test_the_preset_is_chosen_by_device_and_the_imagenet_weights(hub_cache: Path, device: str, weights: bool, expected: str) -> None:
    if weights:
        imagenet_weights_put(hub_cache)
    assert preset_for_device(device).name == expected


def test_auto_follows_cuda_availability(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert preset_for_device().name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert preset_for_device().name == "cuda-small"
    imagenet_weights_put(hub_cache)
    assert preset_for_device().name == "paper"


def test_time_estimates_grow_with_the_export_and_the_gpu_preset_is_faster_per_image() -> None:
    cpu, paper = get_preset("cpu"), get_preset("paper")
    assert 0 < cpu.estimate_seconds(100) < cpu.estimate_seconds(1000)
    # The CPU preset is meant to fit in about 15 minutes for the sample's ~160 images.
    assert cpu.estimate_seconds(160) <= 15 * 60


def test_train_uses_the_named_preset_with_command_line_overrides(synthetic_export: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = main(["train", "--export", str(synthetic_export), "--run-dir", str(run), "--preset", "cpu",
                 "--width", "0.0625", "--image-size", "32", "--batch-size", "4", "--epochs", "1"])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["width"] == 0.0625 and config["epochs"] == 1
    cpu = get_preset("cpu").train_config(export_dir="e", run_dir="r")
    assert config["loss"] == json.loads(json.dumps(cpu.to_dict()["loss"]))
    assert config["schedule"] == cpu.schedule and config["device"] == "cpu"


def test_train_with_an_unknown_preset_is_a_clear_error(synthetic_export: Path, tmp_path: Path, capsys) -> None:
    code = main(["train", "--export", str(synthetic_export), "--run-dir", str(tmp_path / "run"), "--preset", "fast"])
    assert code == 2
    assert "known presets: cpu, cuda-small, paper" in capsys.readouterr().err
