"""The training loop: run directory contents, progress callback, exact resume, refusing bad exports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.config import ModelConfig, TrainConfig
from training.export import ExportError
from training.train import learning_rate, train


def tiny_config(export: Path, run_dir: Path, **overrides) -> TrainConfig:
    settings = dict(model=ModelConfig(width=0.0625, image_size=32, pretrained=False), epochs=2, batch_size=4)
    return TrainConfig(export_dir=str(export), run_dir=str(run_dir), **{**settings, **overrides})


def test_a_run_directory_holds_config_metrics_plots_and_checkpoints(trained_run) -> None:
    run = trained_run.run_dir
    for name in ("config.json", "metrics.jsonl", "loss_curves.png", "best.pt", "last.pt", "test_metrics.json", "roc.png", "train.log"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["width"] == 0.0625
    assert config["resolved"]["lr"] == pytest.approx(1e-3)  # from scratch
    assert config["resolved"]["pretrained_loaded"] is False
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all({"train_loss", "train_parts", "val_loss", "lr"} <= set(r) for r in rows)
    assert trained_run.metrics["split"] == "test"
    assert (run / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_callback_reports_steps_and_epochs(synthetic_export: Path, tmp_path: Path) -> None:
    calls = []
    train(tiny_config(synthetic_export, tmp_path / "run", epochs=1, evaluate_test=False), progress=lambda *args: calls.append(args))
    epochs = {c[0] for c in calls}
    assert epochs == {1}
    total = calls[0][2]
    assert [c[1] for c in calls[:total]] == list(range(1, total + 1))
    assert all("loss" in c[3] and "lr" in c[3] for c in calls[:total])
    epoch_end = calls[-1]
    assert epoch_end[1] == epoch_end[2] == total and "train_loss" in epoch_end[3]


class Killed(Exception):
    pass


def kill_after_epoch(epoch: int):
    """A progress callback that stops the run right after ``epoch`` is checkpointed, like a killed worker."""

    def callback(current: int, step: int, total: int, metrics: dict) -> None:
        if current == epoch and "train_loss" in metrics:
            raise Killed

    return callback


def test_resuming_gives_the_same_model_as_an_uninterrupted_run(synthetic_export: Path, tmp_path: Path) -> None:
    straight = train(tiny_config(synthetic_export, tmp_path / "straight", epochs=3, schedule="cosine", evaluate_test=False))

    interrupted = tiny_config(synthetic_export, tmp_path / "resumed", epochs=3, schedule="cosine", evaluate_test=False)
    with pytest.raises(Killed):
        train(interrupted, progress=kill_after_epoch(1))
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    resumed = train(dataclasses.replace(interrupted, resume=True))

    a = load_checkpoint(straight.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert b["epoch"] == 3
    for key in a["state_dict"]:
        assert torch.allclose(a["state_dict"][key].float(), b["state_dict"][key].float(), atol=1e-6), key
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == [r["lr"] for r in straight.history]
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in straight.history], rel=1e-5)


def test_resume_refuses_a_different_architecture(synthetic_export: Path, tmp_path: Path) -> None:
    config = tiny_config(synthetic_export, tmp_path / "run", epochs=1, evaluate_test=False)
    train(config)
    changed = dataclasses.replace(config, resume=True, epochs=2, model=ModelConfig(width=0.125, image_size=32, pretrained=False))
    with pytest.raises(ValueError, match="cannot resume"):
        train(changed)


def test_training_refuses_an_export_that_fails_verification(make_synthetic_export, tmp_path: Path) -> None:
    export = make_synthetic_export()
    (export / "images" / "img000.png").write_bytes(b"tampered")
    with pytest.raises(ExportError, match="images/img000.png"):
        train(tiny_config(export, tmp_path / "run"))


def test_cosine_schedule_decays_to_a_floor_and_constant_stays() -> None:
    assert learning_rate(1e-3, 0, 10, "cosine") == pytest.approx(1e-3)
    assert learning_rate(1e-3, 9, 10, "cosine") == pytest.approx(1e-5)
    assert learning_rate(1e-3, 5, 10, "constant") == 1e-3
