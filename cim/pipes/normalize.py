"""Normalise raw pipe tables into the staging tables QC and the store read (see :mod:`cim.pipes.staging`).

All work runs in a DuckDB connection, set-wise, so a city of a million segments normalises in
seconds: dictionary look-ups are joins, numbers are ``TRY_CAST`` (failures stay visible to QC),
sizes are parsed once per distinct text, coordinates are transformed with pyproj on arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from cim.crs import CRSLike, get_crs, transform_xy
from cim.errors import CRSError
from cim.localcrs import find_local
from cim.pipes import dictionaries as dic
from cim.pipes.sections import parse_size
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS
from cim.store.duckdb_ import rechunk

#: Offsets added to source heights to reach the 1985 national height datum (EPSG:5737).
VERTICAL_OFFSETS_TO_1985: dict[str, float] = {"EPSG:5737": 0.0, "EPSG:5736": -0.029}



@dataclass(frozen=True)
class StageOptions:
    """How to read the raw values: source CRS, source heights, target CRS."""

    crs_in: CRSLike
    storage_crs: CRSLike
    vertical_in: str = "EPSG:5737"


def _norm(col: str) -> str:
    return dic.NORM_SQL.format(x=col)


def register_dictionaries(con: duckdb.DuckDBPyConnection) -> None:
    """Create the dictionary look-up tables (category, material, burial, status, point types, kinds)."""
    for name, rows in dic.dictionary_rows().items():
        cols = dic.DICTIONARY_COLUMNS[name]
        data = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
        con.register("_dict_arrow", data)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _dict_arrow")
        con.unregister("_dict_arrow")
    kinds = [(m, None, dic.pipe_kind(m, None)) for m in dic.CATEGORIES]
    kinds += [(s.major, code, dic.pipe_kind(s.major, code)) for code, s in dic.SUBTYPES.items()]
    con.execute("CREATE OR REPLACE TEMP TABLE pipe_kinds (major VARCHAR, subtype VARCHAR, kind VARCHAR)")
    con.executemany("INSERT INTO pipe_kinds VALUES (?, ?, ?)", kinds)


def _union(con: duckdb.DuckDBPyConnection, name: str, tables: Sequence[pa.Table], columns: Sequence[str]) -> None:
    schema = pa.schema([(c, pa.int64() if c == "_row" else pa.string()) for c in columns])
    parts = [t.select(list(columns)).cast(schema) for t in tables] or [schema.empty_table()]
    # a real table (not a view over Arrow): the optimizer then knows its size and joins the right way round
    con.register(f"_{name}_arrow", rechunk(pa.concat_tables(parts)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}_arrow")
    con.unregister(f"_{name}_arrow")


def load_raw(
    con: duckdb.DuckDBPyConnection, points: Sequence[pa.Table], lines: Sequence[pa.Table]
) -> None:
    """Load raw point and line tables (contract columns) into ``raw_points`` / ``raw_lines``."""
    _union(con, "raw_points", points, RAW_POINT_COLUMNS)
    _union(con, "raw_lines", lines, RAW_LINE_COLUMNS)


def _num(col: str) -> str:
    return f"TRY_CAST(replace(trim(r.{col}), ',', '') AS DOUBLE)"


def _text(col: str) -> str:
    return f"NULLIF(trim(r.{col}), '')"


_POINT_ATTR_FIELDS = ("cover_size", "cover_shape", "cover_material", "offset_well", "map_sheet", "survey_unit", "remark")
_LINE_ATTR_FIELDS = (
    "code", "cable_count", "hole_count", "used_holes", "protect", "usage", "survey_unit", "survey_date", "remark",
)


def _attrs(fields: Sequence[str]) -> str:
    pairs = ", ".join(f"'{f}', {_text(f)}" for f in fields)
    return (
        f"CASE WHEN r._extra IS NULL THEN json_object({pairs}) "
        f"ELSE json_merge_patch(coalesce(TRY_CAST(r._extra AS JSON), '{{}}'::JSON), json_object({pairs})) END"
    )


def _value_maps(con: duckdb.DuckDBPyConnection) -> None:
    """Resolve each distinct raw category/material/burial/status text once (a city has a handful)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cat_map AS
        SELECT r.category AS raw, r._category AS hint, c1.major IS NOT NULL AS cat_ok,
               coalesce(c1.major, c2.major) AS major,
               CASE WHEN c1.major IS NOT NULL AND c2.major IS NOT NULL AND c1.major <> c2.major THEN c1.subtype
                    ELSE coalesce(c1.subtype, c2.subtype) END AS subtype
        FROM (SELECT DISTINCT category, _category FROM raw_points
              UNION SELECT DISTINCT category, _category FROM raw_lines) r
        LEFT JOIN category_alias c1 ON c1.alias = {_norm('r.category')}
        LEFT JOIN category_alias c2 ON c2.alias = {_norm('r._category')}"""
    )
    for raw in ("raw_points", "raw_lines"):  # raw rows with their resolved major category, for QC messages
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW {raw}_c AS SELECT r.*, cm.major AS _major, cm.cat_ok AS _cat_ok FROM {raw} r
                LEFT JOIN _cat_map cm ON cm.raw IS NOT DISTINCT FROM r.category AND cm.hint IS NOT DISTINCT FROM r._category"""
        )
    for name, table, source in (
        ("material", "material_alias", "SELECT DISTINCT material AS v FROM raw_lines"),
        ("burial", "burial_alias", "SELECT DISTINCT burial AS v FROM raw_lines"),
        ("status", "status_alias", "SELECT DISTINCT status AS v FROM raw_points UNION SELECT DISTINCT status FROM raw_lines"),
    ):
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _{name}_map AS
                SELECT r.v AS raw, a.code FROM ({source}) r LEFT JOIN {table} a ON a.alias = {_norm('r.v')}
                WHERE r.v IS NOT NULL"""
        )


def stage_points(con: duckdb.DuckDBPyConnection, opts: StageOptions) -> None:
    """Build ``stg_points`` from ``raw_points``: trimmed text, numbers, codes, storage-CRS x/y."""
    dz = _vertical_offset(opts.vertical_in)
    same = _same_crs(opts)
    target = "stg_points" if same else "_pts"
    direct_xy = f"{_num('y')} AS x, {_num('x')} AS y," if same else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {target} AS
        SELECT r._file, r._layer, r._row, {direct_xy}
               {_text('point_id')} AS point_id, {_text('map_no')} AS map_no,
               cm.major AS category, cm.subtype AS subtype,
               {_text('feature')} AS feature, {_text('appurtenance')} AS appurtenance, {_text('code')} AS code,
               {_num('y')} AS src_x, {_num('x')} AS src_y,
               {_num('ground_h')} + {dz} AS ground_h, {_num('well_depth')} AS well_depth,
               {_num('well_bottom_h')} + {dz} AS well_bottom_h,
               st.code AS status, {_text('road')} AS road, {_text('survey_date')} AS survey_date,
               {_attrs(_POINT_ATTR_FIELDS)} AS attrs
        FROM raw_points r
        LEFT JOIN _cat_map cm ON cm.raw IS NOT DISTINCT FROM r.category AND cm.hint IS NOT DISTINCT FROM r._category
        LEFT JOIN _status_map st ON st.raw = r.status"""
    )
    if same:  # no transformation: the storage coordinates are the source ones
        return
    src = con.execute("SELECT src_x, src_y FROM _pts").fetchnumpy()
    sx = np.ma.filled(np.ma.asarray(src["src_x"]).astype("f8"), np.nan)  # SQL NULL -> NaN, not 0
    sy = np.ma.filled(np.ma.asarray(src["src_y"]).astype("f8"), np.nan)
    x, y = _to_storage(sx, sy, opts)
    xy = pa.table({"x": pa.array(x, from_pandas=True), "y": pa.array(y, from_pandas=True)})  # NaN -> NULL
    con.register("_xy", rechunk(xy))
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_points AS
           SELECT p._file, p._layer, p._row, p.point_id, p.map_no, p.category, p.subtype,
                  p.feature, p.appurtenance, p.code, xy.x, xy.y, p.src_x, p.src_y,
                  p.ground_h, p.well_depth, p.well_bottom_h, p.status, p.road, p.survey_date, p.attrs
           FROM _pts p POSITIONAL JOIN _xy xy"""
    )
    con.unregister("_xy")
    con.execute("DROP TABLE _pts")


def _same_crs(opts: StageOptions) -> bool:
    return find_local(opts.crs_in) is None and get_crs(opts.crs_in) == get_crs(opts.storage_crs)


def _to_storage(sx: np.ndarray, sy: np.ndarray, opts: StageOptions) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(sx) & np.isfinite(sy)
    x = np.full(sx.shape, np.nan)
    y = np.full(sy.shape, np.nan)
    if ok.any():
        tx, ty = transform_xy(sx[ok], sy[ok], opts.crs_in, opts.storage_crs)
        x[ok], y[ok] = tx, ty
    return x, y


def _vertical_offset(vertical_in: str) -> float:
    code = vertical_in.upper()
    if code not in VERTICAL_OFFSETS_TO_1985:
        raise CRSError(
            f"heights in {vertical_in} cannot be tied to the 1985 datum here "
            f"(known: {sorted(VERTICAL_OFFSETS_TO_1985)})"
        )
    return VERTICAL_OFFSETS_TO_1985[code]


def _register_sizes(con: duckdb.DuckDBPyConnection) -> None:
    texts = [r[0] for r in con.execute("SELECT DISTINCT trim(size) FROM raw_lines WHERE size IS NOT NULL").fetchall()]
    shape, d, w, h = [], [], [], []
    for text in texts:
        sec = parse_size(text)
        shape.append(sec.shape if sec else None)
        d.append(sec.diameter_mm if sec else None)
        w.append(sec.width_mm if sec else None)
        h.append(sec.height_mm if sec else None)
    table = pa.table(
        {"text": pa.array(texts, pa.string()), "shape": pa.array(shape, pa.string()),
         "diameter_mm": pa.array(d, pa.float64()), "width_mm": pa.array(w, pa.float64()),
         "height_mm": pa.array(h, pa.float64())}
    )
    con.register("_sizes_arrow", table)
    con.execute("CREATE OR REPLACE TEMP TABLE size_parsed AS SELECT * FROM _sizes_arrow")
    con.unregister("_sizes_arrow")


def stage_lines(con: duckdb.DuckDBPyConnection, opts: StageOptions) -> None:
    """Build ``stg_lines`` from ``raw_lines``: codes, pipe kind, parsed section, numbers."""
    dz = _vertical_offset(opts.vertical_in)
    _register_sizes(con)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE stg_lines AS
        WITH base AS (
          SELECT r.*, cm.major AS _major, cm.subtype AS _subtype
          FROM raw_lines r
          LEFT JOIN _cat_map cm ON cm.raw IS NOT DISTINCT FROM r.category AND cm.hint IS NOT DISTINCT FROM r._category
        )
        SELECT r._file, r._layer, r._row,
               {_text('line_id')} AS line_id, {_text('start_id')} AS start_id, {_text('end_id')} AS end_id,
               r._major AS category, r._subtype AS subtype,
               coalesce(k1.kind, k2.kind) AS kind,
               sz.shape, sz.diameter_mm, sz.width_mm, sz.height_mm,
               m.code AS material, b.code AS burial, st.code AS status,
               {_num('start_depth')} AS start_depth, {_num('end_depth')} AS end_depth,
               {_num('start_h')} + {dz} AS start_h, {_num('end_h')} + {dz} AS end_h,
               {_text('pressure')} AS pressure, {_text('voltage')} AS voltage, {_text('flow_dir')} AS flow_dir,
               {_text('owner')} AS owner, {_text('year')} AS year, {_text('road')} AS road,
               {_attrs(_LINE_ATTR_FIELDS)} AS attrs
        FROM base r
        LEFT JOIN pipe_kinds k1 ON k1.major = r._major AND k1.subtype = r._subtype
        LEFT JOIN pipe_kinds k2 ON k2.major = r._major AND k2.subtype IS NULL
        LEFT JOIN size_parsed sz ON sz.text = trim(r.size)
        LEFT JOIN _material_map m ON m.raw = r.material
        LEFT JOIN _burial_map b ON b.raw = r.burial
        LEFT JOIN _status_map st ON st.raw = r.status"""
    )


