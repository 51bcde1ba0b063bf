"""Import of radiographs from a folder (``images/``, ``dicom/``, ``metadata.csv``), files or a zip.

Each file is checked on its own: a bad one gets a per-file error in the report and the import goes
on. Files are recognised by content, decoded, de-identified and re-encoded before anything is
stored under a server-chosen name. Re-importing the same bytes into a dataset adds nothing.

File names often identify a patient (a surname, a record number, the original SOP Instance UID):
a radiograph is known by its display name, the uploaded name is stored only where
``settings.KEEP_SOURCE_NAMES`` allows, and a keyed hash of it always is (``source_key``), so
annotation files that name images still find them. DICOM whose pixels carry burned-in text are
stored as excluded unless the admin opts in.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..constants import ExclusionReason, ImportStatus, Provenance, State, Tri
from ..errors import DomainError, FileTooLarge, InvalidInput
from ..hooks import PREANNOTATE, hook_call
from ..imaging import DecodedRadiograph, decode_radiograph
from ..imaging.encode import png_bytes, preview_bytes
from ..models import Dataset, ImportJob, Radiograph, Subject
from .events import event_record
from .labels import UNKNOWN_LABELS, exclusion_for_view, labels_from_finding, view_from_text

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}
METADATA_COLUMNS = {"file"}


@dataclass
class ImportReport:
    dataset: str
    imported: int = 0
    duplicates: int = 0
    excluded: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    radiograph_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "errors": self.errors,
            "radiograph_ids": self.radiograph_ids,
        }


@dataclass(frozen=True)
class SourceFile:
    """One candidate file: its name as shown to people, and a way to read at most ``limit`` bytes."""

    name: str
    size: int
    read: Callable[[int], bytes]


def db_text(value: object) -> str:
    """Text as PostgreSQL can store it: no NUL characters (refused in text and JSON columns) and no
    lone surrogates (what undecodable file names turn into)."""
    return str(value).replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def db_json(value: object) -> object:
    """A JSON value with every string (keys included) made storable by ``db_text``."""
    if isinstance(value, str):
        return db_text(value)
    if isinstance(value, dict):
        return {db_text(k): db_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [db_json(v) for v in value]
    return value


def pseudonym_key() -> bytes:
    return settings.PSEUDONYM_KEY.encode()


def _subject_key(source: str, patient_id: str) -> str:
    from ..imaging import pseudonym

    return pseudonym(f"{source}:{patient_id}", pseudonym_key())


def source_key(name: str) -> str:
    """Keyed hash of an uploaded file's name: matches annotation files without keeping the name."""
    from ..imaging import pseudonym

    return pseudonym(f"file:{db_text(Path(name).name)}", pseudonym_key())


def burned_in_exclusion(decoded: DecodedRadiograph, *, allow_burned_in: bool) -> str:
    """The exclusion reason when the pixels may carry burned-in text (a name, a date), else "".

    DICOM says so with Burned In Annotation = YES; a secondary capture (a scanned film, a screenshot)
    that does not say NO is treated the same where ``BURNED_IN_EXCLUDE_SECONDARY_CAPTURE`` is on.
    """
    if allow_burned_in:
        return ""
    unknown_capture = decoded.burned_in is None and decoded.secondary_capture
    if decoded.burned_in or (unknown_capture and settings.BURNED_IN_EXCLUDE_SECONDARY_CAPTURE):
        return ExclusionReason.BURNED_IN_TEXT
    return ""


def dataset_get_or_create(*, name: str) -> Dataset:
    from django.utils.text import slugify

    slug = slugify(name)
    if not slug:
        raise InvalidInput("A dataset needs a name made of letters, digits, '-' or '_'.")
    dataset, _ = Dataset.objects.get_or_create(name=slug)
    return dataset


def metadata_read(text: str) -> dict[str, dict[str, str]]:
    """Rows of a ``metadata.csv`` keyed by file name; a file without a ``file`` column is an error."""
    reader = csv.DictReader(io.StringIO(db_text(text)))
    rows: dict[str, dict[str, str]] = {}
    try:
        if not reader.fieldnames or not METADATA_COLUMNS <= {f.strip() for f in reader.fieldnames}:
            raise InvalidInput("metadata.csv needs a header row with at least a 'file' column.")
        for row in reader:
            clean = {(k or "").strip(): (v if isinstance(v, str) else "").strip() for k, v in row.items() if isinstance(k, str)}
            if clean.get("file"):
                rows[clean["file"]] = clean
    except csv.Error as exc:  # a field over the csv module's size limit, a broken quote...
        raise InvalidInput(f"metadata.csv cannot be read as CSV (line {reader.line_num}): {exc}") from exc
    return rows


