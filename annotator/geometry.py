"""Geometry in original-image pixels: boxes ``[x0, y0, x1, y1]`` (half-open) and binary masks.

``right``/``left`` are the patient's sides: in a frontal view the patient's right lung is on the
image's left, so of two lungs the one with the smaller x is ``right``.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .errors import InvalidInput

Box = list[int]


def box_validate(box: Sequence, *, width: int, height: int, name: str = "box") -> Box:
    """A box from client input: four numbers, inside the image, with positive area (clipped, rounded)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise InvalidInput(f"{name} must be [x0, y0, x1, y1].")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must hold four numbers.") from exc
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise InvalidInput(f"{name} must hold finite numbers.")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    clipped = [
        int(round(min(max(x0, 0), width))),
        int(round(min(max(y0, 0), height))),
        int(round(min(max(x1, 0), width))),
        int(round(min(max(y1, 0), height))),
    ]
    if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
        raise InvalidInput(f"{name} has no area inside the image.")
    return clipped


def coco_bbox_to_box(bbox: Sequence[float], *, width: int, height: int) -> Box:
    x, y, w, h = (float(v) for v in bbox)
    return box_validate([x, y, x + w, y + h], width=width, height=height)


def mask_bbox(mask: np.ndarray) -> Box | None:
    """The tight box of a boolean mask, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def mask_crop(mask: np.ndarray) -> tuple[Box, np.ndarray] | None:
    box = mask_bbox(mask)
    if box is None:
        return None
    return box, mask[box[1] : box[3], box[0] : box[2]]


def mask_paste(full: np.ndarray, box: Sequence[int], crop: np.ndarray) -> None:
    """OR a cropped mask into a full-size one, in place."""
    x0, y0, x1, y1 = box
    full[y0:y1, x0:x1] |= crop[: y1 - y0, : x1 - x0]


def boxes_fill(*, width: int, height: int, boxes: Sequence[Sequence[int] | None]) -> np.ndarray:
    """The paper's lung mask: the boxes filled."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        if box is not None:
            mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


def polygons_rasterise(*, width: int, height: int, polygons: Sequence[Sequence[float]]) -> np.ndarray:
    """COCO polygons (flat x, y lists) filled into a boolean mask."""
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for flat in polygons:
        points = [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
        if len(points) >= 3:
            draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def sides_from_boxes(boxes: Sequence[Sequence[int]], *, width: int) -> dict[str, Box | None]:
    """Name lung boxes by patient side: the one further left in the image is the patient's right.

    One box alone is named by which half of the image its centre is in.
    """
    ordered = sorted(boxes, key=lambda b: (b[0] + b[2]) / 2)
    if len(ordered) == 0:
        return {"right": None, "left": None}
    if len(ordered) == 1:
        only = list(ordered[0])
        return {"right": only, "left": None} if (only[0] + only[2]) / 2 < width / 2 else {"right": None, "left": only}
    return {"right": list(ordered[0]), "left": list(ordered[-1])}


def mask_dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two boolean masks of one shape; None when both are empty."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def boxes_frame(boxes: Sequence[Sequence[int]]) -> Box:
    """The smallest box holding every one of ``boxes`` (at least one)."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def masks_frame(regions: Sequence[Any]) -> Box:
    """The box holding every region (anything with a ``bbox``)."""
    return boxes_frame([r.bbox for r in regions] or [[0, 0, 1, 1]])


def masks_union(regions: Sequence[Any], frame: Sequence[int]) -> np.ndarray:
    """The union, inside ``frame``, of region masks stored as PNG crops (``bbox`` + ``mask_png``)."""
    fx0, fy0, fx1, fy1 = frame
    out = np.zeros((fy1 - fy0, fx1 - fx0), dtype=bool)
    for region in regions:
        x0, y0, x1, y1 = region.bbox
        crop = np.asarray(Image.open(io.BytesIO(bytes(region.mask_png)))) > 0
        out[y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0] |= crop[: y1 - y0, : x1 - x0]
    return out
