"""Read delivered point/line tables (CSV, Excel, Shapefile, GeoPackage) into all-text Arrow tables.

Readers keep every value as text (``None`` for empty or whitespace-only cells) and remember the row a
user sees, so normalisation and QC can report problems against the original file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cim.errors import EncodingError, InvalidInputError, UnsupportedError

CSV_SUFFIXES = (".csv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
SHAPE_SUFFIXES = (".shp", ".dbf")
GPKG_SUFFIXES = (".gpkg",)
_DELIMITERS = (",", "\t", ";", "|")
#: a workbook (a zip) unpacking beyond this, or beyond _MAX_ZIP_RATIO times its size past 64 MiB, is refused
MAX_UNPACKED_BYTES = 4 * 1024**3
_MAX_ZIP_RATIO = 200
_SKIP_GPKG_LAYERS = {"layer_styles"}
#: DBF language driver ids of CJK code pages (936 GBK, 949, 950 Big5, 932) that GDAL decodes itself.
_CJK_LDIDS = {0x4D, 0x7A, 0x4E, 0x79, 0x4F, 0x78, 0x13, 0x7B}


@dataclass
class SourceTable:
    """One delivered table: all-text columns plus where each row came from."""

    file: str
    layer: str
    columns: list[str]
    table: pa.Table
    rows: pa.Array
    encoding: str | None = None
    header_problems: list[str] = field(default_factory=list)
    point_xy: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def num_rows(self) -> int:
        """Number of data rows."""
        return len(self.rows)


def read_tables(
    path: Path, *, encoding: str | None = None, max_bytes: int | None = None
) -> list[SourceTable]:
    """Every table in ``path``: one for CSV/Shapefile, one per non-empty sheet or GeoPackage layer."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InvalidInputError("file does not exist", file=file)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES + SHAPE_SUFFIXES + GPKG_SUFFIXES:
        raise UnsupportedError(
            f"file {file}: unsupported table format {path.suffix!r} "
            "(use .csv, .txt, .xlsx, .xlsm, .xls, .shp, .dbf or .gpkg)"
        )
    _check_size(path, file, max_bytes)
    if suffix in CSV_SUFFIXES:
        return [_read_csv(path, file, encoding)]
    if suffix in EXCEL_SUFFIXES:
        return _read_excel(path, file)
    if suffix in SHAPE_SUFFIXES:
        table = _read_ogr(path, file, None, path.stem, _shape_encoding(path, file, encoding))
        if table is None:
            raise InvalidInputError("no data rows", file=file)
        return [table]
    return _read_gpkg(path, file)


def _check_size(path: Path, file: str, max_bytes: int | None) -> None:
    size = path.stat().st_size
    if path.suffix.lower() == ".shp" and path.with_suffix(".dbf").exists():
        size += path.with_suffix(".dbf").stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InvalidInputError(f"file is {size:,} bytes, over the limit of {max_bytes:,} bytes", file=file)


# ---------------------------------------------------------------------------------------------- headers


def _header(raw: list[object], layer: str) -> tuple[list[str], list[str]]:
    """Usable, unique column names and the problems found in the delivered header."""
    names: list[str] = []
    problems: list[str] = []
    first_pos: dict[str, int] = {}
    for pos, value in enumerate(raw, start=1):
        name = "" if value is None else str(value).replace("\ufeff", "").strip()
        if not name:
            name = f"column_{pos}"
            problems.append(f"{layer}: column {pos} has no name (kept as {name!r})")
        if name in first_pos:
            base, k = name, 1
            while f"{base}.{k}" in first_pos:
                k += 1
            name = f"{base}.{k}"
            problems.append(
                f"{layer}: duplicate column name {base!r} in columns {first_pos[base]} and {pos} (kept as {name!r})"
            )
        first_pos[name] = pos
        names.append(name)
    return names, problems


