"""The paper's losses as pure functions, and the per-image switches (eq. 8).

The switch tests are the ones a user would notice: an image without a disease mask must not teach
the disease decoder anything (it would learn "no disease" from every unannotated image).
"""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossConfig, ModelConfig
from training.losses import diagnosis_bce, health_ce, mask_bce, mask_soft_dice, masked_mean, multitask_loss
from training.model import CMTNet, CMTNetOutput

SIZE = 32
# task -> (module that only that task trains, switch keys in the batch)
TASKS = {
    "lung": ("lung_decoder", ["has_lung_mask"]),
    "disease": ("disease_decoder", ["has_disease_mask"]),
    "health": ("health_head", ["has_health"]),
    "diagnosis": ("diagnosis_head", ["has_covid", "has_other"]),
}
ALL_SWITCHES = ["has_lung_mask", "has_disease_mask", "has_health", "has_covid", "has_other"]


def make_batch(n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, SIZE, SIZE, generator=g),
        "lung_mask": (torch.rand(n, SIZE, SIZE, generator=g) > 0.5).float(),
        "disease_mask": (torch.rand(n, SIZE, SIZE, generator=g) > 0.8).float(),
        "health": torch.randint(0, 2, (n,), generator=g),
        "diagnosis": torch.randint(0, 2, (n, 2), generator=g).float(),
        **{key: torch.ones(n) for key in ALL_SWITCHES},
    }


def tiny_model() -> CMTNet:
    torch.manual_seed(0)
    return CMTNet(ModelConfig(width=0.0625, image_size=SIZE, pretrained=False))


def grads_of(model: CMTNet, module_name: str) -> list[torch.Tensor | None]:
    return [p.grad for p in getattr(model, module_name).parameters()]


def test_mask_bce_is_the_binary_cross_entropy_of_the_softmax_foreground() -> None:
    logits = torch.randn(2, 2, 5, 5)
    target = (torch.rand(2, 5, 5) > 0.5).float()
    p = torch.softmax(logits, 1)[:, 1]
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).mean(1)
    assert torch.allclose(mask_bce(logits, target), manual, atol=1e-6)
    # Foreground pixels weighted: their term counts that many times, the background's as before.
    weighted = -(5 * target * p.log() + (1 - target) * (1 - p).log()).flatten(1).mean(1)
    assert torch.allclose(mask_bce(logits, target, foreground_weight=5.0), weighted, atol=1e-5)


def test_a_weighted_disease_foreground_reaches_the_disease_loss_only() -> None:
    model = tiny_model()
    batch = make_batch()
    output = model(batch["image"])
    plain = multitask_loss(output, batch, LossConfig())
    weighted = multitask_loss(output, batch, LossConfig(disease_foreground_weight=4.0))
    assert weighted.parts["disease"] > plain.parts["disease"]
    assert weighted.parts["lung"] == pytest.approx(plain.parts["lung"])


