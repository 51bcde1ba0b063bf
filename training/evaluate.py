"""Scoring CMTNet on an export split with the paper's metrics.

``evaluate(checkpoint, export_dir, split="test")`` returns a flat dict (JSON-ready, ``None`` where a
metric is undefined for the split):

- ``lung_dice``, ``lung_iou``: mean per image over images with a lung mask (prediction = p >= 0.5);
- ``lung_box_iou`` (mean of ``lung_box_iou_right``/``_left``): boxes from ``lung_boxes_from_mask``
  of the predicted vs the ground-truth mask;
- ``disease_dice``, ``disease_iou``: mean per image over images whose disease mask is not empty;
- ``covid_accuracy`` (p >= 0.5), ``covid_auc``, ``covid_sensitivity_at_99_specificity``,
  ``covid_sensitivity_at_90_specificity``, ``covid_eer``, over images whose COVID label is known;
- ``healthy_accuracy`` (argmax of the health head), ``other_disease_accuracy``, ``other_disease_auc``;
- counts (``n_images``, ``lung_images``, ``disease_images``, ``covid_positives``, ...) and
  ``covid_roc`` {"fpr", "tpr"} for plotting.

Segmentation metrics are computed at the model's input resolution, as in the paper.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.checkpoint import load_model
from training.config import LossConfig
from training.data import ExportDataset
from training.export import read_export
from training.losses import multitask_loss
from training.metrics import (
    box_iou,
    classification_metrics,
    dice_score,
    iou_score,
    lung_boxes_from_mask,
    mean_or_none,
    roc_curve,
)
from training.model import CMTNet, predict_proba
from training.plots import plot_roc
from training.runtime import resolve_device

log = logging.getLogger(__name__)

MASK_THRESHOLD = 0.5


@dataclass
class SplitOutputs:
    """Per-image results of running a model over a dataset (labels: 1, 0, or -1 for unknown)."""

    image_ids: list[str] = field(default_factory=list)
    lung_dice: list[float] = field(default_factory=list)
    lung_iou: list[float] = field(default_factory=list)
    lung_box_iou_right: list[float | None] = field(default_factory=list)
    lung_box_iou_left: list[float | None] = field(default_factory=list)
    disease_dice: list[float] = field(default_factory=list)
    disease_iou: list[float] = field(default_factory=list)
    healthy_prob: list[float] = field(default_factory=list)
    covid_prob: list[float] = field(default_factory=list)
    other_prob: list[float] = field(default_factory=list)
    healthy_label: list[int] = field(default_factory=list)
    covid_label: list[int] = field(default_factory=list)
    other_label: list[int] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    loss: float | None = None


def _label(value: torch.Tensor, switch: torch.Tensor) -> int:
    return int(value) if float(switch) > 0 else -1


@torch.inference_mode()
def run_model(
    model: CMTNet,
    dataset: ExportDataset,
    *,
    device: torch.device,
    batch_size: int = 8,
    loss_config: LossConfig | None = None,
    keep_embeddings: bool = False,
    progress: bool = False,
    amp: bool = False,
) -> SplitOutputs:
    """Run ``model`` over ``dataset`` (no augmentation expected) and collect per-image results.

    With ``loss_config`` the mean multi-task loss over batches is filled in too (validation).
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", leave=False)
    out = SplitOutputs()
    losses: list[tuple[float, int]] = []
    use_amp = amp and device.type == "cuda"
    for batch in loader:
        images = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            output = model(images)
        if loss_config is not None:
            losses.append((float(multitask_loss(output, batch, loss_config).total), len(images)))
        proba = predict_proba(output)
        for i in range(len(images)):
            out.image_ids.append(dataset.records[int(batch["index"][i])].image_id)
            if proba.lung is not None and batch["has_lung_mask"][i] > 0:
                pred = (proba.lung[i] >= MASK_THRESHOLD).cpu().numpy()
                true = batch["lung_mask"][i].numpy() > 0.5
                out.lung_dice.append(dice_score(pred, true))
                out.lung_iou.append(iou_score(pred, true))
                pred_boxes, true_boxes = lung_boxes_from_mask(pred), lung_boxes_from_mask(true)
                out.lung_box_iou_right.append(box_iou(pred_boxes["right"], true_boxes["right"]))
                out.lung_box_iou_left.append(box_iou(pred_boxes["left"], true_boxes["left"]))
            if proba.disease is not None and batch["has_disease_mask"][i] > 0 and batch["disease_mask"][i].any():
                pred = (proba.disease[i] >= MASK_THRESHOLD).cpu().numpy()
                true = batch["disease_mask"][i].numpy() > 0.5
                out.disease_dice.append(dice_score(pred, true))
                out.disease_iou.append(iou_score(pred, true))
            out.healthy_prob.append(float(proba.healthy[i]) if proba.healthy is not None else float("nan"))
            out.covid_prob.append(float(proba.covid[i]) if proba.covid is not None else float("nan"))
            out.other_prob.append(float(proba.other_disease[i]) if proba.other_disease is not None else float("nan"))
            # health target index 0 means healthy; store 1 = healthy for readability.
            out.healthy_label.append(_label(1 - batch["health"][i], batch["has_health"][i]))
            out.covid_label.append(_label(batch["diagnosis"][i, 0], batch["has_covid"][i]))
            out.other_label.append(_label(batch["diagnosis"][i, 1], batch["has_other"][i]))
            if keep_embeddings:
                out.embeddings.append(output.embedding[i].float().cpu().numpy())
    if losses:
        out.loss = sum(v * n for v, n in losses) / sum(n for _, n in losses)
    return out