def assemble_segments(con: duckdb.DuckDBPyConnection) -> None:
    """Build ``stg_segments``: lines joined to their end points, centre-line heights, length and slope.

    Centre-line height by pipe kind (domain brief §2.6): gravity = invert + H/2, pressure =
    top − D/2, duct = top − H/2; recorded elevation falls back to ground − depth.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _pt_lookup AS
           SELECT rowid AS prow, point_id, category, x, y, ground_h, feature, appurtenance, _file, _row
           FROM stg_points WHERE point_id IS NOT NULL AND x IS NOT NULL AND y IS NOT NULL
           QUALIFY row_number() OVER (PARTITION BY point_id, category ORDER BY _file, _row) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _pt_any AS
           SELECT * FROM _pt_lookup QUALIFY row_number() OVER (PARTITION BY point_id ORDER BY _file, _row) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stg_segments AS
        WITH j AS (
          SELECT l.*, coalesce(ps.prow, pa.prow) AS start_prow, coalesce(pe.prow, pb.prow) AS end_prow,
                 coalesce(ps.x, pa.x) AS x1, coalesce(ps.y, pa.y) AS y1, coalesce(ps.ground_h, pa.ground_h) AS g1,
                 coalesce(pe.x, pb.x) AS x2, coalesce(pe.y, pb.y) AS y2, coalesce(pe.ground_h, pb.ground_h) AS g2,
                 coalesce(l.start_h, coalesce(ps.ground_h, pa.ground_h) - l.start_depth) AS h1,
                 coalesce(l.end_h, coalesce(pe.ground_h, pb.ground_h) - l.end_depth) AS h2,
                 coalesce(l.height_mm, l.diameter_mm) / 1000.0 AS sec_h
          FROM stg_lines l
          LEFT JOIN _pt_lookup ps ON ps.point_id = l.start_id AND ps.category = l.category
          LEFT JOIN _pt_any pa ON pa.point_id = l.start_id
          LEFT JOIN _pt_lookup pe ON pe.point_id = l.end_id AND pe.category = l.category
          LEFT JOIN _pt_any pb ON pb.point_id = l.end_id
        ), z AS (
          SELECT *,
                 CASE WHEN kind = 'gravity' THEN h1 + coalesce(sec_h, 0) / 2 ELSE h1 - coalesce(sec_h, 0) / 2 END AS start_z,
                 CASE WHEN kind = 'gravity' THEN h2 + coalesce(sec_h, 0) / 2 ELSE h2 - coalesce(sec_h, 0) / 2 END AS end_z,
                 sqrt((x2 - x1) ^ 2 + (y2 - y1) ^ 2) AS length_2d
          FROM j
        )
        SELECT *, sqrt(length_2d ^ 2 + (end_z - start_z) ^ 2) AS length_3d,
               CASE WHEN length_2d > 0 THEN (h2 - h1) / length_2d END AS slope
        FROM z"""
    )


def stage(
    con: duckdb.DuckDBPyConnection,
    points: Sequence[pa.Table],
    lines: Sequence[pa.Table],
    opts: StageOptions,
) -> None:
    """Everything from raw tables to ``stg_points``, ``stg_lines`` and ``stg_segments``."""
    if find_local(opts.crs_in) is None:
        get_crs(opts.crs_in)  # fail early on an unknown CRS
    register_dictionaries(con)
    load_raw(con, points, lines)
    _value_maps(con)
    stage_points(con, opts)
    stage_lines(con, opts)
    assemble_segments(con)
