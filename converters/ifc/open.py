"""Sniff an IFC-SPF file before parsing it, and open it with IfcOpenShell despite schema aliases.

Cheap checks first (size, ``ISO-10303-21;`` magic, ``END-ISO-10303-21;`` at the end, the HEADER's
FILE_SCHEMA), so a wrong upload is refused in milliseconds with a precise message. Vendors write schema
names IfcOpenShell 0.9 refuses (``IFC4X3_ADD1`` from Civil 3D and ACCA, ``IFC4X3``, ``IFC4X3_RC2``); those
are mapped to ``IFC4X3_ADD2`` by rewriting only the FILE_SCHEMA name in a temporary copy.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cim.bim.ifc_schema import FILE_SCHEMA, HEADER_LIMIT, SCHEMA_ALIASES, SUPPORTED_SCHEMAS, rewrite_schema
from cim.errors import InvalidInputError, UnsupportedError

MAGIC = b"ISO-10303-21;"
END = b"END-ISO-10303-21;"
_TAIL = 1 << 16
_COMMENT = re.compile(rb"/\*.*?\*/", re.S)


@dataclass(frozen=True)
class IfcHeader:
    """What the first and last bytes of a file say, before any parsing."""

    path: Path
    size: int
    sha256: str
    declared_schema: str  # as written in FILE_SCHEMA
    schema: str  # the schema IfcOpenShell opens it with (alias mapped)
    file_name: str | None = None
    time_stamp: str | None = None
    originating_system: str | None = None
    preprocessor_version: str | None = None

    @property
    def rewritten(self) -> bool:
        """True when the FILE_SCHEMA name must be rewritten for IfcOpenShell."""
        return self.schema != self.declared_schema


def sniff(path: Path | str, *, max_bytes: int | None = None) -> IfcHeader:
    """Check that ``path`` is a complete IFC-SPF file of a supported schema; read its header.

    Raises:
        InvalidInputError: missing, empty, too large, not IFC-SPF (wrong magic), truncated, no FILE_SCHEMA.
        UnsupportedError: IFC-XML / IFC-ZIP, or a schema IfcOpenShell cannot read.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError("file does not exist", file=str(p))
    size = p.stat().st_size
    if size == 0:
        raise InvalidInputError("file is empty (0 bytes), not an IFC file", file=str(p))
    if max_bytes is not None and size > max_bytes:
        raise InvalidInputError(
            f"file is {size} bytes, larger than the accepted {max_bytes} bytes (CIM_MAX_UPLOAD_BYTES)",
            file=str(p),
        )
    with open(p, "rb") as f:
        head = f.read(HEADER_LIMIT)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    _check_magic(head, p)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    end_header = body.find(b"ENDSEC;")
    if end_header < 0:
        raise InvalidInputError("no end of the HEADER section (ENDSEC;) in the first MiB", file=str(p))
    header = _COMMENT.sub(b" ", body[:end_header])
    match = FILE_SCHEMA.search(header)
    if not match:
        raise InvalidInputError(
            "HEADER has no FILE_SCHEMA(('...')) naming the IFC schema", file=str(p), field="FILE_SCHEMA"
        )
    declared = match.group(1).decode("ascii", "replace").strip()
    schema = resolve_schema(declared, p)
    if END not in _COMMENT.sub(b" ", tail).rstrip()[-len(END) - 64 :]:
        raise InvalidInputError(
            f"file is truncated: it does not end with {END.decode()} ({size} bytes; upload incomplete?)",
            file=str(p),
        )
    names = _file_name(header)
    return IfcHeader(path=p, size=size, sha256=_sha256(p), declared_schema=declared, schema=schema, **names)


def resolve_schema(declared: str, path: Path | None = None) -> str:
    """The schema name IfcOpenShell reads for a FILE_SCHEMA name (aliases mapped), or a clear refusal."""
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    name = declared.strip().upper()
    try:
        return wrapper.schema_by_name(name).name()
    except RuntimeError:
        pass
    if name in SCHEMA_ALIASES:
        return SCHEMA_ALIASES[name]
    raise UnsupportedError(
        f"{'file ' + str(path) + ': ' if path else ''}field 'FILE_SCHEMA': unknown IFC schema {declared!r} "
        f"(supported: {', '.join(SUPPORTED_SCHEMAS)}; read as IFC4X3_ADD2: {', '.join(SCHEMA_ALIASES)})"
    )


