"""Moving a city between the DuckDB file store and PostGIS (and back), and backup/restore, losing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cim.errors import InvalidInputError, StoreError
from cim.store import DatasetInfo, DuckDBStore, open_store
from cim.store.backup import backup_store, restore_store
from cim.store.migrate import META_TABLES, STORE_TABLES, copy_tables, migrate_store

Rows = list[dict[str, Any]]
TableOf = Callable[[Rows], pa.Table]

POINTS: Rows = [
    {"feature_id": f"P{i}", "point_id": f"J{i}", "category": "JS", "x": 500000.0 + 10 * i, "y": 4057000.0 + i,
     "ground_h": 30.0 + i / 8, "qc_flags": ["Q1"] if i == 2 else None, "attrs": json.dumps({"i": i})}
    for i in range(6)
]
SEGMENTS: Rows = [
    {"feature_id": f"S{i}", "start_id": f"J{i}", "end_id": f"J{i + 1}", "category": "JS", "material": "PE",
     "diameter_mm": 200.0, "x1": 500000.0 + 10 * i, "y1": 4057000.0 + i, "x2": 500010.0 + 10 * i,
     "y2": 4057001.0 + i, "start_z": 28.5, "end_z": 29.0 + i / 3}
    for i in range(5)
]


def _info(dataset_id: str = "jinan-water") -> DatasetInfo:
    return DatasetInfo(id=dataset_id, title="济南给水管网", kind="pipe_survey", storage_crs="EPSG:4548",
                       provenance={"来源": "测试"})


def _fill(store: DuckDBStore, point_table: TableOf, segment_table: TableOf) -> None:
    """Two versions (so closed rows exist), topology, findings, an outbox message and an asset entry."""
    nodes = pa.table({"node": [0, 1], "point_id": ["J0", "J1"], "category": ["JS", "JS"], "degree": [1, 2],
                      "component": [0, 0]})
    findings = pa.table({"rule_id": ["R1"], "severity": ["warning"], "file": ["a.csv"], "row": [3],
                         "feature_id": ["P2"], "field": ["ground_h"], "value": ["x"], "message": ["高程异常"],
                         "category": ["JS"], "layer": ["points"]})
    store.write_pipe_network(_info(), point_table(POINTS), segment_table(SEGMENTS), nodes=nodes, findings=findings)
    changed = [dict(SEGMENTS[0], material="PVC"), *SEGMENTS[1:4]]
    store.write_pipe_network(_info(), point_table(POINTS[:5]), segment_table(changed))
    store.write_asset(DatasetInfo(id="cloud", title="点云", kind="pointcloud", storage_crs="EPSG:4548"),
                      extent=(0.0, 0.0, None, 1.0, 1.0, None), counts={"points": 10})
    with store.transaction() as con:
        con.execute(
            """INSERT INTO linkage_outbox (target, stream, seq, kind, idempotency_key, payload, created_at, status,
               attempts) VALUES ('prov', 'changes', 1, 'changes', 'k1', '{"a": [1, 2]}', TIMESTAMP '2026-01-02 03:04:05.123456',
               'pending', 0)"""
        )


def _dump(store: DuckDBStore) -> dict[str, list[tuple]]:
    """Every store table's rows (geometries as WKT), sorted."""
    con = store.read()
    out = {}
    for table in STORE_TABLES:
        if table in META_TABLES:
            continue
        cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]
        select = ", ".join(f"ST_AsText({n})" if t.startswith("GEOMETRY") else n for n, t in cols)
        out[table] = con.execute(f"SELECT {select} FROM {table} ORDER BY ALL").fetchall()
    return out


