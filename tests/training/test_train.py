"""The training loop: run directory contents, progress callback, exact resume, refusing bad exports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import training.train as train_module
from training.checkpoint import load_checkpoint
from training.config import ModelConfig, TrainConfig
from training.export import ExportError, read_export
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


def test_last_checkpoint_is_refreshed_on_a_clock_and_always_at_the_end(synthetic_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast epochs do not each pay for writing last.pt and the curves; the finished run has both."""
    monkeypatch.setattr(train_module, "REFRESH_SECONDS", 3600.0)
    killed = tiny_config(synthetic_export, tmp_path / "killed", epochs=3, evaluate_test=False)
    with pytest.raises(Killed):
        train(killed, progress=kill_after_epoch(2))
    assert not (tmp_path / "killed" / "last.pt").exists() and not (tmp_path / "killed" / "loss_curves.png").exists()
    assert [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (tmp_path / "killed" / "best.pt").is_file()

    resumed = train(dataclasses.replace(killed, resume=True))  # nothing to resume from: starts again, cleanly
    assert load_checkpoint(resumed.last_checkpoint)["epoch"] == 3 and (tmp_path / "killed" / "loss_curves.png").is_file()
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


def test_resuming_gives_the_same_model_as_an_uninterrupted_run(synthetic_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_module, "REFRESH_SECONDS", 0.0)  # last.pt after every epoch, as on a slow machine
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


class StepCounter:
    """A progress callback counting training steps, and a stop request after a given number of them
    (like Ctrl+C arriving in the middle of an epoch)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps = 0
        self.steps_per_epoch = 0
        self.stop_after = stop_after

    def progress(self, epoch: int, step: int, total: int, metrics: dict) -> None:
        if "train_loss" not in metrics:
            self.steps += 1
            self.steps_per_epoch = total

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.steps >= self.stop_after


def test_a_stop_request_ends_the_run_mid_epoch_and_resume_continues_exactly(synthetic_export: Path, tmp_path: Path) -> None:
    counter = StepCounter()
    straight = train(tiny_config(synthetic_export, tmp_path / "straight", epochs=2, batch_size=2, evaluate_test=False), progress=counter.progress)
    per_epoch = counter.steps_per_epoch
    assert per_epoch >= 3

    stopped_config = tiny_config(synthetic_export, tmp_path / "stopped", epochs=2, batch_size=2, evaluate_test=False)
    counter = StepCounter(stop_after=per_epoch + 2)  # the whole first epoch and two steps of the second
    result = train(stopped_config, progress=counter.progress, should_stop=counter.should_stop)
    assert result.stopped
    assert counter.steps == per_epoch + 2  # no step ran after the request
    last = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert last["epoch"] == 1 and last["resume_state"]["partial_epoch"]["steps"] == 2
    assert [json.loads(line)["epoch"] for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()] == [1]

    counter = StepCounter()
    resumed = train(dataclasses.replace(stopped_config, resume=True), progress=counter.progress)
    assert not resumed.stopped
    assert counter.steps == per_epoch - 2  # only the rest of the second epoch
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert b["epoch"] == 2
    for key in a["state_dict"]:
        assert torch.allclose(a["state_dict"][key].float(), b["state_dict"][key].float(), atol=1e-6), key
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history], rel=1e-5)


def test_epoch_rows_given_to_progress_carry_losses_and_validation_metrics(synthetic_export: Path, tmp_path: Path) -> None:
    rows = []
    train(
        tiny_config(synthetic_export, tmp_path / "run", epochs=2, val_fraction=0.3, evaluate_test=False),
        progress=lambda epoch, step, total, metrics: rows.append(metrics) if "train_loss" in metrics else None,
    )
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert {"train_loss", "val_loss", "val_lung_dice", "val_disease_dice", "val_covid_auc", "val_score", "best_epoch"} <= set(row)
        assert row["train_loss"] > 0 and row["val_loss"] > 0


def test_the_best_epoch_is_chosen_on_validation_metrics_not_the_summed_loss() -> None:
    from training.config import ALL_TASKS
    from training.train import selection_score

    counts = {"val_covid_positives": 30, "val_covid_negatives": 12}
    low_loss_bad_disease = {"val_loss": 0.2, "val_lung_dice": 0.9, "val_disease_dice": 0.0, "val_covid_auc": 0.5, **counts}
    higher_loss_every_task = {"val_loss": 0.3, "val_lung_dice": 0.9, "val_disease_dice": 0.4, "val_covid_auc": 0.6, **counts}
    assert selection_score(higher_loss_every_task, ALL_TASKS) > selection_score(low_loss_bad_disease, ALL_TASKS)
    assert selection_score(higher_loss_every_task, ALL_TASKS) == pytest.approx((0.9 + 0.4 + 0.6) / 3)
    # Only the trained tasks count; undefined metrics are left out; without any, the loss decides.
    assert selection_score({"val_lung_dice": 0.8, "val_covid_auc": 0.2}, (1,)) == pytest.approx(0.8)
    assert selection_score({"val_lung_dice": 0.8, "val_disease_dice": None}, (1, 2)) == pytest.approx(0.8)
    assert selection_score({"val_loss": 0.5}, (3,)) == pytest.approx(-0.5)


def test_a_covid_auc_from_a_handful_of_validation_images_does_not_choose_the_epoch() -> None:
    from training.config import ALL_TASKS
    from training.train import MIN_SELECTION_CLASS_IMAGES, selection_score

    # A fold of the sample: 13 validation images, 3 of them COVID-negative. Epoch 5 had an AUC of
    # 0.94 by chance and no disease mask yet; epoch 19 segments both better.
    few = {"val_covid_positives": 10, "val_covid_negatives": 3}
    epoch_5 = {"val_lung_dice": 0.876, "val_disease_dice": 0.0, "val_covid_auc": 0.944, **few}
    epoch_19 = {"val_lung_dice": 0.887, "val_disease_dice": 0.2, "val_covid_auc": 0.611, **few}
    assert selection_score(epoch_19, ALL_TASKS) > selection_score(epoch_5, ALL_TASKS)
    assert selection_score(epoch_5, ALL_TASKS) == pytest.approx((0.876 + 0.0) / 2)

    enough = {"val_covid_positives": MIN_SELECTION_CLASS_IMAGES, "val_covid_negatives": MIN_SELECTION_CLASS_IMAGES}
    assert selection_score({**epoch_5, **enough}, ALL_TASKS) > selection_score({**epoch_19, **enough}, ALL_TASKS)


def test_a_weight_average_is_validated_and_kept_while_training_runs_as_before_and_resumes_exactly(synthetic_export: Path, tmp_path: Path) -> None:
    # No validation images: every epoch is "best", so best.pt holds what is kept after the last step.
    settings = dict(epochs=2, batch_size=2, val_fraction=0.0, evaluate_test=False)
    plain = train(tiny_config(synthetic_export, tmp_path / "plain", **settings))
    counter = StepCounter()
    averaged = train(tiny_config(synthetic_export, tmp_path / "averaged", weight_average=0.5, **settings), progress=counter.progress)
    config = json.loads((tmp_path / "averaged" / "config.json").read_text())
    # 10 steps in all: an average spanning 2 steps (decay 0.4), not 0.5's, which would span a fifth of the run.
    assert config["weight_average"] == 0.5 and config["resolved"]["weight_average_decay"] == pytest.approx(0.4)

    # The optimiser's weights are those of a run without the average: training is unchanged.
    raw, plain_raw = load_checkpoint(averaged.last_checkpoint)["state_dict"], load_checkpoint(plain.last_checkpoint)["state_dict"]
    for key in raw:
        assert torch.allclose(raw[key].float(), plain_raw[key].float(), atol=1e-6), key
    # best.pt holds the average, not the last weights; without the average it holds the last weights.
    kept, plain_kept = load_checkpoint(averaged.best_checkpoint)["state_dict"], load_checkpoint(plain.best_checkpoint)["state_dict"]
    assert all(torch.equal(plain_kept[key], plain_raw[key]) for key in plain_raw)
    moved = [key for key in raw if raw[key].is_floating_point() and not torch.allclose(kept[key], raw[key], atol=1e-6)]
    assert any(key.endswith("weight") for key in moved) and any(key.endswith("running_mean") for key in moved)
    # ... an average that follows the training: nearer the last weights than those one epoch earlier are.
    first = load_checkpoint(train(tiny_config(synthetic_export, tmp_path / "first", **{**settings, "epochs": 1})).last_checkpoint)["state_dict"]

    def distance(a: dict, b: dict) -> float:
        return sum(float((a[key].float() - b[key].float()).norm()) for key in a if key.endswith("weight"))

    assert counter.steps_per_epoch >= 5 and distance(kept, raw) < 0.5 * distance(first, raw)

    # A stop in the middle of the second epoch keeps the average in last.pt; resuming continues it exactly.
    stopped = tiny_config(synthetic_export, tmp_path / "stopped", weight_average=0.5, **settings)
    stop = StepCounter(stop_after=counter.steps_per_epoch + 1)
    assert train(stopped, progress=stop.progress, should_stop=stop.should_stop).stopped
    resumed = train(dataclasses.replace(stopped, resume=True))
    resumed_kept = load_checkpoint(resumed.best_checkpoint)["state_dict"]
    for key in kept:
        assert torch.allclose(resumed_kept[key].float(), kept[key].float(), atol=1e-6), key


def test_the_weight_average_spans_at_most_a_sixth_of_a_run() -> None:
    from training.train import average_decay

    assert average_decay(0.99, 630) == 0.99  # the sample's cpu runs (600-700 steps) keep the measured decay
    assert average_decay(0.99, 60) == pytest.approx(0.9)  # a small export: about 10 of 60 steps
    assert average_decay(0.99, 4) == 0.0  # too short to average anything
    assert average_decay(0.0, 630) == 0.0


def test_healthy_images_take_part_in_the_disease_loss_with_an_empty_mask(
    make_synthetic_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the option, every training image labelled healthy trains the disease map (towards empty)."""
    root = make_synthetic_export(n_images=30, test_every=10)
    seen: list[tuple[float, float]] = []  # (switched-on disease images, foreground pixels among them)
    real_loss = train_module.multitask_loss

    def counting_loss(output, batch, *args, **kwargs):
        switch = batch["has_disease_mask"]
        seen.append((float(switch.sum()), float((batch["disease_mask"].flatten(1).sum(1) * switch).sum())))
        return real_loss(output, batch, *args, **kwargs)

    monkeypatch.setattr(train_module, "multitask_loss", counting_loss)
    totals = {}
    for flag in (False, True):
        seen.clear()
        config = tiny_config(root, tmp_path / str(flag), epochs=1, evaluate_test=False, box_calibration=False, val_fraction=0.0)
        config.augment.covid_copies = False  # each training image once per epoch
        config.loss.healthy_empty_disease = flag
        train(config)
        totals[flag] = tuple(sum(values) for values in zip(*seen))
    train_records = read_export(root).split("train")
    masked = sum(r.has_disease_mask for r in train_records)
    healthy_without = sum(r.healthy == "positive" and not r.has_disease_mask for r in train_records)
    assert healthy_without >= 3
    assert totals[False][0] == masked and totals[True][0] == masked + healthy_without
    assert totals[True][1] == totals[False][1] > 0  # the healthy images add no foreground pixel
