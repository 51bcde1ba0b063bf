"""Training one run on several processes: one per GPU (NCCL), or a few on the CPU (gloo), with DDP.

Two ways in, the same ``training.train.train`` underneath:

- ``TrainConfig.nproc`` > 1 (``python -m training train --nproc N``; ``"auto"`` is every CUDA device):
  the calling process becomes rank 0 and starts ranks 1..N-1 as ``python -m training.distributed``
  subprocesses with torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``). Rank 0 stays in the caller, so the progress callback and the stop check run where
  they always did (a Celery task, with its database access); plain subprocesses, unlike
  ``multiprocessing``, may also be started from a daemonic worker-pool process.
- ``torchrun --nproc-per-node N -m training train ...``: every process finds that environment
  (``environment_ranks``) and joins as its rank.

The run is the one-process run with the same global batch, split across the ranks:

- data: every rank draws the same epoch order (seed, epoch), including the minority-class copies, and
  takes its contiguous slice of each global batch of ``batch_size`` (``rank_batches``);
- loss: each task's mean divides by the labelled items of the whole global batch
  (``training.losses.task_label_counts``, summed over the ranks), and DDP sums the gradients, so they
  are the one-process gradients; the logged losses are summed the same way;
- BatchNorm: synchronised over the ranks during training: ``torch.nn.SyncBatchNorm`` on CUDA, and
  ``CpuSyncBatchNorm`` on the CPU (torch's SyncBatchNorm refuses CPU tensors);
- stopping: rank 0 asks ``should_stop`` before every batch and the answer travels with the label
  counts, so all ranks stop at the same step.

Only rank 0 validates and writes: config, metrics, plots, log, checkpoints, test metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from training.runtime import configure_cpu_threads, resolve_device

log = logging.getLogger(__name__)

T = TypeVar("T")

# Ranks 1..N-1 wait in a collective while rank 0 validates and writes checkpoints: allow a long pass.
PROCESS_GROUP_TIMEOUT = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run: ``rank`` of ``world_size``, ``local_rank`` picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks()


def environment_ranks() -> Ranks | None:
    """This process's rank when torchrun (or ``launch``) started it as one of several, else None."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 or "RANK" not in os.environ:
            return None
        rank = int(os.environ["RANK"])
        return Ranks(rank=rank, world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", rank)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None


def resolve_nproc(nproc: int | str, device: str = "auto") -> int:
    """Number of processes: ``"auto"`` is the number of CUDA devices (1 on the CPU or without CUDA)."""
    if nproc == "auto":
        if str(device) == "cpu" or not torch.cuda.is_available():
            return 1
        return max(1, torch.cuda.device_count())
    nproc = int(nproc)
    if nproc > 1 and resolve_device(device).type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc {nproc} asks for more processes than the {torch.cuda.device_count()} CUDA devices")
    return nproc


def rank_device(name: str, ranks: Ranks) -> torch.device:
    """The device of a rank: its own GPU (``cuda:LOCAL_RANK``) on CUDA, else the CPU."""
    device = resolve_device(name)
    if ranks.distributed and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


@contextmanager
def process_group(ranks: Ranks, device: torch.device, init_method: str | None = None) -> Iterator[None]:
    """Join the run's process group (NCCL on CUDA, gloo on the CPU) for the duration; no-op for one process.

    On the CPU the machine's cores are shared out between the ranks (oversubscribed cores make every
    rank slower), and the thread count is restored afterwards.
    """
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        configure_cpu_threads(max(1, configure_cpu_threads() // ranks.world_size))
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=init_method or "env://",
        rank=ranks.rank,
        world_size=ranks.world_size,
        timeout=PROCESS_GROUP_TIMEOUT,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()
        torch.set_num_threads(threads)


def rank_batches(n_samples_order: Sequence[int], batch_size: int, ranks: Ranks) -> list[list[int]]:
    """This rank's share of each global batch of ``batch_size`` consecutive samples of the epoch order.

    Rank r takes the r-th of ``world_size`` contiguous slices (equal for a full batch; a short last
    batch splits as evenly as it can). A short last batch of one sample is dropped when there are others
    (one value per channel breaks BatchNorm; a batch size of 1 is the caller's choice), and one too short to give every rank a sample is dropped too;
    it is a different sample every epoch (the order is shuffled).
    """
    order = list(n_samples_order)
    world = ranks.world_size
    batches = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        short_last = len(batch) < batch_size
        if len(batch) < world or (short_last and len(batch) == 1 and len(order) > batch_size):
            continue
        batches.append(batch[ranks.rank * len(batch) // world : (ranks.rank + 1) * len(batch) // world])
    if not batches:
        raise ValueError(f"{len(order)} training samples cannot be shared by {world} processes")
    return batches


def sum_over_ranks(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (one small all-reduce)."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_parts(parts: dict[str, float], device: torch.device) -> dict[str, float]:
    """The one-process loss parts from each rank's share (the keys agree: a task is present on every
    rank when any rank has its labels, see ``training.losses.masked_mean``)."""
    keys = sorted(parts)
    return dict(zip(keys, sum_over_ranks([parts[k] for k in keys], device)))


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised BatchNorm and DDP around ``model`` (whose parameters and buffers it shares).

    ``find_unused_parameters``: a task without labels in the global batch leaves its decoder or head
    out of the loss on every rank, and its gradients stay None as in one process (Adam skips them).
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], find_unused_parameters=True)
    # A group of its own for the BatchNorm statistics keeps them apart from DDP's gradient buckets.
    model = convert_to_cpu_sync_batchnorm(model, dist.new_group(backend="gloo"))
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks whose gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, over gloo on the CPU.

    Outside training, or in one process, it is a plain BatchNorm (same parameters and buffers, so the
    state dict loads into CMTNet unchanged). Statistics are summed in float64 (sum and sum of squares).

    Shape:
        (N, C) or (N, C, *) -> same
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, group: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine=True, track_running_stats=True)
        self.group = group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.size(1)
        dims = [0, *range(2, input.dim())]
        x = input.double()
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_tensor([input.numel() // channels])])
        total = _AllReduceSum.apply(local, self.group)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            unbiased = var * (count / (count - 1).clamp_min(1.0))
            self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
            self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype) * self.weight
        shift = self.bias - mean.to(input.dtype) * scale
        return input * scale.view(shape) + shift.view(shape)


def convert_to_cpu_sync_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replace every BatchNorm of ``module`` by a ``CpuSyncBatchNorm`` sharing its parameters and buffers."""
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        converted = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, group)
        converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_to_cpu_sync_batchnorm(child, group))
    return converted


def launch(config: Any, nproc: int, run_rank0: Callable[[Ranks, str], T]) -> T:
    """Run ``config`` on ``nproc`` processes: ranks 1.. as subprocesses, rank 0 here (``run_rank0``).

    ``run_rank0(ranks, init_method)`` trains as rank 0; its result is returned once every other rank
    has exited cleanly. When rank 0 fails the others are terminated, and a rank that exits with an
    error fails the run.
    """
    port = _free_port()
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(nproc),
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p),
    }
    payload = json.dumps(config.to_dict())
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "training.distributed", payload],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
        )
        for rank in range(1, nproc)
    ]
    log.info("training on %d processes (ranks 1-%d: pids %s)", nproc, nproc - 1, ", ".join(str(c.pid) for c in children))
    try:
        result = run_rank0(Ranks(rank=0, world_size=nproc, local_rank=0), f"tcp://127.0.0.1:{port}")
    except BaseException:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            child.wait()
        raise
    failed = [(rank, code) for rank, code in enumerate((child.wait() for child in children), start=1) if code != 0]
    if failed:
        raise RuntimeError("training rank(s) failed: " + ", ".join(f"rank {rank} exited with {code}" for rank, code in failed))
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main(argv: list[str]) -> int:
    """A rank started by ``launch``: ``python -m training.distributed '<TrainConfig JSON>'``."""
    from training.config import TrainConfig
    from training.train import train

    logging.basicConfig(level=logging.WARNING, format=f"rank {os.environ.get('RANK')} %(levelname)s %(name)s: %(message)s")
    train(TrainConfig.from_dict(json.loads(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
