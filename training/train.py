"""Training CMTNet on an export snapshot: ``train(config, progress=callback) -> TrainResult``.

The run directory receives ``config.json`` (the TrainConfig plus resolved values such as the learning
rate and normalisation), ``metrics.jsonl`` (one row per epoch), ``loss_curves.png``, ``train.log``,
``last.pt`` (with optimizer state, for ``resume``; refreshed every ``REFRESH_SECONDS``, after the last
epoch and on a stop), ``best.pt`` (the best epoch on validation metrics; with ``weight_average``, the
moving average of the weights is what is validated and kept there, last.pt keeps both) and, at the
end, ``test_metrics.json`` + ``roc.png`` from scoring ``best.pt`` on the export's test split (the same
metrics are stored inside ``best.pt``, the checkpoint to register and serve).

The best epoch is picked on a subject-disjoint validation part of the *train* split; the test split is
only scored at the end, because the model registry compares versions on it.

The Celery worker passes ``progress``: called as ``progress(epoch, step, total_steps, metrics)`` after
every optimisation step (metrics: running ``loss`` and ``lr``) and once more at the end of each epoch
with ``step == total_steps`` and the epoch's row of ``metrics.jsonl`` (``train_loss``, ``val_loss``,
``val_lung_dice``, ``val_disease_dice``, ``val_covid_auc``, ... : what a learning curve needs).
Epochs count from 1.

It may also pass ``should_stop``, a callable checked before every batch: when it returns true the run
writes ``last.pt`` (with the position inside the epoch) and returns within one batch, with
``TrainResult.stopped`` set; ``resume=True`` then continues exactly where it stopped.

With ``config.nproc`` > 1, or under torchrun, the run is shared by several processes with DDP
(``training.distributed``): the same global batch, rank 0 alone calls the callbacks and writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from training.checkpoint import load_checkpoint, save_checkpoint, write_checkpoint
from training.config import TASK_DIAGNOSIS, TASK_DISEASE, TASK_LUNG, TrainConfig, model_config_from_dict, model_config_to_dict
from training.data import IMAGENET_NORMALIZATION, ExportDataset, class_weights, compute_normalization, subject_split
from training.distributed import (
    SINGLE,
    Ranks,
    environment_ranks,
    launch,
    process_group,
    rank_batches,
    rank_device,
    resolve_nproc,
    sum_over_ranks,
    sum_parts,
    wrap_model,
)
from training.evaluate import checkpoint_box_calibrate, checkpoint_dataset, run_model, summarize, write_metrics
from training.export import LUNG_MASK_BOXES, ExportError, annotated_lung_boxes, lung_mask_kinds, read_export, verify_export
from training.losses import multitask_loss, task_label_counts
from training.model import CMTNet, build_model
from training.plots import plot_loss_curves
from training.runtime import seed_everything

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, int, dict[str, Any]], None]
StopCheck = Callable[[], bool]

PAPER_LR = 5e-5  # the paper's rate; it assumes an ImageNet-initialised encoder
SCRATCH_LR = 1e-3  # BENCHMARKS.md: what works from scratch
COSINE_FLOOR = 0.01  # cosine schedule ends at 1% of the base rate, not at zero
# last.pt and loss_curves.png are rewritten after an epoch only when this long has passed since they
# were last written (and always after the last epoch, and on a stop request). On a GPU an epoch of the
# sample takes about 2 s and writing the paper network's 530 MB last.pt about as long again; a worker
# that dies without a stop request loses at most this much training. metrics.jsonl (the page's live
# curves) and best.pt are written every epoch.
REFRESH_SECONDS = 30.0


@dataclass
class TrainResult:
    """Where the run's outputs are, and the best checkpoint's test metrics ({} if not evaluated)."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # a stop request ended the run early; last.pt is the resume point


def learning_rate(base: float, epoch: int, epochs: int, schedule: str) -> float:
    """Learning rate of a 0-based epoch: constant, or cosine from ``base`` down to 1% of it."""
    if schedule == "constant" or epochs <= 1:
        return base
    progress = epoch / (epochs - 1)
    return base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy the ``training`` package's log records into the run directory for the run's duration."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("training")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def _read_history(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if row["epoch"] <= up_to_epoch]


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in history), encoding="utf-8")


