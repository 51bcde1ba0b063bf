"""How long `make run` takes to show the first suggestions, measured end to end.

Runs `make run` exactly as a newcomer would (embedded defaults: SQLite, the filesystem broker, one
worker, beat) in a fresh, throw-away var folder, with ``DATA`` or the sample beside the repository,
and watches its database until the bootstrap model has pre-annotated the radiographs. Then it stops
`make run` with Ctrl+C (SIGINT) and times the stop as well.

    python bench/first_suggestion.py [--data FOLDER] [--timeout 2400] [--port 8765]

Prints one row per milestone (seconds since `make run` started) and writes
``bench/results/first_suggestion.json``. The load average at start and end is part of the result:
on a machine busy with other work, training slows down in proportion.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, RESULTS_DIR, SAMPLE  # noqa: E402

# Milestone name -> SQL whose first non-zero answer marks it (the tables of the annotator and inference apps).
MILESTONES = {
    "first radiograph imported": "SELECT COUNT(*) FROM annotator_radiograph",
    "bootstrap training queued": "SELECT COUNT(*) FROM inference_trainingrun",
    "bootstrap training running": "SELECT COUNT(*) FROM inference_trainingrun WHERE status IN ('running', 'succeeded', 'failed')",
    "training finished": "SELECT COUNT(*) FROM inference_trainingrun WHERE status IN ('succeeded', 'failed')",
    "model promoted": "SELECT COUNT(*) FROM inference_modelversion WHERE is_active",
    "first suggestion": "SELECT COUNT(*) FROM inference_prediction",
}


def query(db: Path, sql: str) -> int:
    """One integer from the run's SQLite database (0 while a table does not exist yet)."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def measure(data: Path | None, *, timeout: float, port: int, var: Path) -> dict:
    db = var / "lungmark.sqlite3"
    env = {**os.environ, "LUNGMARK_VAR_DIR": str(var), "PORT": str(port)}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)  # the embedded defaults, as `make run` has them on a fresh machine
    command = ["make", "--no-print-directory", "run"] + ([f"DATA={data}"] if data else [])
    started, load_start = time.monotonic(), loadavg()
    log = open(var / "make-run.log", "wb")
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A shell that starts this script in the background ignores SIGINT, and children inherit that:
        # give `make run` the default handling back so that the Ctrl+C below reaches it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    reached: dict[str, float] = {}
    total = open_count = 0
    try:
        while time.monotonic() - started < timeout and process.poll() is None:
            now = round(time.monotonic() - started, 1)
            for name, sql in MILESTONES.items():
                if name not in reached and query(db, sql) > 0:
                    reached[name] = now
                    print(f"{now:8.1f} s  {name}", flush=True)
            if "first suggestion" in reached:
                total = query(db, "SELECT COUNT(*) FROM annotator_radiograph")
                open_count = query(db, "SELECT COUNT(*) FROM inference_preannotationitem WHERE status IN ('queued', 'running')")
                if open_count == 0 and query(db, "SELECT COUNT(*) FROM inference_preannotationitem") > 0:
                    reached["all radiographs pre-annotated"] = now
                    print(f"{now:8.1f} s  all radiographs pre-annotated", flush=True)
                    break
            time.sleep(1.0)
    finally:
        stop_started = time.monotonic()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl+C, as a person stops `make run`
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        stop_seconds = round(time.monotonic() - stop_started, 1)
        log.close()
    return {
        "data": str(data) if data else "sample beside the repository",
        "milestones_s": reached,
        "radiographs": query(db, "SELECT COUNT(*) FROM annotator_radiograph"),
        "predictions": query(db, "SELECT COUNT(*) FROM inference_prediction"),
        "stop_s": stop_seconds,
        "timed_out": "first suggestion" not in reached,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help=f"a folder in the sample's layout (default: {SAMPLE})")
    parser.add_argument("--timeout", type=float, default=2400.0, help="give up after this many seconds")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "first_suggestion.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lungmark-first-") as var:
        result = measure(args.data, timeout=args.timeout, port=args.port, var=Path(var))
    print()
    print(f"{'milestone':<32} {'s after make run':>18}")
    for name, seconds in result["milestones_s"].items():
        print(f"{name:<32} {seconds:>18.1f}")
    print(f"{'stopped (Ctrl+C) in':<32} {result['stop_s']:>18.1f}")
    print(f"radiographs {result['radiographs']}, predictions {result['predictions']}, load average {result['loadavg_start']} -> {result['loadavg_end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if result["timed_out"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
