"""The staging contract between pipe readers, normalisation, QC and the store.

Readers (``converters.pipes``, ``converters.network``) deliver *raw* tables: canonical column
names from :mod:`cim.pipes.fields`, every value text (``None`` for empty), plus bookkeeping:

* ``_file``  – source file name as the user gave it
* ``_layer`` – layer/sheet/table name inside the file (``JSPOINT``...), or the file stem
* ``_row``   – the row a user sees: spreadsheet/CSV line with the header as row 1 (first data row is 2);
  1-based feature index for Shapefile/GeoPackage
* ``_category`` – category or sub-type code hinted by the layer name (``JS``, ``YS``, ``GD``) or ``None``
* ``_extra`` – JSON text of the source columns no alias matched (kept, never dropped)

Normalisation turns raw tables into ``stg_points`` / ``stg_lines`` (DDL below) inside a DuckDB
connection; QC rules read those tables (and the raw ones for the original text of a bad value);
the store copies them into ``pipe_points`` / ``pipe_segments``.
"""

from __future__ import annotations

from cim.pipes.fields import LINE_FIELDS, POINT_FIELDS

BOOKKEEPING = ("_file", "_layer", "_row", "_category", "_extra")

RAW_POINT_COLUMNS: tuple[str, ...] = BOOKKEEPING + tuple(f.name for f in POINT_FIELDS)
RAW_LINE_COLUMNS: tuple[str, ...] = BOOKKEEPING + tuple(f.name for f in LINE_FIELDS)

#: Normalised points. x = easting, y = northing, both in the storage CRS; heights 1985 (m).
STG_POINTS_DDL = """
CREATE TEMP TABLE stg_points (
    _file VARCHAR, _layer VARCHAR, _row BIGINT,
    point_id VARCHAR, map_no VARCHAR,
    category VARCHAR,        -- major code JS/PS/RQ/RL/DL/TX/GY/QT, NULL if unknown
    subtype VARCHAR,         -- sub-type code YS/WS/GD..., NULL if not given
    feature VARCHAR, appurtenance VARCHAR, code VARCHAR,
    x DOUBLE, y DOUBLE,      -- storage CRS easting / northing
    src_x DOUBLE, src_y DOUBLE,  -- as delivered after axis handling (easting, northing) in the source CRS
    ground_h DOUBLE, well_depth DOUBLE, well_bottom_h DOUBLE,
    status INTEGER, road VARCHAR, survey_date VARCHAR,
    attrs JSON               -- remaining canonical text fields + _extra
)
"""

#: Normalised segments, before they meet their points.
STG_LINES_DDL = """
CREATE TEMP TABLE stg_lines (
    _file VARCHAR, _layer VARCHAR, _row BIGINT,
    line_id VARCHAR, start_id VARCHAR, end_id VARCHAR,
    category VARCHAR, subtype VARCHAR,
    kind VARCHAR,            -- 'gravity' (invert), 'pressure' (pipe top), 'duct' (top of bank/trench)
    shape VARCHAR,           -- 'circular' | 'rect' | NULL when the size could not be parsed
    diameter_mm DOUBLE, width_mm DOUBLE, height_mm DOUBLE,
    material VARCHAR, burial VARCHAR, status INTEGER,
    start_depth DOUBLE, end_depth DOUBLE,
    start_h DOUBLE, end_h DOUBLE,   -- as recorded: invert (gravity) or top (pressure, duct)
    pressure VARCHAR, voltage VARCHAR, flow_dir VARCHAR,
    owner VARCHAR, year VARCHAR, road VARCHAR,
    attrs JSON
)
"""
