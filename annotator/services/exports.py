"""Mask dataset exports: requests, their lifecycle, verification and download.

``export_create`` records a request (admins only) and enqueues the Celery task on commit;
``export_build`` (the task's body, and the ``export_masks`` command's) writes the snapshot with
``export_writer.snapshot_write`` into the media storage as ``exports/<id>-<created>/`` (or a local
folder of the caller's choosing) and records the outcome; ``export_zip_stream`` streams a finished
snapshot as a zip without holding it in memory; ``export_local_copy`` gives training a local folder.
Every request, outcome and download is audit-logged.

With a local media folder the snapshot is written in place (renamed into place when complete); with
a bucket it is written in the worker's cache and uploaded, ``manifest.json`` last, so a snapshot
whose manifest is stored is complete.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..constants import ExportStatus
from ..errors import Conflict, DomainError, InvalidInput, InvalidTransition, NotAllowed, NotFound
from ..models import Dataset, ExportSnapshot
from ..permissions import can
from ..storage import StoredFolder, storage_local_path, worker_cache
from . import export_files as files
from .events import audit_record
from .export_writer import snapshot_write

logger = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
LUNG_MASK_KINDS = ("boxes", "outlines")
DEFAULT_OPTIONS: dict[str, Any] = {"lung_masks": "boxes", "reviewed_only": False, "seed": 0}


Status = ExportStatus  # (the name the export code and its callers use)


# --- requests --------------------------------------------------------------------------------------


def export_options_clean(options: dict[str, Any] | None) -> dict[str, Any]:
    """Validated export options: ``lung_masks`` (boxes | outlines), ``reviewed_only``, ``seed``."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise InvalidInput(f"Unknown export option(s) {', '.join(unknown)}; expected {', '.join(DEFAULT_OPTIONS)}.")
    clean = {**DEFAULT_OPTIONS, **options}
    if clean["lung_masks"] not in LUNG_MASK_KINDS:
        raise InvalidInput("'lung_masks' must be 'boxes' (the two lung boxes filled) or 'outlines' (polygon masks where they exist).")
    if not isinstance(clean["reviewed_only"], bool):
        raise InvalidInput("'reviewed_only' must be true or false.")
    seed = clean["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise InvalidInput("'seed' must be an integer from 0 to 2147483647.")
    return clean


def _datasets_resolve(names: Any) -> list[Dataset]:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidInput("Name at least one dataset to export ('datasets').")
    found = {d.name: d for d in Dataset.objects.filter(name__in=names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFound(f"No dataset named {', '.join(repr(n) for n in missing)}.")
    return [found[n] for n in dict.fromkeys(names)]


def _duplicate_refuse(*, datasets: list[Dataset], options: dict[str, Any]) -> None:
    """A ``Conflict`` if the same export is pending or running (one older than the task time limit
    is taken as abandoned by a worker that died)."""
    names = sorted(d.name for d in datasets)
    stale_before = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    live = ExportSnapshot.objects.filter(status__in=[Status.PENDING, Status.RUNNING], created_at__gt=stale_before, datasets__in=datasets)
    for other in live.distinct():
        if other.options == options and sorted(other.datasets.values_list("name", flat=True)) == names:
            raise Conflict(f"Export {other.id} of the same data is already {other.status}.", extra={"export": other.id})


def export_create(*, user, datasets: Any, options: dict[str, Any] | None = None, enqueue: bool = True) -> ExportSnapshot:
    """Record an export request and (on commit) hand it to a worker. Admins only; ``user=None``
    is the system itself (the ``export_masks`` command, scheduled retraining).

    The same export (datasets and options) that a person already requested and that is still
    pending or running is a ``Conflict`` (a double click, not a second snapshot); the system's own
    requests are never refused for that.
    """
    if user is not None and not can(user, "export"):
        raise NotAllowed("Only admins can export datasets.")
    found = _datasets_resolve(datasets)
    clean = export_options_clean(options)
    names = sorted(d.name for d in found)
    with transaction.atomic():
        # Locking the dataset rows serialises requests for the same data, so the duplicate check holds.
        list(Dataset.objects.select_for_update().filter(pk__in=[d.pk for d in found]).order_by("pk").values_list("pk", flat=True))
        if user is not None:
            _duplicate_refuse(datasets=found, options=clean)
        snapshot = ExportSnapshot.objects.create(
            created_by=user if getattr(user, "is_authenticated", False) else None, options=clean, status=Status.PENDING
        )
        snapshot.datasets.set(found)
        audit_record(actor=user, action="export_requested", target=f"export:{snapshot.id}", data={"datasets": names, "options": clean})
        if enqueue:
            from ..tasks import export_build as task

            transaction.on_commit(lambda: task.delay(snapshot.id))
    return snapshot


# --- building ------------------------------------------------------------------------------------


def export_folder(snapshot: ExportSnapshot) -> StoredFolder:
    """Where a snapshot's files are: ``exports/<id>-<created>`` in the media storage, or the local
    folder an ``export_masks --out`` wrote (an absolute ``path``)."""
    path = snapshot.path or _default_folder(snapshot)
    return StoredFolder.local(Path(path)) if Path(path).is_absolute() else StoredFolder.media(path)


def export_local_copy(snapshot: ExportSnapshot) -> Path:
    """A local folder with a finished snapshot's files, for the training package: the stored folder
    itself where the storage has paths, else a copy in the worker's cache, each file checked against
    the manifest's sha256 and the manifest against the snapshot's (kept by that sha256 for later runs)."""
    folder = export_folder(snapshot)
    local = folder.local_path()
    if local is not None:
        return local
    cached = worker_cache("exports") / snapshot.manifest_sha256
    if cached.is_dir():
        return cached
    partial = cached.with_name(f".{cached.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        folder.fetch("manifest.json", partial / "manifest.json", sha256=snapshot.manifest_sha256 or None)
        manifest = json.loads((partial / "manifest.json").read_text(encoding="utf-8"))
        for rel, digest in manifest["files"].items():
            folder.fetch(rel, partial / rel, sha256=digest)
        try:
            os.rename(partial, cached)
        except OSError:  # another process of this worker host fetched it first
            if not cached.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("export %s fetched from storage into %s", snapshot.id, cached)
    return cached


def _default_folder(snapshot: ExportSnapshot) -> str:
    """``exports/<id>-<created>``: the id alone could name an older snapshot's folder after the
    database was restored or recreated, and a snapshot is never written over another."""
    return f"{EXPORTS_DIR}/{snapshot.id}-{snapshot.created_at:%Y%m%dT%H%M%S%f}"


def export_build(*, export_id: int, out: Path | None = None, progress: Callable[[float], None] | None = None) -> ExportSnapshot:
    """Write the snapshot of an export request (idempotent: a finished one is left alone).

    By default it goes into the media storage as ``exports/<id>-<created>``; ``out`` is a local
    folder to create instead, which must not exist yet or be empty. Failures are recorded on the
    export (status ``failed`` with the reason) and re-raised.
    """
    with transaction.atomic():
        snapshot = ExportSnapshot.objects.select_for_update().filter(pk=export_id).first()
        if snapshot is None:
            raise NotFound(f"No export {export_id}.")
        if snapshot.status == Status.DONE:
            return snapshot
        ExportSnapshot.objects.filter(pk=snapshot.pk).update(status=Status.RUNNING, progress=0.0, error="")
    name = _default_folder(snapshot)
    stored = StoredFolder.media(name) if out is None and storage_local_path(name) is None else None
    if stored is not None:  # a bucket: written in the worker's cache, then uploaded
        target = worker_cache("exports", "building") / f"{snapshot.id}-{uuid.uuid4().hex[:8]}"
    else:
        target = Path(out) if out is not None else storage_local_path(name)
        for leftover in target.parent.glob(f".{target.name}.partial-*"):
            # A worker that died mid-way left these; the task is redelivered only after it is gone.
            shutil.rmtree(leftover, ignore_errors=True)
    try:
        if stored is not None:
            _stored_prepare(stored)
        manifest = snapshot_write(snapshot=snapshot, target=target, progress=progress)
        manifest_sha256 = files.file_sha256(target / "manifest.json")
        if stored is not None:
            stored.upload(target, last=("manifest.json",))
    except Exception as exc:
        message = exc.message if isinstance(exc, DomainError) else f"internal error: {type(exc).__name__}: {exc}"
        if not isinstance(exc, DomainError):
            logger.exception("export %s failed", snapshot.id)
        ExportSnapshot.objects.filter(pk=snapshot.pk).update(status=Status.FAILED, error=message[:4000], finished_at=timezone.now())
        audit_record(actor=snapshot.created_by, action="export_failed", target=f"export:{snapshot.id}", data={"error": message[:500]})
        raise
    finally:
        if stored is not None:
            shutil.rmtree(target, ignore_errors=True)
    if stored is not None:
        path = name
    else:
        stored_path, media = target.resolve(), Path(settings.MEDIA_ROOT).resolve()
        path = str(stored_path.relative_to(media)) if stored_path.is_relative_to(media) else str(stored_path)
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(
        status=Status.DONE,
        progress=1.0,
        counts=manifest["counts"],
        manifest_sha256=manifest_sha256,
        path=path,
        finished_at=timezone.now(),
    )
    snapshot.refresh_from_db()
    audit_record(
        actor=snapshot.created_by,
        action="export_created",
        target=f"export:{snapshot.id}",
        data={"counts": manifest["counts"], "manifest_sha256": snapshot.manifest_sha256},
    )
    return snapshot


def _stored_prepare(stored: StoredFolder) -> None:
    """A snapshot is never written over another; files without a manifest are what a worker that
    died mid-upload left (the task is redelivered only after it is gone), and are removed."""
    if stored.exists("manifest.json"):
        raise Conflict(f"{stored.prefix} already exists: a snapshot is never overwritten.")
    stored.delete_all()


# --- verification and download -----------------------------------------------------------------------


def export_verify(path: Path) -> list[str]:
    """Problems of a snapshot folder, each naming its file (empty when sound); shared with training."""
    from training.export import verify_export

    return verify_export(Path(path))


def export_download_check(*, user, snapshot: ExportSnapshot) -> StoredFolder:
    """A finished snapshot's stored folder, for an admin; the download is audit-logged."""
    if not can(user, "export"):
        raise NotAllowed("Only admins can download exports.")
    if snapshot.status != Status.DONE:
        raise InvalidTransition(f"Export {snapshot.id} is {snapshot.status}: only a finished export can be downloaded.")
    root = export_folder(snapshot)
    if not root.exists("manifest.json"):
        raise NotFound(f"The files of export {snapshot.id} are missing from storage.")
    audit_record(actor=user, action="export_downloaded", target=f"export:{snapshot.id}", data={"manifest_sha256": snapshot.manifest_sha256})
    return root


class _Spool:
    """A write-only, unseekable sink for ``zipfile`` whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def export_zip_stream(root: Path | StoredFolder, *, prefix: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The snapshot (a stored folder, or a local one) as a zip, produced piece by piece (at most about
    ``chunk_size`` bytes at a time).

    PNGs are already compressed, so they go in at deflate level 0: a "stored" entry would need its
    size and CRC ahead of its data, which a stream cannot go back and write. Text files are deflated.
    """
    folder = root if isinstance(root, StoredFolder) else StoredFolder.local(Path(root))
    spool = _Spool()
    with zipfile.ZipFile(spool, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for rel in folder.files():
            archive.compresslevel = 0 if rel.endswith(".png") else 6
            size = folder.size(rel)
            with folder.open(rel) as src, archive.open(f"{prefix}/{rel}", "w", force_zip64=size > (1 << 31)) as dest:
                while chunk := src.read(chunk_size):
                    dest.write(chunk)
                    if data := spool.take():
                        yield data
            if data := spool.take():
                yield data
    if data := spool.take():
        yield data
