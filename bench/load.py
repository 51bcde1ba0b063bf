#!/usr/bin/env python
"""The web workload: simulated annotators and radiologists in closed loops against gunicorn + PostgreSQL.

Each annotator asks for the next radiograph of the annotate queue, then saves an annotation with
two lung boxes and one label (and submits it), with no think time: Label Studio's benchmark loop
(BENCHMARKS.md). Each radiologist asks for the next radiograph in review, opens it, decides its
suggested region and accepts the radiograph. Afterwards every acknowledged write (2xx) is looked up
in the database: a write the server acknowledged but did not store is a lost write.

    python bench/load.py                                  # 50 annotators, 10 radiologists, 120 s
    python bench/load.py --annotators 10 --radiologists 2 --duration 20

Everything stays on the loopback interface. A throw-away database is created on the PostgreSQL
server of ``--database-url`` (default ``BENCH_DATABASE_URL`` or postgres://postgres@127.0.0.1:5432/postgres),
migrated, filled with synthetic radiographs (one shared image file), and dropped afterwards unless
``--keep``. gunicorn (gthread) serves the production settings on a free port. Prints a table and
writes ``bench/results/load.json``.

Helpers (``server_env``, ``migrate``, ``seed``, ``Gunicorn``) are reused by the fault tests.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root
from bench.common import REPO, RESULTS_DIR, throwaway_postgres  # noqa: E402

RESULTS = RESULTS_DIR / "load.json"
RIGHT = [10, 20, 90, 140]
LEFT = [110, 20, 190, 140]
# Label Studio on this machine, 50 annotators (BENCHMARKS.md): the figures to beat.
LABEL_STUDIO = {"requests_per_s": 18.7, "save_p95_ms": 3068, "queries_per_save": 73}


# --- the server under test ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, media_root: Path, **extra: str) -> dict[str, str]:
    """Production settings on the loopback interface: a random secret key, no HTTPS redirect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(64),
        DEBUG="0",
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        MEDIA_ROOT=str(media_root),
        LUNGMARK_VAR_DIR=str(media_root.parent),
        CELERY_BROKER_URL=extra.pop("CELERY_BROKER_URL", "memory://"),
        LOG_LEVEL="WARNING",
        DB_CONN_MAX_AGE="60",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True, timeout=600)


