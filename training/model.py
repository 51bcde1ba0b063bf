"""CMTNet (Malhotra et al., "Multi-Task Driven Explainable Diagnosis of COVID-19 using Chest X-ray Images").

Encoder -> decoders -> heads, each a small module:

- ``VGGEncoder``: VGG16-BN's 13 conv+BN+ReLU layers in blocks of 2, 2, 3, 3, 3, each block ending in a
  2x2 max-pool whose indices are kept for the decoders (built from a config list, like torchvision's
  ``models/vgg.py``).
- ``SegNetDecoder`` (x2, lung and disease): the encoder mirrored, SegNet-style: max-unpool with the
  encoder's indices, then the block's conv+BN+ReLU layers in reverse, and a 1x1 conv to 2 classes at
  input resolution (softmax over the 2 channels gives the mask probability).
- ``ClassificationHead`` (x2): after global average pooling of the encoder output, three FC layers
  (ReLU, ReLU, then a 2-way output): healthy/unhealthy (softmax) and [COVID, other disease] (sigmoid,
  multi-label).

The paper's configuration (width 1, 224x224x3) has 44.6 M parameters and costs 99.2 GFLOPs per image
(``torch.utils.flop_counter``), matching BENCHMARKS.md. Heads return logits; ``predict_proba`` applies
the softmax/sigmoid. Label order of every 2-way output is in ``LABEL_NAMES``.
"""

from __future__ import annotations

import copy
import logging
import urllib.error
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import TASK_DIAGNOSIS, TASK_DISEASE, TASK_HEALTH, TASK_LUNG, ModelConfig

log = logging.getLogger(__name__)

# VGG16-BN's convolutional configuration: output channels of each conv, grouped by pooling block.
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

# Channel order of each output. Health: index 1 is "unhealthy" so that the positive class of the
# softmax is the abnormal one; diagnosis is multi-label, one sigmoid per name.
LABEL_NAMES: dict[str, list[str]] = {
    "lung": ["background", "lung"],
    "disease": ["background", "disease"],
    "health": ["healthy", "unhealthy"],
    "diagnosis": ["covid", "other_disease"],
}


class CMTNetOutput(NamedTuple):
    """Raw outputs of one forward pass; an output is ``None`` when its task is not in the model.

    Shapes: ``lung_logits``/``disease_logits`` (N, 2, H, W); ``health_logits`` (N, 2) [healthy,
    unhealthy]; ``diagnosis_logits`` (N, 2) [covid, other_disease]; ``embedding`` (N, C) the globally
    average-pooled encoder features (C = 512 x width), used by the RandomForest/SVM baselines.
    """

    lung_logits: Tensor | None
    disease_logits: Tensor | None
    health_logits: Tensor | None
    diagnosis_logits: Tensor | None
    embedding: Tensor


class CMTNetProba(NamedTuple):
    """Probabilities derived from ``CMTNetOutput`` (``None`` where the task is absent).

    Shapes: ``lung``/``disease`` (N, H, W) foreground probability; ``healthy``, ``covid``,
    ``other_disease`` (N,).
    """

    lung: Tensor | None
    disease: Tensor | None
    healthy: Tensor | None
    covid: Tensor | None
    other_disease: Tensor | None


