"""Run the QC catalogue over staged pipe tables (``raw_*``, ``stg_points``, ``stg_segments``).

Each rule is a function returning SQL that yields
``(file, row, feature_id, field, value, message, category, layer)``; the engine adds the rule id and
severity and collects everything in the temp table ``qc_result``. A few rules need Python
(region diagnosis, feature-code checks); they run on distinct values only, so a city-sized
network checks in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from cim.crs import CRSLike
from cim.localcrs import find_local
from cim.pipes import codes as fcodes
from cim.pipes.clearance import CLEARANCE_CLASS_SQL, load_table
from cim.pipes.fields import LINE_FIELDS, POINT_FIELDS
from cim.qc.catalogue import RULES, RULES_BY_ID, Finding, Tolerances
from cim.region import Region, diagnose

RESULT_COLUMNS = "file, row, feature_id, field, value, message, category, layer"


@dataclass
class QCContext:
    """What the rules need besides the tables."""

    storage_crs: CRSLike
    region: Region
    source_kind: str = "survey"
    tolerances: Tolerances = field(default_factory=Tolerances)
    header_problems: list[tuple[str, str, str]] = field(default_factory=list)  # (file, layer, problem)
    pending: dict[str, Future] = field(default_factory=dict)  # work started ahead in worker threads


RuleFn = Callable[[duckdb.DuckDBPyConnection, QCContext], str | None]
_RULES: dict[str, RuleFn] = {}


def rule(rule_id: str) -> Callable[[RuleFn], RuleFn]:
    """Register the SQL builder of a catalogue rule."""
    if rule_id not in RULES_BY_ID:
        raise KeyError(rule_id)

    def wrap(fn: RuleFn) -> RuleFn:
        _RULES[rule_id] = fn
        return fn

    return wrap


def _union_all(parts: list[str]) -> str:
    return " UNION ALL ".join(f"SELECT * FROM ({p})" for p in parts)


def _pt_fid(a: str = "p") -> str:
    return f"{a}.point_id"


def _seg_fid(a: str = "s") -> str:
    return f"coalesce({a}.line_id, coalesce({a}.start_id, '?') || '-' || coalesce({a}.end_id, '?'))"


_NOT_BURIED = "('SJ', 'JK', 'DM', 'ZH', 'RF', 'XTD', 'JN', 'SX')"


# -- table-level rules ------------------------------------------------------------------------------
@rule("header")
def _header(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str | None:
    if not ctx.header_problems:
        return None
    con.execute("CREATE OR REPLACE TEMP TABLE _hdr (file VARCHAR, layer VARCHAR, problem VARCHAR)")
    con.executemany("INSERT INTO _hdr VALUES (?, ?, ?)", ctx.header_problems)
    return "SELECT file, 1, NULL, NULL, NULL, problem, NULL, layer FROM _hdr"


def _labels_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _field_labels (field VARCHAR, label VARCHAR)")
    con.executemany(
        "INSERT INTO _field_labels VALUES (?, ?)", sorted({(f.name, f.label) for f in POINT_FIELDS + LINE_FIELDS})
    )


def _not_null_sql(con: duckdb.DuckDBPyConnection, raw: str, fields: tuple, fid: str) -> str:
    """One scan of ``raw``: every empty mandatory cell, unless the whole column is missing (one finding then)."""
    required = [f.name for f in fields if f.required]
    counts = ", ".join(f"count(NULLIF(trim({f}), '')) AS {f}" for f in required)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _nn_{raw} AS
            UNPIVOT (SELECT _file, _layer, {counts} FROM {raw} GROUP BY ALL) ON {', '.join(required)}
            INTO NAME field VALUE n"""
    )
    empties = ", ".join(f"CASE WHEN NULLIF(trim(r.{f}), '') IS NULL THEN '{f}' END" for f in required)
    return f"""WITH e AS (
                 SELECT r._file, r._layer, r._row, {fid} AS fid, r._major AS _category,
                        unnest(list_filter([{empties}], v -> v IS NOT NULL)) AS field
                 FROM {raw}_c r)
               SELECT e._file, e._row, e.fid, e.field, NULL,
                      'mandatory field ' || l.label || ' (' || e.field || ') is empty', e._category, e._layer
               FROM e JOIN _nn_{raw} c ON c._file = e._file AND c._layer = e._layer AND c.field = e.field AND c.n > 0
                      JOIN _field_labels l ON l.field = e.field
               UNION ALL
               SELECT c._file, NULL, NULL, c.field, NULL,
                      'mandatory column ' || l.label || ' (' || c.field || ') is missing or empty in the whole table',
                      NULL, c._layer
               FROM _nn_{raw} c JOIN _field_labels l ON l.field = c.field WHERE c.n = 0"""