def train(config: TrainConfig, progress: ProgressCallback | None = None, should_stop: StopCheck | None = None) -> TrainResult:
    """Train CMTNet as configured; see the module docstring for what the run directory receives.

    Raises ``ExportError`` when the export is unusable (failed verification, no training images).
    """
    ranks = environment_ranks()
    if ranks is None:
        nproc = min(resolve_nproc(config.nproc, config.device), config.batch_size)  # every rank needs samples
        if nproc > 1:
            return launch(config, nproc, lambda ranks, init: _train_rank(config, ranks, init, progress, should_stop))
        ranks = SINGLE
    return _train_rank(config, ranks, None, progress, should_stop)


def _train_rank(
    config: TrainConfig, ranks: Ranks, init_method: str | None, progress: ProgressCallback | None, should_stop: StopCheck | None
) -> TrainResult:
    run_dir = Path(config.run_dir)
    device = rank_device(config.device, ranks)
    with process_group(ranks, device, init_method):
        if not ranks.is_main:
            return _train(config, run_dir, device, ranks, None, None)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _log_to(run_dir / "train.log"):
            return _train(config, run_dir, device, ranks, progress, should_stop)


def _train(
    config: TrainConfig,
    run_dir: Path,
    device: torch.device,
    ranks: Ranks,
    progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> TrainResult:
    started = time.monotonic()
    export = read_export(config.export_dir)
    if config.verify and ranks.is_main:
        problems = verify_export(export.root)
        if problems:
            shown = "\n  ".join(problems[:20])
            raise ExportError(f"{export.root}: export verification failed ({len(problems)} problems):\n  {shown}")
    train_records, val_records = subject_split(export.split("train"), config.val_fraction, config.seed)
    if not train_records:
        raise ExportError(f"{export.root}: no images in the train split")
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    # --- model, normalisation, learning rate: fresh or from last.pt ---------------------------------
    resume_from = load_checkpoint(last_path) if config.resume and last_path.is_file() else None
    if config.resume and resume_from is None:
        log.info("no %s to resume from; starting a new run", last_path)
    seed_everything(config.seed)
    if resume_from is not None:
        model_config = model_config_from_dict(resume_from["config"])
        _check_same_architecture(model_config_to_dict(config.model), resume_from["config"])
        model = CMTNet(model_config)
        model.load_state_dict(resume_from["state_dict"])
        normalization = resume_from["normalization"]
        state = resume_from["resume_state"]
        base_lr, pretrained_loaded = float(state["base_lr"]), bool(state["pretrained_loaded"])
        start_epoch, best_score, best_epoch = int(resume_from["epoch"]), state.get("best_score"), state["best_epoch"]
        partial = state.get("partial_epoch")
        log.info(
            "resuming %s after epoch %d%s", run_dir, start_epoch, f" and {partial['steps']} steps of the next" if partial else ""
        )
    else:
        model, pretrained_loaded = build_model(config.model)
        normalization = None
        base_lr = config.lr if config.lr is not None else (PAPER_LR if pretrained_loaded else SCRATCH_LR)
        start_epoch, best_score, best_epoch = 0, None, 0
        partial = None
    model_config = model.config

    def dataset(records, augment, **supervision):
        return ExportDataset(
            export.root,
            records,
            image_size=model_config.image_size,
            in_channels=model_config.in_channels,
            normalization=normalization,
            augment=augment,
            seed=config.seed,
            cache=config.cache_images,
            equalize=model_config.equalize,
            **supervision,
        )

    # What the lung map learns from besides its masks: every pair of lung boxes, drawn or of an
    # outline (the box term), and, unless filled boxes still train as masks, nothing pixelwise from them.
    supervision: dict[str, Any] = {}
    lung_boxes = annotated_lung_boxes(export.root, with_outline_boxes=True)
    if config.loss.lung_box_weight and TASK_LUNG in model_config.tasks:
        supervision["lung_boxes"] = lung_boxes
    if not config.loss.filled_boxes_as_mask:
        supervision["mask_off"] = {image_id for image_id, kind in lung_mask_kinds(export.root).items() if kind == LUNG_MASK_BOXES}
    if config.pseudo_lungs and TASK_LUNG in model_config.tasks:
        from training.pseudo import pseudo_lung_candidates, pseudo_lung_masks

        candidates = pseudo_lung_candidates(train_records, lung_boxes)
        supervision["pseudo_lungs"] = pseudo_lung_masks(
            config.pseudo_lungs, export.root, candidates, model_config.image_size, device=str(device), progress=config.progress_bar
        )
    if config.loss.healthy_empty_disease and TASK_DISEASE in model_config.tasks:
        supervision["healthy_empty_disease"] = True
    train_set = dataset(train_records, config.augment, **supervision)
    if config.cache_images:
        train_set.preload(progress=config.progress_bar)
    if normalization is None:
        # ImageNet statistics go with ImageNet weights; from scratch, the training images' own.
        normalization = (
            {k: v[: model_config.in_channels] for k, v in IMAGENET_NORMALIZATION.items()}
            if pretrained_loaded and model_config.in_channels == 3
            else compute_normalization(train_set)
        )
    train_set.normalization = normalization
    val_set = dataset(val_records, None)
    balance = class_weights(train_set)
    annotated = annotated_lung_boxes(export.root)

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    # ``net`` runs the training steps (DDP with synchronised BatchNorm on several processes); ``model``
    # shares its parameters and buffers and is what is validated and saved.
    net = wrap_model(model, device) if ranks.distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr, weight_decay=config.weight_decay)
    if resume_from is not None:
        optimizer.load_state_dict(resume_from["optimizer_state"])
    # ``kept`` is what is validated and saved as best.pt: the weights, or their moving average.
    decay = average_decay(config.weight_average, config.epochs * math.ceil(len(train_set) / config.batch_size))
    averaged = _weight_average(model, decay, resume_from)
    kept = averaged.module if averaged is not None else model

    resolved = {
        "lr": base_lr,
        "pretrained_loaded": pretrained_loaded,
        "normalization": normalization,
        "device": str(device),
        "processes": ranks.world_size,
        "train_images": len(train_records),
        "train_samples_per_epoch": len(train_set),
        "covid_copies_of": train_set.copied_class,
        # What the lung map learns from: images with a mask target, and with the box term.
        "lung_mask_images": sum(train_set.has_lung_target(r) for r in train_records),
        # Of which lung masks a teacher model gave (config.pseudo_lungs).
        "pseudo_lung_images": len(train_set.pseudo_lungs),
        "lung_box_images": sum(r.image_id in train_set.lung_boxes for r in train_records) if train_set.lung_boxes is not None else 0,
        "class_weights": balance if config.loss.class_balance else None,
        "weight_average_decay": decay if config.weight_average else None,
        "val_images": len(val_records),
        "test_images": len(export.split("test")),
        "export": export.identity,
    }
    if ranks.is_main:
        (run_dir / "config.json").write_text(
            json.dumps({**config.to_dict(), "resolved": resolved}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    log.info(
        "training on %s%s: %d images (%d samples/epoch with augmentation), %d validation, lr %g, %s",
        device, f" and {ranks.world_size - 1} more processes" if ranks.distributed else "", len(train_records), len(train_set),
        len(val_records), base_lr, "ImageNet encoder" if pretrained_loaded else "from scratch",
    )

    history = _read_history(run_dir / "metrics.jsonl", start_epoch)
    checkpoint_common = {
        "normalization": normalization,
        "export": export.identity,
        "train_config": config.to_dict(),
    }

    def resume_state(partial_epoch: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "best_score": best_score,
            "best_epoch": best_epoch,
            "base_lr": base_lr,
            "pretrained_loaded": pretrained_loaded,
            "partial_epoch": partial_epoch,
            "averaged": {k: v.detach().cpu().clone() for k, v in averaged.state_dict().items()} if averaged is not None else None,
        }

    refreshed = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.monotonic()
        lr = learning_rate(base_lr, epoch, config.epochs, config.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums = EpochSums.from_dict(partial) if partial else EpochSums()
        partial = None
        steps = _train_epoch(
            net, train_set, optimizer, config, device, ranks, epoch, lr, progress, should_stop, sums, balance,
            after_step=(lambda: averaged.update_parameters(model)) if averaged is not None else None,
        )
        if sums.stopped and not ranks.is_main:
            return TrainResult(run_dir=run_dir, best_checkpoint=best_path, last_checkpoint=last_path, metrics={}, stopped=True)
        if sums.stopped:
            save_checkpoint(
                last_path,
                model,
                epoch=epoch,
                optimizer_state=optimizer.state_dict(),
                resume_state=resume_state(sums.to_dict()),
                **checkpoint_common,
            )
            log.info("stop requested: saved %s at epoch %d, step %d/%d; resume to continue", last_path, epoch + 1, sums.steps, steps)
            return TrainResult(
                run_dir=run_dir, best_checkpoint=best_path, last_checkpoint=last_path, metrics={}, history=history, stopped=True
            )
        if not ranks.is_main:
            continue  # rank 0 alone validates and writes
        train_loss, train_parts = sums.means()

        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_parts": train_parts}
        if len(val_set):
            val = summarize(
                run_model(
                    kept, val_set, device=device, batch_size=config.batch_size, loss_config=config.loss, amp=config.amp, annotated_boxes=annotated
                )
            )
            row["val_loss"] = val.get("loss")
            row.update({f"val_{k}": val[k] for k in VAL_METRICS})
        row["seconds"] = round(time.monotonic() - epoch_started, 2)
        score = selection_score(row, model_config.tasks)
        row["val_score"] = score
        improved = best_score is None or (score is not None and score > best_score)
        if improved:
            best_score, best_epoch = score, epoch + 1
        row["best_epoch"] = best_epoch
        history.append(row)
        _write_history(run_dir / "metrics.jsonl", history)

        if improved:
            save_checkpoint(best_path, kept, epoch=epoch + 1, **checkpoint_common)
        if epoch + 1 == config.epochs or time.monotonic() - refreshed >= REFRESH_SECONDS:
            plot_loss_curves(history, run_dir / "loss_curves.png")
            save_checkpoint(
                last_path,
                model,
                epoch=epoch + 1,
                optimizer_state=optimizer.state_dict(),
                resume_state=resume_state(),
                **checkpoint_common,
            )
            refreshed = time.monotonic()
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %s, val lung Dice %s, disease Dice %s, COVID AUC %s%s, %.1fs",
            epoch + 1, config.epochs, train_loss, _fmt(row.get("val_loss")), _fmt(row.get("val_lung_dice")),
            _fmt(row.get("val_disease_dice")), _fmt(row.get("val_covid_auc")), " (best so far)" if improved else "", row["seconds"],
        )
        if progress is not None:
            progress(epoch + 1, steps, steps, row)

    if config.box_calibration and ranks.is_main and best_path.is_file():
        calibration = checkpoint_box_calibrate(best_path, export.root, train_records, device=device, batch_size=config.batch_size, amp=config.amp)
        log.info("box-edge calibration from the training images' annotated boxes: %s", calibration or "too few annotated boxes, none")
    metrics: dict[str, Any] = {}
    test_records = export.split("test")
    if config.evaluate_test and test_records and ranks.is_main and best_path.is_file():
        metrics = _score_on_test(best_path, export.root, test_records, config, device, run_dir)
    log.info("run finished in %.1fs; best epoch %d", time.monotonic() - started, best_epoch)
    return TrainResult(run_dir=run_dir, best_checkpoint=best_path, last_checkpoint=last_path, metrics=metrics, history=history)


@dataclass
class EpochSums:
    """Running sums of one epoch's training losses, and how many steps are done (kept in last.pt on a stop)."""

    steps: int = 0
    seen: int = 0
    loss_sum: float = 0.0
    part_sums: dict[str, float] = field(default_factory=dict)
    part_counts: dict[str, int] = field(default_factory=dict)
    stopped: bool = False

    def add(self, parts: dict[str, float], n: int) -> None:
        self.steps += 1
        self.seen += n
        self.loss_sum += parts["total"] * n
        for name, value in parts.items():
            if name != "total":
                self.part_sums[name] = self.part_sums.get(name, 0.0) + value * n
                self.part_counts[name] = self.part_counts.get(name, 0) + n

    def means(self) -> tuple[float, dict[str, float]]:
        """(mean loss, mean loss per task) over the samples seen."""
        parts = {name: self.part_sums[name] / self.part_counts[name] for name in self.part_sums}
        return (self.loss_sum / self.seen if self.seen else float("nan")), parts

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seen": self.seen,
            "loss_sum": self.loss_sum,
            "part_sums": dict(self.part_sums),
            "part_counts": dict(self.part_counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochSums:
        return cls(
            steps=int(data["steps"]),
            seen=int(data["seen"]),
            loss_sum=float(data["loss_sum"]),
            part_sums={k: float(v) for k, v in data["part_sums"].items()},
            part_counts={k: int(v) for k, v in data["part_counts"].items()},
        )


# Validation metrics recorded in every epoch's row; the first three choose the best epoch.
VAL_METRICS = (
    "lung_dice",
    "lung_box_iou",
    "lung_box_iou_annotated",
    "disease_dice",
    "covid_auc",
    "covid_positives",
    "covid_negatives",
    "healthy_accuracy",
)
# The validation COVID AUC takes part in choosing the best epoch only when the validation images hold
# at least this many of each class. With fewer it is noise: on the sample's 13-image validation splits
# (3-7 negatives) it swung between 0.08 and 0.94 from one epoch to the next, and picking on it chose
# epoch 5 of 30 in one cross-validation fold, before the disease decoder had learnt anything.
MIN_SELECTION_CLASS_IMAGES = 10
_SELECTION = {TASK_LUNG: "val_lung_dice", TASK_DISEASE: "val_disease_dice", TASK_DIAGNOSIS: "val_covid_auc"}


def selection_score(row: dict[str, Any], tasks: tuple[int, ...]) -> float | None:
    """How good an epoch is (higher is better): the mean of the trained tasks' validation lung Dice,
    disease Dice and COVID AUC, those defined on the validation images (the AUC only with at least
    ``MIN_SELECTION_CLASS_IMAGES`` validation images of each class).

    The summed loss would pick the epoch where the easiest task is best and ignore the rest (the lung
    loss dominates it); a metric mean picks an epoch where every task is good. Without any defined
    metric, the negative validation loss (then the training loss) decides.
    """
    values = [row.get(_SELECTION[t]) for t in tasks if t in _SELECTION and (t != TASK_DIAGNOSIS or _auc_measurable(row))]
    present = [float(v) for v in values if v is not None]
    if present:
        return sum(present) / len(present)
    loss = row.get("val_loss", row.get("train_loss"))
    return None if loss is None or not math.isfinite(loss) else -float(loss)


def _auc_measurable(row: dict[str, Any]) -> bool:
    counts = (row.get("val_covid_positives"), row.get("val_covid_negatives"))
    return all(c is not None and c >= MIN_SELECTION_CLASS_IMAGES for c in counts)


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    # The shuffle order depends only on (seed, epoch), so a resumed run repeats it exactly, even from
    # the middle of an epoch.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def _train_epoch(
    net: torch.nn.Module,
    train_set: ExportDataset,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    ranks: Ranks,
    epoch: int,
    lr: float,
    progress: ProgressCallback | None,
    should_stop: StopCheck | None,
    sums: EpochSums,
    balance: dict[str, list[float]],
    after_step: Callable[[], None] | None = None,
) -> int:
    """One pass over the shuffled training samples, from step ``sums.steps`` on; returns the epoch's
    number of steps. ``sums`` collects the losses; ``sums.stopped`` is set when ``should_stop`` said so.

    On several processes each step is one global batch of ``config.batch_size`` shared by the ranks
    (``training.distributed``); the stop request and the losses in ``sums`` are the whole batch's.
    """
    net.train()
    train_set.set_epoch(epoch)
    # A final batch of one image breaks BatchNorm (one value per channel at the 1x1 bottleneck of small
    # inputs); rank_batches drops it rather than crash. It is a different image every epoch (shuffled).
    batches = rank_batches(_epoch_order(len(train_set), config.seed, epoch), config.batch_size, ranks)
    total_steps = len(batches)
    loader = DataLoader(
        train_set,
        batch_sampler=batches[sums.steps :],
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
    )
    iterator = loader
    show_bar = config.progress_bar and ranks.is_main
    if show_bar:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, initial=sums.steps, total=total_steps)
    use_amp = config.amp and device.type == "cuda"
    for batch in iterator:
        stop = should_stop is not None and should_stop()
        samples, task_counts = len(batch["image"]), None
        if ranks.distributed:
            # Rank 0's stop request and the global batch's label counts, in one all-reduce.
            local_counts = task_label_counts(batch)
            summed = sum_over_ranks([float(stop), samples, *local_counts.values()], device)
            stop, samples = summed[0] > 0, int(summed[1])
            task_counts = dict(zip(local_counts, summed[2:]))
        if stop:
            sums.stopped = True
            break
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            output = net(images)
        loss = multitask_loss(output, batch, config.loss, balance, task_counts=task_counts)
        optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients; each rank's loss is its share of the global batch's mean,
        # so scaling by the number of ranks makes the average their sum, the one-process gradient.
        (loss.total * ranks.world_size if ranks.distributed else loss.total).backward()
        optimizer.step()
        if after_step is not None:
            after_step()

        sums.add(sum_parts(loss.parts, device) if ranks.distributed else loss.parts, samples)
        running = sums.loss_sum / sums.seen
        if show_bar:
            iterator.set_postfix(loss=f"{running:.4f}")
        if progress is not None:
            progress(epoch + 1, sums.steps, total_steps, {"loss": running, "lr": lr})
    if show_bar:
        iterator.close()
    return total_steps


# A moving average of the weights spans at most this share of a run's steps: a short run (a small
# export, a test) averages over its last steps instead of keeping weights from its first ones.
AVERAGE_SPAN = 1 / 6


def average_decay(decay: float, total_steps: int) -> float:
    """The per-step decay of the weight average of a run of ``total_steps``: ``decay`` (the sample's
    runs, 600-700 steps, keep 0.99), lowered so that the average spans (1 / (1 - decay) steps) at
    most ``AVERAGE_SPAN`` of the run; 0 averages nothing."""
    if not decay:
        return 0.0
    return min(decay, max(0.0, 1.0 - 1.0 / (AVERAGE_SPAN * max(1, total_steps))))


def _weight_average(model: torch.nn.Module, decay: float, resume_from: dict[str, Any] | None) -> AveragedModel | None:
    """The moving average of ``model``'s weights and BatchNorm statistics (``decay`` per step; None when
    0), continued from last.pt's when resuming. Its first update copies the weights."""
    if not decay:
        return None
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    stored = (resume_from or {}).get("resume_state", {}).get("averaged")
    if stored is not None:
        averaged.load_state_dict(stored)
    elif resume_from is not None:
        log.info("last.pt holds no weight average; the average starts from its weights")
    return averaged


def _check_same_architecture(requested: dict[str, Any], stored: dict[str, Any]) -> None:
    for key in ("width", "image_size", "in_channels", "tasks"):
        if requested.get(key) != stored.get(key):
            raise ValueError(
                f"cannot resume: the run's checkpoint has {key}={stored.get(key)!r} but {requested.get(key)!r} was requested"
            )


def _score_on_test(
    best_path: Path,
    export_root: Path,
    test_records: list,
    config: TrainConfig,
    device: torch.device,
    run_dir: Path,
) -> dict[str, Any]:
    """Score best.pt on the test split, write test_metrics.json and roc.png, store the metrics in best.pt.

    last.pt is left alone: it is the resume point, and its weights may not be the best epoch's.
    """
    from training.checkpoint import load_model

    model, best = load_model(best_path, device)
    test_set = checkpoint_dataset(export_root, test_records, model, best)
    outputs = run_model(
        model,
        test_set,
        device=device,
        batch_size=config.batch_size,
        progress=config.progress_bar,
        amp=config.amp,
        annotated_boxes=annotated_lung_boxes(export_root),
        box_calibration=best.get("box_calibration"),
    )
    metrics = summarize(outputs)
    metrics["split"] = "test"
    metrics["epoch"] = best["epoch"]
    write_metrics(metrics, run_dir / "test_metrics.json", roc_title="COVID ROC (test split)")
    best["metrics"] = metrics
    write_checkpoint(best_path, best)
    log.info(
        "test split: lung Dice %s, lung box IoU %s, COVID AUC %s",
        _fmt(metrics.get("lung_dice")), _fmt(metrics.get("lung_box_iou")), _fmt(metrics.get("covid_auc")),
    )
    return metrics


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