def scaled_channels(channels: int, width: float) -> int:
    """Channel count under the width multiplier (at least 2 so BatchNorm and the heads stay sane)."""
    return max(2, int(round(channels * width)))


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # bias=True like torchvision's VGG16-BN, so ImageNet weights load one-to-one.
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class VGGEncoder(nn.Module):
    """VGG16-BN feature extractor that keeps max-pooling indices.

    Shape:
        input (N, in_channels, H, W) with H, W multiples of 32 ->
        features (N, 512*width, H/32, W/32), plus per block the pooling indices and pre-pool sizes.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.block_channels = [[scaled_channels(c, width) for c in block] for block in VGG16_BLOCKS]
        blocks = []
        channels = in_channels
        for block in self.block_channels:
            layers: list[nn.Module] = []
            for out_channels in block:
                layers += _conv_bn_relu(channels, out_channels)
                channels = out_channels
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.out_channels = channels

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[torch.Size]]:
        indices: list[Tensor] = []
        sizes: list[torch.Size] = []
        for block in self.blocks:
            x = block(x)
            sizes.append(x.shape)
            x, idx = self.pool(x)
            indices.append(idx)
        return x, indices, sizes


class SegNetDecoder(nn.Module):
    """The encoder mirrored: unpool with the encoder's indices, then conv+BN+ReLU layers in reverse.

    Each decoder block has as many conv layers as its encoder block; its last conv maps to the
    channel count of the block above (SegNet), and a final 1x1 conv gives the 2-class logits.

    Shape:
        features (N, 512*width, H/32, W/32) + indices/sizes from ``VGGEncoder`` -> logits (N, 2, H, W).
    """

    def __init__(self, block_channels: list[list[int]], num_classes: int = 2) -> None:
        super().__init__()
        blocks = []
        for depth in reversed(range(len(block_channels))):
            block = block_channels[depth]
            channels = block[-1]
            target = block_channels[depth - 1][-1] if depth > 0 else block[0]
            layers: list[nn.Module] = []
            for i in range(len(block)):
                out_channels = target if i == len(block) - 1 else channels
                layers += _conv_bn_relu(channels, out_channels)
                channels = out_channels
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.classifier = nn.Conv2d(block_channels[0][0], num_classes, 1)

    def forward(self, x: Tensor, indices: list[Tensor], sizes: list[torch.Size]) -> Tensor:
        for block, idx, size in zip(self.blocks, reversed(indices), reversed(sizes)):
            x = self.unpool(x, idx, output_size=size[-2:])
            x = block(x)
        return self.classifier(x)


class ClassificationHead(nn.Module):
    """Three FC layers on the pooled encoder features: FC-ReLU, FC-ReLU, FC (2 logits).

    Shape:
        embedding (N, C) -> logits (N, 2).
    """

    def __init__(self, in_features: int, hidden: tuple[int, int], num_outputs: int = 2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[1], num_outputs),
        )

    def forward(self, embedding: Tensor) -> Tensor:
        return self.layers(embedding)


class CMTNet(nn.Module):
    """The multi-task network: one encoder, a decoder or head per enabled task.

    Shape:
        image (N, in_channels, S, S), S = ``config.image_size`` (any multiple of 32 works) ->
        ``CMTNetOutput`` (see there). Modules of tasks not in ``config.tasks`` are not built.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VGGEncoder(config.in_channels, config.width)
        channels = self.encoder.out_channels
        hidden = (scaled_channels(config.head_hidden[0], config.width), scaled_channels(config.head_hidden[1], config.width))
        tasks = set(config.tasks)
        self.lung_decoder = SegNetDecoder(self.encoder.block_channels) if TASK_LUNG in tasks else None
        self.disease_decoder = SegNetDecoder(self.encoder.block_channels) if TASK_DISEASE in tasks else None
        self.health_head = ClassificationHead(channels, hidden) if TASK_HEALTH in tasks else None
        self.diagnosis_head = ClassificationHead(channels, hidden) if TASK_DIAGNOSIS in tasks else None
        self.embedding_dim = channels
        _init_weights(self)

    def forward(self, x: Tensor) -> CMTNetOutput:
        if self.training:
            return self._forward(x)
        answer = self._answer(x)
        if not self.config.test_sizes:
            return answer
        height, width = x.shape[-2:]
        answers = [answer]
        for side in self.config.test_sizes:
            # The sides are given at image_size; another input size is scaled alike.
            size = (height * side // self.config.image_size, width * side // self.config.image_size)
            resized = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            answers.append(_maps_resized(self._answer(resized), (height, width)))
        return CMTNetOutput(*(None if values[0] is None else torch.stack(values).mean(0) for values in zip(*answers)))

    def _answer(self, x: Tensor) -> CMTNetOutput:
        if self.config.mirror_average:
            return _mirror_mean(self._forward(torch.cat([x, x.flip(-1)])), len(x))
        return self._forward(x)

    def _forward(self, x: Tensor) -> CMTNetOutput:
        features, indices, sizes = self.encoder(x)
        embedding = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        return CMTNetOutput(
            lung_logits=self.lung_decoder(features, indices, sizes) if self.lung_decoder is not None else None,
            disease_logits=self.disease_decoder(features, indices, sizes) if self.disease_decoder is not None else None,
            health_logits=self.health_head(embedding) if self.health_head is not None else None,
            diagnosis_logits=self.diagnosis_head(embedding) if self.diagnosis_head is not None else None,
            embedding=embedding,
        )


def _mirror_mean(output: CMTNetOutput, n: int) -> CMTNetOutput:
    """The first ``n`` images' outputs averaged with those of their mirrors (the last ``n``): logits
    and embeddings averaged, the mirrors' maps mirrored back first."""

    def mean(value: Tensor | None) -> Tensor | None:
        if value is None:
            return None
        original, mirrored = value[:n], value[n:]
        if value.dim() == 4:
            mirrored = mirrored.flip(-1)
        return (original + mirrored) / 2

    return CMTNetOutput(*(mean(value) for value in output))


def _maps_resized(output: CMTNetOutput, size: tuple[int, int]) -> CMTNetOutput:
    """The output with its maps' logits resized (bilinear) to ``size``; the rest as it is."""
    return CMTNetOutput(
        *(
            F.interpolate(value, size=size, mode="bilinear", align_corners=False) if value is not None and value.dim() == 4 else value
            for value in output
        )
    )


def predict_proba(output: CMTNetOutput) -> CMTNetProba:
    """Probabilities from logits: softmax for the masks and health, sigmoid for [COVID, other]."""

    def fg(logits: Tensor | None) -> Tensor | None:
        return None if logits is None else torch.softmax(logits.float(), dim=1)[:, 1]

    health = None if output.health_logits is None else torch.softmax(output.health_logits.float(), dim=1)
    diagnosis = None if output.diagnosis_logits is None else torch.sigmoid(output.diagnosis_logits.float())
    return CMTNetProba(
        lung=fg(output.lung_logits),
        disease=fg(output.disease_logits),
        healthy=None if health is None else health[:, 0],
        covid=None if diagnosis is None else diagnosis[:, 0],
        other_disease=None if diagnosis is None else diagnosis[:, 1],
    )


def _init_weights(module: nn.Module) -> None:
    # Kaiming for ReLU networks (torchvision's VGG init); it matters here because from-scratch
    # training is the common case offline.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    # The 1x1 mask classifiers start near zero so every pixel starts at p ~ 0.5: Kaiming's fan-out
    # init on 2 output channels gives logits of several units and a slow, saturated start.
    for m in module.modules():
        if isinstance(m, SegNetDecoder):
            nn.init.normal_(m.classifier.weight, 0, 0.01)


def imagenet_weights_available() -> bool:
    """Whether torchvision's ImageNet VGG16-BN weights are in the local torch hub cache (where
    ``load_imagenet_encoder`` would find them without a download). Looks, never downloads."""
    try:
        from torchvision.models import VGG16_BN_Weights
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    filename = VGG16_BN_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def load_imagenet_encoder(model: CMTNet) -> bool:
    """Copy torchvision's ImageNet VGG16-BN conv/BN weights into the encoder; False when unavailable.

    Only the paper's width-1, 3-channel encoder has the same shapes. Offline, torchvision raises
    ``URLError`` unless the weights are already in the torch hub cache.
    """
    if model.config.width != 1.0 or model.config.in_channels != 3:
        log.info("ImageNet VGG16-BN weights need width 1 and 3 input channels; starting from scratch")
        return False
    try:
        from torchvision.models import VGG16_BN_Weights, vgg16_bn

        reference = vgg16_bn(weights=VGG16_BN_Weights.IMAGENET1K_V1)
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
        log.warning("ImageNet VGG16-BN weights are not available (%s); starting from scratch", exc)
        return False
    source = [m for m in reference.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    target = [m for m in model.encoder.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    if len(source) != len(target):  # pragma: no cover - torchvision's layout is fixed
        log.warning("unexpected VGG16-BN layout; starting from scratch")
        return False
    for src, dst in zip(source, target):
        dst.load_state_dict(src.state_dict())
    log.info("encoder initialised from ImageNet VGG16-BN weights")
    return True


def build_model(config: ModelConfig, *, pretrained: bool | None = None) -> tuple[CMTNet, bool]:
    """Build CMTNet; returns the model and whether ImageNet weights were loaded into its encoder."""
    model = CMTNet(config)
    want = config.pretrained if pretrained is None else pretrained
    loaded = load_imagenet_encoder(model) if want else False
    if not loaded:
        log.info("CMTNet width %s, %d px: encoder starts from scratch", config.width, config.image_size)
    return model, loaded


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy with every BatchNorm folded into the conv before it.

    In eval mode BN is an affine map per channel, so it can live in the conv's weight and bias:
    one memory pass less per layer, a real win on the CPU. The original model is left untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for sequential in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                sequential[i] = fuse_conv_bn_eval(conv, bn)
                sequential[i + 1] = nn.Identity()
    return fused


class OneDNNConv(nn.Module):
    """Inference-only conv (+ optional ReLU) in one oneDNN kernel: ``mkldnn._convolution_pointwise``.

    Eager PyTorch runs conv, then ReLU as a separate pass over memory, and re-lays-out the weights on
    every call; the fused pointwise kernel (the one ``torch.compile`` uses on the CPU) does neither.
    CPU, float32, no autograd. Built by ``optimize_for_cpu_inference``.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", conv.bias.detach().clone() if conv.bias is not None else None)
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.attr = "relu" if relu else "none"

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, self.attr, [], ""
        )


def onednn_fusion_available() -> bool:
    """Whether this torch build has the fused oneDNN conv kernel (checked by running it once)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return False
    try:
        conv = nn.Conv2d(2, 2, 3, padding=1)
        with torch.no_grad():
            expected = torch.relu(conv(torch.ones(1, 2, 4, 4)))
            got = OneDNNConv(conv, relu=True)(torch.ones(1, 2, 4, 4))
        return bool(torch.allclose(expected, got, atol=1e-5))
    except (RuntimeError, NotImplementedError):
        return False


def optimize_for_cpu_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy for fast CPU inference: BN folded into convs, conv+ReLU fused in oneDNN.

    Falls back to BN folding alone when the fused kernel is unavailable. Outputs match the original
    model's to float32 rounding. Not trainable.
    """
    fused = fuse_conv_bn(model)
    if not onednn_fusion_available():
        log.info("oneDNN fused conv kernel unavailable; using BN folding only")
        return fused
    for sequential in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential.children())
        for i, conv in enumerate(children):
            if not isinstance(conv, nn.Conv2d):
                continue
            # After fuse_conv_bn a block reads Conv2d, Identity (was BN), ReLU.
            follows = children[i + 1 : i + 3]
            relu = len(follows) == 2 and isinstance(follows[0], nn.Identity) and isinstance(follows[1], nn.ReLU)
            if relu:
                sequential[i] = OneDNNConv(conv, relu=True)
                sequential[i + 2] = nn.Identity()
    for decoder in [m for m in fused.modules() if isinstance(m, SegNetDecoder)]:
        decoder.classifier = OneDNNConv(decoder.classifier, relu=False)
    return fused

