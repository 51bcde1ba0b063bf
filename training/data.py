"""The torch ``Dataset`` over an export snapshot, with the paper's COVID augmentation and class balance.

Images and masks are resized to the model's square input (bilinear; masks thresholded back to 0/1),
kept in memory at that size when ``cache`` is on, optionally augmented, normalised with the mean/std
that the checkpoint stores, and repeated to the model's input channels. Each sample is a dict of
tensors holding the targets and the per-image 0/1 loss switches that ``training.losses`` expects.

Class balance comes from the export's label counts: the paper's five augmented copies were meant to
balance a rare COVID class, so they go to whichever COVID class is the minority, and only as many as
balance it (``minority_copies``); what imbalance remains, and that of the healthy and other-disease
labels, is evened out by loss weights (``class_weights``).

Randomness is a pure function of (seed, epoch, sample index), so a resumed run sees exactly the
samples an uninterrupted run would have seen, whatever the number of loader workers.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from training.config import AugmentConfig
from training.export import ExportRecord
from training.transforms import Affine, apply_affine, covid_variants, mirror, random_affine, random_contrast

log = logging.getLogger(__name__)

# Mean and std of 8-bit values scaled to [0, 1] (one value, replicated over the input channels).
Normalization = dict[str, list[float]]
IMAGENET_NORMALIZATION: Normalization = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def resize_image(array: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 grayscale image to ``size`` x ``size`` (bilinear, antialiased when shrinking)."""
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))


