"""The paper's metrics as pure functions over numpy arrays.

Segmentation: Dice and IoU per image; the IoU of the lung boxes derived from two lung masks (the
lung-box rule and ``box_iou`` are ``training.boxes``'s, shared with the inference worker).
Classification: ROC curve and AUC, COVID sensitivity at 99% and 90% specificity, equal error rate,
accuracy. Degenerate inputs (no positives or no negatives) give ``None``, never an exception.

Geometry follows DESIGN.md: boxes are ``[x0, y0, x1, y1]`` half-open in pixels, and ``right``/``left``
are the patient's sides: the patient's right lung is on the image's left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The lung-box rule and box IoU live in training.boxes (shared with pre-annotation); re-exported here
# because the metrics are where callers look for them.
from training.boxes import MIN_SECOND_LUNG_FRACTION, Box, box_iou, lung_boxes_from_mask  # noqa: F401
from training.boxes import lung_box_iou as boxes_iou

# numpy 2 renamed trapz; requirements allow numpy 1.26.
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")


def dice_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|) of two binary masks; 1.0 when both are empty.

    Shape:
        pred, target (H, W) bool-like -> float
    """
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    denominator = int(p.sum()) + int(t.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / denominator


def iou_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two binary masks; 1.0 when both are empty.

    Shape:
        pred, target (H, W) bool-like -> float
    """
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, t).sum()) / union


def lung_box_iou(pred_mask: np.ndarray, true_mask: np.ndarray) -> float | None:
    """Mean IoU of the right and left lung boxes derived from the predicted and true masks."""
    return boxes_iou(lung_boxes_from_mask(pred_mask), lung_boxes_from_mask(true_mask))


def _binary_inputs(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    y = np.asarray(labels, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    positives = int((y == 1).sum())
    if positives == 0 or positives == len(y):
        return None
    return y, s


def roc_curve(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(fpr, tpr, thresholds) of the ROC curve, from (0, 0) to (1, 1); None without both classes.

    A sample is called positive when its score is >= the threshold.

    Shape:
        labels (N,) in {0, 1}, scores (N,) -> three arrays of the same length K
    """
    inputs = _binary_inputs(labels, scores)
    if inputs is None:
        return None
    y, s = inputs
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    # One ROC point per distinct score: the last index of each run of equal scores.
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(labels: Sequence[float], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    curve = roc_curve(labels, scores)
    if curve is None:
        return None
    fpr, tpr, _ = curve
    return float(_trapezoid(tpr, fpr))


def sensitivity_at_specificity(labels: Sequence[float], scores: Sequence[float], specificity: float) -> float | None:
    """Highest sensitivity over thresholds whose specificity is at least ``specificity``.

    None without both classes. With few negatives, a 99% requirement means no false positive at all.
    """
    curve = roc_curve(labels, scores)
    if curve is None:
        return None
    fpr, tpr, _ = curve
    allowed = fpr <= (1.0 - specificity) + 1e-12
    return float(tpr[allowed].max())


def equal_error_rate(labels: Sequence[float], scores: Sequence[float]) -> float | None:
    """The rate where false positive rate equals false negative rate (linear between ROC points)."""
    curve = roc_curve(labels, scores)
    if curve is None:
        return None
    fpr, tpr, _ = curve
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.nonzero(diff >= 0)[0][0])
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # Interpolate between the last point with FPR < FNR and the first with FPR >= FNR.
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def accuracy(labels: Sequence[float], predictions: Sequence[float]) -> float | None:
    """Fraction of equal labels and predictions; None when there are no samples."""
    y = np.asarray(labels).ravel()
    p = np.asarray(predictions).ravel()
    if len(y) == 0:
        return None
    return float((y == p).mean())


def classification_metrics(labels: Sequence[float], scores: Sequence[float], threshold: float = 0.5, prefix: str = "") -> dict:
    """Accuracy (at ``threshold``), ROC AUC, sensitivity at 99%/90% specificity and EER of one label."""
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    return {
        f"{prefix}accuracy": accuracy(y, (s >= threshold).astype(float)),
        f"{prefix}auc": roc_auc(y, s),
        f"{prefix}sensitivity_at_99_specificity": sensitivity_at_specificity(y, s, 0.99),
        f"{prefix}sensitivity_at_90_specificity": sensitivity_at_specificity(y, s, 0.90),
        f"{prefix}eer": equal_error_rate(y, s),
        f"{prefix}positives": int((y == 1).sum()),
        f"{prefix}negatives": int((y == 0).sum()),
    }


def bootstrap_ci(
    labels: Sequence[float],
    scores: Sequence[float],
    statistic=None,
    *,
    groups: Sequence[str] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of ``statistic(labels, scores)`` (default: ROC AUC).

    With ``groups`` (e.g. subject ids) whole groups are resampled, so that a patient's several images
    count as one draw. Resamples where the statistic is undefined (one class only) are skipped;
    ``None`` when the statistic is undefined on the data itself.
    """
    statistic = statistic or roc_auc
    y, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    if statistic(y, s) is None:
        return None
    keys = np.asarray(groups if groups is not None else np.arange(len(y)))
    unique, inverse = np.unique(keys, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(unique), size=len(unique))])
        value = statistic(y[picked], s[picked])
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = (1.0 - level) / 2.0 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
