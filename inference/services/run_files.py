"""A training run's folder: local while the worker trains in it, in the media storage for everyone else.

The training package writes its checkpoints (``last.pt``, ``best.pt``), ``config.json``,
``metrics.jsonl``, ``loss_curves.png`` and ``train.log`` into a local folder. With a local media
folder that is ``training/<run id>`` in the storage itself; with a bucket it is a folder of the
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


class RunFolder:
    """The folder of one training run: ``local`` (where training writes) and ``stored`` (media storage)."""

    def __init__(self, run_id: int) -> None:
        self.stored = StoredFolder.media(f"{RUNS_DIR}/{run_id}")
        local = self.stored.local_path()
        self.remote = local is None
        self.local: Path = local if local is not None else worker_cache(RUNS_DIR) / str(run_id)
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
