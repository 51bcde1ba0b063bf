"""The media storage (``STORAGES["default"]``): a local folder or an S3-compatible bucket.

Every stored file goes through Django's storage API so that web and workers on different hosts see
the same files. Two kinds of storage differ in one way that matters here: a local folder has paths
(files can be served by the web server and read in place by training), a bucket has none (files are
fetched into a worker's local cache, and browsers get a short-lived presigned link).

``StoredFolder`` is a folder of files in a storage (an export snapshot, a training run);
``storage_put`` writes a file under exactly the name given, replacing an older one;
``MediaS3Storage`` signs links for the address browsers use, which may differ from the workers'.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

try:  # only the S3 mode needs these (a local-only install can leave them out)
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name
except ImportError:  # pragma: no cover
    S3Storage = object  # type: ignore[misc,assignment]

CHUNK = 1 << 20


def storage_local_path(name: str, *, storage: Storage | None = None) -> Path | None:
    """The local path of ``name`` in a storage that has paths (a folder), else None (a bucket)."""
    storage = storage or default_storage
    try:
        return Path(storage.path(name))
    except NotImplementedError:
        return None


def storage_is_local(storage: Storage | None = None) -> bool:
    return storage_local_path("", storage=storage) is not None


def storage_put(name: str, source: Path | IO[bytes], *, storage: Storage | None = None) -> str:
    """Store ``source`` (a local file or an open binary file) under exactly ``name``, replacing any
    file of that name (a training run's ``last.pt`` is stored again after every epoch)."""
    storage = storage or default_storage
    if storage.exists(name):
        storage.delete(name)
    if isinstance(source, Path):
        with open(source, "rb") as fh:
            stored = storage.save(name, File(fh, name=source.name))
    else:
        stored = storage.save(name, File(source, name=posixpath.basename(name)))
    if stored != name:  # another writer took the name in between; ours must not hide under another
        storage.delete(stored)
        raise OSError(f"{name} was written by someone else at the same time")
    return stored


def storage_fetch(name: str, local: Path, *, storage: Storage | None = None, sha256: str | None = None) -> Path:
    """Copy stored ``name`` into the local file ``local`` (atomically: a partial copy is never seen
    under the final name); with ``sha256``, a copy that does not match is refused."""
    storage = storage or default_storage
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    try:
        with storage.open(name, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise OSError(f"{name} does not match its sha256 (expected {sha256[:12]}, got {digest.hexdigest()[:12]})")
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    return local


@dataclass(frozen=True)
class StoredFolder:
    """A folder of files in a storage: ``prefix`` is its name there ("" = the storage's root)."""

    storage: Storage
    prefix: str = ""

    @classmethod
    def local(cls, path: Path) -> "StoredFolder":
        """A local folder seen through the same interface (an export written to a chosen folder)."""
        return cls(FileSystemStorage(location=str(path)), "")

    @classmethod
    def media(cls, prefix: str) -> "StoredFolder":
        return cls(default_storage, prefix.strip("/"))

    def name(self, rel: str) -> str:
        return posixpath.join(self.prefix, rel) if self.prefix else rel

    def local_path(self) -> Path | None:
        """The folder's own path where the storage has paths (nothing to copy), else None."""
        return storage_local_path(self.prefix, storage=self.storage)

    def exists(self, rel: str) -> bool:
        return self.storage.exists(self.name(rel))

    def open(self, rel: str, mode: str = "rb"):
        return self.storage.open(self.name(rel), mode)

    def size(self, rel: str) -> int:
        return self.storage.size(self.name(rel))

    def files(self) -> list[str]:
        """Every file below the folder, as sorted relative names (empty when the folder is missing)."""
        found: list[str] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            try:
                directories, names = self.storage.listdir(self.name(rel) if rel else (self.prefix or ""))
            except FileNotFoundError:
                continue
            found += [posixpath.join(rel, n) if rel else n for n in names]
            pending += [posixpath.join(rel, d) if rel else d for d in directories]
        return sorted(found)

    def put(self, rel: str, source: Path | IO[bytes]) -> str:
        return storage_put(self.name(rel), source, storage=self.storage)

    def fetch(self, rel: str, local: Path, *, sha256: str | None = None) -> Path:
        return storage_fetch(self.name(rel), local, storage=self.storage, sha256=sha256)

    def delete_all(self) -> None:
        for rel in self.files():
            self.storage.delete(self.name(rel))

    def upload(self, local: Path, *, last: tuple[str, ...] = ()) -> list[str]:
        """Store every file of the local folder ``local`` here (the names in ``last`` after the
        others: a reader that finds them knows the rest is complete). Returns the relative names."""
        names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
        ordered = [n for n in names if n not in last] + [n for n in last if n in names]
        for rel in ordered:
            self.put(rel, local / rel)
        return ordered


def worker_cache(*parts: str) -> Path:
    """A folder of the worker's local cache (``WORKER_CACHE_DIR``), created on first use."""
    folder = Path(settings.WORKER_CACHE_DIR).joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class MediaS3Storage(S3Storage):  # type: ignore[misc,valid-type]
    """django-storages' S3 storage whose presigned links use ``public_endpoint_url``: workers and
    the web process may reach the object store at an internal address (``http://minio:9000``)
    that browsers cannot."""

    def get_default_settings(self) -> dict[str, Any]:
        return {**super().get_default_settings(), "public_endpoint_url": None}

    def url(self, name, parameters=None, expire=None, http_method=None):
        if not self.public_endpoint_url or self.public_endpoint_url == self.endpoint_url:
            return super().url(name, parameters=parameters, expire=expire, http_method=http_method)
        client = getattr(self._connections, "public_client", None)
        if client is None:
            client = self._create_session().client(
                "s3", region_name=self.region_name, endpoint_url=self.public_endpoint_url, config=self.client_config, verify=self.verify
            )
            self._connections.public_client = client
        params = {**(parameters or {}), "Bucket": self.bucket_name, "Key": self._normalize_name(clean_name(name))}
        return client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.querystring_expire if expire is None else expire, HttpMethod=http_method
        )
