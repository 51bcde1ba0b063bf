"""``make run``'s processes (scripts/run_local.sh: web server, worker, beat) stop cleanly on Ctrl+C
while a training runs: every process is gone within 5 s, and the next start resumes the training
from its last.pt instead of starting it again."""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from annotator.models import Dataset, Radiograph
from annotator.services.annotation_import import lung_boxes_import
from inference.models import TrainingRun
from tests.conftest import SAMPLE
from tests.inference.conftest import import_files, small_sample_images
from tests.inference.worker import REPO, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# Long enough to be stopped mid-run, with epochs of about a second on a tiny network.
LONG = {"epochs": 400, "width": 0.03125, "image_size": 32, "batch_size": 1, "lr": 1e-3}
SHUTDOWN_SECONDS = 5.0


def fixed_port() -> int:
    """A free port below the kernel's ephemeral range: both starts use it, and between them no
    outgoing connection (to PostgreSQL, say) can be given it as its local port."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class LocalRun:
    """scripts/run_local.sh in its own process group, as a terminal runs it."""

    def __init__(self, env: dict[str, str], log) -> None:
        self.process = subprocess.Popen(
            ["scripts/run_local.sh"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.group = self.process.pid

    def group_alive(self) -> bool:
        """Whether a process of the group still runs (zombies, like the unreaped script, do not count)."""
        self.process.poll()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.group and fields[0] != "Z":
                return True
        return False

    def interrupt(self) -> float:
        """Ctrl+C: SIGINT to the whole foreground group; seconds until no process of it is left."""
        started = time.monotonic()
        os.killpg(self.group, signal.SIGINT)
        while self.group_alive() and time.monotonic() - started < 30:
            time.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.group_alive():
            os.killpg(self.group, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def long_run(transactional_db):
    """Eight small sample radiographs with their lung boxes and a live run training on them for long."""
    Radiograph.objects.all().delete()  # data other tests committed
    import_files(small_sample_images(8, lung_boxes_only=True), dataset="boxed")
    lung_boxes_import(dataset=Dataset.objects.get(name="boxed"), path=SAMPLE / "annotations" / "lung_boxes.json")
    # As a start from the admin page leaves it: the task itself is queued by run_local.sh's start.
    return TrainingRun.objects.create(trigger="manual", config={"preset": "cpu", "overrides": LONG, "images": 8}, live=True)


def epochs_logged(run: TrainingRun) -> int:
    run.refresh_from_db()
    done = [int(m) for m in re.findall(r"epoch (\d+)/", run.log)]
    return max(done, default=0)


def test_ctrl_c_stops_every_process_within_seconds_and_the_training_resumes(long_run, tmp_path):
    var = tmp_path / "var"
    env = worker_env({
        "LUNGMARK_VAR_DIR": str(var),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_FOLDER": str(var / "broker"),
        "PORT": str(fixed_port()),
    })
    log = open(tmp_path / "run.log", "ab")
    runs = []

    def logs(what: str):
        def describe() -> str:
            long_run.refresh_from_db()
            parts = [what, f"make run's output:\n{(tmp_path / 'run.log').read_text()[-3000:]}", f"the run's log:\n{long_run.log[-2000:]}"]
            for name in ("worker.log", "beat.log"):
                path = var / "log" / name
                parts.append(f"{name}:\n{path.read_text(errors='replace')[-3000:] if path.exists() else '(none)'}")
            return "\n".join(parts)
        return describe

    try:
        runs.append(LocalRun(env, log))
        wait_for(lambda: epochs_logged(long_run) >= 2, timeout=240, what=logs("two epochs"))
        before = epochs_logged(long_run)

        seconds = runs[-1].interrupt()
        assert seconds < SHUTDOWN_SECONDS, f"stopping took {seconds:.1f} s\n{(var / 'log' / 'worker.log').read_text()[-3000:]}"
        long_run.refresh_from_db()
        # Still live: the next start queues it again. (Whether the training saw the stop request
        # before the 3 s grace ran out depends on the machine's load; tests/inference/test_retraining.py
        # checks the stop hook itself.)
        assert (long_run.status, long_run.live) == ("running", True)
        stopped_at = epochs_logged(long_run)
        assert stopped_at >= before

        runs.append(LocalRun(env, log))
        wait_for(lambda: epochs_logged(long_run) > stopped_at, timeout=240, what=logs("an epoch after the restart"))
        long_run.refresh_from_db()
        assert "resumed after the worker stopped" in long_run.log
        after_resume = long_run.log.split("resumed after the worker stopped", 1)[1]
        first_epoch_after = int(re.search(r"epoch (\d+)/", after_resume).group(1))
        assert first_epoch_after == stopped_at + 1  # continued from last.pt, not from epoch 1
        assert "continues from its last epoch" in (tmp_path / "run.log").read_text()
        assert runs[-1].interrupt() < SHUTDOWN_SECONDS
    finally:
        for run in runs:
            run.kill()
        log.close()
