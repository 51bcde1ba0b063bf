"""Paired geometry and intensity augmentation for an image and its masks.

One affine sampling grid is built per sample and applied to the image (bilinear) and to every mask
(nearest), so a rotated or shifted image always comes with identically rotated or shifted masks.
Work happens at model resolution on square tensors, before normalisation (padding is black, which is
what X-ray borders look like).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import AugmentConfig

# The paper's shifts are 10 px on 224 px inputs; other sizes get the same fraction of the image.
PAPER_SHIFT_PX = 10.0
PAPER_IMAGE_SIZE = 224.0


@dataclass(frozen=True)
class Affine:
    """A similarity transform about the image centre: degrees (clockwise on screen), shift in pixels."""

    angle: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.angle == 0 and self.shift_x == 0 and self.shift_y == 0 and self.scale == 1


def covid_variants(image_size: int) -> list[Affine]:
    """The paper's five extra versions of each COVID-positive training image.

    +10 and -10 degree rotations, and 10 px (at 224 px) shifts in x, in y, and in x and y.
    """
    shift = PAPER_SHIFT_PX * image_size / PAPER_IMAGE_SIZE
    return [
        Affine(angle=10.0),
        Affine(angle=-10.0),
        Affine(shift_x=shift),
        Affine(shift_y=shift),
        Affine(shift_x=shift, shift_y=shift),
    ]


def random_affine(config: AugmentConfig, image_size: int, generator: torch.Generator) -> Affine:
    """A random rotation/shift/scale within the configured ranges (generic augmentation)."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    max_shift = config.shift_fraction * image_size
    return Affine(
        angle=uniform(-config.rotation_deg, config.rotation_deg),
        shift_x=uniform(-max_shift, max_shift),
        shift_y=uniform(-max_shift, max_shift),
        scale=uniform(1.0 - config.scale_range, 1.0 + config.scale_range),
    )


def _grid(transform: Affine, height: int, width: int, dtype: torch.dtype) -> Tensor:
    # affine_grid maps output coordinates to input coordinates, so build the inverse transform, in
    # normalised coordinates ([-1, 1] across each side): a pixel shift t becomes 2t / side.
    a = math.radians(transform.angle)
    cos, sin = math.cos(a) / transform.scale, math.sin(a) / transform.scale
    tx, ty = 2.0 * transform.shift_x / width, 2.0 * transform.shift_y / height
    # Forward: p' = s R p + t with R = [[c, -s], [s, c]]; y points down, so a positive angle turns the
    # content clockwise on screen. Inverse: p = R^T (p' - t) / s. (Rotation in normalised coordinates
    # is only rigid for square images, which is what the model sees.)
    inverse = torch.tensor(
        [[cos, sin, -(cos * tx + sin * ty)], [-sin, cos, -(-sin * tx + cos * ty)]],
        dtype=dtype,
    )
    return F.affine_grid(inverse.unsqueeze(0), [1, 1, height, width], align_corners=False)


def apply_affine(image: Tensor, masks: list[Tensor], transform: Affine) -> tuple[Tensor, list[Tensor]]:
    """Apply the same transform to an image (bilinear) and its masks (nearest).

    Shape:
        image (C, H, W) float; each mask (H, W) -> the same shapes.
    """
    if transform.is_identity:
        return image, masks
    _, height, width = image.shape
    grid = _grid(transform, height, width, torch.float32)
    warped = F.grid_sample(image.unsqueeze(0).float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    warped_masks = []
    for mask in masks:
        m = F.grid_sample(mask[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
        warped_masks.append(m.to(mask.dtype))
    return warped.to(image.dtype), warped_masks


def random_contrast(image: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Scale contrast about the image mean by a random factor in 1 +- ``contrast_range``, kept in [0, 1].

    Shape:
        image (C, H, W) with values in [0, 1] -> same
    """
    if config.contrast_range <= 0:
        return image
    factor = 1.0 + config.contrast_range * (2.0 * float(torch.rand((), generator=generator)) - 1.0)
    mean = image.mean()
    return ((image - mean) * factor + mean).clamp(0.0, 1.0)


def mirror(image: Tensor, masks: list[Tensor], boxes: tuple[int, int] | None = None) -> tuple[Tensor, list[Tensor]]:
    """Mirror an image and its masks left-right; the masks at ``boxes`` (the right and left lung boxes) swap.

    The patient's right lung is on the image's left, so after the mirror the box that was the right
    lung's lies where the left lung's belongs.

    Shape:
        image (C, H, W); each mask (H, W) -> the same shapes.
    """
    flipped = [mask.flip(-1) for mask in masks]
    if boxes is not None:
        right, left = boxes
        flipped[right], flipped[left] = flipped[left], flipped[right]
    return image.flip(-1), flipped
