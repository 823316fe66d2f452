"""Pipe owners' contacts (权属单位联系人) for excavation reports, read from a CSV kept by the city.

The CSV is UTF-8 (with or without BOM) or GB18030/GBK, with Chinese or English headers::

    权属单位,联系部门,联系电话,邮箱
    济南港华燃气,管网运行部,0531-12345678,ops@example.cn

Example::

    contacts = load_contacts("owners.csv")
    contacts["济南港华燃气"].phone  # -> "0531-12345678"
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cim.errors import EncodingError, InvalidInputError, NotFoundError

#: Header aliases (compared stripped and lower-cased) → field.
HEADERS: dict[str, str] = {
    "权属单位": "owner", "管理单位": "owner", "owner": "owner",
    "联系部门": "department", "部门": "department", "department": "department",
    "联系电话": "phone", "电话": "phone", "phone": "phone", "tel": "phone",
    "邮箱": "email", "电子邮箱": "email", "email": "email", "e-mail": "email",
}


@dataclass(frozen=True)
class OwnerContact:
    """Who to call about an owner's pipes before digging."""

    owner: str
    department: str | None = None
    phone: str | None = None
    email: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The contact as a JSON-ready dict."""
        return asdict(self)


def load_contacts(path: str | Path) -> dict[str, OwnerContact]:
    """Owner name → contact, from a CSV (UTF-8 or GB18030; Chinese or English headers).

    Raises:
        NotFoundError: the file does not exist.
        EncodingError: the text is neither UTF-8 nor GB18030.
        InvalidInputError: no owner column, an unknown or repeated column, a row with an empty owner,
            more cells than columns, or an owner listed twice (file, row and field named).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"contacts file {path} does not exist")
    rows = list(csv.reader(io.StringIO(_decode(path.read_bytes(), str(path)), newline="")))
    if not rows:
        raise InvalidInputError("the contacts file is empty: it needs a header row with 权属单位/owner",
                                file=str(path))
    fields = _header(rows[0], str(path))
    contacts: dict[str, OwnerContact] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(fields):
            raise InvalidInputError(f"{len(cells)} cells but the header has {len(fields)} columns",
                                    file=str(path), row=number)
        values = {f: (cells[i].strip() or None) if i < len(cells) else None for i, f in enumerate(fields)}
        owner = values.get("owner")
        if not owner:
            raise InvalidInputError("the owner (权属单位) is empty", file=str(path), row=number, field="owner")
        if owner in contacts:
            raise InvalidInputError(f"owner {owner!r} is listed twice", file=str(path), row=number,
                                    field="owner", value=owner)
        contacts[owner] = OwnerContact(owner, values.get("department"), values.get("phone"), values.get("email"))
    return contacts


def _decode(data: bytes, file: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise EncodingError("text is neither UTF-8 nor GB18030/GBK", file=file)


def _header(cells: list[str], file: str) -> list[str]:
    fields = []
    for i, cell in enumerate(cells, start=1):
        name = HEADERS.get(cell.strip().lower())
        if name is None:
            raise InvalidInputError(f"unknown column {cell.strip()!r} (column {i}); use 权属单位/owner, "
                                    "联系部门/department, 联系电话/phone, 邮箱/email", file=file, row=1,
                                    field=cell.strip())
        if name in fields:
            raise InvalidInputError(f"column {cell.strip()!r} repeats the {name} column", file=file, row=1,
                                    field=cell.strip())
        fields.append(name)
    if "owner" not in fields:
        raise InvalidInputError("no owner column (权属单位/owner)", file=file, row=1, field="owner")
    return fields
