#!/usr/bin/env python
"""Export speed: images per second and peak memory of a mask snapshot of 2,000 radiographs.

The sample (``../shared/data/cxr-sample``) is imported with its annotations, then the radiographs an
export takes are copied (rows, subjects, accepted lung boxes and regions; the copies share the stored
image files) until a dataset holds ``--count`` radiographs, and a second one ``--small``. Each is
exported by ``export_build`` in a fresh process, timed, with its peak resident memory: memory that
does not grow with the number of images shows as the same peak for both sizes. Target: at least
100 images/s on 2 cores.

    python bench/export_speed.py                       # 2,000 and 500 radiographs, SQLite
    python bench/export_speed.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Database: ``--database-url`` (or ``BENCH_DATABASE_URL``) names a PostgreSQL server; a throw-away
database is created on it and dropped afterwards. Without one, a throw-away SQLite file is used.
Prints a table and writes ``bench/results/export_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root
from bench.common import REPO, RESULTS_DIR, SAMPLE, throwaway_postgres  # noqa: E402

RESULTS = RESULTS_DIR / "export_speed.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="radiographs in the large export")
    parser.add_argument("--small", type=int, default=500, help="radiographs in the small export (memory comparison)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--phase", choices=("all", "prepare", "export"), default="all", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()



def django_setup() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()


# --- phases run in child processes -------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> None:
    """Import the sample, then fill datasets bench-<small> and bench-<count> with copies of it."""
    django_setup()
    from django.db.models import Q

    from annotator.constants import FRONTAL_VIEWS
    from annotator.models import Radiograph
    from annotator.services.annotation_import import findings_import, lung_boxes_import, lung_polygons_import
    from annotator.services.imports import dataset_get_or_create, folder_sources, radiographs_import

    sample = dataset_get_or_create(name="sample")
    sources, metadata = folder_sources(args.sample)
    radiographs_import(dataset=sample, sources=sources, metadata=metadata)
    annotations = args.sample / "annotations"
    lung_boxes_import(dataset=sample, path=annotations / "lung_boxes.json")
    lung_polygons_import(dataset=sample, path=annotations / "lung_polygons.json")
    findings_import(dataset=sample, path=annotations / "findings.csv")
    # The radiographs an export takes: frontal, not excluded, with some ground truth.
    truth = Q(lung_annotations__status="accepted") | Q(findings_complete=True) | ~Q(covid="unknown") | ~Q(healthy="unknown") | ~Q(other_disease="unknown")
    exportable = Radiograph.objects.filter(truth, dataset=sample, view__in=list(FRONTAL_VIEWS)).exclude(state="excluded")
    originals = list(Radiograph.objects.filter(pk__in=exportable.values("pk")).order_by("id"))
    for size in (args.small, args.count):
        copy_into(dataset_get_or_create(name=f"bench-{size}"), originals, size)


def copy_into(dataset, originals, size: int) -> None:
    """``size`` copies of ``originals`` (cycled), each round with subjects of its own."""
    import hashlib

    from django.db import transaction

    from annotator.models import FindingRegion, LungAnnotation, Radiograph, Subject

    truths = {la.radiograph_id: la for la in LungAnnotation.objects.filter(radiograph__in=originals, status="accepted").order_by("radiograph_id", "version", "id")}
    regions: dict[int, list] = {}
    for region in FindingRegion.objects.filter(radiograph__in=originals, status="accepted"):
        regions.setdefault(region.radiograph_id, []).append(region)
    fields = [f.attname for f in Radiograph._meta.concrete_fields if not f.primary_key]
    with transaction.atomic():
        subjects: dict[tuple[int, int], Subject] = {}
        copies = []
        for i in range(size):
            original = originals[i % len(originals)]
            round_ = i // len(originals)
            if (original.subject_id, round_) not in subjects:
                subjects[(original.subject_id, round_)] = Subject(dataset=dataset, key=f"{original.subject.key[:50]}-{round_}")
            copy = Radiograph(**{name: getattr(original, name) for name in fields})
            copy.dataset, copy.sha256 = dataset, hashlib.sha256(f"{original.sha256}:{round_}".encode()).hexdigest()
            copies.append((original, round_, copy))
        Subject.objects.bulk_create(subjects.values())
        for original, round_, copy in copies:
            copy.subject = subjects[(original.subject_id, round_)]
        Radiograph.objects.bulk_create([c for _, _, c in copies], batch_size=500)
        lungs, findings = [], []
        for original, _, copy in copies:
            if (la := truths.get(original.pk)) is not None:
                lungs.append(LungAnnotation(
                    radiograph=copy, version=copy.version, right_box=la.right_box, left_box=la.left_box, mask_png=la.mask_png,
                    mask_bbox=la.mask_bbox, status=la.status, source=la.source,
                ))
            for region in regions.get(original.pk, []):
                findings.append(FindingRegion(
                    radiograph=copy, label=region.label, subtype=region.subtype, source_label=region.source_label, flagged=region.flagged,
                    status=region.status, source=region.source, bbox=region.bbox, mask_png=region.mask_png, area=region.area,
                ))
        LungAnnotation.objects.bulk_create(lungs, batch_size=500)
        FindingRegion.objects.bulk_create(findings, batch_size=500)


def export(args: argparse.Namespace) -> None:
    django_setup()
    from annotator.services.exports import export_build, export_create

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    snapshot = export_create(user=None, datasets=[args.dataset], enqueue=False)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    snapshot = export_build(export_id=snapshot.id, out=args.target)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = after.ru_maxrss
    print(json.dumps({
        "dataset": args.dataset,
        "images": snapshot.counts["images"],
        "lung_masks": snapshot.counts["lung_masks"],
        "disease_masks": snapshot.counts["disease_masks"],
        "seconds": round(seconds, 2),
        "images_per_second": round(snapshot.counts["images"] / seconds, 1),
        # CPU time of this process (all its threads): unlike the wall clock, it does not depend on
        # what else the machine is running. Two cores give at most twice this rate.
        "cpu_seconds": round(cpu, 2),
        "images_per_cpu_second": round(snapshot.counts["images"] / cpu, 1),
        "rss_before_mib": round(baseline / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "snapshot_mib": round(sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file()) / 2**20, 1),
    }))


# --- the driver ------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    if args.phase == "prepare":
        prepare(args)
        return 0
    if args.phase == "export":
        export(args)
        return 0
    if not args.sample.is_dir():
        print(f"sample data not found at {args.sample}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="lungmark-export-bench-"))
    drop = lambda: None  # noqa: E731
    try:
        if args.database_url:
            database_url, drop = throwaway_postgres(args.database_url)
        else:
            database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(tmp / "media"),
            "LUNGMARK_VAR_DIR": str(tmp / "var"),
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_BROKER_FOLDER": str(tmp / "broker"),
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "LOG_LEVEL": "WARNING",
        }
        me = [sys.executable, str(Path(__file__).resolve())]
        subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--noinput", "-v0"], env=env, check=True, cwd=REPO)
        started = time.perf_counter()
        common = ["--count", str(args.count), "--small", str(args.small), "--sample", str(args.sample)]
        subprocess.run([*me, "--phase", "prepare", *common], env=env, check=True, cwd=REPO)
        print(f"prepared {args.small} and {args.count} radiographs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        runs = []
        for size in (args.small, args.count):
            out = subprocess.run(
                [*me, "--phase", "export", "--dataset", f"bench-{size}", "--target", str(tmp / f"export-{size}"), *common],
                env=env, check=True, cwd=REPO, capture_output=True, text=True,
            ).stdout
            runs.append({**json.loads(out.strip().splitlines()[-1]), "load_average_after": round(os.getloadavg()[0], 2)})
            shutil.rmtree(tmp / f"export-{size}", ignore_errors=True)
    finally:
        drop()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "export_speed",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "database": "postgresql" if args.database_url else "sqlite"},
        "note": "load_average_after is the 1-minute load when each export finished: other work on the machine slows it",
        "target_images_per_second": 100,
        "runs": runs,
    }
    print(f"{'radiographs':>12} {'images':>7} {'seconds':>8} {'images/s':>9} {'CPU s':>7} {'img/CPU-s':>10} {'RSS before':>11} {'RSS peak':>9} {'snapshot':>9} {'load':>5}")
    for run in runs:
        print(
            f"{run['dataset'].removeprefix('bench-'):>12} {run['images']:>7} {run['seconds']:>8} {run['images_per_second']:>9} "
            f"{run['cpu_seconds']:>7} {run['images_per_cpu_second']:>10} "
            f"{run['rss_before_mib']:>9} M {run['rss_peak_mib']:>7} M {run['snapshot_mib']:>7} M {run['load_average_after']:>5}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
