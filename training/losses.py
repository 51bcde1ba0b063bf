"""The paper's multi-task loss (eqs. 2-8) as pure functions over tensors.

Every per-task function returns one loss per image (shape (N,)); ``multitask_loss`` masks each of
them with its per-image 0/1 switch (label availability, eq. 8), averages over the images that have
the label and sums the weighted task terms. An image whose switch is 0 for a task contributes
exactly zero gradient to that task's decoder or head; a task whose switch is 0 for the whole batch
is not computed at all (its parameters get no gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import LossConfig
from training.model import CMTNetOutput


class LossBreakdown(NamedTuple):
    """``total`` is the differentiable scalar; ``parts`` are detached per-task values for logging."""

    total: Tensor
    parts: dict[str, float]


def mask_bce(logits: Tensor, target: Tensor, foreground_weight: float = 1.0) -> Tensor:
    """Per-pixel binary cross-entropy of a 2-channel softmax mask (eqs. 2-3), averaged per image.

    With p = softmax(logits)[:, 1], -[t log p + (1 - t) log(1 - p)] equals the 2-class cross-entropy,
    which is what is computed (numerically stable, no explicit softmax). ``foreground_weight``
    multiplies the term of foreground pixels (1: the paper's plain BCE).

    Shape:
        logits (N, 2, H, W), target (N, H, W) with values in {0, 1} -> (N,)
    """
    weight = None if foreground_weight == 1.0 else torch.tensor([1.0, foreground_weight], device=logits.device)
    per_pixel = F.cross_entropy(logits.float(), target.long(), weight=weight, reduction="none")
    return per_pixel.flatten(1).mean(dim=1)


def mask_soft_dice(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - soft Dice of the foreground probability, per image (not in the paper; see LossConfig).

    Shape:
        logits (N, 2, H, W), target (N, H, W) in {0, 1} -> (N,)
    """
    prob = torch.softmax(logits.float(), dim=1)[:, 1].flatten(1)
    t = target.float().flatten(1)
    intersection = (prob * t).sum(dim=1)
    return 1.0 - (2.0 * intersection + eps) / (prob.sum(dim=1) + t.sum(dim=1) + eps)


def _profile_dice(prob: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - Dice of 1-D profiles with squared terms below, as BoxInst uses it. (N, L) x2 -> (N,)"""
    return 1.0 - (2.0 * (prob * target).sum(dim=1) + eps) / ((prob**2).sum(dim=1) + (target**2).sum(dim=1) + eps)


def lung_box_projection(logits: Tensor, boxes: Tensor) -> Tensor:
    """How far the lung map's extent is from the two lung boxes, per image (BoxInst's projection term).

    The image is cut between the two boxes (halfway between their facing edges); on each side, the
    largest lung probability of every column must match whether the box covers that column, and the
    same for rows (soft Dice of each 1-D profile). Inside the box the map is free to take the lung's
    shape: only its extent is learnt. Mean of the four terms.

    Shape:
        logits (N, 2, H, W), boxes (N, 2, H, W) in {0, 1} (right, left; each non-empty) -> (N,)
    """
    prob = torch.softmax(logits.float(), dim=1)[:, 1]
    boxes = boxes.to(prob.dtype)
    width = prob.shape[-1]
    cols = torch.arange(width, device=prob.device, dtype=prob.dtype)
    covered = boxes.amax(dim=2)  # (N, 2, W): columns each box covers
    first = torch.where(covered > 0, cols, torch.full_like(covered, width)).amin(dim=2)  # (N, 2)
    last = torch.where(covered > 0, cols, torch.full_like(covered, -1)).amax(dim=2)
    centre = (first + last) / 2
    left_box = (centre[:, 0] > centre[:, 1]).long()  # which box is on the image's left (the right lung, in PA)
    cut = (last.gather(1, left_box[:, None]) + first.gather(1, 1 - left_box[:, None])) / 2  # (N, 1)
    on_left = (cols[None, :] <= cut).to(prob.dtype)  # (N, W)
    terms = []
    for side in range(2):
        is_left = (left_box == side).to(prob.dtype)[:, None]
        region = is_left * on_left + (1 - is_left) * (1 - on_left)  # (N, W)
        part = prob * region[:, None, :]
        terms.append(_profile_dice(part.amax(dim=1), covered[:, side] * region))
        terms.append(_profile_dice(part.amax(dim=2), boxes[:, side].amax(dim=2)))
    return torch.stack(terms, dim=1).mean(dim=1)


# BoxInst's pairwise term: neighbours 2 px apart (8 directions) whose intensities differ by less than
# about a fifth of the images' standard deviation (similarity exp(-|d| / 0.2) >= 0.3) should agree.
PAIRWISE_DILATION = 2
PAIRWISE_SCALE = 0.2
PAIRWISE_MIN_SIMILARITY = 0.3


def lung_box_pairwise(logits: Tensor, image: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """What the boxes say about pixels beyond the extent, per image (with ``lung_box_projection``).

    Two parts, averaged: everything outside both boxes is background (BCE over those pixels: a lung
    lies within its box), and neighbouring pixels of similar intensity, at least one of them in a box,
    take the same label (BoxInst's pairwise term, -log P(same label)): the background reaches into a
    box's corners as far as the image looks like it, and stops at the lung's edge. Without them the
    projections alone are met by a speckle: one bright pixel per row and column.

    Shape:
        logits (N, 2, H, W), image (N, C, H, W) normalised (channel 0 used), boxes (N, 2, H, W) -> (N,)
    """
    log_prob = torch.log_softmax(logits.float(), dim=1)
    inside = boxes.to(log_prob.dtype).amax(dim=1)  # (N, H, W)
    outside = 1 - inside
    background = -(log_prob[:, 0] * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp_min(1)

    gray = image[:, 0].float()
    prob = log_prob[:, 1].exp()
    d = PAIRWISE_DILATION
    same_sum = torch.zeros_like(background)
    edge_count = torch.zeros_like(background)
    for dy, dx in ((-d, -d), (-d, 0), (-d, d), (0, -d)):  # the other four directions are the same pairs
        ys, xs = slice(max(dy, 0), gray.shape[1] + min(dy, 0)), slice(max(dx, 0), gray.shape[2] + min(dx, 0))
        yt, xt = slice(max(-dy, 0), gray.shape[1] + min(-dy, 0)), slice(max(-dx, 0), gray.shape[2] + min(-dx, 0))
        similar = torch.exp(-(gray[:, ys, xs] - gray[:, yt, xt]).abs() / PAIRWISE_SCALE) >= PAIRWISE_MIN_SIMILARITY
        edges = similar.to(prob.dtype) * torch.maximum(inside[:, ys, xs], inside[:, yt, xt])
        p, q = prob[:, ys, xs], prob[:, yt, xt]
        same = (p * q + (1 - p) * (1 - q)).clamp_min(eps)
        same_sum = same_sum - (torch.log(same) * edges).flatten(1).sum(1)
        edge_count = edge_count + edges.flatten(1).sum(1)
    pairwise = same_sum / edge_count.clamp_min(1)
    return (background + pairwise) / 2


def health_ce(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Cross-entropy of healthy/unhealthy (eq. 5), optionally with per-class weights.

    Shape:
        logits (N, 2) [healthy, unhealthy], target (N,) with 0 = healthy, 1 = unhealthy,
        weight (2,) or None -> (N,)
    """
    return F.cross_entropy(logits.float(), target.long(), weight=weight, reduction="none")


def diagnosis_bce(logits: Tensor, target: Tensor, pos_weight: Tensor | None = None, neg_weight: Tensor | None = None) -> Tensor:
    """Element-wise binary cross-entropy of the multi-label [COVID, other disease] output (eq. 7).

    Kept per label so that each label can have its own switch. ``pos_weight``/``neg_weight`` (2,)
    scale the positive and negative terms of each label (class balance).

    Shape:
        logits (N, 2) [covid, other_disease], target (N, 2) in {0, 1} -> (N, 2)
    """
    per_label = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if pos_weight is None and neg_weight is None:
        return per_label
    t = target.float()
    pos = pos_weight if pos_weight is not None else torch.ones_like(per_label[0])
    neg = neg_weight if neg_weight is not None else torch.ones_like(per_label[0])
    return per_label * (t * pos + (1 - t) * neg)


def masked_mean(per_item: Tensor, switch: Tensor, count: float | None = None) -> Tensor | None:
    """Mean of ``per_item`` over the items whose switch is 1; ``None`` when no switch is on.

    ``torch.where`` rather than a product: an unlabelled item's loss is never read, so even a
    non-finite value there (e.g. from a placeholder target) cannot leak into the total or its gradient.
    ``count`` replaces the number of switched-on items as the divisor: a distributed rank divides by
    the count over the whole global batch, so that the ranks' terms add up to its mean (a zero, still
    in the graph, on a rank without such items).

    Shape:
        per_item (N, ...) and switch of the same shape (0/1) -> scalar
    """
    on = switch > 0
    if count is None:
        count = int(on.sum())
    if count == 0:
        return None
    return torch.where(on, per_item, torch.zeros_like(per_item)).sum() / count


def task_label_counts(batch: Mapping[str, Tensor]) -> dict[str, int]:
    """How many labelled items each task's mean in ``multitask_loss`` runs over (its ``task_counts``).

    The diagnosis task counts labels, not images: COVID and other disease are switched separately.
    """
    counts = {
        "lung": int(batch["has_lung_mask"].sum()),
        "disease": int(batch["has_disease_mask"].sum()),
        "health": int(batch["has_health"].sum()),
        "diagnosis": int(batch["has_covid"].sum() + batch["has_other"].sum()),
    }
    if "has_lung_boxes" in batch:
        counts["lung_boxes"] = int(batch["has_lung_boxes"].sum())
    return counts


def multitask_loss(
    output: CMTNetOutput,
    batch: Mapping[str, Tensor],
    config: LossConfig | None = None,
    class_weights: Mapping[str, list[float]] | None = None,
    task_counts: Mapping[str, float] | None = None,
) -> LossBreakdown:
    """The switch-masked multi-task loss of eq. 8: sum over tasks of weight x mean over labelled images.

    ``batch`` holds the targets and switches that ``training.data`` produces:
    ``lung_mask``/``disease_mask`` (N, H, W) in {0, 1}, ``health`` (N,) 0 healthy / 1 unhealthy,
    ``diagnosis`` (N, 2) [covid, other] in {0, 1}, and the 0/1 switches ``has_lung_mask``,
    ``has_disease_mask``, ``has_health``, ``has_covid``, ``has_other`` (N,). Tasks whose output is
    ``None`` (not in the model) are skipped.

    ``class_weights`` (``training.data.class_weights``) weights the classes of the health and diagnosis
    losses; it is used when ``config.class_balance`` is on. ``task_counts`` (keys of ``task_label_counts``)
    replaces this batch's label counts as the divisors: distributed training passes the counts of the
    whole global batch, so that the ranks' totals and parts add up to the one-process values.

    Shape:
        outputs as in ``CMTNetOutput``, targets as above -> ``LossBreakdown`` (scalar total)
    """
    config = config or LossConfig()
    device = output.embedding.device
    weights = {k: torch.tensor(v, device=device) for k, v in class_weights.items()} if config.class_balance and class_weights else {}
    counts = dict(task_counts or {})
    terms: list[Tensor] = []
    parts: dict[str, float] = {}

    def add(name: str, weight: float, value: Tensor | None) -> None:
        if value is None or weight == 0:
            return
        terms.append(weight * value)
        parts[name] = float(value.detach())

    if output.lung_logits is not None:
        switch = batch["has_lung_mask"].to(device)
        add("lung", config.lung_weight, masked_mean(mask_bce(output.lung_logits, batch["lung_mask"].to(device)), switch, counts.get("lung")))
        if config.lung_dice:
            dice = mask_soft_dice(output.lung_logits, batch["lung_mask"].to(device))
            add("lung_dice", config.lung_dice_weight, masked_mean(dice, switch, counts.get("lung")))
        if config.lung_box_weight and "lung_boxes" in batch:
            boxes = batch["lung_boxes"].to(device)
            per_image = lung_box_projection(output.lung_logits, boxes)
            if config.lung_box_pairwise:
                per_image = per_image + lung_box_pairwise(output.lung_logits, batch["image"].to(device), boxes)
            add("lung_box", config.lung_box_weight, masked_mean(per_image, batch["has_lung_boxes"].to(device), counts.get("lung_boxes")))
    if output.disease_logits is not None:
        switch = batch["has_disease_mask"].to(device)
        target = batch["disease_mask"].to(device)
        add("disease", config.disease_weight, masked_mean(mask_bce(output.disease_logits, target, config.disease_foreground_weight), switch, counts.get("disease")))
        if config.disease_dice:
            add("disease_dice", config.disease_dice_weight, masked_mean(mask_soft_dice(output.disease_logits, target), switch, counts.get("disease")))
    if output.health_logits is not None:
        per_image = health_ce(output.health_logits, batch["health"].to(device), weights.get("health"))
        add("health", config.health_weight, masked_mean(per_image, batch["has_health"].to(device), counts.get("health")))
    if output.diagnosis_logits is not None:
        per_label = diagnosis_bce(
            output.diagnosis_logits, batch["diagnosis"].to(device), weights.get("diagnosis_pos"), weights.get("diagnosis_neg")
        )
        switches = torch.stack([batch["has_covid"], batch["has_other"]], dim=1).to(device)
        add("diagnosis", config.diagnosis_weight, masked_mean(per_label, switches, counts.get("diagnosis")))

    if terms:
        total = torch.stack(terms).sum()
    else:
        # No label for any task in this batch: a zero that still carries a graph, so that
        # ``backward()`` works and leaves every gradient at zero.
        total = output.embedding.sum() * 0.0
    parts["total"] = float(total.detach())
    return LossBreakdown(total=total, parts=parts)
