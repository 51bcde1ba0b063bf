"""A training run's folder: local while the worker trains in it, in the media storage for everyone else.

The training package writes its checkpoints (``last.pt``, ``best.pt``), ``config.json``,
``metrics.jsonl``, ``loss_curves.png`` and ``train.log`` into a local folder. With a local media
folder that is ``training/<run id>-<created>`` in the storage itself (``run_folder_name``); with a bucket it is a folder of the
worker's cache, uploaded after every epoch (so a run resumes from its ``last.pt`` on any worker),
when the training stops, and at the end. Pages and APIs read the artefacts from the storage.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from annotator.storage import StoredFolder, worker_cache

logger = logging.getLogger(__name__)

RUNS_DIR = "training"
# The artefacts anyone may look at (checkpoints are for workers and the registry, not for browsers).
VIEWABLE = {"config.json": "application/json", "metrics.jsonl": "application/json", "loss_curves.png": "image/png",
            "train.log": "text/plain", "test_metrics.json": "application/json"}


def run_folder_name(run) -> str:
    """Where a run's files are stored: ``training/<id>-<created>``, or the folder the run recorded.

    Ids come back after a database is recreated (or a test's rollback); a folder named by the id alone
    would hand a new run another run's ``last.pt`` to resume from.
    """
    recorded = (run.config or {}).get("run_dir")
    if recorded:
        return str(recorded)
    return f"{RUNS_DIR}/{run.pk}-{run.created_at:%Y%m%dT%H%M%S%f}"


class RunFolder:
    """The folder of one training run: ``local`` (where training writes) and ``stored`` (media storage)."""

    def __init__(self, run) -> None:
        name = run_folder_name(run)
        self.stored = StoredFolder.media(name)
        local = self.stored.local_path()
        self.remote = local is None
        self.local: Path = local if local is not None else worker_cache(RUNS_DIR) / Path(name).name
        self._synced: dict[str, tuple[int, int]] = {}

    def restore(self) -> None:
        """Fetch what an earlier attempt stored (its ``last.pt`` above all), perhaps on another worker."""
        if not self.remote:
            return
        self.local.mkdir(parents=True, exist_ok=True)
        for rel in self.stored.files():
            self.stored.fetch(rel, self.local / rel)
            self._synced[rel] = self._stamp(self.local / rel)
        if self._synced:
            logger.info("training run folder %s restored from storage: %s", self.stored.prefix, ", ".join(sorted(self._synced)))

    def sync(self) -> None:
        """Store the files that changed since the last sync (nothing to do with a local media folder)."""
        if not self.remote or not self.local.is_dir():
            return
        for path in sorted(p for p in self.local.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel, stamp = path.relative_to(self.local).as_posix(), self._stamp(path)
            if self._synced.get(rel) != stamp:
                self.stored.put(rel, path)
                self._synced[rel] = stamp

    def local_discard(self) -> None:
        """Drop the worker's copy of a finished run (the storage keeps it)."""
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)

    def artefacts(self) -> list[str]:
        """The stored files a person may look at."""
        return [rel for rel in self.stored.files() if rel in VIEWABLE]

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
