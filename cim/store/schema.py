"""The unified store schema: catalogue, versions, pipe network, topology, QC, generic features.

One schema for every source: datasets carry catalogue metadata (CJJ/T 315 style), source CRS,
provenance and data grade (GB/T 43697: 核心/重要/一般); every ingest adds a dataset version.
Feature rows are versioned by ``version_from``/``version_to`` (``NULL`` = current), so a re-ingest
closes changed rows instead of deleting them and a change feed can be read back later.
Geometries are 3D in the storage CRS; heights are 1985 normal heights.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"

DDL: tuple[str, ...] = (
    "CREATE SEQUENCE IF NOT EXISTS seq_fid START 1",
    """CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS datasets (
        id VARCHAR PRIMARY KEY,
        title VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,          -- pipe_survey | water_model | drainage_model | bim | pointcloud | raster | mesh
        category VARCHAR,               -- CIM data category (时空基础数据 ...)
        source_crs VARCHAR,
        storage_crs VARCHAR NOT NULL,
        vertical_crs VARCHAR,
        grade VARCHAR NOT NULL CHECK (grade IN ('核心', '重要', '一般')),
        secret BOOLEAN NOT NULL DEFAULT FALSE,
        provenance JSON,
        metadata JSON,
        current_version INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        minx DOUBLE, miny DOUBLE, minz DOUBLE, maxx DOUBLE, maxy DOUBLE, maxz DOUBLE
    )""",
    """CREATE TABLE IF NOT EXISTS dataset_versions (
        dataset_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL,
        action VARCHAR NOT NULL,        -- ingest | replace | delete
        sources JSON,                   -- files, layers, encodings, sizes, sha256
        counts JSON,                    -- added / modified / deleted / unchanged per table
        qc JSON,                        -- summary of findings
        note VARCHAR,
        PRIMARY KEY (dataset_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS features (
        fid BIGINT NOT NULL DEFAULT nextval('seq_fid'),
        dataset_id VARCHAR NOT NULL,
        collection VARCHAR NOT NULL,
        feature_id VARCHAR NOT NULL,
        version_from INTEGER NOT NULL,
        version_to INTEGER,
        geom GEOMETRY,
        attrs JSON,
        row_hash VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS pipe_points (
        fid BIGINT NOT NULL DEFAULT nextval('seq_fid'),
        dataset_id VARCHAR NOT NULL,
        feature_id VARCHAR NOT NULL,
        version_from INTEGER NOT NULL,
        version_to INTEGER,
        point_id VARCHAR, map_no VARCHAR,
        category VARCHAR, subtype VARCHAR,
        feature VARCHAR, appurtenance VARCHAR, code VARCHAR,
        x DOUBLE, y DOUBLE, ground_h DOUBLE,
        well_depth DOUBLE, well_bottom_h DOUBLE,
        status INTEGER, road VARCHAR, survey_date VARCHAR,
        geom GEOMETRY,                  -- POINT Z at ground level (1985 height)
        attrs JSON,
        qc_flags VARCHAR[],
        source_file VARCHAR, source_row BIGINT,
        row_hash VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS pipe_segments (
        fid BIGINT NOT NULL DEFAULT nextval('seq_fid'),
        dataset_id VARCHAR NOT NULL,
        feature_id VARCHAR NOT NULL,
        version_from INTEGER NOT NULL,
        version_to INTEGER,
        line_id VARCHAR, start_id VARCHAR, end_id VARCHAR,
        category VARCHAR, subtype VARCHAR,
        kind VARCHAR,                   -- gravity | pressure | duct
        shape VARCHAR, diameter_mm DOUBLE, width_mm DOUBLE, height_mm DOUBLE,
        material VARCHAR, burial VARCHAR, status INTEGER,
        start_depth DOUBLE, end_depth DOUBLE,
        start_h DOUBLE, end_h DOUBLE,   -- as recorded: invert (gravity) or top (pressure, duct)
        start_z DOUBLE, end_z DOUBLE,   -- computed centre-line heights
        length_3d DOUBLE, slope DOUBLE,
        pressure VARCHAR, voltage VARCHAR, flow_dir VARCHAR,
        owner VARCHAR, year VARCHAR, road VARCHAR,
        geom GEOMETRY,                  -- LINESTRING Z centre-line
        attrs JSON,
        qc_flags VARCHAR[],
        source_file VARCHAR, source_row BIGINT,
        row_hash VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS network_nodes (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        node INTEGER NOT NULL, point_id VARCHAR, category VARCHAR,
        degree INTEGER, component INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS network_edges (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        edge INTEGER NOT NULL, feature_id VARCHAR, category VARCHAR,
        from_node INTEGER, to_node INTEGER, component INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS pipe_valves (
        dataset_id VARCHAR NOT NULL,
        valve_id VARCHAR NOT NULL,
        feature_id VARCHAR NOT NULL,    -- the segment (link) the valve sits on
        point_id VARCHAR NOT NULL,      -- the segment end (node) it shuts off
        operable BOOLEAN NOT NULL DEFAULT TRUE,
        source VARCHAR,                 -- csv file, wntr valve layer, ...
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS qc_findings (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        rule_id VARCHAR NOT NULL, severity VARCHAR NOT NULL,
        file VARCHAR, row BIGINT, feature_id VARCHAR, field VARCHAR, value VARCHAR,
        message VARCHAR, category VARCHAR, layer VARCHAR
    )""",
)

INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS pipe_points_geom ON pipe_points USING RTREE (geom)",
    "CREATE INDEX IF NOT EXISTS pipe_segments_geom ON pipe_segments USING RTREE (geom)",
    "CREATE INDEX IF NOT EXISTS features_geom ON features USING RTREE (geom)",
)

#: Columns of pipe_points / pipe_segments a writer supplies (the rest are bookkeeping).
POINT_COLUMNS: tuple[str, ...] = (
    "feature_id", "point_id", "map_no", "category", "subtype", "feature", "appurtenance", "code",
    "x", "y", "ground_h", "well_depth", "well_bottom_h", "status", "road", "survey_date",
    "attrs", "qc_flags", "source_file", "source_row",
)
SEGMENT_COLUMNS: tuple[str, ...] = (
    "feature_id", "line_id", "start_id", "end_id", "category", "subtype", "kind", "shape",
    "diameter_mm", "width_mm", "height_mm", "material", "burial", "status",
    "start_depth", "end_depth", "start_h", "end_h", "start_z", "end_z", "length_3d", "slope",
    "pressure", "voltage", "flow_dir", "owner", "year", "road",
    "attrs", "qc_flags", "source_file", "source_row",
    "x1", "y1", "x2", "y2",
)
