"""From CMTNet's probability maps to what the annotators start from (pure numpy, no database).

- the lung mask (probability >= threshold) and the two lung boxes derived from it, named by the
  patient's side (the rule of ``training.boxes.lung_boxes_from_mask``: the patient's right lung
  is on the image's left), their edges moved by the checkpoint's box-edge calibration when it has one;
- disease regions: connected components of the disease mask (8-connectivity) of at least a minimum
  size, largest first, each with its confidence = the mean disease probability inside it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from annotator.imaging.encode import mask_png_bytes
from training.boxes import calibrate_boxes
from training.boxes import lung_boxes_from_mask as lung_boxes

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class SuggestedRegion:
    """One disease region: its box ``[x0, y0, x1, y1]`` (half-open), the 0/255 PNG of the box's mask."""

    bbox: list[int]
    mask_png: bytes
    area: int
    confidence: float

    def summary(self) -> dict:
        return {"bbox": self.bbox, "area": self.area, "confidence": round(self.confidence, 4)}


@dataclass
class Suggestion:
    """Everything stored from one prediction, at the radiograph's original size."""

    lung_mask_png: bytes
    right_box: list[int] | None
    left_box: list[int] | None
    regions: list[SuggestedRegion] = field(default_factory=list)
    healthy: float | None = None
    covid: float | None = None
    other_disease: float | None = None
    uncertainty: float | None = None


def lung_suggestion(lung: np.ndarray | None, *, shape: tuple[int, int], threshold: float) -> tuple[np.ndarray, dict]:
    """The lung mask and its two boxes ``{"right": box|None, "left": box|None}`` (patient sides)."""
    if lung is None:
        return np.zeros(shape, dtype=bool), {"right": None, "left": None}
    mask = lung >= threshold
    return mask, lung_boxes(mask)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components; int32 labels are much faster to write than the default int64."""
    labels = np.empty(mask.shape, dtype=np.int32)
    count = ndimage.label(mask, structure=_EIGHT, output=labels)
    return labels, int(count)


def mask_png_1bit(mask: np.ndarray) -> bytes:
    """A 1-bit PNG of a boolean mask: a third of the time and size of a 0/255 one for a full-size
    lung mask (``annotator.imaging.encode.decode_mask_png`` reads both)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buffer, "PNG", compress_level=4)
    return buffer.getvalue()


def disease_regions(
    disease: np.ndarray | None, *, threshold: float, min_area: int, max_regions: int
) -> list[SuggestedRegion]:
    """Connected components of ``disease >= threshold`` with at least ``min_area`` pixels, largest first.

    Shape:
        disease (H, W) float probabilities -> up to ``max_regions`` regions
    """
    if disease is None or max_regions <= 0:
        return []
    labels, count = _label(disease >= threshold)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = [k for k in np.argsort(sizes[1:])[::-1] + 1 if sizes[k] >= max(1, min_area)][:max_regions]
    if not keep:
        return []
    means = ndimage.mean(disease, labels=labels, index=keep)
    slices = ndimage.find_objects(labels)
    regions = []
    for k, mean in zip(keep, np.atleast_1d(means)):
        rows, cols = slices[k - 1]
        crop = labels[rows, cols] == k
        regions.append(
            SuggestedRegion(
                bbox=[int(cols.start), int(rows.start), int(cols.stop), int(rows.stop)],
                mask_png=mask_png_bytes(crop),
                area=int(sizes[k]),
                confidence=float(mean),
            )
        )
    return regions


def suggestion_from_prediction(
    prediction, *, shape: tuple[int, int], threshold: float, min_region_fraction: float, max_regions: int
) -> Suggestion:
    """Turn a ``training.serve.Prediction`` (maps at ``shape`` = (height, width)) into a ``Suggestion``."""
    lung_mask, boxes = lung_suggestion(prediction.lung, shape=shape, threshold=threshold)
    # The checkpoint's box-edge calibration moves the mask's boxes towards where annotators draw them.
    boxes = calibrate_boxes(boxes, getattr(prediction, "box_calibration", None), width=shape[1], height=shape[0])
    min_area = int(np.ceil(min_region_fraction * shape[0] * shape[1]))
    probabilities = prediction.probabilities or {}
    return Suggestion(
        lung_mask_png=mask_png_1bit(lung_mask),
        right_box=boxes["right"],
        left_box=boxes["left"],
        regions=disease_regions(prediction.disease, threshold=threshold, min_area=min_area, max_regions=max_regions),
        healthy=probabilities.get("healthy"),
        covid=probabilities.get("covid"),
        other_disease=probabilities.get("other_disease"),
        uncertainty=prediction.uncertainty,
    )