def _blank_to_null(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Empty and whitespace-only strings become null."""
    blank = pc.or_kleene(pc.equal(col, ""), pc.utf8_is_space(col))
    if not pc.any(blank).as_py():
        return col
    return pc.if_else(blank, pa.scalar(None, pa.string()), col)


def _all_null(table: pa.Table) -> np.ndarray:
    """Boolean mask of rows whose cells are all null."""
    mask = np.ones(table.num_rows, dtype=bool)
    for col in table.columns:
        if col.null_count:
            mask &= pc.is_null(col).to_numpy(zero_copy_only=False)
        else:
            return np.zeros(table.num_rows, dtype=bool)
    return mask


# ---------------------------------------------------------------------------------------------- CSV


def _decode(data: bytes, file: str, encoding: str | None) -> tuple[bytes, str]:
    """UTF-8 bytes without BOM, and the encoding they were read with."""
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise InvalidInputError(f"unknown encoding {encoding!r}", file=file) from None
        try:
            text = data.decode(name)
        except UnicodeDecodeError as exc:
            raise EncodingError(
                f"cannot be read as {encoding} (bad bytes at offset {exc.start})", file=file
            ) from None
        return (data if name == "utf-8" else text.encode("utf-8")).removeprefix(codecs.BOM_UTF8), name
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:65536]:
        raise EncodingError(
            "text is neither UTF-8 nor GB18030/GBK (looks like UTF-16 or a binary file); "
            "save it as UTF-8 or pass --encoding",
            file=file,
        )
    if data.startswith(codecs.BOM_UTF8):
        body = data[len(codecs.BOM_UTF8) :]
        if not _is_utf8(body):
            raise EncodingError(
                "starts with a UTF-8 byte-order mark but is not valid UTF-8; pass --encoding", file=file
            )
        return body, "utf-8-sig"
    if _is_utf8(data):
        return data, "utf-8"
    try:
        return data.decode("gb18030").encode("utf-8"), "gb18030"
    except UnicodeDecodeError:
        raise EncodingError(
            "text is neither UTF-8 nor GB18030/GBK; pass --encoding with the file's encoding", file=file
        ) from None


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sniff_header(payload: bytes) -> tuple[str, int]:
    """Delimiter and number of fields of the first non-blank record."""
    head = payload[: 1 << 20].decode("utf-8", errors="ignore").lstrip("\r\n \t")
    first_line = head.split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=first_line.count) if any(d in first_line for d in _DELIMITERS) else ","
    try:
        record = next(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), [])
    except csv.Error:  # a stray quote or NUL in the header line: let the CSV parser report where
        record = first_line.split(delimiter)
    return delimiter, max(len(record), 1)


def _parse_csv(payload: bytes, delimiter: str, width: int, threads: bool) -> tuple[pa.Table, list]:
    bad: list = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    names = [f"f{i}" for i in range(width)]
    table = pacsv.read_csv(
        pa.BufferReader(payload),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=threads),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True, null_values=[""]
        ),
    )
    return table, bad


def _read_csv(path: Path, file: str, encoding: str | None) -> SourceTable:
    data = path.read_bytes()
    payload, used = _decode(data, file, encoding)
    if not payload.strip():
        raise InvalidInputError("no data rows (the file is empty)", file=file)
    delimiter, width = _sniff_header(payload)
    try:
        table, bad = _parse_csv(payload, delimiter, width, threads=True)
    except pa.ArrowInvalid as exc:
        raise InvalidInputError(f"cannot parse as CSV: {exc}", file=file) from None
    record_no = np.arange(1, table.num_rows + 1, dtype=np.int64)
    if bad:
        # Threaded parsing does not know line numbers: parse again serially to locate skipped rows.
        _, bad = _parse_csv(payload, delimiter, width, threads=False)
        broken = [b for b in bad if b[3].strip()]
        if broken:
            number, expected, actual, text = broken[0]
            raise InvalidInputError(
                f"expected {expected} fields as in the header, found {actual}: {text[:80]!r}",
                file=file,
                row=number,
            )
        blank = np.array([b[0] for b in bad], dtype=np.int64)
        record_no = np.delete(np.arange(1, table.num_rows + len(blank) + 1, dtype=np.int64), blank - 1)
    table = pa.table([_blank_to_null(c) for c in table.columns], names=table.column_names)
    keep = ~_all_null(table)
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        raise InvalidInputError("no data rows (only a header)" if len(idx) else "no data rows", file=file)
    header = [table.column(i)[int(idx[0])].as_py() for i in range(table.num_columns)]
    names, problems = _header(header, path.stem)
    data_idx = idx[1:]
    body = table.slice(int(data_idx[0]))
    if len(data_idx) != body.num_rows:
        body = body.filter(pa.array(keep[int(data_idx[0]) :]))
    return SourceTable(
        file=file,
        layer=path.stem,
        columns=names,
        table=body.rename_columns(names),
        rows=pa.array(record_no[data_idx], pa.int64()),
        encoding=used,
        header_problems=problems,
    )


# ---------------------------------------------------------------------------------------------- Excel


def _cell_text(value: object) -> str | None:
    """Spreadsheet cell as text: integers without '.0', dates in ISO form."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _check_zip_bomb(path: Path, file: str) -> None:
    """Refuse an .xlsx/.xlsm whose members declare far more bytes than a workbook of its size holds."""
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip: the workbook reader says what is wrong
    packed = max(path.stat().st_size, 1)
    if unpacked > MAX_UNPACKED_BYTES or (unpacked > 64 * 1024**2 and unpacked > _MAX_ZIP_RATIO * packed):
        raise InvalidInputError(
            f"the workbook unpacks to {unpacked:,} bytes from {packed:,} (a zip bomb?): refused", file=file
        )


def _read_excel(path: Path, file: str) -> list[SourceTable]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        _check_zip_bomb(path, file)
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:  # pragma: no cover - optional extra
        raise UnsupportedError(
            "reading Excel files needs python-calamine (pip install 'cim-service[xlsx]')"
        ) from None
    try:
        book = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own error types
        raise InvalidInputError(f"cannot read as Excel workbook: {exc}", file=file) from None
    tables = []
    for sheet_name in book.sheet_names:
        try:
            sheet = book.get_sheet_by_name(sheet_name)
            cells = sheet.to_python()
        except Exception as exc:  # noqa: BLE001 - calamine raises ZipError, XmlError... for a damaged sheet
            raise InvalidInputError(f"cannot read sheet {sheet_name!r}: {exc}", file=file) from None
        if cells and sheet.start is not None:
            table = _sheet_table(file, sheet_name, cells, sheet.start[0] + 1)
            if table is not None:
                tables.append(table)
    if not tables:
        raise InvalidInputError("no data rows in any sheet", file=file)
    return tables


def _sheet_table(file: str, sheet: str, cells: list[list[object]], first_row: int) -> SourceTable | None:
    """A sheet's used area as a table; None when it has no data rows."""
    texts = [[_cell_text(v) for v in row] for row in cells]
    filled = [i for i, row in enumerate(texts) if any(v is not None for v in row)]
    if len(filled) < 2:
        return None
    header_at, data_at = filled[0], filled[1:]
    width = max(len(texts[i]) for i in filled)
    raw_header = texts[header_at] + [None] * (width - len(texts[header_at]))
    names, problems = _header(raw_header, sheet)
    columns = []
    for j in range(width):
        values = [texts[i][j] if j < len(texts[i]) else None for i in data_at]
        columns.append(pa.array(values, pa.string()))
    return SourceTable(
        file=file,
        layer=sheet,
        columns=names,
        table=pa.table(columns, names=names),
        rows=pa.array([first_row + i for i in data_at], pa.int64()),
        encoding=None,
        header_problems=problems,
    )


# ---------------------------------------------------------------------------------------------- GIS


def _pyogrio():
    try:
        import pyogrio
    except ImportError:  # pragma: no cover - optional extra
        raise UnsupportedError(
            "reading Shapefile/GeoPackage needs pyogrio (pip install 'cim-service[gis]')"
        ) from None
    return pyogrio


def _shape_encoding(path: Path, file: str, encoding: str | None) -> str | None:
    """Encoding to read a DBF with: explicit, the .cpg/LDID (GDAL decides), else UTF-8 or GB18030 by its bytes."""
    if encoding:
        return encoding
    dbf = path.with_suffix(".dbf")
    if path.with_suffix(".cpg").exists() or not dbf.exists():
        return None
    data = dbf.read_bytes()
    if len(data) < 32 or data[29] in _CJK_LDIDS:  # GDAL maps these code pages itself
        return None
    header_len = int.from_bytes(data[8:10], "little")
    names = b"".join(data[p : p + 11] for p in range(32, max(header_len - 1, 32), 32))
    text = names + data[header_len:]
    if text.isascii():
        return None
    return "UTF-8" if _is_utf8(text) else "GB18030"


def _read_gpkg(path: Path, file: str) -> list[SourceTable]:
    pyogrio = _pyogrio()
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InvalidInputError(f"cannot read as GeoPackage: {exc}", file=file) from None
    tables = [_read_ogr(path, file, name, name, None) for name in layers if name not in _SKIP_GPKG_LAYERS]
    found = [t for t in tables if t is not None]
    if not found:
        raise InvalidInputError("no data rows in any layer", file=file)
    return found


def _read_ogr(
    path: Path, file: str, layer: str | None, name: str, encoding: str | None
) -> SourceTable | None:
    """One vector layer as text columns plus point coordinates; None when it has no features."""
    pyogrio = _pyogrio()
    try:
        meta, table = pyogrio.read_arrow(path, layer=layer, encoding=encoding)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InvalidInputError(f"cannot read layer {name!r}: {exc}", file=file) from None
    if table.num_rows == 0:
        return None
    fields = [str(f) for f in meta["fields"]]
    positions = [i for i, c in enumerate(table.column_names) if c in set(fields)]  # by position: names repeat
    geometry = [c for c in table.column_names if c not in fields]
    point_xy = _point_xy(table.column(geometry[0])) if geometry and meta.get("geometry_type") else None
    names, problems = _header(fields, name)
    columns = [_blank_to_null(_as_text(table.column(i))) for i in positions]
    return SourceTable(
        file=file,
        layer=name,
        columns=names,
        table=pa.Table.from_arrays(columns, names=names) if columns else table.select([]),
        rows=pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)),
        encoding=encoding or meta.get("encoding"),
        header_problems=problems,
        point_xy=point_xy,
    )


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_floating(col.type):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
    return pc.cast(col, pa.string())


def _point_xy(geometry: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """(easting, northing) of point geometries; None when the layer does not hold points."""
    import shapely

    geoms = shapely.from_wkb(geometry.to_numpy(zero_copy_only=False))
    kinds = shapely.get_type_id(geoms)
    multi = kinds == shapely.GeometryType.MULTIPOINT
    if not np.all((kinds == shapely.GeometryType.POINT) | multi | (kinds == -1)):
        return None
    if multi.any():
        geoms[multi] = shapely.get_geometry(geoms[multi], 0)
    return shapely.get_x(geoms).astype(np.float64), shapely.get_y(geoms).astype(np.float64)