def folder_sources(folder: Path) -> tuple[list[SourceFile], dict[str, dict[str, str]]]:
    """The files of a folder in the sample's layout (``images/``, ``dicom/``, ``metadata.csv``).

    A folder without those sub-folders is read flat.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder.")
    metadata: dict[str, dict[str, str]] = {}
    if (folder / "metadata.csv").is_file():
        metadata = metadata_read((folder / "metadata.csv").read_text(encoding="utf-8-sig", errors="replace"))
    roots = [p for p in (folder / "images", folder / "dicom") if p.is_dir()] or [folder]
    sources = []
    for root in roots:
        for path in sorted(root.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.name == "metadata.csv":
                continue
            sources.append(SourceFile(name=path.name, size=path.stat().st_size, read=_file_reader(path)))
    return sources, metadata


def _file_reader(path: Path) -> Callable[[int], bytes]:
    def read(limit: int) -> bytes:
        with open(path, "rb") as fh:
            return fh.read(limit)

    return read


def zip_sources(data: bytes | io.IOBase, *, max_total: int) -> tuple[list[SourceFile], dict[str, dict[str, str]]]:
    """The files inside an uploaded zip, guarded against zip bombs and path tricks (nothing is extracted)."""
    try:
        archive = zipfile.ZipFile(data if not isinstance(data, bytes) else io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"The zip archive cannot be read: {exc}") from exc
    declared = sum(m.file_size for m in members)
    if declared > max_total:
        raise FileTooLarge(f"The zip would expand to {declared} bytes, more than the {max_total} allowed.")
    metadata: dict[str, dict[str, str]] = {}
    sources = []
    for member in members:
        name = Path(member.filename.replace("\\", "/")).name
        if not name or name.startswith(".") or "__MACOSX" in member.filename:
            continue
        if name == "metadata.csv":
            metadata = metadata_read(_zip_read(archive, member, 16 * 1024 * 1024).decode("utf-8-sig", errors="replace"))
            continue
        sources.append(SourceFile(name=name, size=member.file_size, read=_zip_reader(archive, member)))
    return sources, metadata


def _zip_read(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    try:
        with archive.open(member) as fh:
            return fh.read(limit)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InvalidInput(f"cannot read from the zip: {exc}") from exc


def _zip_reader(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Callable[[int], bytes]:
    return lambda limit: _zip_read(archive, member, limit)


def radiographs_import(
    *,
    dataset: Dataset,
    sources: Iterable[SourceFile],
    metadata: dict[str, dict[str, str]] | None = None,
    actor=None,
    origin: str = "command",
    progress: Callable[[int], None] | None = None,
    allow_burned_in: bool = False,
) -> ImportReport:
    """Import files into a dataset; returns the report (also stored as an ``ImportJob``).

    The returned report names each excluded or failed file (the caller sent them); the stored one
    numbers them instead, unless file names may be kept. ``allow_burned_in`` is the admin's opt-in
    to import DICOM marked (or presumed) to carry burned-in text into the normal queue.
    """
    job = ImportJob.objects.create(dataset=dataset, created_by=_user_or_none(actor), origin=origin)
    report = ImportReport(dataset=dataset.name)
    metadata = metadata or {}
    for position, source in enumerate(sources, start=1):
        name = db_text(source.name)
        try:
            outcome = radiograph_import_one(
                dataset=dataset, source=source, meta=metadata.get(source.name), actor=actor, allow_burned_in=allow_burned_in
            )
        except DomainError as exc:
            report.errors.append({"file": name, "position": position, "error": db_text(exc.message), "code": exc.code})
        except Exception as exc:  # an unexpected failure of one file must not stop the import
            logger.exception("import of file %d failed", position)
            report.errors.append({"file": name, "position": position, "error": f"internal error: {type(exc).__name__}", "code": "error"})
        else:
            if outcome is None:
                report.duplicates += 1
            elif outcome.state == State.EXCLUDED:
                report.excluded.append({"file": name, "position": position, "id": outcome.id, "reason": outcome.excluded_reason})
            else:
                report.imported += 1
                report.radiograph_ids.append(outcome.id)
        if progress:
            progress(1)
    job.report = _report_to_keep(report.as_dict())
    job.status = ImportStatus.DONE
    job.finished_at = timezone.now()
    job.save(update_fields=["report", "status", "finished_at"])
    if report.radiograph_ids:
        hook_call(PREANNOTATE, radiograph_ids=report.radiograph_ids)
    return report


def _report_to_keep(report: dict) -> dict:
    """The report as stored: files by their position in the import, unless names may be kept."""
    if settings.KEEP_SOURCE_NAMES:
        return report
    for section in ("excluded", "errors"):
        report[section] = [{**entry, "file": f"file {entry['position']}"} for entry in report[section]]
    return report


def _user_or_none(user):
    return user if getattr(user, "is_authenticated", False) else None


def radiograph_import_one(
    *, dataset: Dataset, source: SourceFile, meta: dict[str, str] | None, actor=None, allow_burned_in: bool = False
) -> Radiograph | None:
    """Import one file. Returns the new radiograph, or None when the same bytes are already there."""
    max_bytes = settings.MAX_UPLOAD_BYTES
    if source.size > max_bytes:
        raise FileTooLarge(f"{source.size} bytes is more than the {max_bytes} allowed for one file.")
    data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(f"The file is larger than the {max_bytes} bytes allowed.")
    sha = hashlib.sha256(data).hexdigest()
    if Radiograph.objects.filter(dataset=dataset, sha256=sha).exists():
        return None
    decoded = decode_radiograph(
        data, filename=source.name, max_bytes=max_bytes, max_pixels=settings.MAX_IMAGE_PIXELS, pseudonym_key=pseudonym_key()
    )
    meta = meta or {}
    name = db_text(source.name)
    source_name = meta.get("source", "")
    view = view_from_text(decoded.view or meta.get("view"), decoded.modality or meta.get("modality"))
    patient_id = meta.get("patient_id", "")
    if patient_id:
        subject_key = _subject_key(source_name or "unknown", patient_id)
    elif decoded.patient_pseudonym:
        subject_key = decoded.patient_pseudonym[:64]  # DICOM: keyed by the pseudonym of its PatientID
    else:
        subject_key = _subject_key("file", sha)  # nothing links it to others: a subject of its own
    labels = labels_from_finding(meta.get("finding")) if meta else UNKNOWN_LABELS
    exclusion = exclusion_for_view(view) or burned_in_exclusion(decoded, allow_burned_in=allow_burned_in)

    stem = uuid.uuid4().hex
    stored: list[str] = []
    try:
        with transaction.atomic():
            subject, _ = Subject.objects.get_or_create(dataset=dataset, key=subject_key)
            radiograph = Radiograph(
                dataset=dataset,
                subject=subject,
                source_name=name[:255] if settings.KEEP_SOURCE_NAMES else "",
                source_key=source_key(name),
                sha256=sha,
                kind=decoded.kind,
                width=decoded.width,
                height=decoded.height,
                bit_depth=decoded.bit_depth,
                window_center=decoded.window[0] if decoded.window else None,
                window_width=decoded.window[1] if decoded.window else None,
                modality=db_text(decoded.modality or meta.get("modality", ""))[:16],
                view=view,
                state=State.EXCLUDED if exclusion else State.IMPORTED,
                excluded_reason=exclusion,
                source_metadata=_safe_metadata(meta, decoded.source_metadata),
            )
            for label in ("healthy", "covid", "other_disease"):
                value = getattr(labels, label)
                setattr(radiograph, label, value)
                setattr(radiograph, f"{label}_source", Provenance.METADATA if value != Tri.UNKNOWN else Provenance.NONE)
            display_png = png_bytes(decoded.display)
            radiograph.display.save(f"{stem}.png", ContentFile(display_png), save=False)
            stored.append(radiograph.display.name)
            if decoded.bit_depth > 8:
                # Full bit depth kept for window/level in the viewer.
                radiograph.pixels.save(f"{stem}-full.png", ContentFile(png_bytes(decoded.pixels)), save=False)
                stored.append(radiograph.pixels.name)
            if decoded.kind == "dicom":
                radiograph.original.save(f"{stem}.dcm", ContentFile(decoded.deidentified_dicom), save=False)
                stored.append(radiograph.original.name)
            else:
                # The re-encoded pixels are the stored original (never the uploaded bytes).
                radiograph.original.name = radiograph.pixels.name or radiograph.display.name
            preview, mime = preview_bytes(decoded.display)
            radiograph.preview.save(f"{stem}.{'webp' if 'webp' in mime else 'jpg'}", ContentFile(preview), save=False)
            radiograph.preview_mime = mime
            stored.append(radiograph.preview.name)
            radiograph.save()
            # Everyone may read a radiograph's history: the file is named by its content hash
            # (which an admin holding the files can check), never by its name.
            event_record(
                radiograph=radiograph,
                actor=actor,
                action="excluded" if exclusion else "imported",
                to_state=radiograph.state,
                data={"sha256": sha, "reason": exclusion} if exclusion else {"sha256": sha},
            )
    except IntegrityError:
        _remove(stored)
        if Radiograph.objects.filter(dataset=dataset, sha256=sha).exists():
            return None  # imported concurrently by someone else
        raise
    except BaseException:
        _remove(stored)
        raise
    return radiograph


def _safe_metadata(meta: dict[str, str], dicom_meta: dict) -> dict:
    # Free-text clinical notes may identify a patient: keep only the structured columns.
    keep = {k: v for k, v in meta.items() if k in {"source", "view", "modality", "finding", "sex", "age", "license"}}
    if dicom_meta:
        keep["dicom"] = dicom_meta
    return db_json(keep)


def _remove(names: list[str]) -> None:
    for name in set(names):
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not remove %s after a failed import", name)
