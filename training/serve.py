"""Serving CMTNet: ``Predictor`` loads a checkpoint once and answers single images fast.

    predictor = Predictor("best.pt")                 # once per worker process
    result = predictor.predict(image_uint8_2d)       # any size
    results = predictor.predict_batch(images)        # one forward pass (GPU workers batch)
    boxes = lung_boxes_from_mask(result.lung >= 0.5) # training.metrics

What makes it fast on the CPU (measured in bench/model_speed.py): every BatchNorm is folded into its
convolution, and each conv+ReLU pair runs as one oneDNN kernel (``optimize_for_cpu_inference``); the
model runs in eval mode under ``torch.inference_mode``, activations are channels-last (oneDNN's
preferred layout), and torch uses one thread per usable core. On CUDA: BN folding, channels-last and
bf16/fp16 autocast.

Uncertainty: the mean binary entropy (in bits, 0..1) of the COVID probability and the healthy
probability. 0 means both outputs are confident (p near 0 or 1), 1 means both are coin flips; when
only one of the two heads exists, it is that head's entropy. Use it to rank images for review.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.checkpoint import load_model
from training.data import prepare_image
from training.model import CMTNet, fuse_conv_bn, optimize_for_cpu_inference, predict_proba
from training.runtime import configure_cpu_threads, resolve_device

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """The model's answer for one image, at the image's original size.

    ``lung``/``disease``: float32 (H, W) foreground probability maps (``None`` if the model lacks the
    task); ``probabilities``: {"healthy", "covid", "other_disease"} in [0, 1] (``None`` values if the
    head is absent); ``uncertainty``: see the module docstring; ``box_calibration``: the checkpoint's
    box-edge calibration (``training.boxes.calibrate_boxes``), for whoever boxes ``lung``.
    """

    lung: np.ndarray | None
    disease: np.ndarray | None
    probabilities: dict[str, float | None]
    uncertainty: float | None
    box_calibration: dict[str, Any] | None = None


def binary_entropy(p: float) -> float:
    """Entropy in bits of a Bernoulli(p): 0 at p in {0, 1}, 1 at p = 0.5."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def uncertainty_score(covid: float | None, healthy: float | None) -> float | None:
    """Mean binary entropy of the COVID and healthy probabilities that exist (None if neither)."""
    values = [binary_entropy(p) for p in (covid, healthy) if p is not None]
    return float(sum(values) / len(values)) if values else None


class Predictor:
    """A CMTNet checkpoint ready for inference (load once per process, call many times).

    Args:
        checkpoint: path to a ``cmtnet-checkpoint/1`` file.
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        threads: CPU intra-op threads; None = one per usable core.
        optimize: fold BatchNorm into the convolutions and, on the CPU, fuse conv+ReLU in oneDNN
            (same outputs to float32 rounding, faster).
        channels_last: run convolutions in NHWC, faster with oneDNN and with tensor cores.
        amp: autocast to bf16 (fp16 where bf16 is unsupported) on CUDA; ignored on the CPU.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        threads: int | None = None,
        optimize: bool = True,
        channels_last: bool = True,
        amp: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads(threads)
        model, checkpoint_data = load_model(checkpoint, "cpu")
        self.checkpoint_path = Path(checkpoint)
        self.config = model.config
        self.label_names: dict[str, list[str]] = checkpoint_data["label_names"]
        self.metrics: dict[str, Any] = checkpoint_data.get("metrics", {})
        self.export: dict[str, Any] = checkpoint_data.get("export", {})
        self.box_calibration: dict[str, Any] | None = checkpoint_data.get("box_calibration")
        self.image_size = model.config.image_size
        self.in_channels = model.config.in_channels
        norm = checkpoint_data["normalization"]
        self._mean = torch.tensor(norm["mean"][: self.in_channels], dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(norm["std"][: self.in_channels], dtype=torch.float32).view(1, -1, 1, 1)
        if optimize:
            model = optimize_for_cpu_inference(model) if self.device.type == "cpu" else fuse_conv_bn(model)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model: CMTNet = model.to(self.device, memory_format=self.memory_format).eval()
        self.amp_dtype: torch.dtype | None = None
        if amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        log.info("Predictor ready: %s on %s (%d px, tasks %s)", self.checkpoint_path.name, self.device, self.image_size, self.config.tasks)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize (and equalise, where the model was trained so) and normalise uint8 images into a model batch.

        Shape:
            list of (H_i, W_i) uint8 -> (N, in_channels, S, S) float32
        """
        arrays = []
        for image in images:
            array = np.asarray(image)
            if array.ndim == 3 and array.shape[2] == 1:
                array = array[:, :, 0]
            if array.ndim != 2 or array.dtype != np.uint8:
                raise ValueError(f"expected a 2-D uint8 grayscale image, got shape {array.shape} dtype {array.dtype}")
            arrays.append(prepare_image(np.ascontiguousarray(array), self.image_size, self.config.equalize))
        batch = torch.from_numpy(np.stack(arrays)).float().div_(255.0).unsqueeze(1)
        batch = (batch.expand(-1, self.in_channels, -1, -1) - self._mean) / self._std
        return batch.contiguous(memory_format=self.memory_format)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Predict several images in one forward pass (worth it on a GPU; on a CPU batch 1 is as fast)."""
        if len(images) == 0:
            return []
        shapes = [tuple(np.asarray(image).shape[:2]) for image in images]
        return self.predict_preprocessed(self.preprocess(images), shapes)

    @torch.inference_mode()
    def predict_preprocessed(self, batch: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> list[Prediction]:
        """Predict a batch that ``preprocess`` made (possibly one image at a time, in other threads,
        and concatenated), with each image's original (height, width) for the maps.

        Shape:
            (N, in_channels, S, S) float32, N (height, width) pairs -> N predictions
        """
        if batch.shape[0] != len(shapes):
            raise ValueError(f"{batch.shape[0]} images in the batch but {len(shapes)} shapes")
        if len(shapes) == 0:
            return []
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            output = self.model(batch)
        proba = predict_proba(output)
        results = []
        for i, (height, width) in enumerate(shapes):
            probabilities = {
                "healthy": None if proba.healthy is None else float(proba.healthy[i]),
                "covid": None if proba.covid is None else float(proba.covid[i]),
                "other_disease": None if proba.other_disease is None else float(proba.other_disease[i]),
            }
            results.append(
                Prediction(
                    lung=_to_original_size(proba.lung, i, height, width),
                    disease=_to_original_size(proba.disease, i, height, width),
                    probabilities=probabilities,
                    uncertainty=uncertainty_score(probabilities["covid"], probabilities["healthy"]),
                    box_calibration=self.box_calibration,
                )
            )
        return results

    def predict(self, image: np.ndarray) -> Prediction:
        """Predict one uint8 2-D image of any size (maps come back at that size)."""
        return self.predict_batch([image])[0]


def _to_original_size(maps: torch.Tensor | None, i: int, height: int, width: int) -> np.ndarray | None:
    # Bilinear on probabilities (not on thresholded masks) keeps the outline smooth when upscaling.
    if maps is None:
        return None
    resized = F.interpolate(maps[i : i + 1, None].float(), size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].clamp_(0.0, 1.0).cpu().numpy()