def test_a_city_moves_to_postgis_and_back_with_every_row_and_checksum_equal(
    tmp_path: Path, pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    src = "duckdb:///" + str(tmp_path / "city.duckdb")
    store = open_store(src)
    _fill(store, point_table, segment_table)
    before = _dump(store)
    store.close()
    assert sum(len(v) for v in before.values()) > 15 and before["pipe_segments"] and before["linkage_outbox"]

    there = migrate_store(src, pg_url)
    assert all(c.ok for c in there.tables) and there.rows == sum(len(v) for v in before.values())
    pg = open_store(pg_url)
    try:
        assert _dump(pg) == before
        # the moved store keeps working: a new version closes rows, new ids do not collide
        result = pg.write_pipe_network(_info(), point_table(POINTS[:5]), segment_table(SEGMENTS[:4]))
        assert result.version == 3 and result.counts["pipe_segments"]["modified"] == 1
        fids = pg.read().execute("SELECT fid FROM pipe_segments").fetchall()
        assert len(fids) == len({f for (f,) in fids})
        pg.write_pipe_network(_info(), point_table(POINTS[:5]), segment_table(SEGMENTS[:4]))
        after_pg = _dump(pg)
    finally:
        pg.close()

    back = "duckdb:///" + str(tmp_path / "back.duckdb")
    report = migrate_store(pg_url, back)
    assert all(c.ok for c in report.tables)
    store = open_store(back)
    try:
        assert _dump(store) == after_pg
    finally:
        store.close()


def test_a_non_empty_target_is_refused_unless_replace(
    tmp_path: Path, pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    src = "duckdb:///" + str(tmp_path / "a.duckdb")
    store = open_store(src)
    _fill(store, point_table, segment_table)
    expected = _dump(store)
    store.close()
    migrate_store(src, pg_url)
    with pytest.raises(StoreError, match="not empty"):
        migrate_store(src, pg_url)
    report = migrate_store(src, pg_url, replace=True)
    assert all(c.ok for c in report.tables)
    pg = open_store(pg_url)
    try:
        assert _dump(pg) == expected  # replaced, not doubled
    finally:
        pg.close()


def test_a_verification_mismatch_rolls_the_whole_copy_back(
    tmp_path: Path, pg_url: str, point_table: TableOf, segment_table: TableOf
) -> None:
    from cim.store.migrate import attach
    from cim.store.spatial import connect

    src = "duckdb:///" + str(tmp_path / "a.duckdb")
    store = open_store(src)
    _fill(store, point_table, segment_table)
    store.close()
    open_store(pg_url).close()
    con = connect()
    attach(con, src, "src", read_only=True)
    attach(con, pg_url, "dst", read_only=False)
    n = con.execute("SELECT count(*) FROM src.pipe_points").fetchone()[0]
    with pytest.raises(StoreError, match="verification failed"):
        copy_tables(con, {"datasets": "src.main.datasets", "pipe_points": "src.main.pipe_points"}, "dst",
                    replace=False, expected={"datasets": (2, "0"), "pipe_points": (n, "0")})
    assert con.execute("SELECT count(*) FROM dst.main.pipe_points").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM dst.main.datasets").fetchone()[0] == 0
    con.close()


def test_bad_urls_get_clear_errors_and_store_nothing(tmp_path: Path) -> None:
    src = "duckdb:///" + str(tmp_path / "a.duckdb")
    open_store(src).close()
    with pytest.raises(StoreError, match=r"cannot connect to PostGIS store postgresql://u:\*\*\*@127.0.0.1:1/x"):
        migrate_store(src, "postgresql://u:secret@127.0.0.1:1/x")
    with pytest.raises(InvalidInputError, match="in-memory"):
        migrate_store("duckdb:///:memory:", src)
    with pytest.raises(InvalidInputError, match="does not exist"):
        migrate_store("duckdb:///" + str(tmp_path / "nope.duckdb"), "duckdb:///" + str(tmp_path / "b.duckdb"))
    assert not (tmp_path / "b.duckdb").exists()
    with pytest.raises(InvalidInputError, match="no store backend"):
        migrate_store("sqlite:///x.db", src)


@pytest.mark.parametrize("backend", ["duckdb", "postgis"])
def test_backup_and_restore_round_trip_on_either_backend(
    tmp_path: Path, request: pytest.FixtureRequest, point_table: TableOf, segment_table: TableOf, backend: str
) -> None:
    url = "duckdb:///" + str(tmp_path / "live.duckdb") if backend == "duckdb" else request.getfixturevalue("pg_url")
    store = open_store(url)
    _fill(store, point_table, segment_table)
    expected = _dump(store)
    store.close()

    manifest = backup_store(url, tmp_path / "bk")
    assert manifest["tables"]["pipe_segments"]["rows"] == len(expected["pipe_segments"])
    with pytest.raises(StoreError, match="exists"):
        backup_store(url, tmp_path / "bk")

    restored = "duckdb:///" + str(tmp_path / "restored.duckdb")
    report = restore_store(tmp_path / "bk", restored)
    assert all(c.ok for c in report.tables)
    with pytest.raises(StoreError, match="not empty"):
        restore_store(tmp_path / "bk", restored)
    store = open_store(restored)
    try:
        assert _dump(store) == expected
    finally:
        store.close()


def test_restore_refuses_a_tampered_backup(tmp_path: Path, point_table: TableOf, segment_table: TableOf) -> None:
    url = "duckdb:///" + str(tmp_path / "live.duckdb")
    store = open_store(url)
    _fill(store, point_table, segment_table)
    store.close()
    backup_store(url, tmp_path / "bk")
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    manifest["tables"]["pipe_points"]["checksum"] = "12345"
    (tmp_path / "bk" / "manifest.json").write_text(json.dumps(manifest))
    target = "duckdb:///" + str(tmp_path / "r.duckdb")
    with pytest.raises(StoreError, match="verification failed"):
        restore_store(tmp_path / "bk", target)
    assert not (tmp_path / "r.duckdb").exists()