def test_health_ce_and_diagnosis_bce_match_the_formulas() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    assert torch.allclose(health_ce(logits, torch.tensor([0, 1])), -torch.log_softmax(logits, 1)[[0, 1], [0, 1]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    manual = -(target * p.log() + (1 - target) * (1 - p).log())
    assert torch.allclose(diagnosis_bce(logits, target), manual, atol=1e-6)


def test_soft_dice_is_near_zero_for_a_confident_correct_mask() -> None:
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    logits = torch.stack([-(target * 2 - 1) * 20, (target * 2 - 1) * 20], dim=1)
    assert mask_soft_dice(logits, target).item() == pytest.approx(0.0, abs=1e-3)
    assert mask_soft_dice(-logits, target).item() > 0.9


def test_masked_mean_ignores_switched_off_items_even_if_not_finite() -> None:
    values = torch.tensor([1.0, float("nan"), 3.0])
    assert masked_mean(values, torch.tensor([1.0, 0.0, 1.0])).item() == 2.0
    assert masked_mean(values, torch.zeros(3)) is None


def test_total_is_the_weighted_sum_of_the_task_terms() -> None:
    model = tiny_model().eval()
    batch = make_batch()
    out = model(batch["image"])
    plain = multitask_loss(out, batch, LossConfig())
    weighted = multitask_loss(out, batch, LossConfig(lung_weight=2.0, disease_weight=0.0))
    parts = plain.parts
    assert plain.total.item() == pytest.approx(parts["lung"] + parts["disease"] + parts["health"] + parts["diagnosis"], rel=1e-5)
    assert "disease" not in weighted.parts
    assert weighted.total.item() == pytest.approx(2 * parts["lung"] + parts["health"] + parts["diagnosis"], rel=1e-5)


def test_lung_dice_term_is_off_by_default_and_added_by_the_flag() -> None:
    model = tiny_model().eval()
    batch = make_batch()
    out = model(batch["image"])
    assert "lung_dice" not in multitask_loss(out, batch, LossConfig()).parts
    with_dice = multitask_loss(out, batch, LossConfig(lung_dice=True))
    assert 0 < with_dice.parts["lung_dice"] <= 1


@pytest.mark.parametrize("task", list(TASKS))
def test_a_task_switched_off_for_the_whole_batch_trains_nothing_of_its_own(task: str) -> None:
    model = tiny_model().train()
    batch = make_batch()
    module, switches = TASKS[task]
    for key in switches:
        batch[key] = torch.zeros(3)
    loss = multitask_loss(model(batch["image"]), batch)
    assert task not in loss.parts
    loss.total.backward()
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads_of(model, module))
    for other, (other_module, _) in TASKS.items():
        if other != task:
            assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads_of(model, other_module)), other


@pytest.mark.parametrize("task", list(TASKS))
def test_an_unlabelled_image_contributes_exactly_zero_gradient_to_the_task(task: str) -> None:
    # Eval mode: BatchNorm uses running statistics, so images do not interact through batch stats
    # and the per-image contribution can be isolated exactly.
    module, switches = TASKS[task]
    mixed = make_batch(n=2)
    for key in switches:
        mixed[key] = torch.tensor([1.0, 0.0])  # image 1 has no label for this task
    garbage = {k: v.clone() for k, v in mixed.items()}
    garbage["lung_mask"][1] = 1 - garbage["lung_mask"][1]
    garbage["disease_mask"][1] = 1 - garbage["disease_mask"][1]
    garbage["health"][1] = 1 - garbage["health"][1]
    garbage["diagnosis"][1] = 1 - garbage["diagnosis"][1]
    alone = {k: v[:1] for k, v in mixed.items()}

    def task_grads(batch):
        model = tiny_model().eval()
        multitask_loss(model(batch["image"]), batch).total.backward()
        return [g.clone() for g in grads_of(model, module)]

    reference = task_grads(alone)
    for batch in (mixed, garbage):
        for got, expected in zip(task_grads(batch), reference):
            assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)


def test_covid_and_other_disease_have_independent_switches() -> None:
    logits = torch.zeros(2, 2, requires_grad=True)
    out = CMTNetOutput(None, None, None, logits, torch.zeros(2, 4))
    batch = {
        "diagnosis": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "has_covid": torch.tensor([0.0, 0.0]),  # COVID unknown for both
        "has_other": torch.tensor([1.0, 1.0]),
    }
    loss = multitask_loss(out, batch)
    loss.total.backward()
    assert torch.count_nonzero(logits.grad[:, 0]) == 0
    assert torch.count_nonzero(logits.grad[:, 1]) == 2
    assert loss.parts["diagnosis"] == pytest.approx(math.log(2))


def test_a_batch_without_any_label_gives_a_zero_loss_that_backpropagates() -> None:
    model = tiny_model().train()
    batch = make_batch()
    for key in ALL_SWITCHES:
        batch[key] = torch.zeros(3)
    loss = multitask_loss(model(batch["image"]), batch)
    assert loss.total.item() == 0.0
    loss.total.backward()  # must not raise
