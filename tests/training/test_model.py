"""CMTNet shapes and gradients for every head and task subset, the paper's size, BN folding, init."""

from __future__ import annotations

import itertools
import logging
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from training.config import ModelConfig
from training.model import (
    LABEL_NAMES,
    CMTNet,
    build_model,
    count_parameters,
    fuse_conv_bn,
    onednn_fusion_available,
    optimize_for_cpu_inference,
    predict_proba,
    scaled_channels,
)

ALL_SUBSETS = [subset for r in range(1, 5) for subset in itertools.combinations((1, 2, 3, 4), r)]
OUTPUT_OF_TASK = {1: "lung_logits", 2: "disease_logits", 3: "health_logits", 4: "diagnosis_logits"}
MODULE_OF_TASK = {1: "lung_decoder", 2: "disease_decoder", 3: "health_head", 4: "diagnosis_head"}


def tiny(tasks=(1, 2, 3, 4), width: float = 0.0625, image_size: int = 32, in_channels: int = 3) -> CMTNet:
    torch.manual_seed(0)
    return CMTNet(ModelConfig(width=width, image_size=image_size, in_channels=in_channels, tasks=tasks, pretrained=False))


@pytest.mark.parametrize(
    "tasks, width, size, batch, channels",
    [(subset, 0.0625, 32, 2, 3) for subset in ALL_SUBSETS]
    + [
        ((1, 2, 3, 4), 0.125, 64, 3, 3),
        ((1, 2, 3, 4), 0.0625, 64, 1, 1),
        ((1, 3), 0.0625, 96, 2, 1),
    ],
)
def test_output_shapes_for_every_task_subset(tasks, width, size, batch, channels) -> None:
    model = tiny(tasks, width, size, channels).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, channels, size, size))
    expected = {
        "lung_logits": (batch, 2, size, size),
        "disease_logits": (batch, 2, size, size),
        "health_logits": (batch, 2),
        "diagnosis_logits": (batch, 2),
    }
    for task, name in OUTPUT_OF_TASK.items():
        value = getattr(out, name)
        if task in tasks:
            assert value is not None and tuple(value.shape) == expected[name]
        else:
            assert value is None
            assert getattr(model, MODULE_OF_TASK[task]) is None  # not built: no wasted compute
    assert tuple(out.embedding.shape) == (batch, scaled_channels(512, width))


@pytest.mark.parametrize("tasks", ALL_SUBSETS)
def test_every_parameter_of_every_enabled_head_gets_a_finite_gradient(tasks) -> None:
    model = tiny(tasks).train()
    out = model(torch.randn(2, 3, 32, 32))
    loss = sum(v.float().square().mean() for v in out[:4] if v is not None)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    for task in tasks:
        grads = [p.grad.abs().sum() for p in getattr(model, MODULE_OF_TASK[task]).parameters()]
        assert sum(grads) > 0, f"task {task} got no gradient"


def test_predict_proba_gives_probabilities_in_the_documented_order() -> None:
    model = tiny().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    proba = predict_proba(out)
    assert proba.lung.shape == (2, 32, 32)
    assert torch.allclose(proba.lung, torch.softmax(out.lung_logits, 1)[:, 1])
    assert torch.allclose(proba.healthy, torch.softmax(out.health_logits, 1)[:, 0])
    assert torch.allclose(proba.covid, torch.sigmoid(out.diagnosis_logits[:, 0]))
    assert torch.allclose(proba.other_disease, torch.sigmoid(out.diagnosis_logits[:, 1]))
    assert LABEL_NAMES["health"] == ["healthy", "unhealthy"]
    assert LABEL_NAMES["diagnosis"] == ["covid", "other_disease"]


def test_paper_configuration_matches_the_published_size_and_cost() -> None:
    model = CMTNet(ModelConfig(pretrained=False))  # width 1, 224 x 224 x 3
    assert count_parameters(model) / 1e6 == pytest.approx(44.6, abs=0.05)
    with torch.device("meta"):
        meta_model = CMTNet(ModelConfig(pretrained=False))
    with FlopCounterMode(display=False) as counter:
        meta_model(torch.empty(1, 3, 224, 224, device="meta"))
    assert counter.get_total_flops() / 1e9 == pytest.approx(99.1, abs=0.15)


def test_encoder_has_vgg16_bn_layout() -> None:
    model = tiny(width=1.0 / 64)
    convs_per_block = [sum(isinstance(m, torch.nn.Conv2d) for m in block) for block in model.encoder.blocks]
    assert convs_per_block == [2, 2, 3, 3, 3]
    decoder_convs = [sum(isinstance(m, torch.nn.Conv2d) for m in block) for block in model.lung_decoder.blocks]
    assert decoder_convs == [3, 3, 3, 2, 2]  # mirrored, plus the 1x1 classifier


def test_folding_batchnorm_keeps_outputs() -> None:
    model = tiny(width=0.125, image_size=64)
    model.train()
    with torch.no_grad():  # give BN non-trivial running statistics
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 1)
    model.eval()
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), fused(x)
    for x_a, x_b in zip(a, b):
        assert torch.allclose(x_a, x_b, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cpu_inference_optimisation_keeps_outputs(memory_format) -> None:
    model = tiny(width=0.125, image_size=64)
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 64, 64) * 2 + 1)  # non-trivial BN statistics
    model.eval()
    optimized = optimize_for_cpu_inference(model).to(memory_format=memory_format)
    if onednn_fusion_available():
        conv_parts = [optimized.encoder, optimized.lung_decoder, optimized.disease_decoder]
        assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.Conv2d)) for part in conv_parts for m in part.modules())
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        with torch.inference_mode():
            a, b = model(x), optimized(x.contiguous(memory_format=memory_format))
        for x_a, x_b in zip(a, b):
            assert torch.allclose(x_a, x_b, atol=1e-4, rtol=1e-4)


