"""Store tables for BIM models (IFC2X3/IFC4/IFC4X3), created with the rest of the store schema.

A BIM dataset (``datasets.kind = 'bim'``) gets one dataset version per ingested or submitted model file;
unlike pipes, every version keeps its own full set of rows (``version``), so two versions can be compared
element by element (GlobalId) and the current model is ``version = datasets.current_version``.

Coordinates: ``origin_x``/``origin_y``/``origin_h`` (bim_models) place the model's local origin in the
storage CRS (easting, northing) and 1985 heights. Element bounds and footprints are in the storage CRS.
Meshes are kept for tiling as two little-endian blobs: ``mesh_positions`` = float32 (x, y, z) triples in
metres along the storage CRS axes (east, north, up) *relative to the model origin* (float32 of absolute
projected coordinates would lose centimetres), ``mesh_indices`` = uint32 triangle vertex indices.
"""

from __future__ import annotations

BIM_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS bim_models (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        file_sha256 VARCHAR NOT NULL, file_name VARCHAR, file_size BIGINT,
        ifc_schema VARCHAR, authoring_app VARCHAR, project_name VARCHAR,
        length_unit_m DOUBLE,           -- metres per project length unit
        georef JSON,                    -- method (map_conversion | epset | ref_latlon | user | none), CRS, parameters, findings
        origin_x DOUBLE, origin_y DOUBLE, origin_h DOUBLE,
        element_count INTEGER, stats JSON, created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (dataset_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS bim_spatial (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        global_id VARCHAR NOT NULL, ifc_class VARCHAR NOT NULL,   -- IfcProject, IfcSite, IfcBuilding, IfcBuildingStorey, IfcSpace
        name VARCHAR, long_name VARCHAR, parent_global_id VARCHAR,
        elevation DOUBLE,               -- storey elevation (1985 height) where known
        attrs JSON
    )""",
    """CREATE TABLE IF NOT EXISTS bim_elements (
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        global_id VARCHAR NOT NULL, ifc_class VARCHAR NOT NULL, predefined_type VARCHAR,
        name VARCHAR, object_type VARCHAR, tag VARCHAR,
        storey_global_id VARCHAR, storey_name VARCHAR, building_global_id VARCHAR, space_global_id VARCHAR,
        materials VARCHAR[], classifications JSON, psets JSON, quantities JSON,
        color VARCHAR,                  -- #RRGGBBAA from the IFC surface style, when present
        minx DOUBLE, miny DOUBLE, minz DOUBLE, maxx DOUBLE, maxy DOUBLE, maxz DOUBLE,
        footprint GEOMETRY,             -- 2D polygon in the storage CRS (convex hull of the mesh in plan)
        mesh_positions BLOB, mesh_indices BLOB,
        geometry_hash VARCHAR, properties_hash VARCHAR,
        PRIMARY KEY (dataset_id, version, global_id)
    )""",
    """CREATE TABLE IF NOT EXISTS bim_submissions (
        id VARCHAR PRIMARY KEY,
        project VARCHAR NOT NULL,
        stage VARCHAR NOT NULL CHECK (stage IN ('drawing_review', 'handover')),
        dataset_id VARCHAR NOT NULL, version INTEGER NOT NULL,
        file_sha256 VARCHAR NOT NULL, file_name VARCHAR,
        status VARCHAR NOT NULL CHECK (status IN ('submitted', 'checked', 'passed', 'failed', 'accepted', 'rejected')),
        submitted_by VARCHAR, submitted_at TIMESTAMP NOT NULL, checked_at TIMESTAMP,
        summary JSON, note VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS bim_check_findings (
        submission_id VARCHAR NOT NULL,
        check_kind VARCHAR NOT NULL,    -- ids | georef | delivery | clearance
        rule_id VARCHAR NOT NULL, severity VARCHAR NOT NULL,
        global_id VARCHAR, ifc_class VARCHAR,
        expected VARCHAR, found VARCHAR, message VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bim_review_events (
        submission_id VARCHAR NOT NULL, event_at TIMESTAMP NOT NULL, actor VARCHAR,
        from_status VARCHAR, to_status VARCHAR NOT NULL, comment VARCHAR
    )""",
)

BIM_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS bim_elements_footprint ON bim_elements USING RTREE (footprint)",
)