def _known(labels: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    keep = (y >= 0) & np.isfinite(s)
    return y[keep], s[keep]


def summarize(outputs: SplitOutputs) -> dict[str, Any]:
    """The flat metrics dict (see the module docstring) from per-image results."""
    box_means = [mean_or_none([r, l]) for r, l in zip(outputs.lung_box_iou_right, outputs.lung_box_iou_left)]
    metrics: dict[str, Any] = {
        "n_images": len(outputs.image_ids),
        "lung_images": len(outputs.lung_dice),
        "lung_dice": mean_or_none(outputs.lung_dice),
        "lung_iou": mean_or_none(outputs.lung_iou),
        "lung_box_iou": mean_or_none(box_means),
        "lung_box_iou_right": mean_or_none(outputs.lung_box_iou_right),
        "lung_box_iou_left": mean_or_none(outputs.lung_box_iou_left),
        "disease_images": len(outputs.disease_dice),
        "disease_dice": mean_or_none(outputs.disease_dice),
        "disease_iou": mean_or_none(outputs.disease_iou),
    }
    y, s = _known(outputs.covid_label, outputs.covid_prob)
    metrics.update(classification_metrics(y, s, prefix="covid_"))
    curve = roc_curve(y, s) if len(y) else None
    metrics["covid_roc"] = None if curve is None else {"fpr": curve[0].tolist(), "tpr": curve[1].tolist()}

    y, s = _known(outputs.healthy_label, outputs.healthy_prob)
    metrics["health_images"] = int(len(y))
    metrics["healthy_accuracy"] = float(((s >= 0.5) == (y == 1)).mean()) if len(y) else None

    y, s = _known(outputs.other_label, outputs.other_prob)
    other = classification_metrics(y, s, prefix="other_disease_")
    metrics["other_disease_accuracy"] = other["other_disease_accuracy"]
    metrics["other_disease_auc"] = other["other_disease_auc"]
    if outputs.loss is not None:
        metrics["loss"] = outputs.loss
    return metrics


def write_metrics(metrics: dict[str, Any], out: str | Path, roc_title: str = "COVID ROC") -> tuple[Path, Path]:
    """Write ``metrics`` as JSON to ``out`` and the COVID ROC curve to ``roc.png`` next to it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    roc = metrics.get("covid_roc")
    roc_path = plot_roc({"CMTNet": None if roc is None else {**roc, "auc": metrics.get("covid_auc")}}, out.parent / "roc.png", roc_title)
    return out, roc_path


def evaluate(
    checkpoint_path: str | Path,
    export_dir: str | Path,
    split: str = "test",
    *,
    out: str | Path | None = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint on one split of an export; optionally write ``out`` (JSON) and ``roc.png``.

    The images are prepared exactly like training images (checkpoint's size and normalisation, no
    augmentation). Returns the metrics dict described in the module docstring, plus ``split`` and
    ``checkpoint``.
    """
    torch_device = resolve_device(device)
    model, checkpoint = load_model(checkpoint_path, torch_device)
    export = read_export(export_dir)
    records = export.split(split)
    if not records:
        log.warning("split %r of %s has no images", split, export_dir)
    dataset = ExportDataset(
        export.root,
        records,
        image_size=model.config.image_size,
        in_channels=model.config.in_channels,
        normalization=checkpoint["normalization"],
        augment=None,
        cache=False,
    )
    outputs = run_model(model, dataset, device=torch_device, batch_size=batch_size, progress=progress)
    metrics = summarize(outputs)
    metrics["split"] = split
    metrics["checkpoint"] = str(checkpoint_path)
    if out is not None:
        write_metrics(metrics, out, roc_title=f"COVID ROC ({split} split)")
    return metrics
