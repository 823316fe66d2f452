"""Shared pieces of the network-model readers: the result type, table building, placement, .inp lines.

Conventions shared by every model reader:

* numbers are written as text with fixed decimals (:func:`fmt_num`): 3 for metres, 1 for millimetres;
* :class:`Placement` maps local model coordinates to storage-ready numbers,
  ``easting = x * scale + offset[0]``, ``northing = y * scale + offset[1]``, ``h = z + offset[2]``;
  ``scale`` converts the model's *map* units to metres (coordinates are never unit-converted by the
  readers, because model map units are independent of the hydraulic units);
* canonical raw ``x`` holds the northing and ``y`` the easting (Chinese survey convention);
* ``_layer`` is the .inp section the element came from, ``_row`` its 1-based index in that section.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from cim.crs import get_crs
from cim.errors import InvalidInputError
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS

#: Major category -> sub-type codes accepted as ``subtype`` (CJJ 61-2017 Appendix B).
SUBTYPES: dict[str, tuple[str, ...]] = {
    "JS": ("JY", "SS", "ZS", "JP", "JZ", "XS", "LS", "JH"),
    "PS": ("YS", "WS", "HS"),
}

_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


@dataclass
class NetworkTables:
    """Raw canonical tables read from one network model.

    ``points`` has exactly :data:`RAW_POINT_COLUMNS`, ``lines`` exactly :data:`RAW_LINE_COLUMNS`;
    every column is text except ``_row`` (int64). ``meta`` holds ``counts`` (by element type),
    ``units`` and ``title``.
    """

    points: pa.Table
    lines: pa.Table
    crs_in: str
    meta: dict[str, Any] = field(default_factory=dict)
    source_kind: str = "model"


def build_table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> pa.Table:
    """A table with exactly ``columns`` from row dicts; missing keys are null.

    Values must be ``str`` or ``None``, except ``_row`` (``int``). Unknown keys are a programming error.
    """
    known = set(columns)
    for r in rows:
        unknown = set(r) - known
        if unknown:
            raise ValueError(f"unknown raw columns {sorted(unknown)}")
    arrays = []
    for col in columns:
        values = [r.get(col) for r in rows]
        if col == "_row":
            arrays.append(pa.array(values, type=pa.int64()))
            continue
        for v in values:
            if v is not None and not isinstance(v, str):
                raise TypeError(f"raw column {col!r} takes text, got {type(v).__name__}: {v!r}")
        arrays.append(pa.array(values, type=pa.string()))
    return pa.Table.from_arrays(arrays, names=list(columns))


def points_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Raw point table (:data:`RAW_POINT_COLUMNS`) from row dicts."""
    return build_table(RAW_POINT_COLUMNS, rows)


def lines_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Raw line table (:data:`RAW_LINE_COLUMNS`) from row dicts."""
    return build_table(RAW_LINE_COLUMNS, rows)


def fmt_num(value: float | None, decimals: int = 3) -> str | None:
    """``value`` as text with at most ``decimals`` decimals, trailing zeros dropped; ``None`` stays null."""
    if value is None or not math.isfinite(value):
        return None
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def extra_json(values: dict[str, Any]) -> str:
    """``_extra`` text: JSON with keys sorted, non-ASCII kept, null entries dropped."""
    return json.dumps({k: v for k, v in values.items() if v is not None}, ensure_ascii=False, sort_keys=True)


def check_subtype(major: str, subtype: str) -> str:
    """``subtype`` upper-cased if it is ``major`` itself or one of its sub-type codes."""
    code = str(subtype).strip().upper()
    if code != major and code not in SUBTYPES[major]:
        raise InvalidInputError(
            f"subtype {subtype!r} is not {major} or one of its sub-types {list(SUBTYPES[major])}",
            field="subtype",
            value=subtype,
        )
    return code


@dataclass(frozen=True)
class Placement:
    """Local model coordinates/elevations -> storage-ready numbers (see module docstring)."""

    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if len(self.offset) != 3 or not all(math.isfinite(float(v)) for v in self.offset):
            raise InvalidInputError("offset must be three finite numbers (east, north, height)", field="offset")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidInputError("scale must be a positive number", field="scale", value=self.scale)

    def raw_xy(self, x: float, y: float) -> tuple[str | None, str | None]:
        """Canonical raw (``x`` = northing, ``y`` = easting) text for model map coordinates (x, y)."""
        east = x * self.scale + self.offset[0]
        north = y * self.scale + self.offset[1]
        return fmt_num(north), fmt_num(east)

    def height(self, z: float) -> float:
        """A model elevation (metres) on the target height datum."""
        return z + self.offset[2]


def check_crs(crs_in: str) -> str:
    """``crs_in`` unchanged after checking PROJ knows it (raises :class:`cim.errors.CRSError`)."""
    get_crs(crs_in)
    return crs_in


@dataclass(frozen=True)
class InpLine:
    """One data line of an .inp file: 1-based line number and its tokens (comments removed)."""

    lineno: int
    tokens: list[str]


class InpFile:
    """Sections of an EPANET/SWMM ``.inp`` file, with located number and token access.

    Section names are upper-cased; a section given twice is concatenated. Text after ``;`` is a
    comment; double-quoted tokens may contain spaces.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise InvalidInputError("file does not exist", file=str(path)) from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read file: {exc}", file=str(path)) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        self.sections: dict[str, list[InpLine]] = {}
        current: list[InpLine] | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            body = line.split(";", 1)[0].strip()
            if not body:
                continue
            if body.startswith("["):
                if not body.endswith("]"):
                    raise InvalidInputError(f"line {lineno}: malformed section header {body!r}", file=self.name, row=lineno)
                current = self.sections.setdefault(body[1:-1].strip().upper(), [])
                continue
            if current is not None:
                current.append(InpLine(lineno, [b or a for a, b in _TOKEN.findall(body)]))

    def has(self, section: str) -> bool:
        """Whether the section header occurs in the file."""
        return section in self.sections

    def lines(self, section: str) -> list[InpLine]:
        """Data lines of ``section`` (empty if absent)."""
        return self.sections.get(section, [])

    def require(self, section: str) -> list[InpLine]:
        """Data lines of ``section``; a missing section is an :class:`InvalidInputError`."""
        if section not in self.sections:
            raise InvalidInputError(f"required section [{section}] is missing", file=self.name, field=section)
        return self.sections[section]

    def error(self, line: InpLine, section: str, name: str, message: str, value: object = None) -> InvalidInputError:
        """An error located at ``line`` for field ``section.name``."""
        return InvalidInputError(f"line {line.lineno}: {message}", file=self.name, row=line.lineno, field=f"{section}.{name}", value=value)

    def token(self, line: InpLine, index: int, section: str, name: str) -> str:
        """Token ``index`` of ``line``; too few tokens is an error naming the missing field."""
        if index >= len(line.tokens):
            raise self.error(line, section, name, f"[{section}] line lacks field {name!r} (column {index + 1})")
        return line.tokens[index]

    def number(self, line: InpLine, index: int, section: str, name: str, default: float | None = None) -> float:
        """Token ``index`` as a finite float; ``default`` when absent (if given)."""
        if index >= len(line.tokens) and default is not None:
            return default
        tok = self.token(line, index, section, name)
        try:
            value = float(tok)
        except ValueError:
            raise self.error(line, section, name, f"{name} {tok!r} is not a number", tok) from None
        if not math.isfinite(value):
            raise self.error(line, section, name, f"{name} {tok!r} is not a finite number", tok)
        return value