@rule("not_null")
def _not_null(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    _labels_table(con)
    return _union_all(
        [_not_null_sql(con, "raw_points", POINT_FIELDS, "r.point_id"),
         _not_null_sql(con, "raw_lines", LINE_FIELDS, _seg_fid("r"))]
    )


@rule("numeric")
def _numeric(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    _labels_table(con)
    parts = []
    for raw, fields, fid in (("raw_points", POINT_FIELDS, "r.point_id"), ("raw_lines", LINE_FIELDS, _seg_fid("r"))):
        names = [f.name for f in fields if f.kind in ("number", "int")]
        bad = ", ".join(
            f"CASE WHEN NULLIF(trim(r.{f}), '') IS NOT NULL AND TRY_CAST(replace(trim(r.{f}), ',', '') AS DOUBLE) IS NULL "
            f"THEN {{'field': '{f}', 'value': r.{f}}} END"
            for f in names
        )
        parts.append(
            f"""WITH e AS (
                  SELECT r._file, r._layer, r._row, {fid} AS fid, r._major AS _category,
                         unnest(list_filter([{bad}], v -> v IS NOT NULL)) AS b
                  FROM {raw}_c r)
                SELECT e._file, e._row, e.fid, e.b.field, e.b.value,
                       l.label || ' (' || e.b.field || ') is not a number: ' || e.b.value, e._category, e._layer
                FROM e JOIN _field_labels l ON l.field = e.b.field"""
        )
    parts.append(
        f"""SELECT r._file, r._row, {_seg_fid('r')}, 'size', r.size,
                   '管径/断面 (size) cannot be read as a diameter or W×H section: ' || r.size, r._major, r._layer
            FROM raw_lines_c r JOIN size_parsed z ON z.text = trim(r.size) WHERE z.shape IS NULL"""
    )
    return _union_all(parts)


# -- point rules ------------------------------------------------------------------------------------
@rule("map_no_mismatch")
def _map_no(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return """SELECT _file, _row, point_id, 'map_no', map_no,
                     '图上点号 ' || map_no || ' differs from 物探点号 ' || point_id, category, _layer
              FROM stg_points WHERE map_no IS NOT NULL AND point_id IS NOT NULL AND map_no <> point_id"""


@rule("duplicate_point_id")
def _dup_point(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return """WITH d AS (
                SELECT *, count(*) OVER w AS n, first_value(_row) OVER w AS first_row,
                       first_value(_file) OVER w AS first_file,
                       count(DISTINCT hash(x, y, ground_h, feature, appurtenance)) OVER (PARTITION BY point_id, coalesce(category, '')) AS variants,
                       row_number() OVER w AS k
                FROM stg_points WHERE point_id IS NOT NULL
                WINDOW w AS (PARTITION BY point_id, coalesce(category, '') ORDER BY _file, _row))
              SELECT _file, _row, point_id, 'point_id', point_id,
                     '物探点号 ' || point_id || ' appears ' || n || ' times (first at ' || first_file || ' row ' || first_row || '); '
                     || CASE WHEN variants > 1 THEN 'the rows differ in position or type' ELSE 'the rows are identical' END,
                     category, _layer
              FROM d WHERE n > 1 AND k > 1"""


@rule("duplicate_coordinates")
def _dup_xy(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    q = max(ctx.tolerances.duplicate_xy_m, 1e-6)
    return f"""WITH d AS (
                SELECT *, count(DISTINCT point_id) OVER w AS n, first_value(point_id) OVER w AS first_id,
                       row_number() OVER w AS k
                FROM stg_points WHERE x IS NOT NULL AND y IS NOT NULL AND point_id IS NOT NULL
                WINDOW w AS (PARTITION BY round(x / {q}), round(y / {q}), round(coalesce(ground_h, -9999) / {q})
                             ORDER BY _file, _row))
              SELECT _file, _row, point_id, 'x', CAST(round(x, 3) AS VARCHAR) || ',' || CAST(round(y, 3) AS VARCHAR),
                     'point ' || point_id || ' has the same X, Y and H as point ' || first_id, category, _layer
              FROM d WHERE n > 1 AND k > 1 AND point_id <> first_id"""


@rule("feature_xor_appurtenance")
def _xor(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return """SELECT _file, _row, point_id, CASE WHEN feature IS NULL THEN 'feature' ELSE 'appurtenance' END,
                     coalesce(feature, '') || '|' || coalesce(appurtenance, ''),
                     CASE WHEN feature IS NULL THEN 'neither 特征 nor 附属物 is given'
                          ELSE 'both 特征 (' || feature || ') and 附属物 (' || appurtenance || ') are given' END,
                     category, _layer
              FROM stg_points WHERE (feature IS NULL) = (appurtenance IS NULL)"""


@rule("code_consistency")
def _code(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str | None:
    combos = con.execute(
        """SELECT DISTINCT code, category, subtype, 'point' AS element,
                  CASE WHEN feature IS NOT NULL AND appurtenance IS NULL THEN 'feature'
                       WHEN appurtenance IS NOT NULL AND feature IS NULL THEN 'appurtenance' END AS point_kind,
                  coalesce(appurtenance, feature) AS type_name
           FROM stg_points WHERE code IS NOT NULL
           UNION ALL
           SELECT DISTINCT json_extract_string(attrs, '$.code'), category, subtype, 'line', NULL, NULL
           FROM stg_lines WHERE json_extract_string(attrs, '$.code') IS NOT NULL"""
    ).fetchall()
    bad = []
    for code, major, subtype, element, point_kind, type_name in combos:
        if major is None:
            continue
        problems = fcodes.check_code(
            code, major=major, subtype=subtype, element=element, point_kind=point_kind, point_type_name=type_name
        )
        if problems:
            bad.append((code, major, subtype, element, type_name, "; ".join(problems)))
    if not bad:
        return None
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _badcode (code VARCHAR, category VARCHAR, subtype VARCHAR,
           element VARCHAR, type_name VARCHAR, problem VARCHAR)"""
    )
    con.executemany("INSERT INTO _badcode VALUES (?, ?, ?, ?, ?, ?)", bad)
    return """SELECT p._file, p._row, p.point_id, 'code', p.code, '点编码 ' || p.code || ': ' || b.problem, p.category, p._layer
              FROM stg_points p JOIN _badcode b ON b.element = 'point' AND b.code = p.code AND b.category = p.category
                   AND b.subtype IS NOT DISTINCT FROM p.subtype
                   AND b.type_name IS NOT DISTINCT FROM coalesce(p.appurtenance, p.feature)
              UNION ALL
              SELECT l._file, l._row, """ + _seg_fid("l") + """, 'code', json_extract_string(l.attrs, '$.code'),
                     '线编码 ' || json_extract_string(l.attrs, '$.code') || ': ' || b.problem, l.category, l._layer
              FROM stg_lines l JOIN _badcode b ON b.element = 'line' AND b.code = json_extract_string(l.attrs, '$.code')
                   AND b.category = l.category AND b.subtype IS NOT DISTINCT FROM l.subtype"""


@rule("orphan_point")
def _orphan(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return """WITH used AS (SELECT start_id AS id FROM stg_lines WHERE start_id IS NOT NULL
                            UNION SELECT end_id FROM stg_lines WHERE end_id IS NOT NULL)
              SELECT p._file, p._row, p.point_id, 'point_id', p.point_id,
                     'point ' || p.point_id || ' is used by no segment (孤立点)', p.category, p._layer
              FROM stg_points p
              LEFT JOIN point_type t ON t.alias = lower(trim(replace(coalesce(p.appurtenance, p.feature), ' ', '')))
              WHERE p.point_id IS NOT NULL AND p.point_id NOT IN (SELECT id FROM used)
                AND NOT coalesce(t.standalone, FALSE)"""


@rule("crs_region")
def _region(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str | None:
    data = con.execute(
        "SELECT rowid, x, y, src_x, src_y FROM stg_points WHERE x IS NOT NULL AND y IS NOT NULL"
    ).fetchnumpy()
    if len(data["x"]) == 0:
        return None
    inside = ctx.region.contains(data["x"], data["y"], ctx.storage_crs)
    out = np.flatnonzero(~inside)
    if out.size == 0:
        return None
    crs_in = con.execute("SELECT value FROM _qc_meta WHERE key = 'crs_in'").fetchone()[0]
    local = find_local(crs_in) is not None  # city systems are diagnosed in the storage CRS
    xs, ys = (data["x"], data["y"]) if local else (data["src_x"], data["src_y"])
    messages = []
    for n, i in enumerate(out):
        if n < 2000:
            msg = diagnose(float(xs[i]), float(ys[i]), ctx.storage_crs if local else crs_in, ctx.region)
        else:
            msg = f"outside {ctx.region.name} (further rows not diagnosed)"
        messages.append(msg)
    con.register("_outside", pa.table({"rid": data["rowid"][out], "msg": messages}))
    con.execute("CREATE OR REPLACE TEMP TABLE _region_out AS SELECT * FROM _outside")
    con.unregister("_outside")
    return """SELECT p._file, p._row, p.point_id, 'x', CAST(p.src_y AS VARCHAR) || ',' || CAST(p.src_x AS VARCHAR),
                     'X=' || CAST(p.src_y AS VARCHAR) || ' Y=' || CAST(p.src_x AS VARCHAR) || ': ' || o.msg, p.category, p._layer
              FROM stg_points p JOIN _region_out o ON o.rid = p.rowid"""


@rule("dictionary_value")
def _dictionary(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    # every distinct raw value was resolved once in staging (_cat_map, _status_map, ...): join on the text
    checks = []
    for raw, fid in (("raw_points", "r.point_id"), ("raw_lines", _seg_fid("r"))):
        checks.append(
            f"""SELECT r._file, r._row, {fid}, 'category', r.category,
                       '管线类别 ' || r.category || ' is not a CJJ 61-2017 Appendix B category', r._major, r._layer
                FROM {raw}_c r WHERE r.category IS NOT NULL AND NOT r._cat_ok"""
        )
        checks.append(
            f"""SELECT r._file, r._row, {fid}, 'status', r.status,
                       '状态 ' || r.status || ' is not 0 在用, 1 废弃, 2 空管 or 3 其他', r._major, r._layer
                FROM {raw}_c r JOIN _status_map m ON m.raw = r.status WHERE m.code IS NULL"""
        )
        checks.append(
            f"""SELECT _file, _row, {fid}, 'category', _category,
                       'no category: neither a 管线类别 column nor the layer name gives one', NULL, _layer
                FROM {raw}_c r WHERE _major IS NULL AND (category IS NULL OR _cat_ok)"""
        )
    for col, label in (("material", "材质"), ("burial", "埋设方式")):
        checks.append(
            f"""SELECT r._file, r._row, {_seg_fid('r')}, '{col}', r.{col},
                       '{label} ' || r.{col} || ' is not a CJJ 61-2017 Appendix C value', r._major, r._layer
                FROM raw_lines_c r JOIN _{col}_map m ON m.raw = r.{col} WHERE m.code IS NULL"""
        )
    for col, label in (("feature", "特征"), ("appurtenance", "附属物")):
        checks.append(
            f"""SELECT p._file, p._row, p.point_id, '{col}', p.{col},
                       '{label} ' || p.{col} || ' is not a known point type', p.category, p._layer
                FROM stg_points p LEFT JOIN point_type t ON t.alias = lower(trim(replace(p.{col}, ' ', '')))
                WHERE p.{col} IS NOT NULL AND t.alias IS NULL"""
        )
    return _union_all(checks)


# -- segment rules ----------------------------------------------------------------------------------
@rule("missing_end_id")
def _missing_end(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return f"""SELECT _file, _row, {_seg_fid('s')}, CASE WHEN start_id IS NULL THEN 'start_id' ELSE 'end_id' END, NULL,
                      CASE WHEN start_id IS NULL AND end_id IS NULL THEN '起点点号 and 终点点号 are empty'
                           WHEN start_id IS NULL THEN '起点点号 is empty' ELSE '终点点号 is empty' END,
                      category, _layer
               FROM stg_lines s WHERE start_id IS NULL OR end_id IS NULL"""


@rule("zero_length")
def _zero(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.min_length_m
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'end_id', end_id,
                      CASE WHEN start_id = end_id THEN 'start and end are the same point ' || start_id || ' (self loop)'
                           ELSE 'segment is ' || round(length_3d, 3) || ' m long (< {tol} m)' END,
                      category, _layer
               FROM stg_segments s
               WHERE start_id = end_id OR (length_3d IS NOT NULL AND length_3d < {tol})"""


@rule("duplicate_segment")
def _dup_seg(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return f"""WITH d AS (
                 SELECT *, count(*) OVER w AS n, row_number() OVER w AS k, first_value(_row) OVER w AS first_row,
                        first_value(start_id) OVER w AS first_start
                 FROM stg_lines WHERE start_id IS NOT NULL AND end_id IS NOT NULL AND start_id <> end_id
                 WINDOW w AS (PARTITION BY least(start_id, end_id), greatest(start_id, end_id), coalesce(category, '')
                              ORDER BY _file, _row))
               SELECT _file, _row, {_seg_fid('d')}, 'start_id', start_id || '→' || end_id,
                      'segment ' || start_id || '→' || end_id || ' duplicates the one at row ' || first_row
                      || CASE WHEN first_start <> start_id THEN ' (reversed)' ELSE '' END,
                      category, _layer
               FROM d WHERE n > 1 AND k > 1"""


@rule("dangling_reference")
def _dangling(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'start_id', start_id,
                      '起点点号 ' || start_id || ' is not in the point table', category, _layer
               FROM stg_segments s WHERE start_id IS NOT NULL AND x1 IS NULL
               UNION ALL
               SELECT _file, _row, {_seg_fid('s')}, 'end_id', end_id,
                      '终点点号 ' || end_id || ' is not in the point table', category, _layer
               FROM stg_segments s WHERE end_id IS NOT NULL AND x2 IS NULL"""


@rule("elevation_identity")
def _identity(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.elevation_identity_m
    parts = []
    for end, g, zh, label in (("start", "g1", "start", "起点"), ("end", "g2", "end", "终点")):
        parts.append(
            f"""SELECT _file, _row, {_seg_fid('s')}, '{zh}_h', CAST({zh}_h AS VARCHAR),
                       '{label}: ground ' || round({g}, 3) || ' − depth ' || round({end}_depth, 3) || ' = '
                       || round({g} - {end}_depth, 3) || ' but the recorded elevation is ' || round({zh}_h, 3),
                       category, _layer
                FROM stg_segments s
                WHERE {g} IS NOT NULL AND {end}_depth IS NOT NULL AND {zh}_h IS NOT NULL
                  AND abs({g} - {end}_depth - {zh}_h) > {tol} + 1e-9"""
        )
    return _union_all(parts)


def _ends_sql() -> str:
    """One row per segment end: the point, the segment, the elevation recorded there."""
    return f"""SELECT start_id AS pid, category, {_seg_fid('s')} AS sid, _file, _row, _layer, start_h AS h,
                      coalesce(height_mm, diameter_mm) AS size, kind, 'start' AS side, start_depth AS depth
               FROM stg_segments s WHERE start_id IS NOT NULL AND start_id <> coalesce(end_id, '')
               UNION ALL
               SELECT end_id, category, {_seg_fid('s')}, _file, _row, _layer, end_h,
                      coalesce(height_mm, diameter_mm), kind, 'end', end_depth
               FROM stg_segments s WHERE end_id IS NOT NULL AND end_id <> coalesce(start_id, '')"""


@rule("shared_point_consistency")
def _shared(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.shared_point_m
    return f"""WITH e AS ({_ends_sql()}),
               p AS (SELECT p.point_id, p.category, p._file, p._row, p._layer, p.feature,
                            coalesce(t.is_chamber, FALSE) AS chamber, t.name AS type_name
                     FROM stg_points p
                     LEFT JOIN point_type t ON t.alias = lower(trim(replace(coalesce(p.appurtenance, p.feature), ' ', '')))
                     QUALIFY row_number() OVER (PARTITION BY p.point_id, p.category ORDER BY p._file, p._row) = 1),
               g AS (SELECT e.pid, e.category, max(e.h) - min(e.h) AS dh, count(DISTINCT e.size) AS sizes,
                            count(*) AS n,
                            string_agg(e.sid || '@' || round(e.h, 3), ', ') AS detail
                     FROM e GROUP BY e.pid, e.category HAVING count(*) > 1)
               SELECT p._file, p._row, p.point_id, CASE WHEN g.dh > {tol} THEN 'elevation' ELSE 'size' END, g.detail,
                      CASE WHEN g.dh > {tol} THEN 'segments meeting at ' || p.point_id || ' record elevations differing by '
                                || round(g.dh, 3) || ' m (' || g.detail || ')'
                           ELSE 'segments meeting at ' || p.point_id || ' have different sections but the point is not 变径' END,
                      p.category, p._layer
               FROM g JOIN p ON p.point_id = g.pid AND p.category IS NOT DISTINCT FROM g.category
               WHERE NOT p.chamber
                 AND (g.dh > {tol} OR (g.n = 2 AND g.sizes > 1 AND coalesce(p.type_name, '') NOT IN ('变径', '变材')))"""


@rule("depth_range")
def _depth(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    t = ctx.tolerances
    cover_cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in t.min_cover_m.items())
    parts = []
    for end, label in (("start", "起点"), ("end", "终点")):
        d = f"{end}_depth"
        cover = f"CASE WHEN kind = 'gravity' THEN {d} - coalesce(height_mm, diameter_mm, 0) / 1000.0 ELSE {d} END"
        parts.append(
            f"""SELECT _file, _row, {_seg_fid('s')}, '{d}', CAST({d} AS VARCHAR),
                       CASE WHEN {d} <= 0 THEN '{label}埋深 ' || {d} || ' m is not positive for a buried pipe'
                            WHEN {d} > {t.max_depth_m} THEN '{label}埋深 ' || {d} || ' m exceeds {t.max_depth_m} m'
                            ELSE '{label} cover ' || round({cover}, 3) || ' m is below the minimum '
                                 || (CASE category {cover_cases} END) || ' m for ' || category END,
                       category, _layer
                FROM stg_segments s
                WHERE {d} IS NOT NULL AND coalesce(burial, '') NOT IN {_NOT_BURIED}
                  AND ({d} <= 0 OR {d} > {t.max_depth_m}
                       OR {cover} < (CASE category {cover_cases} ELSE -1e9 END) - 1e-9)"""
        )
    return _union_all(parts)


@rule("long_segment")
def _long(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.long_segment_m
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'length', CAST(round(length_3d, 2) AS VARCHAR),
                      'segment is ' || round(length_3d, 2) || ' m long (> {tol} m)', category, _layer
               FROM stg_segments s WHERE length_3d > {tol}"""


@rule("steep_segment")
def _steep(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.steep_angle_deg
    ang = "degrees(atan2(abs(end_z - start_z), length_2d))"
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'slope', CAST(round({ang}, 1) AS VARCHAR),
                      'segment slopes ' || round({ang}, 1) || '° (> {tol}°)', category, _layer
               FROM stg_segments s WHERE length_2d > 0 AND {ang} > {tol}"""


@rule("valence")
def _valence(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    return f"""WITH e AS ({_ends_sql()}),
               n AS (SELECT pid, category, count(*) AS deg FROM e GROUP BY ALL)
               SELECT p._file, p._row, p.point_id, 'feature', p.feature,
                      '特征 ' || p.feature || ' expects ' || t.valence_min
                      || CASE WHEN t.valence_max IS NULL THEN ' or more' WHEN t.valence_max <> t.valence_min
                              THEN '–' || t.valence_max ELSE '' END
                      || ' segments but ' || coalesce(n.deg, 0) || ' meet here', p.category, p._layer
               FROM stg_points p
               JOIN point_type t ON t.alias = lower(trim(replace(p.feature, ' ', '')))
               LEFT JOIN n ON n.pid = p.point_id AND n.category IS NOT DISTINCT FROM p.category
               WHERE p.appurtenance IS NULL AND t.valence_min IS NOT NULL AND coalesce(n.deg, 0) > 0
                 AND (coalesce(n.deg, 0) < t.valence_min OR coalesce(n.deg, 0) > coalesce(t.valence_max, 1000000))"""


_REVERSED_FLOW = "lower(coalesce(flow_dir, '')) IN ('-1', 'reverse', 'reversed', '反向', '逆向', 'end→start', 'e-s')"


def _gravity_h(side: str) -> str:
    """Upstream/downstream recorded invert honouring a reversed flow direction."""
    a, b = ("start_h", "end_h") if side == "up" else ("end_h", "start_h")
    return f"CASE WHEN {_REVERSED_FLOW} THEN {b} ELSE {a} END"


@rule("reversed_slope")
def _reversed(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.reversed_slope_m
    up, down = _gravity_h("up"), _gravity_h("down")
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'end_h', CAST({down} AS VARCHAR),
                      '倒坡: the invert rises along the flow from ' || round({up}, 3) || ' to ' || round({down}, 3) || ' m',
                      category, _layer
               FROM stg_segments s WHERE kind = 'gravity' AND {down} > {up} + {tol}"""


@rule("under_slope")
def _under(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    up, down = _gravity_h("up"), _gravity_h("down")
    dmm = "coalesce(height_mm, diameter_mm)"
    minslope = f"CASE WHEN {dmm} <= 300 THEN 0.003 ELSE greatest(0.0005, 0.9 / {dmm}) END"
    tol = ctx.tolerances.reversed_slope_m
    return f"""SELECT _file, _row, {_seg_fid('s')}, 'slope', CAST(round(({up} - {down}) / length_2d, 5) AS VARCHAR),
                      'slope ' || round(({up} - {down}) / length_2d, 5) || ' is below the minimum '
                      || round({minslope}, 4) || ' for D' || {dmm}, category, _layer
               FROM stg_segments s
               WHERE kind = 'gravity' AND length_2d > 1 AND {dmm} IS NOT NULL
                 AND {down} <= {up} + {tol} AND ({up} - {down}) / length_2d < {minslope} - 1e-9"""


@rule("diameter_decrease")
def _decrease(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    flow = f"""SELECT *, CASE WHEN {_REVERSED_FLOW} THEN end_id ELSE start_id END AS up_id,
                         CASE WHEN {_REVERSED_FLOW} THEN start_id ELSE end_id END AS down_id,
                         coalesce(height_mm, diameter_mm) AS d
               FROM stg_segments WHERE kind = 'gravity'"""
    return f"""WITH f AS ({flow}),
               inflow AS (SELECT down_id AS node, category, max(d) AS d_in FROM f GROUP BY ALL)
               SELECT f._file, f._row, {_seg_fid('f')}, 'size', CAST(f.d AS VARCHAR),
                      'D' || f.d || ' leaves ' || f.up_id || ' where D' || i.d_in || ' flows in (管径逆变)', f.category, f._layer
               FROM f JOIN inflow i ON i.node = f.up_id AND i.category IS NOT DISTINCT FROM f.category
               WHERE f.d < i.d_in"""


@rule("invert_above_ground")
def _above(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.elevation_identity_m
    parts = []
    for end, g, label in (("start", "g1", "起点"), ("end", "g2", "终点")):
        parts.append(
            f"""SELECT _file, _row, {_seg_fid('s')}, '{end}_h', CAST({end}_h AS VARCHAR),
                       '{label} pipe elevation ' || round({end}_h, 3) || ' m is above the ground ' || round({g}, 3) || ' m',
                       category, _layer
                FROM stg_segments s
                WHERE {end}_h IS NOT NULL AND {g} IS NOT NULL AND {end}_h > {g} + {tol}
                  AND coalesce(burial, '') NOT IN {_NOT_BURIED}"""
        )
    parts.append(
        f"""WITH e AS ({_ends_sql()}),
           inv AS (SELECT pid, category, min(h) AS h FROM e WHERE kind = 'gravity' GROUP BY ALL)
           SELECT p._file, p._row, p.point_id, 'well_depth', CAST(p.well_depth AS VARCHAR),
                  'chamber bottom ' || round(coalesce(p.well_bottom_h, p.ground_h - p.well_depth), 3)
                  || ' m is above the lowest invert ' || round(i.h, 3) || ' m', p.category, p._layer
           FROM stg_points p JOIN inv i ON i.pid = p.point_id AND i.category IS NOT DISTINCT FROM p.category
           WHERE coalesce(p.well_bottom_h, p.ground_h - p.well_depth) > i.h + {tol}"""
    )
    return _union_all(parts)


def _crossing_input(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Segment ends and heights the crossing search needs, as numpy arrays."""
    return con.execute(
        """SELECT rowid AS rid, x1, y1, x2, y2, start_z, end_z,
                  coalesce(start_prow, -1 - rowid) AS a, coalesce(end_prow, -2 - rowid) AS b
           FROM stg_segments WHERE x1 IS NOT NULL AND x2 IS NOT NULL AND length_2d > 0
             AND start_z IS NOT NULL AND end_z IS NOT NULL"""
    ).fetchnumpy()


def crossing_pairs(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Segment pairs crossing in plan without sharing an end point, with both heights at the crossing.

    Candidates come from a shapely STRtree envelope query; the crossing itself is solved in numpy,
    so a million segments take seconds. Pure function of arrays: safe to run in a worker thread.
    """
    import shapely

    empty = {"ra": np.array([], np.int64), "rb": np.array([], np.int64), "za": np.array([]), "zb": np.array([])}
    if len(d["rid"]) < 2:
        return empty
    coords = np.stack([np.column_stack([d["x1"], d["y1"]]), np.column_stack([d["x2"], d["y2"]])], axis=1)
    i, j = shapely.STRtree(shapely.linestrings(coords)).query(shapely.linestrings(coords))
    keep = i < j
    i, j = i[keep], j[keep]
    a, b = d["a"], d["b"]
    shared = (a[i] == a[j]) | (a[i] == b[j]) | (b[i] == a[j]) | (b[i] == b[j])
    i, j = i[~shared], j[~shared]
    p = np.column_stack([d["x1"], d["y1"]])
    r = np.column_stack([d["x2"] - d["x1"], d["y2"] - d["y1"]])
    cross = r[i, 0] * r[j, 1] - r[i, 1] * r[j, 0]
    ok = np.abs(cross) > 1e-12  # collinear overlaps are not crossings
    i, j, cross = i[ok], j[ok], cross[ok]
    qp = p[j] - p[i]
    t = (qp[:, 0] * r[j, 1] - qp[:, 1] * r[j, 0]) / cross
    u = (qp[:, 0] * r[i, 1] - qp[:, 1] * r[i, 0]) / cross
    eps = 1e-9
    hit = (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    i, j, t, u = i[hit], j[hit], t[hit], u[hit]
    return {
        "ra": d["rid"][i], "rb": d["rid"][j],
        "za": d["start_z"][i] + (d["end_z"][i] - d["start_z"][i]) * np.clip(t, 0, 1),
        "zb": d["start_z"][j] + (d["end_z"][j] - d["start_z"][j]) * np.clip(u, 0, 1),
    }


def _segment_crossings(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> None:
    """Temp table ``_crossings(ra, rb, za, zb)``, from the worker started by :func:`run_qc` if any."""
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_crossings'").fetchone()[0]:
        return
    future = ctx.pending.pop("crossings", None)
    pairs = future.result() if future is not None else crossing_pairs(_crossing_input(con))
    con.register("_crossings_arrow", pa.table(pairs))
    con.execute("CREATE OR REPLACE TEMP TABLE _crossings AS SELECT * FROM _crossings_arrow")
    con.unregister("_crossings_arrow")


def _crossings_sql(con: duckdb.DuckDBPyConnection, ctx: QCContext, same: bool) -> str:
    """Crossing pairs of the same system (``same``) or of different categories, with the outer gap.

    Each pair appears in both orders, so both segments carry the finding (and its QC flag).
    """
    _segment_crossings(con, ctx)
    cmp = "a.category = b.category AND a.subtype IS NOT DISTINCT FROM b.subtype" if same else "a.category <> b.category"
    return f"""SELECT a._file, a._row, a._layer, a.category AS cat_a, b.category AS cat_b,
                      {_seg_fid('a')} AS fa, {_seg_fid('b')} AS fb, b._row AS row_b,
                      ({CLEARANCE_CLASS_SQL.format(s='a')}) AS cls_a, ({CLEARANCE_CLASS_SQL.format(s='b')}) AS cls_b,
                      abs(c.za - c.zb) - coalesce(a.height_mm, a.diameter_mm, 0) / 2000.0
                        - coalesce(b.height_mm, b.diameter_mm, 0) / 2000.0 AS gap
               FROM (SELECT ra, rb, za, zb FROM _crossings UNION ALL SELECT rb, ra, zb, za FROM _crossings) c
               JOIN stg_segments a ON a.rowid = c.ra JOIN stg_segments b ON b.rowid = c.rb
               WHERE {cmp}"""


@rule("crossing_without_junction")
def _crossing(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    tol = ctx.tolerances.crossing_gap_m
    return f"""SELECT _file, _row, fa, 'end_id', fb,
                      fa || ' crosses ' || fb || ' (row ' || row_b || ') with an outer gap of ' || round(gap, 3)
                      || ' m and no shared point: missing junction node?', cat_a, _layer
               FROM ({_crossings_sql(con, ctx, True)}) WHERE gap < {tol}"""


@rule("clearance")
def _clearance(con: duckdb.DuckDBPyConnection, ctx: QCContext) -> str:
    cells = load_table()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _vclear (a VARCHAR, b VARCHAR, m DOUBLE, conf VARCHAR, src VARCHAR)"
    )
    con.executemany(
        "INSERT INTO _vclear VALUES (?, ?, ?, ?, ?)",
        [(c.class_a, c.class_b, c.clearance_m, c.confidence, c.source) for c in cells],
    )
    return f"""SELECT x._file, x._row, x.fa, 'vertical_clearance', CAST(round(x.gap, 3) AS VARCHAR),
                      x.fa || ' (' || x.cls_a || ') crosses ' || x.fb || ' (' || x.cls_b || ') with '
                      || round(x.gap, 3) || ' m vertical clearance < ' || v.m
                      || ' m (GB 50289-2016 Table 4.1.14, ' || v.conf || ')', x.cat_a, x._layer
               FROM ({_crossings_sql(con, ctx, False)}) x JOIN _vclear v ON v.a = x.cls_a AND v.b = x.cls_b
               WHERE x.gap < v.m - 1e-9"""


# -- the engine -------------------------------------------------------------------------------------
def run_qc(
    con: duckdb.DuckDBPyConnection,
    ctx: QCContext,
    *,
    crs_in: CRSLike,
    on_rule: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Run every applicable rule; results go to temp table ``qc_result``. Returns counts by rule.

    ``on_rule`` is called with each rule id before it runs (progress reporting).
    """
    con.execute("CREATE OR REPLACE TEMP TABLE _qc_meta (key VARCHAR, value VARCHAR)")
    con.execute("INSERT INTO _qc_meta VALUES ('crs_in', ?)", [str(crs_in)])
    con.execute(
        """CREATE OR REPLACE TEMP TABLE qc_result (rule_id VARCHAR, severity VARCHAR, file VARCHAR, row BIGINT,
           feature_id VARCHAR, field VARCHAR, value VARCHAR, message VARCHAR, category VARCHAR, layer VARCHAR)"""
    )
    counts: dict[str, int] = {}
    wanted = {r.id for r in RULES if ctx.source_kind in r.applies_to}
    with ThreadPoolExecutor(max_workers=1) as pool:
        if wanted & {"crossing_without_junction", "clearance"}:  # geometry work overlaps the SQL rules
            ctx.pending["crossings"] = pool.submit(crossing_pairs, _crossing_input(con))
        _run_rules(con, ctx, counts, on_rule)
    return counts


def _run_rules(
    con: duckdb.DuckDBPyConnection, ctx: QCContext, counts: dict[str, int], on_rule: Callable[[str], None] | None
) -> None:
    for r in RULES:
        if ctx.source_kind not in r.applies_to:
            continue
        if on_rule:
            on_rule(r.id)
        sql = _RULES[r.id](con, ctx)
        if sql is None:
            counts[r.id] = 0
            continue
        before = con.execute("SELECT count(*) FROM qc_result").fetchone()[0]
        con.execute(
            f"INSERT INTO qc_result SELECT '{r.id}', '{r.severity.value}', * FROM ({sql})"
        )
        counts[r.id] = con.execute("SELECT count(*) FROM qc_result").fetchone()[0] - before


def rules_run(source_kind: str) -> list[str]:
    """Ids of the rules that apply to a source kind."""
    return [r.id for r in RULES if source_kind in r.applies_to]


def fetch_findings(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[Finding]:
    """Findings from ``qc_result`` ordered by severity, file and row."""
    sql = f"""SELECT rule_id, severity, file, row, feature_id, field, value, message, category, layer
              FROM qc_result ORDER BY CASE severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                                      file, row, rule_id{f' LIMIT {int(limit)}' if limit else ''}"""
    return [Finding(*row) for row in con.execute(sql).fetchall()]
