"""Turn a delivered table into a raw staging table (see :mod:`cim.pipes.staging`)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import InvalidInputError, MissingColumnsError
from cim.pipes.fields import LINE_FIELDS, POINT_FIELDS, FieldMapping, map_columns
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS
from converters.pipes.layers import category_hint
from converters.pipes.tables import SourceTable

_LABELS = {f.name: f.label for f in POINT_FIELDS + LINE_FIELDS}
#: JSON escapes applied in this order (backslash first).
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_OTHER_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def to_raw(src: SourceTable, kind: str, mapping: FieldMapping, *, axis_order: str = "ne") -> pa.Table:
    """The raw point or line table for ``src``: canonical text columns plus bookkeeping.

    ``axis_order`` says what the source X column holds: ``"ne"`` (Chinese convention, X = northing)
    or ``"en"`` (X = easting, swapped so raw ``x`` is always the northing). Point tables without
    X/Y columns take their coordinates from the point geometry (raw x = northing, y = easting).
    """
    if kind not in ("point", "line"):
        raise InvalidInputError(f"unknown table kind {kind!r} (use 'point' or 'line')", file=src.file)
    if axis_order not in ("ne", "en"):
        raise InvalidInputError(f"unknown axis order {axis_order!r} (use 'ne' or 'en')", file=src.file)
    n = len(src.rows)
    mapped = map_columns(src.columns, kind, mapping)
    if kind == "point" and axis_order == "en":
        mapped = {col: {"x": "y", "y": "x"}.get(canon, canon) for col, canon in mapped.items()}
    source_of = {canon: col for col, canon in mapped.items()}
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    if kind == "point" and src.point_xy is not None and not _has_xy(src, source_of):
        for axis in ("x", "y"):
            mapped.pop(source_of.pop(axis, None), None)
        easting, northing = src.point_xy
        columns["x"], columns["y"] = _coord_text(northing), _coord_text(easting)
    _check_required(src, kind, source_of, "x" in columns)

    names = RAW_POINT_COLUMNS if kind == "point" else RAW_LINE_COLUMNS
    for name in names:
        if name in source_of:
            columns[name] = src.table.column(source_of[name]).cast(pa.string())
    columns["_file"] = pa.repeat(pa.scalar(src.file, pa.string()), n)
    columns["_layer"] = pa.repeat(pa.scalar(src.layer, pa.string()), n)
    columns["_row"] = src.rows.cast(pa.int64())
    columns["_category"] = pa.repeat(pa.scalar(category_hint(src.layer), pa.string()), n)
    columns["_extra"] = _extra_json(src.table, [c for c in src.columns if c not in mapped], n)
    schema = pa.schema([(name, pa.int64() if name == "_row" else pa.string()) for name in names])
    arrays = [columns.get(name, pa.nulls(n, pa.string())) for name in names]
    return pa.Table.from_arrays(arrays, schema=schema)


def _has_xy(src: SourceTable, source_of: dict[str, str]) -> bool:
    """Whether both coordinate columns are mapped and at least one holds values."""
    if not {"x", "y"} <= source_of.keys():
        return False
    n = len(src.rows)
    return any(src.table.column(source_of[a]).null_count < n for a in ("x", "y"))


def _check_required(src: SourceTable, kind: str, source_of: dict[str, str], xy_from_geometry: bool) -> None:
    need = ("point_id", "x", "y") if kind == "point" else ("start_id", "end_id")
    missing = [f for f in need if f not in source_of and not (xy_from_geometry and f in ("x", "y"))]
    if not missing:
        return
    wanted = ", ".join(f"{_LABELS[f]} ({f})" for f in missing)
    if kind == "point" and {"x", "y"} & set(missing):
        wanted += "; X/Y may also come from point geometry"
    found = ", ".join(src.columns) or "none"
    raise MissingColumnsError(
        f"{kind} layer {src.layer!r} lacks required columns: {wanted}. Columns found: {found}. "
        "Add the city's column names to a mapping file if they are there under another name",
        file=src.file,
    )


def _coord_text(values: np.ndarray) -> pa.Array:
    """Coordinates as shortest round-trip text; NaN becomes null."""
    return pa.array(np.asarray(values, dtype=np.float64), from_pandas=True).cast(pa.string())


def _json_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text escaped for use inside a JSON string literal."""
    for old, new in _ESCAPES:
        col = pc.replace_substring(col, old, new)
    if pc.any(pc.match_substring_regex(col, _OTHER_CONTROL)).as_py():
        for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]:
            col = pc.replace_substring(col, chr(code), f"\\u{code:04x}")
    return col


def _extra_json(table: pa.Table, names: list[str], n: int) -> pa.Array | pa.ChunkedArray:
    """JSON object text of the unmapped columns per row; null when every one of them is empty."""
    parts = []
    for name in names:
        col = table.column(name).cast(pa.string())
        if col.null_count == n:
            continue
        key = json.dumps(name, ensure_ascii=False) + ':"'
        part = pc.binary_join_element_wise(key, _json_string(col), '",', "")
        parts.append(pc.fill_null(part, ""))
    if not parts:
        return pa.nulls(n, pa.string())
    body = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters=",")
    return pc.if_else(
        pc.equal(body, ""), pa.scalar(None, pa.string()), pc.binary_join_element_wise("{", body, "}", "")
    )
