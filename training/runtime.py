"""Device choice, seeding and CPU thread settings shared by training, evaluation and serving."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when present, else the CPU; anything else is used as given."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def usable_cores() -> int:
    """The cores this process may run on (its affinity), which in a container can be fewer than the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else one per usable core.

    torch defaults to the number of *physical* cores it detects, which inside containers and CPU-
    limited workers is often more than the process may use; oversubscription makes convolutions
    slower, not faster. Returns the number in effect.
    """
    threads = max(1, int(usable_cores() if threads is None else threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