def equalize_histogram(array: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a uint8 image: each grey level mapped through the image's cumulative histogram.

    The darkest level present becomes 0 and the brightest 255; levels in between are spread by how many
    pixels lie at or below them, so any increasing change of contrast or brightness (another exposure,
    window or gamma) gives the same result up to ties. A uniform image stays as it is.
    """
    counts = np.bincount(array.ravel(), minlength=256)
    cdf = np.cumsum(counts)
    darkest = int(cdf[array.min()]) if array.size else 0  # pixels at the darkest level present
    if darkest == array.size:  # empty or a single grey level
        return array.copy()
    lut = np.clip(np.round((cdf - darkest) / (array.size - darkest) * 255.0), 0, 255).astype(np.uint8)
    return lut[array]


def prepare_image(array: np.ndarray, size: int, equalize: bool = False) -> np.ndarray:
    """A uint8 grayscale radiograph as the model takes it, before normalisation: resized, equalised if asked.

    Shared by training and ``training.serve`` so a served image is prepared exactly like a training one.
    """
    resized = resize_image(array, size)
    return equalize_histogram(resized) if equalize else resized


def resize_mask(array: np.ndarray, size: int) -> np.ndarray:
    """Resize a 0/255 mask to ``size`` x ``size`` and return it as 0/1 uint8 (area-weighted, then >= 50%)."""
    resized = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))
    return (resized >= 128).astype(np.uint8)


def load_gray(path: Path) -> np.ndarray:
    """Read an image file as a uint8 grayscale array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def label_target(value: str, positive_is: int = 1) -> tuple[int, float]:
    """Map ``positive|negative|unknown`` to (class index, switch)."""
    if value == "unknown":
        return 0, 0.0
    is_positive = value == "positive"
    return (positive_is if is_positive else 1 - positive_is), 1.0


# The paper's augmentation gives at most five copies of an image.
MAX_COPIES = 5
# Loss weights are capped: a class with a handful of images must not dominate the gradient.
MAX_CLASS_WEIGHT = 10.0


def label_counts(values: Sequence[str]) -> tuple[int, int]:
    """(positives, negatives) among ``positive|negative|unknown`` label values."""
    return sum(v == "positive" for v in values), sum(v == "negative" for v in values)


def minority_copies(records: Sequence[ExportRecord], max_copies: int = MAX_COPIES) -> tuple[str | None, int]:
    """Which COVID class gets the paper's augmented copies, and how many copies of each of its images.

    The minority class (``"positive"`` or ``"negative"``) gets ``round(majority / minority) - 1``
    copies, at most ``max_copies``; ``(None, 0)`` when the classes are balanced or one is absent.
    With COVID rare (the paper's data) this is the paper's five copies of every COVID image.
    """
    positives, negatives = label_counts([r.covid for r in records])
    if positives == 0 or negatives == 0:
        return None, 0
    minority, count, majority = ("positive", positives, negatives) if positives < negatives else ("negative", negatives, positives)
    copies = min(max_copies, max(0, round(majority / count) - 1))
    return (minority, copies) if copies else (None, 0)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return zlib.crc32(f"{seed}:{epoch}:{index}".encode())


class ExportDataset(Dataset):
    """Samples of one export split at model resolution.

    Args:
        root: the export folder.
        records: the rows to serve (e.g. ``export.split("train")``).
        image_size: model input side in pixels.
        in_channels: 1, or 3 to repeat the grayscale image like the paper's 224x224x3 input.
        normalization: {"mean": [...], "std": [...]} over [0, 1] pixel values (first value used
            when ``in_channels`` is 1).
        augment: the augmentation config for training, ``None`` for evaluation.
        seed: base seed of the random augmentation.
        cache: keep resized images/masks in memory after their first load.

    Each item: ``image`` (in_channels, S, S) float; ``lung_mask``/``disease_mask`` (S, S) float 0/1;
    ``health`` () long (0 healthy, 1 unhealthy); ``diagnosis`` (2,) float [covid, other];
    switches ``has_lung_mask``, ``has_disease_mask``, ``has_health``, ``has_covid``, ``has_other``
    () float 0/1; ``index`` () long, the position of the record in ``records``.

    With ``lung_boxes`` (``{image_id: {"right": [x0, y0, x1, y1], "left": [...]}}`` in original pixels,
    ``training.export.annotated_lung_boxes``) each item also has ``lung_boxes`` (2, S, S) float 0/1,
    the right and left boxes filled and moved with the image, and the switch ``has_lung_boxes``.
    Images named in ``mask_off`` keep their lung mask out of the mask losses (``has_lung_mask`` 0).
    ``pseudo_lungs`` (``{image_id: (S, S) uint8 0/1}``, ``training.pseudo``) gives images without a lung
    mask a model's one, which trains like a drawn mask. With ``equalize`` every image is
    histogram-equalised at model size (``prepare_image``), before augmentation and normalisation.
    """

    def __init__(
        self,
        root: str | Path,
        records: Sequence[ExportRecord],
        image_size: int,
        in_channels: int = 3,
        normalization: Normalization | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache: bool = True,
        lung_boxes: dict[str, dict[str, list[float]]] | None = None,
        mask_off: set[str] | frozenset[str] = frozenset(),
        pseudo_lungs: dict[str, np.ndarray] | None = None,
        equalize: bool = False,
        healthy_empty_disease: bool = False,
    ) -> None:
        self.root = Path(root)
        self.equalize = equalize
        self.healthy_empty_disease = healthy_empty_disease
        self.pseudo_lungs = dict(pseudo_lungs or {})
        self.lung_boxes = lung_boxes
        self.mask_off = frozenset(mask_off)
        self.records = list(records)
        self.image_size = image_size
        self.in_channels = in_channels
        self.normalization = normalization or {"mean": [0.5] * in_channels, "std": [0.25] * in_channels}
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
        self.copied_class, copies = minority_copies(self.records) if augment is not None and augment.covid_copies else (None, 0)
        variants = covid_variants(image_size)[:copies]
        # (record position, deterministic transform) pairs: the original of every image, plus the
        # paper's augmented copies of each image of the minority COVID class.
        self.items: list[tuple[int, Affine]] = []
        for i, record in enumerate(self.records):
            self.items.append((i, Affine()))
            if self.copied_class is not None and record.covid == self.copied_class:
                self.items += [(i, v) for v in variants]

    def has_lung_target(self, record: ExportRecord) -> bool:
        """Whether the record's lung map learns pixelwise: its own mask (unless kept out) or a model's."""
        if record.has_lung_mask:
            return record.image_id not in self.mask_off
        return record.image_id in self.pseudo_lungs

    def has_disease_target(self, record: ExportRecord) -> bool:
        """Whether the record's disease map learns: its own mask, or an empty one for a healthy image."""
        return record.has_disease_mask or (self.healthy_empty_disease and record.healthy == "positive")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the random augmentation stream of an epoch (call before building its loader)."""
        self.epoch = epoch

    def load_resized(self, position: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Image (uint8) and lung/disease masks (0/1 uint8, or None when absent) at model size."""
        if position in self._cache:
            return self._cache[position]
        record = self.records[position]
        image = prepare_image(load_gray(record.image_path(self.root)), self.image_size, self.equalize)
        lung = resize_mask(load_gray(record.lung_mask_path(self.root)), self.image_size) if record.has_lung_mask else None
        if lung is None and record.image_id in self.pseudo_lungs:
            lung = self.pseudo_lungs[record.image_id]
        disease = (
            resize_mask(load_gray(record.disease_mask_path(self.root)), self.image_size) if record.has_disease_mask else None
        )
        if self.cache:
            self._cache[position] = (image, lung, disease)
        return image, lung, disease

    def preload(self, progress: bool = False) -> None:
        """Fill the cache up front (before forking loader workers, so they share it)."""
        if not self.cache:
            return
        positions = range(len(self.records))
        if progress:
            from tqdm import tqdm

            positions = tqdm(positions, desc="loading images", unit="img", leave=False)
        for position in positions:
            self.load_resized(position)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        position, variant = self.items[index]
        record = self.records[position]
        image_u8, lung_u8, disease_u8 = self.load_resized(position)
        size = self.image_size
        image = torch.from_numpy(image_u8.astype(np.float32) / 255.0).unsqueeze(0)
        lung = torch.from_numpy(lung_u8.astype(np.float32)) if lung_u8 is not None else torch.zeros(size, size)
        disease = torch.from_numpy(disease_u8.astype(np.float32)) if disease_u8 is not None else torch.zeros(size, size)

        masks, boxes = [lung, disease], None
        if self.lung_boxes is not None:
            boxes = self.lung_boxes.get(record.image_id)
            masks += list(box_masks(boxes, record.width, record.height, size))
        image, masks = apply_affine(image, masks, variant)
        if self.augment is not None and self.augment.generic:
            generator = torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))
            image, masks = apply_affine(image, masks, random_affine(self.augment, size, generator))
            image = random_contrast(image, self.augment, generator)
            if self.augment.flip_probability > 0 and float(torch.rand((), generator=generator)) < self.augment.flip_probability:
                image, masks = mirror(image, masks, boxes=(2, 3) if self.lung_boxes is not None else None)
        lung, disease = masks[:2]

        mean = torch.tensor(self.normalization["mean"][: self.in_channels], dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.normalization["std"][: self.in_channels], dtype=torch.float32).view(-1, 1, 1)
        image = (image.expand(self.in_channels, -1, -1) - mean) / std

        health, has_health = label_target(record.healthy, positive_is=0)  # index 0 = healthy
        covid, has_covid = label_target(record.covid)
        other, has_other = label_target(record.other_disease)
        item = {
            "image": image.contiguous(),
            "lung_mask": lung,
            "disease_mask": disease,
            "health": torch.tensor(health, dtype=torch.long),
            "diagnosis": torch.tensor([covid, other], dtype=torch.float32),
            "has_lung_mask": torch.tensor(float(self.has_lung_target(record))),
            "has_disease_mask": torch.tensor(float(self.has_disease_target(record))),
            "has_health": torch.tensor(has_health),
            "has_covid": torch.tensor(has_covid),
            "has_other": torch.tensor(has_other),
            "index": torch.tensor(position, dtype=torch.long),
        }
        if self.lung_boxes is not None:
            item["lung_boxes"] = torch.stack(masks[2:])
            # A box moved wholly out of the frame (larger shifts than the defaults') has no extent to teach.
            item["has_lung_boxes"] = torch.tensor(float(boxes is not None and bool(item["lung_boxes"].flatten(1).amax(1).all())))
        return item


