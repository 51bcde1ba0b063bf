#!/usr/bin/env python
"""Pre-annotation throughput through the broker with 1 and 2 worker processes, against the bare predictor.

End to end: radiographs already imported, ``preannotation_request`` enqueues them as chunks of
``PREANNOTATE_BATCH_SIZE`` (on commit; by device unless ``--batch-size``), N worker processes
(``celery -A config worker -Q gpu -c 1``, prefetch 1, each its own process as on separate hosts)
run them as forward batches, and the clock stops when the last prediction is stored. Bare: the same
``training.serve.Predictor`` on the same images' decoded pixels, in this process, at batch 1 and 8
on the CPU (1, 8 and 32 on CUDA).

    python bench/preannotate_throughput.py                       # the paper's CMTNet (width 1, 224 px), 20 images
    python bench/preannotate_throughput.py --width 0.25 --image-size 128 --count 40 [--mirror-average]
    python bench/preannotate_throughput.py --workers 1,2 --batch-size 8

Database: ``--database-url`` (or ``BENCH_DATABASE_URL``) names a PostgreSQL server; a throw-away
database is created on it and dropped afterwards. Without one, a throw-away SQLite file is used.
Broker: ``redis`` (``--redis-url``, default ``BENCH_REDIS_URL`` or redis://127.0.0.1:6379/14; that
Redis database must be empty, and is emptied again at the end) or ``filesystem`` (a temporary
folder). Random weights: speed does not depend on them. With ``--threads 0`` each of N workers
gets cores / N torch threads. Prints a table (with the load average: other work on the machine
competes for its cores) and writes ``bench/results/preannotate_throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root
from bench.common import REPO, RESULTS_DIR, SAMPLE, throwaway_postgres  # noqa: E402

RESULTS = RESULTS_DIR / "preannotate_throughput.json"
CPUS = len(os.sched_getaffinity(0))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0, help="CMTNet width multiplier (1: the paper's, the configuration bench/model_speed.py times)")
    parser.add_argument("--image-size", type=int, default=224, help="model input side in px (paper: 224)")
    parser.add_argument("--mirror-average", action="store_true", help="the model answers with the mean over the image and its mirror (as the cpu preset's do)")
    parser.add_argument("--count", type=int, default=20, help="radiographs pre-annotated in each timed batch")
    parser.add_argument("--workers", default="1,2", help="worker process counts to time, comma-separated")
    parser.add_argument("--batch-size", type=int, default=0, help="PREANNOTATE_BATCH_SIZE for the request and the workers (0: by device)")
    parser.add_argument("--bare-batch-sizes", default="", help="bare predictor batch sizes (default: 1,8 on the CPU, 1,8,32 on CUDA)")
    parser.add_argument("--broker", choices=("redis", "filesystem"), default="redis")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--pool", choices=("prefork", "solo"), default="prefork", help="worker pool (production: prefork -c 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per worker and for bare (0: cores / workers)")
    parser.add_argument("--images", type=Path, default=SAMPLE / "images", help="folder of radiographs to use")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


# --- environment: throw-away database, media and broker ------------------------------------------


def configure(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, str], callable]:
    drop = lambda: None  # noqa: E731
    if args.database_url:
        database_url, drop = throwaway_postgres(args.database_url)
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    broker = args.redis_url if args.broker == "redis" else "filesystem://"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_BROKER_FOLDER": str(tmp / "broker"),
        "MEDIA_ROOT": str(tmp / "media"),
        "LUNGMARK_VAR_DIR": str(tmp / "var"),
        "LOG_LEVEL": "WARNING",
        "INFERENCE_THREADS": str(args.threads),
        "PREANNOTATE_BATCH_SIZE": str(args.batch_size),
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return env, drop


def redis_require_empty(url: str) -> None:
    """Refuse a Redis database that holds keys: the benchmark empties it at the end."""
    import redis

    client = redis.Redis.from_url(url)
    keys = client.dbsize()
    client.close()
    if keys:
        raise SystemExit(f"{url} holds {keys} key(s); give --redis-url an empty Redis database (it is flushed at the end)")


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


# --- the measurements ----------------------------------------------------------------------------


def sample_files(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if len(files) < count:
        raise SystemExit(f"{folder} has {len(files)} images; this run needs {count} (--count per layout, plus one per worker to warm it up)")
    return files[:count]


def import_images(files: list[Path], dataset: str) -> list[int]:
    from annotator.services.imports import SourceFile, dataset_get_or_create, radiographs_import

    def reader(path: Path):
        return lambda limit: path.read_bytes()[:limit]

    sources = [SourceFile(name=p.name, size=p.stat().st_size, read=reader(p)) for p in files]
    report = radiographs_import(dataset=dataset_get_or_create(name=dataset), sources=sources, metadata={})
    if report.errors:
        print(f"import errors: {report.errors}", file=sys.stderr)
    return sorted(report.radiograph_ids)


def start_worker(env: dict[str, str], log: Path, pool: str, threads: int) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,default", "-c", "1", "--pool", pool,
        "--prefetch-multiplier", "1", "--loglevel", "INFO", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    worker_env = {**os.environ, **env, "LOG_LEVEL": "INFO", "INFERENCE_THREADS": str(threads)}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, cwd=REPO, env=worker_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited:\n{log.read_text()[-3000:]}")
        if " ready." in log.read_text(errors="replace"):
            return proc
        time.sleep(0.1)
    raise SystemExit("worker not ready after 120 s")


def stop_worker(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_batch(batch_id: int, total: int, timeout: float) -> None:
    from inference.models import PreannotationItem

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = PreannotationItem.objects.filter(batch_id=batch_id, status__in=["done", "skipped", "failed"]).count()
        if finished >= total:
            return
        time.sleep(0.05)
    raise SystemExit(f"batch {batch_id} not finished after {timeout:.0f} s")


def end_to_end(ids: list[int], model_version, timeout: float) -> dict:
    """Enqueue on commit → stored predictions; the clock stops at the last prediction's timestamp."""
    from inference.models import Prediction, PreannotationItem
    from inference.services import preannotation_request
    from inference.services.preannotation_worker import preannotate_batch_size

    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    batch = preannotation_request(radiograph_ids=ids, model_version=model_version, reason="request")
    wait_batch(batch.pk, len(ids), timeout)
    polled = time.perf_counter() - clock
    predictions = Prediction.objects.filter(model_version=model_version, radiograph_id__in=ids)
    last = max(p.created_at for p in predictions)
    failed = list(PreannotationItem.objects.filter(batch=batch).exclude(status="done").values_list("radiograph_id", "status", "detail"))
    seconds = (last - started).total_seconds()
    return {
        "images": predictions.count(),
        "chunk_size": preannotate_batch_size(),
        "seconds": seconds,
        "images_per_s": predictions.count() / seconds,
        "seconds_polled": polled,
        "model_seconds_mean": statistics.fmean(p.seconds for p in predictions),
        "not_done": failed,
    }


