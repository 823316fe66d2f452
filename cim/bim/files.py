"""Content-addressed store of submitted files: ``root/ab/abcdef…`` named by the SHA-256 of the content.

A file is streamed into a temporary file under ``root/tmp`` while it is hashed and counted, then
linked into place in one atomic step; an existing entry is never overwritten, so the same content
always maps to the same entry and a stored file can be trusted by its name. Stored files are
read-only. The original file name is metadata of the caller (e.g. ``bim_submissions.file_name``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cim.errors import InvalidInputError, NotFoundError
from cim.settings import Settings

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    """One stored file: content hash, size in bytes, where it lies and the name it was given."""

    sha256: str
    size: int
    path: Path
    name: str | None = None


class FileStore:
    """Files by content hash under ``root`` (created on first use).

    Example::

        fs = FileStore(tmp_path, max_bytes=2**30)
        f = fs.put(b"ISO-10303-21;...", "model.ifc")
        fs.path(f.sha256).read_bytes()
    """

    def __init__(self, root: str | Path, *, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def put(self, source: str | Path | bytes | BinaryIO, name: str | None = None) -> StoredFile:
        """Store a file (path, bytes or binary stream); returns the entry, existing or new.

        Raises:
            InvalidInputError: the content is larger than ``max_bytes``.
            NotFoundError: ``source`` is a path that does not exist.
        """
        if isinstance(source, str | Path):
            path = Path(source)
            if not path.is_file():
                raise NotFoundError(f"file {path} does not exist")
            name = name if name is not None else path.name
            if self.max_bytes is not None and path.stat().st_size > self.max_bytes:
                self._too_large(path.stat().st_size, name)
            with path.open("rb") as stream:
                return self._put_stream(stream, name)
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if self.max_bytes is not None and len(data) > self.max_bytes:
                self._too_large(len(data), name)
            return self._put_stream(_BytesReader(data), name)
        return self._put_stream(source, name)

    def path(self, sha256: str) -> Path:
        """Where the file with this hash lies.

        Raises:
            InvalidInputError: ``sha256`` is not 64 lowercase hex digits (no path tricks possible).
            NotFoundError: no such file is stored.
        """
        target = self._target(sha256)
        if not target.is_file():
            raise NotFoundError(f"no stored file has the SHA-256 {sha256}")
        return target

    def exists(self, sha256: str) -> bool:
        """True when a file with this (well-formed) hash is stored."""
        return self._target(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """The stored file opened for binary reading (the caller closes it)."""
        return self.path(sha256).open("rb")

    # -- internals ------------------------------------------------------------------------------
    def _target(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise InvalidInputError(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)", field="sha256")
        return self.root / sha256[:2] / sha256

    def _too_large(self, size: int, name: str | None) -> None:
        raise InvalidInputError(
            f"file is {size} bytes, larger than the {self.max_bytes} bytes accepted (CIM_MAX_UPLOAD_BYTES)",
            file=name,
        )

    def _put_stream(self, stream: BinaryIO, name: str | None) -> StoredFile:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if self.max_bytes is not None and size > self.max_bytes:
                        self._too_large(size, name)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self._target(sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.chmod(tmp, 0o444)
                try:
                    os.link(tmp, target)  # atomic, and fails instead of overwriting
                except FileExistsError:
                    pass  # stored concurrently: same content, keep the existing entry
                except OSError:  # a file system without hard links
                    if not target.exists():
                        os.replace(tmp, target)
            return StoredFile(sha256=sha, size=size, path=target, name=_display_name(name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


class _BytesReader:
    """Minimal binary stream over bytes (avoids copying into io.BytesIO)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        return chunk


def _display_name(name: str | None) -> str | None:
    """The last path component of a client-given name (never used as a path)."""
    if name is None:
        return None
    base = re.split(r"[\\/]", str(name))[-1].strip()
    return base or None


def file_store(settings: Settings, store_path: str | Path | None) -> FileStore:
    """The deployment's file store: ``settings.files_dir``, else ``<store file>.files`` beside the store.

    ``store_path`` is the store's file (``/data/cim.duckdb``) or URL (``duckdb:///data/cim.duckdb``).

    Raises:
        InvalidInputError: the store is in memory and no ``files_dir`` is configured.
    """
    if settings.files_dir is not None:
        return FileStore(settings.files_dir, max_bytes=settings.max_upload_bytes)
    text = str(store_path or "")
    if text.startswith("duckdb:///"):
        text = text[len("duckdb:///") :]
    if not text or text == ":memory:":
        raise InvalidInputError(
            "an in-memory store has no place for submitted files: set CIM_FILES_DIR", field="files_dir"
        )
    return FileStore(Path(text + ".files"), max_bytes=settings.max_upload_bytes)
