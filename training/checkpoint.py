"""The CMTNet checkpoint file (format ``cmtnet-checkpoint/1``): one file to resume or to serve.

Contents (plain types and tensors only, so ``torch.load(path, weights_only=True)`` loads it)::

    format           "cmtnet-checkpoint/1"
    state_dict       model weights
    config           architecture: width, image_size, in_channels, tasks, head_hidden, pretrained
    normalization    {"mean": [...], "std": [...]} over [0, 1] pixel values, one value per input channel
    label_names      order of each 2-way output (training.model.LABEL_NAMES):
                     lung/disease [background, <mask>], health [healthy, unhealthy],
                     diagnosis [covid, other_disease] (independent sigmoids)
    heads            activation per output: softmax for lung/disease/health, sigmoid for diagnosis
    tasks            enabled task numbers (1 lung, 2 disease, 3 healthy, 4 covid/other)
    export           the snapshot it was trained on: {path, created, manifest_sha256}
    metrics          metrics on that snapshot's test split (training.evaluate), {} until evaluated
    epoch            number of completed epochs
    train_config     the TrainConfig as a dict
    optimizer_state  only in ``last.pt`` (resume); absent in ``best.pt``
    resume_state     only in ``last.pt``: best validation score and epoch so far
    created          ISO time of writing, torch_version

Files are written atomically (temporary file + rename) so a killed worker never leaves half a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import model_config_from_dict, model_config_to_dict
from training.model import LABEL_NAMES, CMTNet

# How each output's logits become probabilities (training.model.predict_proba).
HEAD_ACTIVATIONS = {"lung": "softmax", "disease": "softmax", "health": "softmax", "diagnosis": "sigmoid"}

CHECKPOINT_FORMAT = "cmtnet-checkpoint/1"


class CheckpointError(ValueError):
    """The file is not a usable CMTNet checkpoint."""


def save_checkpoint(
    path: str | Path,
    model: CMTNet,
    *,
    normalization: dict[str, list[float]],
    export: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    epoch: int = 0,
    train_config: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    resume_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path."""
    path = Path(path)
    model = _unwrap(model)
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state_dict,
        "config": model_config_to_dict(model.config),
        "normalization": {"mean": [float(v) for v in normalization["mean"]], "std": [float(v) for v in normalization["std"]]},
        "label_names": {k: list(v) for k, v in LABEL_NAMES.items()},
        "heads": dict(HEAD_ACTIVATIONS),
        "tasks": list(model.config.tasks),
        "export": dict(export or {}),
        "metrics": dict(metrics or {}),
        "epoch": int(epoch),
        "train_config": dict(train_config or {}),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
    }
    if optimizer_state is not None:
        payload["optimizer_state"] = optimizer_state
    if resume_state is not None:
        payload["resume_state"] = resume_state
    write_checkpoint(path, payload)
    return path


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write an already-assembled checkpoint dict (e.g. after adding test metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint with ``weights_only=True`` (no pickled code is ever executed)."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a loadable checkpoint ({exc})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: format is {found!r}, expected {CHECKPOINT_FORMAT!r}")
    return checkpoint


def load_model(
    checkpoint: str | Path | dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[CMTNet, dict[str, Any]]:
    """Rebuild CMTNet from a checkpoint (path or loaded dict); returns (model in eval mode, checkpoint)."""
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    config = model_config_from_dict(checkpoint["config"])
    config.pretrained = False  # the weights come from the checkpoint; never touch the network
    model = CMTNet(config)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint


def _unwrap(model: nn.Module) -> nn.Module:
    # Compiled or DataParallel wrappers keep the real module in an attribute.
    return getattr(model, "_orig_mod", getattr(model, "module", model))
