"""Lung masks for the training images nobody outlined, from an earlier model (self-training).

Of an export's training images, some have a lung outline, some only the two drawn boxes, and some
neither (labels only). ``pseudo_lung_masks`` lets a trained checkpoint (the "teacher"; in
cross-validation the earlier run's model of the same fold) answer for the last kind: its lung map,
thresholded at 0.5, becomes their lung mask at the student's input size. An image whose map does
not give two lung boxes by the one lung-box rule (``training.boxes``) is left out: a map that finds
one lung or none is a poor target. Images with an outline or with boxes keep what people drew.
Cross-validation on the sample found no gain from it (training/README.md, "Learning from the images
nobody outlined"): no preset uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch

from training.boxes import lung_boxes_from_mask
from training.config import TASK_LUNG
from training.data import load_gray, resize_mask
from training.export import ExportRecord

log = logging.getLogger(__name__)

# The teacher's lung probability that counts as lung.
PSEUDO_THRESHOLD = 0.5


def pseudo_lung_candidates(records: Sequence[ExportRecord], annotated: Collection[str]) -> list[ExportRecord]:
    """The records with neither a lung mask nor lung boxes (``annotated``: image ids that have boxes)."""
    return [r for r in records if not r.has_lung_mask and r.image_id not in annotated]


def pseudo_lung_masks(
    teacher: str | Path,
    export_root: str | Path,
    records: Sequence[ExportRecord],
    size: int,
    *,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """``{image_id: (size, size) uint8 0/1}``: the teacher's lung mask of each record that yields two boxes.

    The teacher predicts at its own input size and mirror setting (its checkpoint says which); the
    map is thresholded at its original resolution and resized like a drawn mask.
    """
    from training.serve import Predictor

    if not records:
        return {}
    # The running process's thread count stays as it is (a fold of crossval --jobs has its share).
    predictor = Predictor(teacher, device=device, threads=torch.get_num_threads())
    if TASK_LUNG not in predictor.config.tasks:
        raise ValueError(f"{teacher} has no lung decoder to answer for unlabelled images")
    root = Path(export_root)
    masks: dict[str, np.ndarray] = {}
    items: Sequence[ExportRecord] = records
    if progress:
        from tqdm import tqdm

        items = tqdm(records, desc="teacher lung masks", unit="img", leave=False)
    for record in items:
        binary = predictor.predict(load_gray(record.image_path(root))).lung >= PSEUDO_THRESHOLD
        boxes = lung_boxes_from_mask(binary)
        if boxes["right"] is None or boxes["left"] is None:
            continue
        masks[record.image_id] = resize_mask(binary.astype(np.uint8) * 255, size)
    log.info("teacher %s: lung masks for %d of %d unlabelled training images", Path(teacher).name, len(masks), len(records))
    return masks
