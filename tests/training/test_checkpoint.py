"""The checkpoint contract: one file, loadable with weights_only=True, enough to resume or serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, load_model, save_checkpoint
from training.config import ModelConfig
from training.model import CMTNet

REQUIRED_KEYS = {"format", "state_dict", "config", "normalization", "label_names", "tasks", "export", "metrics", "epoch", "train_config"}


def test_trained_checkpoints_load_with_weights_only(trained_run) -> None:
    for path in (trained_run.best_checkpoint, trained_run.last_checkpoint):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert REQUIRED_KEYS <= set(checkpoint)
        assert checkpoint["format"] == CHECKPOINT_FORMAT
        assert checkpoint["config"]["width"] == 0.0625 and checkpoint["config"]["image_size"] == 32
        assert checkpoint["config"]["tasks"] == [1, 2, 3, 4]
        assert checkpoint["label_names"]["health"] == ["healthy", "unhealthy"]
        assert checkpoint["label_names"]["diagnosis"] == ["covid", "other_disease"]
        assert len(checkpoint["normalization"]["mean"]) == 3
        assert checkpoint["export"]["manifest_sha256"]


def test_only_the_last_checkpoint_carries_optimizer_state_and_the_best_carries_test_metrics(trained_run) -> None:
    best = load_checkpoint(trained_run.best_checkpoint)
    last = load_checkpoint(trained_run.last_checkpoint)
    assert "optimizer_state" in last and "optimizer_state" not in best
    assert last["epoch"] == 2
    assert best["metrics"]["split"] == "test" and "lung_dice" in best["metrics"]


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CMTNet(ModelConfig(width=0.0625, image_size=32, tasks=(1, 4), pretrained=False)).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, normalization={"mean": [0.5] * 3, "std": [0.2] * 3}, metrics={"lung_dice": 0.5}, epoch=3)
    loaded, checkpoint = load_model(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.lung_logits, b.lung_logits) and torch.equal(a.diagnosis_logits, b.diagnosis_logits)
    assert b.disease_logits is None and loaded.config.tasks == (1, 4)
    assert checkpoint["metrics"] == {"lung_dice": 0.5} and checkpoint["epoch"] == 3
    assert not loaded.training


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="expected 'cmtnet-checkpoint/1'"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
