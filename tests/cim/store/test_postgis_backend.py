"""What only the PostGIS backend has: server-side types and indexes, migrations, several processes, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cim.errors import StoreError
from cim.store import DatasetInfo, open_store
from cim.store.migrate import inspect_store
from cim.store.postgis import PostGISStore, pg_connect, pg_ddl

Rows = list[dict[str, Any]]
TableOf = Callable[[Rows], pa.Table]

POINTS: Rows = [
    {"feature_id": "P0", "point_id": "J0", "category": "JS", "x": 500000.0, "y": 4057000.0, "ground_h": 30.0},
    {"feature_id": "P1", "point_id": "J1", "category": "JS", "x": 500010.0, "y": 4057000.0, "ground_h": 31.0},
    {"feature_id": "P2", "point_id": "J2", "category": "JS", "x": 500020.0, "y": 4057005.0, "ground_h": 32.5},
]
SEGMENTS: Rows = [
    {"feature_id": "S0", "start_id": "J0", "end_id": "J1", "category": "JS", "x1": 500000.0, "y1": 4057000.0,
     "x2": 500010.0, "y2": 4057000.0, "start_z": 28.5, "end_z": 29.0},
]


def _info(dataset_id: str = "jinan-water") -> DatasetInfo:
    return DatasetInfo(id=dataset_id, title="济南给水管网", kind="pipe_survey", storage_crs="EPSG:4548")


def test_the_server_schema_has_typed_geometries_with_srid_and_gist_indexes(
    pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostGISStore) and store.srid == 4548
    store.write_pipe_network(_info(), point_table(POINTS), segment_table(SEGMENTS))
    store.close()
    with pg_connect(pg_url) as conn:
        cols = dict(conn.execute(
            "SELECT f_table_name || '.' || f_geometry_column, type || ' ' || srid || ' ' || coord_dimension "
            "FROM geometry_columns").fetchall())
        assert cols["pipe_points.geom"] == "POINT 4548 3"
        assert cols["pipe_segments.geom"] == "LINESTRING 4548 3"
        assert cols["bim_elements.footprint"].split()[1] == "4548"
        gist = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")}
        assert {"pipe_points_geom", "pipe_segments_geom", "features_geom", "bim_elements_footprint"} <= gist
        # PostGIS itself answers index-backed bbox queries on what DuckDB wrote
        found = conn.execute(
            "SELECT feature_id FROM pipe_points WHERE geom && ST_MakeEnvelope(500005, 4056990, 500025, 4057010, 4548) "
            "ORDER BY 1").fetchall()
        assert found == [("P1",), ("P2",)]
        assert conn.execute("SELECT ST_SRID(geom), ST_Z(geom) FROM pipe_points WHERE feature_id = 'P2'").fetchone() \
            == (4548, 32.5)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):  # JSON text is checked to parse
            conn.execute("UPDATE datasets SET provenance = 'not json'")


def test_a_reopened_store_keeps_data_and_row_hashes_and_answers_bbox_queries(
    pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    store = open_store(pg_url)
    store.write_pipe_network(_info(), point_table(POINTS), segment_table(SEGMENTS))
    store.close()
    store = open_store(pg_url)
    try:
        bbox = "ST_Intersects(geom, ST_MakeEnvelope(500005, 4056990, 500025, 4057010))"
        found = store.read().execute(f"SELECT feature_id FROM pipe_points WHERE {bbox} ORDER BY 1").fetchall()
        assert found == [("P1",), ("P2",)]
        again = store.write_pipe_network(_info(), point_table(POINTS), segment_table(SEGMENTS))
        assert again.version == 2 and again.counts["pipe_points"]["unchanged"] == 3
    finally:
        store.close()


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError, match=r"cannot connect to PostGIS store postgresql://cim:\*\*\*@127.0.0.1:1/cim") as e:
        open_store("postgresql://cim:hunter2@127.0.0.1:1/cim")
    assert "hunter2" not in str(e.value)


def test_a_non_epsg_or_different_storage_crs_is_refused(pg_url: str) -> None:
    with pytest.raises(StoreError, match="EPSG"):
        PostGISStore(pg_url, storage_crs="+proj=tmerc")
    PostGISStore(pg_url, storage_crs="EPSG:4548").close()
    with pytest.raises(StoreError, match="SRID 4548, not 4549"):
        PostGISStore(pg_url, storage_crs="EPSG:4549")


def test_opening_an_older_schema_adds_the_missing_columns(pg_url: str) -> None:
    open_store(pg_url).close()
    with pg_connect(pg_url) as conn:
        conn.execute("ALTER TABLE pipe_segments DROP COLUMN voltage")
        conn.execute("ALTER TABLE linkage_outbox DROP COLUMN attempts")
        conn.execute("UPDATE schema_info SET value = 'old' WHERE key = 'ddl_digest'")
    before = inspect_store(pg_url)
    assert before["schema_current"] is False
    store = open_store(pg_url)
    store.close()
    with pg_connect(pg_url) as conn:
        cols = {r[0]: r[1] for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name IN "
            "('pipe_segments', 'linkage_outbox') AND column_name IN ('voltage', 'attempts')")}
    assert cols == {"voltage": "character varying", "attempts": "integer"}
    assert inspect_store(pg_url)["schema_current"] is True


def test_the_ddl_translation_covers_every_duckdb_type() -> None:
    out = pg_ddl("CREATE TABLE IF NOT EXISTS pipe_points (a DOUBLE, b BLOB, c JSON NOT NULL, geom GEOMETRY)", 4548)
    assert out == ("CREATE TABLE IF NOT EXISTS pipe_points (a DOUBLE PRECISION, b BYTEA, "
                   "c TEXT CHECK (c IS NULL OR c::json IS NOT NULL) NOT NULL, geom geometry(PointZ, 4548))")
    with pytest.raises(StoreError, match="no PostGIS type"):
        pg_ddl("CREATE TABLE IF NOT EXISTS other (g GEOMETRY)", 4548)


_WRITER = textwrap.dedent("""
    import sys, pyarrow as pa
    sys.path.insert(0, {tests!r})
    from conftest import _table, _FLOAT_POINT, _FLOAT_SEGMENT
    from cim.store import DatasetInfo, open_store
    from cim.store.schema import POINT_COLUMNS, SEGMENT_COLUMNS
    store = open_store({url!r})
    ds = sys.argv[1]
    pts = [dict(feature_id=f"{{ds}}-{{i}}", x=500000.0 + i, y=4057000.0, ground_h=30.0) for i in range(2000)]
    for v in range(3):
        info = DatasetInfo(id=ds, title=ds, kind="pipe_survey", storage_crs="EPSG:4548")
        store.write_pipe_network(info, _table(pts[: 2000 - v * 100], POINT_COLUMNS, _FLOAT_POINT),
                                 _table([], SEGMENT_COLUMNS, _FLOAT_SEGMENT))
    print(store.count("pipe_points", ds))