def test_offline_imagenet_weights_fall_back_to_scratch_with_a_warning(monkeypatch, caplog) -> None:
    import torchvision.models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "vgg16_bn", offline)
    with caplog.at_level(logging.WARNING, logger="training"):
        _, loaded = build_model(ModelConfig(pretrained=True))
    assert loaded is False
    assert "starting from scratch" in caplog.text


def test_available_imagenet_weights_initialise_the_encoder(monkeypatch) -> None:
    import torchvision.models

    real = torchvision.models.vgg16_bn
    torch.manual_seed(1)
    reference = real(weights=None)
    monkeypatch.setattr(torchvision.models, "vgg16_bn", lambda weights=None: reference)
    model, loaded = build_model(ModelConfig(pretrained=True, tasks=(3,)))
    assert loaded is True
    ours = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    theirs = [m for m in reference.features if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(ours, theirs))


def test_narrow_models_do_not_try_to_download(monkeypatch) -> None:
    import torchvision.models

    def fail(*args, **kwargs):
        raise AssertionError("must not be called for width != 1")

    monkeypatch.setattr(torchvision.models, "vgg16_bn", fail)
    _, loaded = build_model(ModelConfig(width=0.0625, image_size=32, pretrained=True))
    assert loaded is False


@pytest.mark.parametrize(
    "bad", [dict(image_size=100), dict(width=0), dict(in_channels=2), dict(tasks=(5,)), dict(tasks=()), dict(test_sizes=(48,)), dict(test_sizes=(0,))]
)
def test_invalid_model_configs_are_rejected(bad) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_a_mirror_averaging_network_answers_a_mirrored_image_with_mirrored_maps_and_the_same_labels() -> None:
    torch.manual_seed(0)
    plain = tiny(width=0.125, image_size=64)
    with torch.no_grad():
        plain.train()(torch.randn(4, 3, 64, 64) * 2 + 1)  # non-trivial BN statistics
    mirrored = CMTNet(ModelConfig(width=0.125, image_size=64, pretrained=False, mirror_average=True))
    mirrored.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = mirrored.eval()(x), mirrored(x.flip(-1))
        single = plain.eval()(x)
        c, d = plain(x), plain(x.flip(-1))
    for name in ("lung_logits", "disease_logits"):
        assert torch.allclose(getattr(b, name), getattr(a, name).flip(-1), atol=1e-5)
        assert not torch.allclose(getattr(d, name), getattr(c, name).flip(-1), atol=1e-3)  # a plain network is not symmetric
        assert getattr(a, name).shape == getattr(single, name).shape
    for name in ("health_logits", "diagnosis_logits", "embedding"):
        assert torch.allclose(getattr(b, name), getattr(a, name), atol=1e-5)
        assert torch.allclose(getattr(a, name), (getattr(c, name) + getattr(d, name)) / 2, atol=1e-5)
    optimized = optimize_for_cpu_inference(mirrored)
    with torch.inference_mode():
        assert torch.allclose(optimized(x).lung_logits, a.lung_logits, atol=1e-4, rtol=1e-4)
    # Training sees each image once, as it is (its mirrors come from the augmentation).
    plain.load_state_dict(mirrored.state_dict())
    assert torch.allclose(mirrored.train()(x).lung_logits, plain.train()(x).lung_logits, atol=1e-5)


def test_a_network_answering_at_several_sizes_averages_the_answers_resized_back() -> None:
    torch.manual_seed(0)
    plain = tiny(width=0.125, image_size=64)
    with torch.no_grad():
        plain.train()(torch.randn(4, 3, 64, 64) * 2 + 1)  # non-trivial BN statistics
    sized = CMTNet(ModelConfig(width=0.125, image_size=64, pretrained=False, mirror_average=True, test_sizes=(96, 32, 64)))
    assert sized.config.test_sizes == (32, 96)  # sorted, the model's own size dropped
    sized.load_state_dict(plain.state_dict())
    mirrored = CMTNet(ModelConfig(width=0.125, image_size=64, pretrained=False, mirror_average=True))
    mirrored.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        answer = sized.eval()(x)
        each = [mirrored.eval()(F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)) for s in (64, 32, 96)]
    for name in ("lung_logits", "disease_logits"):
        maps = [F.interpolate(getattr(o, name), size=(64, 64), mode="bilinear", align_corners=False) for o in each]
        assert getattr(answer, name).shape == (2, 2, 64, 64)
        assert torch.allclose(getattr(answer, name), torch.stack(maps).mean(0), atol=1e-5)
        assert (getattr(answer, name) - maps[0]).abs().max() > 1e-4, name  # the other sizes count
    for name in ("health_logits", "diagnosis_logits", "embedding"):
        assert torch.allclose(getattr(answer, name), torch.stack([getattr(o, name) for o in each]).mean(0), atol=1e-5)
    # An input of another size is answered at the same relative scales, at its own size.
    with torch.inference_mode():
        assert sized(torch.rand(1, 3, 128, 128)).lung_logits.shape == (1, 2, 128, 128)
    # Training sees each image once, at its size.
    assert torch.allclose(sized.train()(x).lung_logits, plain.train()(x).lung_logits, atol=1e-5)