def seed(env: dict[str, str], *, annotators: int, radiologists: int, radiographs: int, in_review: int) -> dict:
    """Users with tokens, and radiographs to annotate (each with one suggested region) plus some
    already submitted for review; runs in a subprocess (the target database is the env's)."""
    args = [sys.executable, str(Path(__file__).resolve()), "--seed", json.dumps(
        {"annotators": annotators, "radiologists": radiologists, "radiographs": radiographs, "in_review": in_review}
    )]
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _seed_here(spec: dict) -> dict:
    """The seeding itself (in a process whose settings point at the target database)."""
    import django

    django.setup()
    import io

    import numpy as np
    from django.contrib.auth.models import Group, User
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image
    from rest_framework.authtoken.models import Token

    from annotator.models import Dataset, FindingRegion, FindingRegionRevision, LungAnnotation, Radiograph, Subject

    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((160, 200)) * 255).astype(np.uint8)).save(buffer, "PNG")
    image = default_storage.save(f"radiographs/bench/{uuid.uuid4().hex}.png", ContentFile(buffer.getvalue()))
    mask = io.BytesIO()
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(mask, "PNG")
    mask_png = mask.getvalue()

    tokens: dict[str, list[str]] = {}
    for role, count in (("annotator", spec["annotators"]), ("radiologist", spec["radiologists"])):
        group, _ = Group.objects.get_or_create(name=role)
        tokens[role] = []
        for i in range(count):
            user = User(username=f"bench-{role}-{i}-{uuid.uuid4().hex[:6]}")
            user.set_unusable_password()
            user.save()
            user.groups.add(group)
            tokens[role].append(Token.objects.create(user=user).key)

    dataset, _ = Dataset.objects.get_or_create(name=f"bench-{uuid.uuid4().hex[:8]}")
    subjects = Subject.objects.bulk_create([Subject(dataset=dataset, key=f"s{i:05d}") for i in range(max(1, spec["radiographs"] // 50))])
    total = spec["radiographs"] + spec["in_review"]
    rows = []
    for i in range(total):
        review = i >= spec["radiographs"]
        rows.append(
            Radiograph(
                dataset=dataset, subject=subjects[i % len(subjects)], source_name=f"bench{i:06d}.png", sha256=f"{i:064x}",
                kind="png", original=image, display=image, preview=image, preview_mime="image/png", width=200, height=160,
                view="PA", state="lungs_done" if review else "preannotated", version=2 if review else 1,
            )
        )
    radiographs = Radiograph.objects.bulk_create(rows, batch_size=2000)
    regions = FindingRegion.objects.bulk_create(
        [
            FindingRegion(radiograph=r, label="consolidation", status="suggested", source="model", confidence=0.8, bbox=[20, 30, 60, 70], mask_png=mask_png, area=1600)
            for r in radiographs
        ],
        batch_size=2000,
    )
    FindingRegionRevision.objects.bulk_create(
        [FindingRegionRevision(region=g, version=1, label=g.label, status=g.status, bbox=g.bbox, mask_png=mask_png) for g in regions], batch_size=2000
    )
    LungAnnotation.objects.bulk_create(
        [LungAnnotation(radiograph=r, version=2, right_box=RIGHT, left_box=LEFT, status="submitted", source="annotator") for r in radiographs if r.state == "lungs_done"],
        batch_size=2000,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as a database in use has them
    return {"tokens": tokens, "dataset": dataset.name, "radiographs": total}


class Gunicorn:
    """``gunicorn config.wsgi`` on a free loopback port, logging to a file: ``sync`` workers (one
    request at a time each, taken in arrival order from the shared listen queue) or ``gthread``."""

    def __init__(self, env: dict[str, str], *, workers: int = 3, threads: int = 8, worker_class: str = "gthread", port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.workers, self.threads, self.worker_class = workers, threads, worker_class
        fd, log = tempfile.mkstemp(prefix="lungmark-gunicorn-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "Gunicorn":
        args = [
            sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
            "--worker-class", self.worker_class, "--workers", str(self.workers), "--threads", str(self.threads),
            "--keep-alive", "30", "--graceful-timeout", "10", "--timeout", "60",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/accounts/login/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes so far (Linux /proc; 0 where unavailable)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def database_backends(database_url: str) -> list[int]:
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url) as conn:
        return [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))]


class BackendCpu(threading.Thread):
    """CPU of the database's server processes during the run, sampled every second: Django closes
    and reopens its connections (CONN_MAX_AGE), so the processes alive at the end are not all."""

    def __init__(self, database_url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.database_url, self.stop, self.seen = database_url, stop, {}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.sample()

    def sample(self) -> None:
        try:
            pids = database_backends(self.database_url)
        except Exception:  # noqa: BLE001 - a missed sample only lowers the estimate
            return
        for pid in pids:
            self.seen[pid] = max(self.seen.get(pid, 0.0), cpu_seconds([pid]))

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


# --- the simulated people ----------------------------------------------------------------------------


class Api:
    """One person's HTTP client with their token. By default one connection per request, as nginx
    talks to gunicorn (deploy/nginx.conf: no upstream keep-alive), which also spreads the requests
    over gunicorn's workers; ``keep_alive`` pins a person to one worker instead."""

    def __init__(self, port: int, token: str, timeout: float = 30.0, *, keep_alive: bool = False) -> None:
        self.port, self.timeout, self.keep_alive = port, timeout, keep_alive
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object, float]:
        """(status, parsed JSON or None, seconds); status 0 when the connection failed."""
        payload = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
            raw = response.read()
            status = response.status
            if not self.keep_alive:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return 0, None, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return status, data, elapsed


@dataclass
class Recorder:
    """Latencies and outcomes per endpoint, and every acknowledged write (shared by all threads)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    saves: list[tuple[int, int, list[int]]] = field(default_factory=list)  # radiograph, version, right box
    decisions: list[tuple[int, int]] = field(default_factory=list)  # region, version
    accepts: list[tuple[int, int]] = field(default_factory=list)  # radiograph, version
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[endpoint][status] += 1


def annotator_loop(api: Api, rec: Recorder, stop: threading.Event, seed: int) -> None:
    n = seed
    while not stop.is_set():
        status, data, seconds = api.call("POST", "/api/queue/annotate/next/", {})
        rec.record("next task", status, seconds)
        if status != 200:
            time.sleep(0.05)
            continue
        n += 1
        right = [10 + n % 7, 20, 90, 140]
        body = {"version": data["version"], "right": right, "left": LEFT, "labels": {"covid": "positive"}, "submit": True}
        status, saved, seconds = api.call("PUT", f"/api/radiographs/{data['id']}/annotation/", body)
        rec.record("save annotation", status, seconds)
        if status == 200:
            with rec.lock:
                rec.saves.append((data["id"], saved["version"], right))


def radiologist_loop(api: Api, rec: Recorder, stop: threading.Event) -> None:
    while not stop.is_set():
        status, lease, seconds = api.call("POST", "/api/queue/review/next/", {})
        rec.record("next review", status, seconds)
        if status != 200:
            time.sleep(0.1)
            continue
        status, detail, seconds = api.call("GET", f"/api/radiographs/{lease['id']}/")
        rec.record("open radiograph", status, seconds)
        if status != 200:
            continue
        for region in detail["regions"]:
            if region["status"] == "suggested":
                status, decided, seconds = api.call("POST", f"/api/regions/{region['id']}/accept/", {"version": region["version"]})
                rec.record("decide region", status, seconds)
                if status == 200:
                    with rec.lock:
                        rec.decisions.append((region["id"], decided["version"]))
        status, accepted, seconds = api.call("POST", f"/api/radiographs/{lease['id']}/accept/", {"version": detail["version"]})
        rec.record("accept", status, seconds)
        if status == 200:
            with rec.lock:
                rec.accepts.append((lease["id"], accepted["version"]))


# --- after the run --------------------------------------------------------------------------------------


def lost_writes(database_url: str, rec: Recorder) -> dict[str, int]:
    """Acknowledged writes that the database does not hold."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        saved = {(r, v): right for r, v, right in conn.execute("SELECT radiograph_id, version, right_box FROM annotator_lungannotation WHERE status = 'submitted'")}
        revisions = set(conn.execute("SELECT region_id, version FROM annotator_findingregionrevision WHERE status = 'accepted'"))
        accepted = set(
            conn.execute(
                "SELECT l.radiograph_id, l.version FROM annotator_lungannotation l JOIN annotator_radiograph r ON r.id = l.radiograph_id "
                "WHERE l.status = 'accepted' AND r.state = 'accepted'"
            )
        )
    return {
        "saves": sum(1 for r, v, right in rec.saves if saved.get((r, v)) != right),
        "region decisions": sum(1 for key in rec.decisions if key not in revisions),
        "accepts": sum(1 for key in rec.accepts if key not in accepted),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(rec: Recorder, seconds: float) -> dict:
    endpoints = {}
    for name, values in rec.latencies.items():
        statuses = dict(rec.statuses[name])
        expected = {200, 204} if name.startswith("next") else {200}
        endpoints[name] = {
            "requests": len(values),
            "per_s": round(len(values) / seconds, 1),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": sum(v for k, v in statuses.items() if k not in expected),
        }
    total = sum(e["requests"] for e in endpoints.values())
    return {"requests": total, "requests_per_s": round(total / seconds, 1), "errors": sum(e["errors"] for e in endpoints.values()), "endpoints": endpoints}


def print_table(result: dict) -> None:
    print(f"\n{result['config']['annotators']} annotators + {result['config']['radiologists']} radiologists, "
          f"{result['config']['duration_s']} s, gunicorn {result['config']['workers']}x{result['config']['threads']} {result['config']['worker_class']}")
    print(f"{'endpoint':<18}{'requests':>9}{'per s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, e in result["endpoints"].items():
        print(f"{name:<18}{e['requests']:>9}{e['per_s']:>8}{e['p50_ms']:>9}{e['p95_ms']:>9}{e['p99_ms']:>9}{e['errors']:>8}")
    print(f"{'all':<18}{result['requests']:>9}{result['requests_per_s']:>8}{'':>27}{result['errors']:>8}")
    lost = result["lost_writes"]
    print(f"acknowledged: {result['acknowledged']}; lost: {lost}")
    machine = result["machine"]
    print(f"{machine['cpus']} CPUs; load average {machine['load_average_before']} before, {machine['load_average_after']} after")
    print(f"CPU per request (ms): {result['cpu_ms_per_request']}")
    print(f"Label Studio (50 annotators): {LABEL_STUDIO['requests_per_s']} requests/s, save p95 {LABEL_STUDIO['save_p95_ms']} ms")


def run(args: argparse.Namespace) -> dict:
    database_url, drop = throwaway_postgres(args.database_url)
    name = urlsplit(database_url).path.lstrip("/")
    media = Path(tempfile.mkdtemp(prefix="lungmark-bench-")) / "media"
    media.mkdir()
    env = server_env(database_url, media)
    gunicorn = None
    try:
        print(f"database {name}: migrating and seeding ...", flush=True)
        migrate(env)
        radiographs = args.radiographs or max(2000, args.annotators * args.duration * 6)
        seeded = seed(env, annotators=args.annotators, radiologists=args.radiologists, radiographs=radiographs, in_review=args.radiologists * 20)
        gunicorn = Gunicorn(env, workers=args.workers, threads=args.threads, worker_class=args.worker_class).start()
        rec = Recorder()
        stop = threading.Event()
        threads = [
            threading.Thread(target=annotator_loop, args=(Api(gunicorn.port, token, keep_alive=args.keep_alive), rec, stop, i * 1000), daemon=True)
            for i, token in enumerate(seeded["tokens"]["annotator"])
        ] + [threading.Thread(target=radiologist_loop, args=(Api(gunicorn.port, token, keep_alive=args.keep_alive), rec, stop), daemon=True) for token in seeded["tokens"]["radiologist"]]
        load_before = round(os.getloadavg()[0], 2)
        server_pids = [gunicorn.process.pid, *children(gunicorn.process.pid)]
        server_cpu = cpu_seconds(server_pids)
        client_cpu = time.process_time()
        backend_cpu = BackendCpu(database_url, stop)
        backend_cpu.start()
        print(f"{len(threads)} simulated people for {args.duration} s against {gunicorn.base} (load average {load_before}) ...", flush=True)
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server_pids) - server_cpu
        backend_cpu.sample()
        database_cpu = backend_cpu.seconds  # backends opened during the run
        client_cpu = time.process_time() - client_cpu
        result = {
            "benchmark": "web workload (BENCHMARKS.md): closed-loop annotators and radiologists",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                # Other work on the machine competes for the same cores: the 1-minute load average
                # before and after the run says how much (the run itself adds about its own share).
                "load_average_before": load_before, "load_average_after": round(os.getloadavg()[0], 2),
            },
            "config": {
                "annotators": args.annotators, "radiologists": args.radiologists, "duration_s": args.duration,
                "worker_class": args.worker_class, "keep_alive": args.keep_alive, "workers": args.workers, "threads": args.threads if args.worker_class == "gthread" else 1,
                "radiographs": seeded["radiographs"],
            },
            **summarise(rec, elapsed),
            # CPU spent per request by each party: what the run costs on any machine, however busy.
            "cpu_ms_per_request": {},
            "acknowledged": {"saves": len(rec.saves), "region decisions": len(rec.decisions), "accepts": len(rec.accepts)},
            "lost_writes": lost_writes(database_url, rec),
            "label_studio_50_annotators": LABEL_STUDIO,
        }
        if result["requests"]:
            per = 1000 / result["requests"]
            result["cpu_ms_per_request"] = {
                "gunicorn": round(server_cpu * per, 2), "postgresql": round(database_cpu * per, 2), "load generator": round(client_cpu * per, 2),
            }
        save = result["endpoints"].get("save annotation", {})
        result["targets"] = {
            "throughput_x_label_studio": round(result["requests_per_s"] / LABEL_STUDIO["requests_per_s"], 1),
            "save_p95_ms": save.get("p95_ms"),
            "save_p95_under_150_ms": bool(save) and save["p95_ms"] < 150,
            "zero_errors": result["errors"] == 0,
            "zero_lost_writes": not any(result["lost_writes"].values()),
        }
        return result
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        shutil.rmtree(media.parent, ignore_errors=True)
        if not args.keep:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--radiologists", type=int, default=10)
    parser.add_argument("--duration", type=int, default=120, help="seconds of load")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"], help="gunicorn worker class")
    parser.add_argument("--keep-alive", action="store_true", help="one persistent connection per person (nginx upstream keepalive) instead of one per request")
    parser.add_argument("--radiographs", type=int, default=0, help="radiographs to annotate (default: enough for the run)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", help=argparse.SUPPRESS)  # internal: seed the env's database (JSON spec)
    args = parser.parse_args()
    if args.seed:
        sys.path.insert(0, str(REPO))
        print(json.dumps(_seed_here(json.loads(args.seed))))
        return
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
