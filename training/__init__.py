"""Lungmark's training package: CMTNet, the export-v1 reader, losses, metrics, training and serving.

Plain PyTorch, no Django import (STYLE.md item 10): the Celery workers in ``inference/`` and the web app
call into it, and so can an ML engineer who only has an export folder (``python -m training --help``).

Where things live:

- ``training.config``      typed configuration dataclasses (model, loss, augmentation, training run)
- ``training.model``       CMTNet: VGG16-BN encoder -> two SegNet decoders -> two classification heads
- ``training.losses``      the paper's switch-masked multi-task loss, as pure functions
- ``training.export``      reading and verifying export snapshots (format ``lungmark-export/1``)
- ``training.data``        the torch ``Dataset`` over an export, with the paper's COVID augmentation
- ``training.transforms``  paired image/mask geometry and intensity augmentation
- ``training.metrics``     Dice/IoU, lung boxes, ROC-derived COVID metrics (pure functions)
- ``training.train``       ``train(config, progress=...)``: the training loop, run directory, checkpoints
- ``training.distributed``  one run on several GPUs/processes (DDP), ``--nproc`` or torchrun
- ``training.evaluate``    ``evaluate(checkpoint, export_dir, split)``: the paper's metrics on a split
- ``training.serve``       ``Predictor``: a checkpoint loaded once, fast single-image inference
- ``training.checkpoint``  the ``cmtnet-checkpoint/1`` file (``torch.load(..., weights_only=True)``)
- ``training.baselines``, ``training.ablation``  the paper's Table IV and Table V comparisons
"""

import os

# OpenMP threads that wait at a barrier sleep instead of spinning (unless the environment says
# otherwise). On a machine whose cores are shared (web, worker and beat of `make run`, or a second
# job), spinning threads fight over the cores: one CPU training step of the `cpu` preset took 9.3 s
# with spinning threads and 1.3 s with sleeping ones next to one other busy process on 2 cores; on an
# idle machine the two are within noise (0.46 and 0.45 s).
# It only works if set before torch starts OpenMP, which this package's import comes before.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["__version__"]

__version__ = "1.0.0"
