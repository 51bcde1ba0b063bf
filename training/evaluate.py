"""Scoring CMTNet on an export split with the paper's metrics.

``evaluate(checkpoint, export_dir, split="test")`` returns a flat dict (JSON-ready, ``None`` where a
metric is undefined for the split):

- ``lung_dice``, ``lung_iou``: mean per image over images with a lung mask (prediction = p >= 0.5);
  ``lung_dice_outline`` over those whose mask is a lung outline (coco.json's ``lung_mask``), not two
  filled boxes (``training.export.lung_mask_kinds``; ``None`` for exports that do not say);
- ``lung_box_iou`` (mean of ``lung_box_iou_right``/``_left``): boxes from ``lung_boxes_from_mask``
  of the predicted vs the ground-truth mask, at model resolution;
- ``lung_box_iou_annotated`` (and ``_right``/``_left``): the boxes of the predicted lung map brought
  to the image's own size (as pre-annotation does) against the boxes people drew in coco.json
  (``training.export.annotated_lung_boxes``: boxes computed from an imported outline are left out,
  those images are scored by the outline), for images that have them; ``lung_boxes_both_iou_0_9`` /
  ``_0_8``: the share of those images where both boxes reach that IoU; ``lung_box_bottom_error``: mean (predicted - annotated) bottom edge as a
  fraction of the image height (negative: boxes end too high). Boxes are those the product suggests:
  moved by the checkpoint's box-edge calibration (``training.boxes.calibrate_boxes``) when it has one;
  ``lung_box_iou_annotated_raw`` is the same IoU before that calibration;
- ``disease_dice``, ``disease_iou``: mean per image over images whose disease mask is not empty;
- ``covid_accuracy`` (p >= 0.5), ``covid_auc``, ``covid_sensitivity_at_99_specificity``,
  ``covid_sensitivity_at_90_specificity``, ``covid_eer``, over images whose COVID label is known;
- ``healthy_accuracy`` (argmax of the health head), ``other_disease_accuracy``, ``other_disease_auc``;
- counts (``n_images``, ``lung_images``, ``disease_images``, ``covid_positives``, ...) and
  ``covid_roc`` {"fpr", "tpr"} for plotting.

Segmentation metrics are computed at the model's input resolution, as in the paper. ``run_model``
also keeps one row per image (``SplitOutputs.rows``) for per-image tables.
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

from training.checkpoint import load_checkpoint, load_model, write_checkpoint
from training.config import TASK_LUNG, LossConfig
from training.data import ExportDataset
from training.boxes import Calibration, calibrate_boxes, fit_box_calibration, lung_boxes_from_mask, scale_box
from training.export import LUNG_MASK_OUTLINE, annotated_lung_boxes, lung_mask_kinds, read_export
from training.losses import multitask_loss
from training.metrics import box_iou, classification_metrics, dice_score, iou_score, mean_or_none, roc_curve
from training.model import CMTNet, predict_proba
from training.plots import plot_roc
from training.runtime import resolve_device

log = logging.getLogger(__name__)

MASK_THRESHOLD = 0.5
# The predicted lung map is brought to the image's size for the annotated-box comparison, capped at
# this longer side: finer than any model input, and cheap for multi-megapixel originals.
BOX_MAX_SIDE = 1024


@dataclass
class SplitOutputs:
    """Per-image results of running a model over a dataset (labels: 1, 0, or -1 for unknown)."""

    image_ids: list[str] = field(default_factory=list)
    lung_dice: list[float] = field(default_factory=list)
    lung_iou: list[float] = field(default_factory=list)
    lung_dice_outline: list[float] = field(default_factory=list)
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
    lung_box_iou_annotated_right: list[float | None] = field(default_factory=list)
    lung_box_iou_annotated_left: list[float | None] = field(default_factory=list)
    lung_box_bottom_error: list[float] = field(default_factory=list)
    lung_box_iou_annotated_raw: list[float | None] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per image, every per-image value
    loss: float | None = None


def _label(value: torch.Tensor, switch: torch.Tensor) -> int:
    return int(value) if float(switch) > 0 else -1


def predicted_lung_boxes(
    lung_prob: torch.Tensor, *, width: int, height: int, calibration: Calibration | None = None
) -> dict[str, list[float] | None]:
    """The lung boxes of a model-size lung probability map, in the pixels of a ``width`` x ``height`` image.

    The map is resized (bilinear) to the image's size, capped at ``BOX_MAX_SIDE``, thresholded and
    boxed there, as pre-annotation does at full size: box edges are then finer than the model's pixels.
    ``calibration`` (a checkpoint's ``box_calibration``) then moves the edges, as pre-annotation does.

    Shape:
        lung_prob (S, S) float in [0, 1] -> {"right": box | None, "left": box | None}
    """
    scale = min(1.0, BOX_MAX_SIDE / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = torch.nn.functional.interpolate(lung_prob[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    boxes = lung_boxes_from_mask((resized >= MASK_THRESHOLD).cpu().numpy())
    scaled = {side: scale_box(box, sx=width / w, sy=height / h) for side, box in boxes.items()}
    return calibrate_boxes(scaled, calibration, width=width, height=height)


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
    annotated_boxes: dict[str, dict[str, list[float]]] | None = None,
    box_calibration: Calibration | None = None,
    lung_masks: dict[str, str] | None = None,
) -> SplitOutputs:
    """Run ``model`` over ``dataset`` (no augmentation expected) and collect per-image results.

    With ``loss_config`` the mean multi-task loss over batches is filled in too (validation). With
    ``annotated_boxes`` (``training.export.annotated_lung_boxes``) the predicted lung boxes, moved by
    ``box_calibration`` when given, are also scored against the annotated ones; the row keeps the
    uncalibrated boxes (``lung_boxes_raw``) for fitting a calibration. ``lung_masks``
    (``training.export.lung_mask_kinds``) says which lung masks are outlines.
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
            record = dataset.records[int(batch["index"][i])]
            row: dict[str, Any] = {"image_id": record.image_id, "subject": record.subject_id}
            out.image_ids.append(record.image_id)
            if proba.lung is not None and batch["has_lung_mask"][i] > 0:
                pred = (proba.lung[i] >= MASK_THRESHOLD).cpu().numpy()
                true = batch["lung_mask"][i].numpy() > 0.5
                pred_boxes, true_boxes = lung_boxes_from_mask(pred), lung_boxes_from_mask(true)
                row.update(
                    lung_dice=dice_score(pred, true),
                    lung_iou=iou_score(pred, true),
                    lung_box_iou_right=box_iou(pred_boxes["right"], true_boxes["right"]),
                    lung_box_iou_left=box_iou(pred_boxes["left"], true_boxes["left"]),
                )
                out.lung_dice.append(row["lung_dice"])
                out.lung_iou.append(row["lung_iou"])
                kind = (lung_masks or {}).get(record.image_id)
                if kind is not None:
                    row["lung_mask"] = kind
                if kind == LUNG_MASK_OUTLINE:
                    out.lung_dice_outline.append(row["lung_dice"])
                out.lung_box_iou_right.append(row["lung_box_iou_right"])
                out.lung_box_iou_left.append(row["lung_box_iou_left"])
            annotated = (annotated_boxes or {}).get(record.image_id)
            if proba.lung is not None and annotated is not None:
                raw = predicted_lung_boxes(proba.lung[i], width=record.width, height=record.height)
                boxes = calibrate_boxes(raw, box_calibration, width=record.width, height=record.height)
                row["lung_boxes_raw"], row["lung_boxes_annotated"] = raw, annotated
                row["lung_box_iou_annotated_raw"] = mean_or_none([box_iou(raw[s], annotated[s]) for s in ("right", "left")])
                out.lung_box_iou_annotated_raw.append(row["lung_box_iou_annotated_raw"])
                row["lung_box_iou_annotated_right"] = box_iou(boxes["right"], annotated["right"])
                row["lung_box_iou_annotated_left"] = box_iou(boxes["left"], annotated["left"])
                out.lung_box_iou_annotated_right.append(row["lung_box_iou_annotated_right"])
                out.lung_box_iou_annotated_left.append(row["lung_box_iou_annotated_left"])
                bottoms = [(boxes[s][3] - annotated[s][3]) / record.height for s in ("right", "left") if boxes[s] is not None]
                if bottoms:
                    row["lung_box_bottom_error"] = float(np.mean(bottoms))
                    out.lung_box_bottom_error.append(row["lung_box_bottom_error"])
            if proba.disease is not None and batch["has_disease_mask"][i] > 0 and batch["disease_mask"][i].any():
                pred = (proba.disease[i] >= MASK_THRESHOLD).cpu().numpy()
                true = batch["disease_mask"][i].numpy() > 0.5
                row["disease_dice"] = dice_score(pred, true)
                out.disease_dice.append(row["disease_dice"])
                out.disease_iou.append(iou_score(pred, true))
            out.healthy_prob.append(float(proba.healthy[i]) if proba.healthy is not None else float("nan"))
            out.covid_prob.append(float(proba.covid[i]) if proba.covid is not None else float("nan"))
            out.other_prob.append(float(proba.other_disease[i]) if proba.other_disease is not None else float("nan"))
            # health target index 0 means healthy; store 1 = healthy for readability.
            out.healthy_label.append(_label(1 - batch["health"][i], batch["has_health"][i]))
            out.covid_label.append(_label(batch["diagnosis"][i, 0], batch["has_covid"][i]))
            out.other_label.append(_label(batch["diagnosis"][i, 1], batch["has_other"][i]))
            row.update(
                healthy_prob=out.healthy_prob[-1], covid_prob=out.covid_prob[-1], other_disease_prob=out.other_prob[-1],
                healthy_label=out.healthy_label[-1], covid_label=out.covid_label[-1], other_disease_label=out.other_label[-1],
            )
            out.rows.append(row)
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
        "lung_outline_images": len(outputs.lung_dice_outline),
        "lung_dice_outline": mean_or_none(outputs.lung_dice_outline),
        "lung_box_iou": mean_or_none(box_means),
        "lung_box_iou_right": mean_or_none(outputs.lung_box_iou_right),
        "lung_box_iou_left": mean_or_none(outputs.lung_box_iou_left),
        **_annotated_box_metrics(outputs),
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


def _annotated_box_metrics(outputs: SplitOutputs) -> dict[str, Any]:
    pairs = list(zip(outputs.lung_box_iou_annotated_right, outputs.lung_box_iou_annotated_left))

    def both_at_least(level: float) -> float | None:
        return float(np.mean([(r or 0.0) >= level and (l or 0.0) >= level for r, l in pairs])) if pairs else None

    return {
        "lung_box_images": len(pairs),
        "lung_box_iou_annotated": mean_or_none([mean_or_none([r, l]) for r, l in pairs]),
        "lung_box_iou_annotated_right": mean_or_none(outputs.lung_box_iou_annotated_right),
        "lung_box_iou_annotated_left": mean_or_none(outputs.lung_box_iou_annotated_left),
        "lung_boxes_both_iou_0_9": both_at_least(0.9),
        "lung_boxes_both_iou_0_8": both_at_least(0.8),
        "lung_box_bottom_error": mean_or_none(outputs.lung_box_bottom_error),
        "lung_box_iou_annotated_raw": mean_or_none(outputs.lung_box_iou_annotated_raw),
    }


def write_metrics(metrics: dict[str, Any], out: str | Path, roc_title: str = "COVID ROC") -> tuple[Path, Path]:
    """Write ``metrics`` as JSON to ``out`` and the COVID ROC curve to ``roc.png`` next to it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    roc = metrics.get("covid_roc")
    roc_path = plot_roc({"CMTNet": None if roc is None else {**roc, "auc": metrics.get("covid_auc")}}, out.parent / "roc.png", roc_title)
    return out, roc_path


def checkpoint_dataset(export_root: str | Path, records: list, model: CMTNet, checkpoint: dict[str, Any]) -> ExportDataset:
    """``records`` prepared as the checkpoint's model sees them: its size and normalisation, no augmentation."""
    return ExportDataset(
        Path(export_root),
        records,
        image_size=model.config.image_size,
        in_channels=model.config.in_channels,
        normalization=checkpoint["normalization"],
        augment=None,
        cache=False,
        equalize=model.config.equalize,
    )


def score_checkpoint(
    checkpoint_path: str | Path,
    export_dir: str | Path,
    split: str = "test",
    *,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
) -> tuple[dict[str, Any], SplitOutputs]:
    """The metrics dict of ``evaluate`` and the per-image results behind it (``SplitOutputs.rows``)."""
    torch_device = resolve_device(device)
    model, checkpoint = load_model(checkpoint_path, torch_device)
    export = read_export(export_dir)
    records = export.split(split)  # "all" scores the whole export, e.g. a foreign dataset
    if not records:
        log.warning("split %r of %s has no images", split, export_dir)
    dataset = checkpoint_dataset(export.root, records, model, checkpoint)
    outputs = run_model(
        model,
        dataset,
        device=torch_device,
        batch_size=batch_size,
        progress=progress,
        annotated_boxes=annotated_lung_boxes(export.root),
        box_calibration=checkpoint.get("box_calibration"),
        lung_masks=lung_mask_kinds(export.root),
    )
    metrics = summarize(outputs)
    metrics["split"] = split
    metrics["checkpoint"] = str(checkpoint_path)
    return metrics, outputs


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
    """Score a checkpoint on one split of an export (``train``, ``test`` or ``all``); optionally write
    ``out`` (JSON) and ``roc.png``.

    The images are prepared exactly like training images (checkpoint's size and normalisation, no
    augmentation). Returns the metrics dict described in the module docstring, plus ``split`` and
    ``checkpoint``.
    """
    metrics, _ = score_checkpoint(checkpoint_path, export_dir, split, batch_size=batch_size, device=device, progress=progress)
    if out is not None:
        write_metrics(metrics, out, roc_title=f"COVID ROC ({split} split)")
    return metrics


def box_calibration_fit(
    model: CMTNet,
    dataset: ExportDataset,
    annotated_boxes: dict[str, dict[str, list[float]]],
    *,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = False,
) -> Calibration | None:
    """Fit the box-edge calibration (``training.boxes.fit_box_calibration``) of ``model`` on ``dataset``'s
    images that have annotated boxes (no augmentation expected); None when too few have them."""
    if not annotated_boxes or TASK_LUNG not in model.config.tasks:
        return None
    outputs = run_model(model, dataset, device=device, batch_size=batch_size, amp=amp, annotated_boxes=annotated_boxes)
    records = {record.image_id: record for record in dataset.records}
    pairs = [
        (row["lung_boxes_raw"], row["lung_boxes_annotated"], records[row["image_id"]].width, records[row["image_id"]].height)
        for row in outputs.rows
        if "lung_boxes_raw" in row
    ]
    return fit_box_calibration(pairs)


def checkpoint_box_calibrate(
    checkpoint_path: str | Path,
    export_dir: str | Path,
    records: list,
    *,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = False,
) -> Calibration | None:
    """Fit the box-edge calibration of a checkpoint on ``records`` (its training images) and store it in
    the checkpoint file as ``box_calibration``; returns it (None when the records have too few
    annotated boxes: the file then holds no calibration, an earlier one is removed)."""
    model, checkpoint = load_model(checkpoint_path, device)
    dataset = checkpoint_dataset(export_dir, records, model, checkpoint)
    calibration = box_calibration_fit(
        model, dataset, annotated_lung_boxes(export_dir), device=device, batch_size=batch_size, amp=amp
    )
    if calibration is not None or checkpoint.get("box_calibration") is not None:
        payload = load_checkpoint(checkpoint_path)
        if calibration is None:
            payload.pop("box_calibration")
        else:
            payload["box_calibration"] = calibration
        write_checkpoint(checkpoint_path, payload)
    return calibration
