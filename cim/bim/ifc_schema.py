"""IFC schema names IfcOpenShell 0.9 refuses, and the header rewrite that lets it read such files.

Shared by the converter (``converters/ifc/open.py``) and the review checks (``cim/bim/ids.py``), which both open
files whose header says ``IFC4X3_ADD1`` or similar.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cim.errors import InvalidInputError

#: Schema names IfcOpenShell 0.9 refuses, mapped to the one it reads.
SCHEMA_ALIASES: dict[str, str] = {
    "IFC4X3": "IFC4X3_ADD2",
    "IFC4X3_ADD1": "IFC4X3_ADD2",
    "IFC4X3_RC2": "IFC4X3_ADD2",
}
SUPPORTED_SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3_ADD2")
FILE_SCHEMA = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.I)
HEADER_LIMIT = 1 << 20  # the HEADER section must end within the first MiB


def rewrite_schema(source: Path, target: Path, schema: str) -> None:
    """Copy ``source`` to ``target`` with only the FILE_SCHEMA name replaced by ``schema``."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        head = src.read(HEADER_LIMIT)
        end_header = head.find(b"ENDSEC;")
        header, rest = head[:end_header], head[end_header:]
        new_header, n = FILE_SCHEMA.subn(
            lambda m: m.group(0).replace(m.group(1), schema.encode()), header, count=1
        )
        if n != 1:
            raise InvalidInputError("cannot rewrite FILE_SCHEMA", file=str(source), field="FILE_SCHEMA")
        dst.write(new_header)
        dst.write(rest)
        shutil.copyfileobj(src, dst, 1 << 20)