def layout(args, env, tmp: Path, model_version, ids: list[int], workers: int) -> dict:
    """Start ``workers`` worker processes, warm each up (model load), time ``ids`` through them."""
    threads = args.threads or max(1, CPUS // workers)
    procs = []
    try:
        for k in range(workers):
            procs.append(start_worker(env, tmp / f"worker-{workers}-{k}.log", args.pool, threads))
        print(f"{workers} worker(s), {threads} thread(s) each: warming up ...", flush=True)
        end_to_end(ids[:workers], model_version, timeout=600)  # one single-image chunk each, most likely
        timed = ids[workers:]
        print(f"{workers} worker(s): {len(timed)} radiographs through the {args.broker} broker ...", flush=True)
        result = end_to_end(timed, model_version, timeout=3600)
    finally:
        for proc in procs:
            stop_worker(proc)
    return {"workers": workers, "threads_per_worker": threads, **result}


def bare_batches(checkpoint: str, images, batch_sizes: list[int], threads: int | None, rounds: int = 2) -> dict[int, dict]:
    """The same Predictor over the same decoded images, in-process, at each batch size (the fastest
    of ``rounds`` passes: the conservative choice on a shared machine)."""
    from training.serve import Predictor

    predictor = Predictor(checkpoint, threads=threads)
    results = {}
    for size in batch_sizes:
        groups = [images[i : i + size] for i in range(0, len(images), size)]
        predictor.predict_batch(groups[0])  # warm-up (and cuDNN's choice of kernels for this shape)
        seconds = []
        for _ in range(rounds):
            if predictor.device.type == "cuda":
                __import__("torch").cuda.synchronize()
            clock = time.perf_counter()
            for group in groups:
                predictor.predict_batch(group)
            seconds.append(time.perf_counter() - clock)
        results[size] = {"device": str(predictor.device), "seconds": min(seconds), "images_per_s": len(images) / min(seconds), "rounds_seconds": seconds}
    return results


def pipeline(checkpoint: str, radiographs, threads: int | None) -> dict:
    """In-process decode + predict + suggestions at batch 1: what the worker adds around the model."""
    from django.conf import settings

    from inference.services.preannotation_worker import radiograph_pixels
    from inference.suggestions import suggestion_from_prediction
    from training.serve import Predictor

    predictor = Predictor(checkpoint, threads=threads)
    predictor.predict(radiograph_pixels(radiographs[0]))
    clock = time.perf_counter()
    for radiograph in radiographs:
        image = radiograph_pixels(radiograph)
        suggestion_from_prediction(
            predictor.predict(image), shape=image.shape, threshold=settings.PREANNOTATE_MASK_THRESHOLD,
            min_region_fraction=settings.PREANNOTATE_MIN_REGION_FRACTION, max_regions=settings.PREANNOTATE_MAX_REGIONS,
        )
    seconds = time.perf_counter() - clock
    return {"seconds": seconds, "images_per_s": len(radiographs) / seconds}


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    layouts = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.broker == "redis":
        redis_require_empty(args.redis_url)
    tmp = Path(tempfile.mkdtemp(prefix="lungmark-bench-"))
    env, drop = configure(args, tmp)
    load_before = os.getloadavg()
    try:
        import django

        sys.path.insert(0, str(REPO))
        django.setup()
        import torch
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        from training.checkpoint import save_checkpoint
        from training.config import ModelConfig
        from training.model import CMTNet

        checkpoint = tmp / f"cmtnet-w{args.width}-{args.image_size}.pt"
        save_checkpoint(checkpoint, CMTNet(ModelConfig(width=args.width, image_size=args.image_size, pretrained=False, mirror_average=args.mirror_average)), normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
        from annotator.models import Radiograph
        from django.core.files.storage import default_storage
        from inference.services import model_version_activate, model_version_register
        from inference.services.preannotation_worker import radiograph_pixels

        with open(checkpoint, "rb") as fh:
            model_version = model_version_register(file=fh, name="bench")
        per_layout = [args.count + w for w in layouts]
        files = sample_files(args.images, max(per_layout))
        print(f"importing {sum(per_layout)} radiographs ...", flush=True)
        # No active model yet: nothing is queued; each layout gets radiographs of its own.
        id_sets = [import_images(files[:n], f"bench-{w}") for w, n in zip(layouts, per_layout)]
        model_version = model_version_activate(model_version_id=model_version.pk, preannotate=False)
        stored_checkpoint = default_storage.path(model_version.checkpoint.name)
        radiographs = list(Radiograph.objects.filter(pk__in=id_sets[0][layouts[0]:]).order_by("pk"))
        images = [radiograph_pixels(r) for r in radiographs]
        cuda = torch.cuda.is_available()
        sizes = [int(b) for b in args.bare_batch_sizes.split(",") if b] or ([1, 8, 32] if cuda else [1, 8])
        threads = args.threads or None
        print(f"bare predictor in-process, batch {sizes} ...", flush=True)
        bare = bare_batches(stored_checkpoint, images, sizes, threads)
        runs = [layout(args, env, tmp, model_version, ids, w) for w, ids in zip(layouts, id_sets)]
        print("bare predictor in-process (after) and the in-process pipeline ...", flush=True)
        for size, again in bare_batches(stored_checkpoint, images, sizes, threads).items():
            bare[size]["rounds_seconds"] += again["rounds_seconds"]
            bare[size]["seconds"] = min(bare[size]["rounds_seconds"])
            bare[size]["images_per_s"] = len(images) / bare[size]["seconds"]
        inproc = pipeline(stored_checkpoint, radiographs, threads)
    finally:
        from django.db import connections

        connections.close_all()
        if args.broker == "redis":
            try:
                redis_flush(args.redis_url)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        drop()
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    base = bare[1]["images_per_s"]
    record = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": CPUS, "platform": platform.platform(), "cuda": torch.cuda.get_device_name(0) if cuda else None,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
        },
        "config": {
            "width": args.width, "image_size": args.image_size, "mirror_average": args.mirror_average, "count": args.count, "broker": args.broker,
            "batch_size": args.batch_size, "workers": layouts, "threads": args.threads, "pool": args.pool,
            "database": urlsplit(env["DATABASE_URL"]).scheme,
        },
        "mean_megapixels": statistics.fmean(i.size for i in images) / 1e6,
        "bare": {str(k): v for k, v in bare.items()},
        "pipeline": inproc,
        "end_to_end": runs,
    }
    print(f"\nCMTNet width {args.width}, {args.image_size} px{', mirror-averaged' if args.mirror_average else ''}; {args.count} radiographs (mean {record['mean_megapixels']:.2f} Mpx); "
          f"{CPUS} cores; {record['config']['database']} database; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'path':<58} {'images/s':>9} {'ms/image':>9} {'x bare b1':>9}")
    rows = [(f"bare Predictor, batch {size} ({result['device']})", result["images_per_s"]) for size, result in bare.items()]
    rows.append(("in-process decode + predict + suggestions, batch 1", inproc["images_per_s"]))
    for run in runs:
        rows.append((
            f"end to end: {args.broker} + {run['workers']} worker(s) x {run['threads_per_worker']} thr, chunk {run['chunk_size']}",
            run["images_per_s"],
        ))
    for name, rate in rows:
        print(f"{name:<58} {rate:>9.2f} {1000 / rate:>9.1f} {rate / base:>9.2f}")
    for run in runs:
        if run["not_done"]:
            print(f"not done ({run['workers']} worker(s)): {run['not_done']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    key = lambda r: json.dumps(r.get("config"), sort_keys=True)  # noqa: E731
    existing["runs"] = [r for r in existing.get("runs", []) if key(r) != key(record)] + [record]
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