def box_masks(boxes: dict[str, list[float]] | None, width: int, height: int, size: int) -> tuple[Tensor, Tensor]:
    """The right and left lung boxes (original pixels, half-open) filled at model size; zeros without boxes.

    A box keeps every model pixel it covers at least half of, and at least one row and column.

    Shape:
        -> two (size, size) float tensors in {0, 1}
    """
    filled = []
    for side in ("right", "left"):
        mask = torch.zeros(size, size)
        if boxes is not None and side in boxes:
            x0, y0, x1, y1 = boxes[side]
            sx, sy = size / width, size / height
            c0, c1 = _box_span(x0 * sx, x1 * sx, size)
            r0, r1 = _box_span(y0 * sy, y1 * sy, size)
            mask[r0:r1, c0:c1] = 1.0
        filled.append(mask)
    return filled[0], filled[1]


def _box_span(start: float, end: float, size: int) -> tuple[int, int]:
    first = min(max(int(round(start)), 0), size - 1)
    return first, min(max(int(round(end)), first + 1), size)


def compute_normalization(dataset: ExportDataset) -> Normalization:
    """Mean and std of the (un-augmented) images in ``dataset`` at model size, over [0, 1] values."""
    total = 0.0
    total_sq = 0.0
    count = 0
    for position in range(len(dataset.records)):
        image, _, _ = dataset.load_resized(position)
        values = image.astype(np.float64) / 255.0
        total += float(values.sum())
        total_sq += float((values**2).sum())
        count += values.size
    if count == 0:
        return {"mean": [0.5] * dataset.in_channels, "std": [0.25] * dataset.in_channels}
    mean = total / count
    std = max(float(np.sqrt(max(total_sq / count - mean**2, 0.0))), 1e-3)
    return {"mean": [mean] * dataset.in_channels, "std": [std] * dataset.in_channels}