""")


def test_several_processes_write_and_read_one_store(pg_url: str) -> None:
    open_store(pg_url).close()
    tests = str(Path(__file__).resolve().parents[2])
    code = _WRITER.format(tests=tests, url=pg_url)
    procs = [subprocess.Popen([sys.executable, "-c", code, ds], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for ds in ("city-a", "city-b", "city-c")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    assert [o[0].strip().splitlines()[-1] for o in outs] == ["1800", "1800", "1800"]
    store = open_store(pg_url)
    try:
        assert [(d["id"], d["current_version"]) for d in store.datasets()] == [
            ("city-a", 3), ("city-b", 3), ("city-c", 3)]
        assert store.count("pipe_points") == 5400 and store.count("pipe_points", current=False) == 6000
        fids = store.read().execute("SELECT count(DISTINCT fid), count(*) FROM pipe_points").fetchone()
        assert fids == (6000, 6000)
    finally:
        store.close()


def test_cim_store_cli_moves_checks_and_refuses(
    tmp_path: Path, pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    from cim.cli import _load_plugins, app

    _load_plugins()
    src = "duckdb:///" + str(tmp_path / "city.duckdb")
    store = open_store(src)
    store.write_pipe_network(_info(), point_table(POINTS), segment_table(SEGMENTS))
    store.close()
    runner = CliRunner()
    done = runner.invoke(app, ["store", "migrate", src, pg_url])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["tables"]["pipe_points"] == {**report["tables"]["pipe_points"], "rows": 3, "ok": True}
    again = runner.invoke(app, ["store", "migrate", src, pg_url])
    assert again.exit_code != 0 and "not empty" in str(again.exception)
    checked = runner.invoke(app, ["store", "check", pg_url])
    assert checked.exit_code == 0, checked.output
    there = json.loads(checked.stdout)
    here = inspect_store(src)
    assert there["tables"] == here["tables"] and there["backend"] == "postgis" and there["schema_current"]