def _check_magic(head: bytes, p: Path) -> None:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(MAGIC):
        return
    if start.startswith(b"PK\x03\x04"):
        raise UnsupportedError(f"file {p}: IFC-ZIP (.ifczip) is not supported; unzip it to the .ifc inside")
    if start.startswith(b"<?xml") or start.startswith(b"<"):
        raise UnsupportedError(f"file {p}: IFC-XML is not supported; export IFC-SPF (.ifc, ISO 10303-21)")
    shown = start[:16]
    raise InvalidInputError(
        f"not an IFC-SPF file: it starts with {shown!r} instead of {MAGIC.decode()!r}", file=str(p)
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def openable(header: IfcHeader) -> Iterator[Path]:
    """The path to give IfcOpenShell: the file itself, or a temporary copy with the schema name rewritten."""
    if not header.rewritten:
        yield header.path
        return
    tmp = Path(tempfile.mkdtemp(prefix="cim-ifc-"))
    try:
        target = tmp / header.path.name
        rewrite_schema(header.path, target, header.schema)
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path, header: IfcHeader) -> Any:
    """Parse ``path`` (from :func:`openable`) with IfcOpenShell; refuse files without any IfcProduct.

    Raises:
        InvalidInputError: IfcOpenShell cannot parse the file, or it holds no IfcProduct.
    """
    import ifcopenshell

    try:
        model = ifcopenshell.open(str(path))
    except (RuntimeError, OSError, ifcopenshell.Error) as exc:
        raise InvalidInputError(
            f"IfcOpenShell cannot parse the file as {header.schema}: {exc}", file=str(header.path)
        ) from None
    if not model.by_type("IfcProduct"):
        raise InvalidInputError(
            f"the file holds no IfcProduct (0 elements, spaces or sites; "
            f"{len(model.by_type('IfcRoot'))} rooted entities): nothing to convert",
            file=str(header.path),
        )
    return model


# -- HEADER FILE_NAME --------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(')((?:[^']|'')*)'|(\()|(\))|(,)|(\$|\*)|([^\s,()']+))", re.S)


def _parse_args(text: str) -> list[Any]:
    """The parameter list of one header entity, as nested lists of strings and None."""
    stack: list[list[Any]] = [[]]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break
        pos = m.end()
        if m.group(1):
            stack[-1].append(decode_step_string(m.group(2)))
        elif m.group(3):
            stack.append([])
        elif m.group(4):
            if len(stack) == 1:
                break
            inner = stack.pop()
            stack[-1].append(inner)
        elif m.group(6):
            stack[-1].append(None)
        elif m.group(7):
            stack[-1].append(m.group(7))
    return stack[0][0] if stack[0] and isinstance(stack[0][0], list) else stack[0]


def _file_name(header: bytes) -> dict[str, str | None]:
    text = header.decode("latin-1")
    m = re.search(r"FILE_NAME\s*(\(.*?\))\s*;", text, re.S | re.I)
    out: dict[str, str | None] = {
        "file_name": None,
        "time_stamp": None,
        "originating_system": None,
        "preprocessor_version": None,
    }
    if not m:
        return out
    args = _parse_args(m.group(1))

    def arg(i: int) -> str | None:
        v = args[i] if i < len(args) else None
        return v.strip() or None if isinstance(v, str) else None

    out.update(file_name=arg(0), time_stamp=arg(1), preprocessor_version=arg(4), originating_system=arg(5))
    return out


def decode_step_string(raw: str) -> str:
    """Decode an ISO 10303-21 string body.

    Handles ``''``, ``\\X2\\...\\X0\\`` (UTF-16), ``\\X\\hh`` and ``\\S\\c``.
    """
    text = raw.replace("''", "'")

    def x2(m: re.Match[str]) -> str:
        hexes = m.group(1)
        return "".join(chr(int(hexes[i : i + 4], 16)) for i in range(0, len(hexes) - 3, 4))

    text = re.sub(r"\\X2\\([0-9A-Fa-f]*)\\X0\\", x2, text)
    text = re.sub(r"\\X\\([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]).decode("latin-1"), text)
    text = re.sub(r"\\S\\(.)", lambda m: chr(ord(m.group(1)) + 128), text)
    return text.replace("\\\\", "\\")