def subject_split(records: Sequence[ExportRecord], fraction: float, seed: int) -> tuple[list[ExportRecord], list[ExportRecord]]:
    """Split records into (keep, held_out) with whole subjects held out, about ``fraction`` of images.

    Subjects are ordered by a seeded hash, so the split is stable for a given export and seed.
    """
    if fraction <= 0:
        return list(records), []
    subjects = sorted({r.subject_id for r in records}, key=lambda s: zlib.crc32(f"{seed}:{s}".encode()))
    by_subject: dict[str, int] = {}
    for r in records:
        by_subject[r.subject_id] = by_subject.get(r.subject_id, 0) + 1
    target = fraction * len(records)
    held: set[str] = set()
    count = 0
    for subject in subjects:
        if count >= target or len(held) + 1 >= len(subjects):
            break
        held.add(subject)
        count += by_subject[subject]
    return [r for r in records if r.subject_id not in held], [r for r in records if r.subject_id in held]


def _balancing_weight(count: int, total: int) -> float:
    """Inverse-frequency weight of a class of a two-class label (1 when balanced), capped."""
    if count == 0 or total == 0:
        return 1.0
    return min(MAX_CLASS_WEIGHT, total / (2.0 * count))


def class_weights(dataset: ExportDataset) -> dict[str, list[float]]:
    """Loss weights that balance each image label over the samples of an epoch (copies included).

    Returns ``{"health": [w_healthy, w_unhealthy], "diagnosis_pos": [covid, other], "diagnosis_neg":
    [covid, other]}``: per-class weights of the health cross-entropy and of the positive and negative
    terms of the two diagnosis BCEs. Each is ``total / (2 * class count)`` over the samples with that
    label (1 for a balanced label), capped at ``MAX_CLASS_WEIGHT``.
    """
    records = [dataset.records[position] for position, _ in dataset.items]
    weights: dict[str, list[float]] = {"health": [], "diagnosis_pos": [], "diagnosis_neg": []}
    healthy, unhealthy = label_counts([r.healthy for r in records])
    weights["health"] = [_balancing_weight(healthy, healthy + unhealthy), _balancing_weight(unhealthy, healthy + unhealthy)]
    for field_name in ("covid", "other_disease"):
        positives, negatives = label_counts([getattr(r, field_name) for r in records])
        weights["diagnosis_pos"].append(_balancing_weight(positives, positives + negatives))
        weights["diagnosis_neg"].append(_balancing_weight(negatives, positives + negatives))
    return weights
