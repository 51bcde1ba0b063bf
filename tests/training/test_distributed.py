"""Training on two CPU processes (gloo) is the one-process run: gradients, losses, stop and resume, CLI."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import default_collate

from training.checkpoint import load_checkpoint
from training.config import LossConfig, ModelConfig, TrainConfig
from training.data import ExportDataset
from training.distributed import SINGLE, Ranks, _free_port, rank_batches, sum_over_ranks, wrap_model
from training.export import read_export
from training.losses import multitask_loss, task_label_counts
from training.model import CMTNet

# training.train and training.cli are imported inside the tests: the gradient test's second rank
# imports this module, and need not import matplotlib and the rest.

TINY_MODEL = ModelConfig(width=0.0625, image_size=32, pretrained=False)


def test_each_rank_takes_its_slice_of_every_global_batch() -> None:
    order = list(range(11))
    one = rank_batches(order, 4, SINGLE)
    halves = [rank_batches(order, 4, Ranks(rank=r, world_size=2)) for r in range(2)]
    assert one == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert halves == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9, 10]]]
    assert rank_batches(list(range(9)), 4, SINGLE)[-1] == [4, 5, 6, 7]  # a last batch of one is dropped
    assert rank_batches(list(range(9)), 4, Ranks(rank=1, world_size=3))[-1] == [5]  # so is one shorter than the ranks
    # A batch size of 1 (one process) is a batch per sample, none dropped.
    assert rank_batches(list(range(5)), 1, SINGLE) == [[0], [1], [2], [3], [4]]


def _gradients_rank(rank: int, export: str, port: int, out: str) -> None:
    """One step on 4 images: one process on all of them (rank 0), and 2 DDP ranks on 2 each."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        records = read_export(export).split("train")
        dataset = ExportDataset(export, records, image_size=32, in_channels=3)
        loss_config = LossConfig(lung_dice=True, disease_dice=True)
        batch = default_collate([dataset[i] for i in range(4)])
        torch.manual_seed(0)
        model = CMTNet(TINY_MODEL)
        reference = copy.deepcopy(model)
        multitask_loss(reference(batch["image"]), batch, loss_config).total.backward()

        net = wrap_model(model, torch.device("cpu"))
        share = {key: value[rank * 2 : rank * 2 + 2] for key, value in batch.items()}
        local = task_label_counts(share)
        counts = dict(zip(local, sum_over_ranks(list(local.values()), torch.device("cpu"))))
        (multitask_loss(net(share["image"]), share, loss_config, task_counts=counts).total * 2).backward()
        if rank == 0:
            grads = lambda m: {n: None if p.grad is None else p.grad.clone() for n, p in m.named_parameters()}  # noqa: E731
            torch.save({"one": grads(reference), "two": grads(model)}, out)
    finally:
        dist.destroy_process_group()


def test_two_ranks_compute_the_one_process_gradients(synthetic_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "grads.pt"
    args = (str(synthetic_export), _free_port(), str(out))
    other = mp.get_context("spawn").Process(target=_gradients_rank, args=(1, *args))
    other.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _gradients_rank(0, *args)  # rank 0 here: one interpreter start less
    finally:
        torch.set_num_threads(threads)
        other.join(timeout=120)
    assert other.exitcode == 0
    grads = torch.load(out)
    one, two = grads["one"], grads["two"]
    assert [n for n in one if one[n] is None] == [n for n in two if two[n] is None]
    largest = max(g.norm() for g in one.values() if g is not None)
    for name, g in one.items():
        if g is None:
            continue
        # Convolution biases that feed a BatchNorm have a zero gradient, computed as ~1e-9 of noise:
        # hence the absolute floor. Everything else agrees to about 2e-5 of its norm (float sums).
        assert (two[name] - g).norm() <= 1e-3 * g.norm() + 1e-6 * largest, name


def tiny_config(export: Path, run_dir: Path, **overrides) -> TrainConfig:
    settings = dict(model=TINY_MODEL, epochs=2, batch_size=4, evaluate_test=False)
    return TrainConfig(export_dir=str(export), run_dir=str(run_dir), **{**settings, **overrides})


def test_two_processes_train_like_one_and_stop_and_resume_together(synthetic_export: Path, trained_run, tmp_path: Path) -> None:
    from training.train import train

    one = trained_run  # the same tiny model, 2 epochs of 4-image batches, on one process

    steps = []
    config = tiny_config(synthetic_export, tmp_path / "two", nproc=2)
    stopped = train(config, progress=lambda e, s, t, m: steps.append(s) if "train_loss" not in m else None, should_stop=lambda: len(steps) >= 3)
    assert stopped.stopped and len(steps) == 3  # rank 0 asked, both ranks stopped before the 4th step
    assert load_checkpoint(stopped.last_checkpoint)["resume_state"]["partial_epoch"]["steps"] == 1
    resolved = json.loads((tmp_path / "two" / "config.json").read_text())["resolved"]
    assert resolved["processes"] == 2
    assert resolved["train_samples_per_epoch"] == json.loads((one.run_dir / "config.json").read_text())["resolved"]["train_samples_per_epoch"]
    two = train(dataclasses.replace(config, resume=True, nproc=1))  # last.pt does not depend on the process count

    # Adam turns float-rounding noise in near-zero gradients into lr-sized steps, so the weights are
    # compared through what they do: the same losses, epoch by epoch (observed to agree to ~3e-5).
    assert [r["epoch"] for r in two.history] == [1, 2]
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in two.history] == pytest.approx([r[key] for r in one.history], rel=1e-3), key


def test_cli_trains_on_two_processes_and_rank_0_alone_writes(synthetic_export: Path, tmp_path: Path, capsys) -> None:
    from training.cli import main

    run = tmp_path / "run"
    args = ["train", "--export", str(synthetic_export), "--run-dir", str(run), "--width", "0.0625", "--image-size", "32"]
    assert main([*args, "--batch-size", "4", "--epochs", "1", "--nproc", "2"]) == 0
    assert capsys.readouterr().out.count("best checkpoint") == 1
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.json", "metrics.jsonl", "loss_curves.png", "train.log", "last.pt", "best.pt", "test_metrics.json", "roc.png"]
    )
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert load_checkpoint(run / "best.pt")["metrics"]["split"] == "test"
    assert "and 1 more processes" in (run / "train.log").read_text()
    assert json.loads((run / "config.json").read_text())["nproc"] == 2
