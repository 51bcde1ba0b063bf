"""CMTNet speed: inference and training images/s against the machine's float32 matmul floor.

    python bench/model_speed.py                       # paper configuration (width 1, 224 px), CPU (+ CUDA if present)
    python bench/model_speed.py --width 0.25 --image-size 128 --iters 20
    python bench/model_speed.py --variants eager,predictor --skip-train --out speed.json

What it measures, per device:

- the model's parameters and GFLOPs per image (one forward pass, all four outputs), counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the meta device;
- the compute floor: float32 2048x2048 matmul GFLOP/s;
- inference images/s at batch 1 and 8 for several execution variants (below), and the ratio of the
  achieved GFLOP/s (images/s x GFLOPs/image) to the matmul floor;
- training images/s at batch 8 (forward, the full multi-task loss, backward, Adam step).

CPU variants: ``eager`` (eval + inference_mode, what a straightforward implementation does),
``channels_last``, ``fused_bn`` (BatchNorm folded into the convs), ``fused_bn_cl`` (both), and
``predictor``: exactly what ``training.serve.Predictor`` runs, i.e. folded BN, conv+ReLU fused in one
oneDNN kernel, channels-last. On CUDA: ``eager`` in float32 and ``predictor`` (folded BN,
channels-last, bf16 autocast). ``compile`` (torch.compile) can be asked for with --variants.

The model and matmul timings are interleaved (one matmul before each timed model call) and each row's
ratio uses the matmul samples taken between its own calls, so both see the same machine load: on a
shared machine the ratio stays meaningful even when absolute numbers drift. Medians are reported;
the JSON also keeps every sample and the load average.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import LossConfig, ModelConfig  # noqa: E402
from training.losses import multitask_loss  # noqa: E402
from training.model import CMTNet, count_parameters, fuse_conv_bn, optimize_for_cpu_inference  # noqa: E402
from training.runtime import configure_cpu_threads  # noqa: E402

MATMUL_N = 2048
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "model_speed.json"


def model_flops(config: ModelConfig) -> float:
    """Forward FLOPs of one image, counted on the meta device (no memory, no time)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = CMTNet(config)
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, config.in_channels, config.image_size, config.image_size, device="meta"))
    return float(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MatmulFloor:
    """float32 2048x2048 matmul, timed in short bursts between model timings."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        generator = torch.Generator().manual_seed(0)
        self.a = torch.randn(MATMUL_N, MATMUL_N, generator=generator).to(device)
        self.b = torch.randn(MATMUL_N, MATMUL_N, generator=generator).to(device)
        self.samples: list[float] = []
        for _ in range(2):
            self.a @ self.b
        _sync(device)

    def burst(self, repeats: int = 3) -> None:
        for _ in range(repeats):
            _sync(self.device)
            start = time.perf_counter()
            self.a @ self.b
            _sync(self.device)
            self.samples.append(2 * MATMUL_N**3 / (time.perf_counter() - start) / 1e9)

    @property
    def gflops(self) -> float:
        return statistics.median(self.samples)


def time_calls(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int, floor: MatmulFloor) -> tuple[list[float], list[float]]:
    """Seconds per call of ``fn``, and the matmul GFLOP/s measured right before each call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples, floors = [], []
    for _ in range(iters):
        floor.burst(1)
        floors.append(floor.samples[-1])
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return samples, floors


def inference_variants(model: CMTNet, device: torch.device, names: list[str]) -> dict[str, tuple[torch.nn.Module, torch.memory_format, torch.dtype | None]]:
    """name -> (module, input memory format, autocast dtype or None)."""
    variants: dict[str, tuple[torch.nn.Module, torch.memory_format, torch.dtype | None]] = {}
    amp = None
    if device.type == "cuda":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    for name in names:
        if name == "eager":
            variants[name] = (copy.deepcopy(model).to(device).eval(), torch.contiguous_format, None)
        elif name == "channels_last":
            variants[name] = (copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval(), torch.channels_last, None)
        elif name == "fused_bn":
            variants[name] = (fuse_conv_bn(model).to(device), torch.contiguous_format, None)
        elif name == "fused_bn_cl":
            variants[name] = (fuse_conv_bn(model).to(device, memory_format=torch.channels_last), torch.channels_last, None)
        elif name == "predictor":
            # Exactly what training.serve.Predictor runs on this device.
            optimized = optimize_for_cpu_inference(model) if device.type == "cpu" else fuse_conv_bn(model)
            variants[name] = (optimized.to(device, memory_format=torch.channels_last), torch.channels_last, amp)
        elif name == "compile":
            compiled = torch.compile(fuse_conv_bn(model).to(device, memory_format=torch.channels_last))
            variants[name] = (compiled, torch.channels_last, amp)
        else:
            raise SystemExit(f"unknown variant {name!r}")
    return variants


def bench_device(device: torch.device, config: ModelConfig, args: argparse.Namespace, flops: float) -> dict[str, Any]:
    torch.manual_seed(0)
    model = CMTNet(config).eval()
    floor = MatmulFloor(device)
    floor.burst(5)
    names = args.variants.split(",") if args.variants else ["eager", "channels_last", "fused_bn", "fused_bn_cl", "predictor"]
    if device.type == "cuda":
        names = [n for n in names if n in ("eager", "predictor", "compile")] or ["eager", "predictor"]
    results: dict[str, Any] = {"device": str(device), "inference": [], "training": None}
    if device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(device)
    for name, (module, memory_format, amp) in inference_variants(model, device, names).items():
        for batch in args.batch_sizes:
            if batch > 1 and name not in args.batch_variants.split(",") and device.type == "cpu":
                continue  # batch 8 on the CPU is slow; time only the variants that matter
            x = torch.randn(batch, config.in_channels, config.image_size, config.image_size, device=device).contiguous(memory_format=memory_format)

            def call() -> None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    module(x)

            iters = max(2, args.iters if batch == 1 else args.iters // 3)
            samples, floors = time_calls(call, device, iters, args.warmup if batch == 1 else 1, floor)
            images_per_s = batch / statistics.median(samples)
            gflop_per_s = images_per_s * flops / 1e9
            matmul = statistics.median(floors)
            results["inference"].append(
                {
                    "variant": name,
                    "batch": batch,
                    "amp": str(amp).replace("torch.", "") if amp else None,
                    "images_per_s": images_per_s,
                    "best_images_per_s": batch / min(samples),
                    "gflop_per_s": gflop_per_s,
                    # The floor measured between this variant's own calls: same machine load.
                    "matmul_gflop_per_s": matmul,
                    "ratio_to_matmul": gflop_per_s / matmul,
                    "samples_s": samples,
                    "matmul_samples": floors,
                }
            )
            print(f"  {device.type} {name:<14} batch {batch}: {images_per_s:7.2f} images/s, {gflop_per_s:6.1f} GFLOP/s, "
                  f"matmul {matmul:6.1f} GFLOP/s, ratio {gflop_per_s / matmul:.2f}", flush=True)
        del module
    if not args.skip_train:
        results["training"] = bench_training(model, device, config, args, floor, flops)
    results["matmul_gflop_per_s"] = floor.gflops
    return results


def bench_training(model: CMTNet, device: torch.device, config: ModelConfig, args: argparse.Namespace, floor: MatmulFloor, flops: float) -> dict[str, Any]:
    model = copy.deepcopy(model).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    n, size = args.train_batch, config.image_size
    generator = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(n, config.in_channels, size, size, generator=generator),
        "lung_mask": (torch.rand(n, size, size, generator=generator) > 0.5).float(),
        "disease_mask": (torch.rand(n, size, size, generator=generator) > 0.9).float(),
        "health": torch.randint(0, 2, (n,), generator=generator),
        "diagnosis": torch.randint(0, 2, (n, 2), generator=generator).float(),
        **{k: torch.ones(n) for k in ("has_lung_mask", "has_disease_mask", "has_health", "has_covid", "has_other")},
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    if device.type == "cuda":
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            output = model(batch["image"])
        loss = multitask_loss(output, batch, LossConfig(lung_dice=True))
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()

    samples, floors = time_calls(step, device, args.train_iters, 1, floor)
    images_per_s = n / statistics.median(samples)
    # A training step costs about 3 forward passes (forward + backward for inputs and weights).
    approx = images_per_s * 3 * flops / 1e9
    matmul = statistics.median(floors)
    print(f"  {device.type} training       batch {n}: {images_per_s:7.2f} images/s, ~{approx:6.1f} GFLOP/s, matmul {matmul:6.1f} GFLOP/s", flush=True)
    return {"batch": n, "amp": "bfloat16" if amp else None, "images_per_s": images_per_s, "approx_gflop_per_s": approx,
            "matmul_gflop_per_s": matmul, "ratio_to_matmul": approx / matmul, "samples_s": samples, "matmul_samples": floors}


def print_table(report: dict[str, Any]) -> None:
    print()
    print(f"CMTNet width {report['config']['width']}, {report['config']['image_size']} px: "
          f"{report['params_m']:.2f} M parameters, {report['gflops_per_image']:.2f} GFLOPs/image")
    header = f"| device | variant | batch | images/s | GFLOP/s | matmul GFLOP/s | ratio to floor |"
    print(header)
    print("|---|---|---|---|---|---|---|")
    for device in report["devices"]:
        for row in device["inference"]:
            variant = row["variant"] + (f" ({row['amp']})" if row["amp"] else "")
            print(f"| {device['device']} | {variant} | {row['batch']} | {row['images_per_s']:.2f} | {row['gflop_per_s']:.1f} | "
                  f"{row['matmul_gflop_per_s']:.1f} | {row['ratio_to_matmul']:.2f} |")
        if device["training"]:
            t = device["training"]
            print(f"| {device['device']} | training{' (' + t['amp'] + ')' if t['amp'] else ''} | {t['batch']} | {t['images_per_s']:.2f} | "
                  f"~{t['approx_gflop_per_s']:.1f} | {t['matmul_gflop_per_s']:.1f} | ~{t['ratio_to_matmul']:.2f} |")
    print(f"load average: {report['load_average_start'][0]:.2f} at start, {report['load_average_end'][0]:.2f} at the end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=5, help="timed batch-1 calls per variant (batch 8: a third)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--variants", help="comma list of eager, channels_last, fused_bn, fused_bn_cl, predictor, compile")
    parser.add_argument("--batch-variants", default="eager,predictor", help="variants also timed at batch > 1 on the CPU")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-iters", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when not available")
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per usable core)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    threads = configure_cpu_threads(args.threads)
    config = ModelConfig(width=args.width, image_size=args.image_size, pretrained=False)
    flops = model_flops(config)
    with torch.device("meta"):
        params = count_parameters(CMTNet(config))
    report: dict[str, Any] = {
        "config": {"width": args.width, "image_size": args.image_size, "in_channels": 3, "tasks": [1, 2, 3, 4]},
        "params_m": params / 1e6,
        "gflops_per_image": flops / 1e9,
        "torch": torch.__version__,
        "cpu_threads": threads,
        "cpu_count": os.cpu_count(),
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "machine": platform.machine(),
        "load_average_start": os.getloadavg(),
        "devices": [],
    }
    print(f"CMTNet width {args.width}, {args.image_size} px: {params / 1e6:.2f} M parameters, {flops / 1e9:.2f} GFLOPs/image; "
          f"{threads} CPU threads, load average {report['load_average_start'][0]:.2f}", flush=True)
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        report["devices"].append(bench_device(torch.device(name), config, args, flops))
    report["load_average_end"] = os.getloadavg()
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
