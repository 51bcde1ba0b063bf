#!/usr/bin/env python
"""Pre-annotation throughput of one worker through the real broker, against bare inference.

End to end: radiographs already imported, ``preannotation_request`` enqueues one task each (on
commit), one worker process (``celery -A config worker -Q gpu -c 1``, prefetch 1) runs them, and the
clock stops when the last prediction is stored. Bare: the same ``training.serve.Predictor`` on the
same images' decoded pixels, in this process, one at a time. The target is end-to-end >= 0.8 x bare.

    python bench/preannotate_throughput.py                       # the paper's CMTNet (width 1, 224 px), 20 images
    python bench/preannotate_throughput.py --width 0.25 --image-size 128 --count 40
    python bench/preannotate_throughput.py --count 10 --broker filesystem

Database: ``--database-url`` (or ``BENCH_DATABASE_URL``) names a PostgreSQL server; a throw-away
database is created on it and dropped afterwards. Without one, a throw-away SQLite file is used.
Broker: ``redis`` (``--redis-url``, default ``BENCH_REDIS_URL`` or redis://127.0.0.1:6379/14; that
Redis database is flushed) or ``filesystem`` (a temporary folder). Random weights: speed does not
depend on them. Prints a table and writes ``bench/results/preannotate_throughput.json``.
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0, help="CMTNet width multiplier (1: the paper's, the configuration bench/model_speed.py times)")
    parser.add_argument("--image-size", type=int, default=224, help="model input side in px (paper: 224)")
    parser.add_argument("--count", type=int, default=20, help="radiographs pre-annotated in the timed batch")
    parser.add_argument("--broker", choices=("redis", "filesystem"), default="redis")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--pool", choices=("prefork", "solo"), default="prefork", help="worker pool (production: prefork -c 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in the worker and for bare (0: one per core)")
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
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return env, drop


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


# --- the two measurements ------------------------------------------------------------------------


def sample_files(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if len(files) < count + 1:
        raise SystemExit(f"{folder} has {len(files)} images; --count {count} needs {count + 1} (one warms the worker up)")
    return files[: count + 1]


def import_images(files: list[Path]) -> list[int]:
    from annotator.services.imports import SourceFile, dataset_get_or_create, radiographs_import

    def reader(path: Path):
        return lambda limit: path.read_bytes()[:limit]

    dataset = dataset_get_or_create(name="bench")
    sources = [SourceFile(name=p.name, size=p.stat().st_size, read=reader(p)) for p in files]
    report = radiographs_import(dataset=dataset, sources=sources, metadata={})
    if report.errors:
        print(f"import errors: {report.errors}", file=sys.stderr)
    return report.radiograph_ids


def start_worker(env: dict[str, str], log: Path, pool: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,default", "-c", "1", "--pool", pool,
        "--prefetch-multiplier", "1", "--loglevel", "INFO", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, **env, "LOG_LEVEL": "INFO"}, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
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
        "seconds": seconds,
        "images_per_s": predictions.count() / seconds,
        "seconds_polled": polled,
        "model_seconds_mean": statistics.fmean(p.seconds for p in predictions),
        "not_done": failed,
    }


def _threads() -> int | None:
    """The same thread setting the worker gets (INFERENCE_THREADS, 0 = one per usable core)."""
    return int(os.environ.get("INFERENCE_THREADS") or 0) or None


def bare_rounds(checkpoint: str, radiographs, rounds: int = 2) -> list[float]:
    """Seconds per pass of the same Predictor over the same decoded images, in-process, one at a time."""
    from inference.services.preannotation_worker import radiograph_pixels
    from training.serve import Predictor

    predictor = Predictor(checkpoint, threads=_threads())
    images = [radiograph_pixels(r) for r in radiographs]
    predictor.predict(images[0])  # warm-up
    seconds = []
    for _ in range(rounds):
        clock = time.perf_counter()
        for image in images:
            predictor.predict(image)
        seconds.append(time.perf_counter() - clock)
    return seconds


def bare(checkpoint: str, radiographs, earlier_rounds: list[float]) -> dict:
    """Bare inference (the fastest pass measured before and after the end-to-end run: the
    conservative choice on a shared machine) and the in-process pipeline for the breakdown."""
    from inference.services.preannotation_worker import radiograph_pixels
    from training.serve import Predictor

    rounds = earlier_rounds + bare_rounds(checkpoint, radiographs)
    seconds = min(rounds)
    predictor = Predictor(checkpoint, threads=_threads())
    images = [radiograph_pixels(r) for r in radiographs]
    # For the breakdown: what the worker adds around the model (decoding, suggestions).
    from django.conf import settings
    from inference.suggestions import suggestion_from_prediction

    clock = time.perf_counter()
    for radiograph in radiographs:
        image = radiograph_pixels(radiograph)
        suggestion_from_prediction(
            predictor.predict(image), shape=image.shape, threshold=settings.PREANNOTATE_MASK_THRESHOLD,
            min_region_fraction=settings.PREANNOTATE_MIN_REGION_FRACTION, max_regions=settings.PREANNOTATE_MAX_REGIONS,
        )
    pipeline = time.perf_counter() - clock
    return {
        "images": len(images),
        "seconds": seconds,
        "images_per_s": len(images) / seconds,
        "rounds_seconds": rounds,
        "pipeline_seconds": pipeline,
        "pipeline_images_per_s": len(images) / pipeline,
        "threads": __import__("torch").get_num_threads(),
        "mean_megapixels": statistics.fmean(i.size for i in images) / 1e6,
    }


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lungmark-bench-"))
    env, drop = configure(args, tmp)
    worker = None
    try:
        import django

        sys.path.insert(0, str(REPO))
        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        if args.broker == "redis":
            redis_flush(args.redis_url)
        from training.checkpoint import save_checkpoint
        from training.config import ModelConfig
        from training.model import CMTNet

        checkpoint = tmp / f"cmtnet-w{args.width}-{args.image_size}.pt"
        save_checkpoint(checkpoint, CMTNet(ModelConfig(width=args.width, image_size=args.image_size, pretrained=False)), normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
        from inference.services import model_version_activate, model_version_register

        with open(checkpoint, "rb") as fh:
            model_version = model_version_register(file=fh, name="bench")
        print(f"importing {args.count + 1} radiographs ...", flush=True)
        ids = import_images(sample_files(args.images, args.count))  # no active model yet: nothing queued
        model_version = model_version_activate(model_version_id=model_version.pk, preannotate=False)
        from annotator.models import Radiograph
        from django.core.files.storage import default_storage

        stored_checkpoint = default_storage.path(model_version.checkpoint.name)
        radiographs = list(Radiograph.objects.filter(pk__in=ids[1:]).order_by("pk"))
        print("bare inference in-process (before) ...", flush=True)
        earlier = bare_rounds(stored_checkpoint, radiographs)

        worker = start_worker(env, tmp / "worker.log", args.pool)
        print("warming the worker up (model load) ...", flush=True)
        warm = end_to_end(ids[:1], model_version, timeout=600)
        timed_ids = ids[1:]
        print(f"end to end: {len(timed_ids)} radiographs through the {args.broker} broker ...", flush=True)
        e2e = end_to_end(timed_ids, model_version, timeout=3600)
        stop_worker(worker)
        worker = None

        print("bare inference in-process (after) ...", flush=True)
        base = bare(stored_checkpoint, radiographs, earlier)
    finally:
        if worker is not None:
            stop_worker(worker)
        from django.db import connections

        connections.close_all()
        if args.broker == "redis":
            try:
                redis_flush(args.redis_url)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        drop()
        shutil.rmtree(tmp, ignore_errors=True)

    ratio = e2e["images_per_s"] / base["images_per_s"]
    record = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(), "load_1min": os.getloadavg()[0]},
        "config": {
            "width": args.width, "image_size": args.image_size, "count": args.count, "broker": args.broker,
            "threads": base["threads"], "pool": args.pool, "database": urlsplit(env["DATABASE_URL"]).scheme,
        },
        "bare": base,
        "end_to_end": e2e,
        "warmup_seconds": warm["seconds"],
        "ratio": ratio,
        "target": 0.8,
        "meets_target": ratio >= 0.8,
    }
    rows = [
        ("bare Predictor.predict (decoded pixels)", base["images_per_s"], 1000 / base["images_per_s"]),
        ("in-process decode + predict + suggestions", base["pipeline_images_per_s"], 1000 / base["pipeline_images_per_s"]),
        (f"end to end: {args.broker} broker + 1 worker", e2e["images_per_s"], 1000 / e2e["images_per_s"]),
    ]
    print(f"\nCMTNet width {args.width}, {args.image_size} px; {args.count} radiographs (mean {base['mean_megapixels']:.2f} Mpx); "
          f"{base['threads']} threads; {record['config']['database']} database")
    print(f"{'path':<46} {'images/s':>9} {'ms/image':>9}")
    for name, rate, ms in rows:
        print(f"{name:<46} {rate:>9.2f} {ms:>9.1f}")
    print(f"end to end / bare = {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    if e2e["not_done"]:
        print(f"not done: {e2e['not_done']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    key = lambda r: tuple(r["config"].get(k) for k in ("width", "image_size", "count", "broker", "threads", "pool", "database"))  # noqa: E731
    existing["runs"] = [r for r in existing.get("runs", []) if key(r) != key(record)] + [record]
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
