"""Tests for cim.store: open_store URLs and DuckDBStore's versioned, all-or-nothing pipe writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from cim.errors import InvalidInputError, NotFoundError, StoreError, UnsupportedError
from cim.store import DatasetInfo, DuckDBStore, open_store

Rows = list[dict[str, Any]]
TableOf = Callable[[Rows], pa.Table]

#: Tables a pipe write may touch; every one must be untouched by a failed write.
WRITTEN_TABLES = (
    "datasets",
    "dataset_versions",
    "pipe_points",
    "pipe_segments",
    "network_nodes",
    "network_edges",
    "qc_findings",
)

# A short water main (JS) near Jinan in EPSG:4548: J0 -- S0 -- J1 -- S1 -- J2, plus a drain J9
POINTS: Rows = [
    {"feature_id": "P0", "point_id": "J0", "category": "JS", "x": 500000.0, "y": 4057000.0, "ground_h": 30.0},
    {"feature_id": "P1", "point_id": "J1", "category": "JS", "x": 500010.0, "y": 4057000.0, "ground_h": 31.0},
    {"feature_id": "P2", "point_id": "J2", "category": "JS", "x": 500020.0, "y": 4057005.0, "ground_h": 32.5},
    {"feature_id": "P9", "point_id": "Y9", "category": "PS", "x": 500300.0, "y": 4057400.0, "ground_h": 29.0},
]
SEGMENTS: Rows = [
    {
        "feature_id": "S0",
        "start_id": "J0",
        "end_id": "J1",
        "category": "JS",
        "material": "PE",
        "diameter_mm": 200.0,
        "x1": 500000.0,
        "y1": 4057000.0,
        "x2": 500010.0,
        "y2": 4057000.0,
        "start_z": 28.5,
        "end_z": 29.0,
    },
    {
        "feature_id": "S1",
        "start_id": "J1",
        "end_id": "J2",
        "category": "JS",
        "material": "PE",
        "diameter_mm": 200.0,
        "x1": 500010.0,
        "y1": 4057000.0,
        "x2": 500020.0,
        "y2": 4057005.0,
        "start_z": 29.0,
        "end_z": 30.25,
    },
]


def _info(dataset_id: str = "jinan-water", **kw: Any) -> DatasetInfo:
    return DatasetInfo(id=dataset_id, title="济南给水管网", kind="pipe_survey", storage_crs="EPSG:4548", **kw)


def _snapshot(store: DuckDBStore) -> dict[str, list[tuple[Any, ...]]]:
    """Full content of every table a write touches, geometries as WKT, in a stable order."""
    con = store.read()
    out = {}
    for table in WRITTEN_TABLES:
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        select = ", ".join(f"ST_AsText({c})" if c == "geom" else c for c in cols)
        out[table] = con.execute(f"SELECT {select} FROM {table} ORDER BY ALL").fetchall()
    return out


def _write(
    store: DuckDBStore,
    point_table: TableOf,
    segment_table: TableOf,
    points: Rows = POINTS,
    segments: Rows = SEGMENTS,
    **kw: Any,
) -> Any:
    return store.write_pipe_network(_info(**kw), point_table(points), segment_table(segments))


# -- open_store -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["duckdb:///:memory:", "duckdb://", ":memory:"])
def test_open_store_opens_memory_stores(url: str) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, DuckDBStore)
        assert store.path == ":memory:"
        assert store.datasets() == []
    finally:
        store.close()


def test_open_store_reads_three_slashes_as_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("duckdb:///data/cim.duckdb")
    store.close()
    assert store.path == "data/cim.duckdb"
    assert (tmp_path / "data" / "cim.duckdb").is_file()


def test_open_store_reads_four_slashes_as_an_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "srv" / "cim" / "cim.duckdb"
    url = "duckdb:///" + str(target)
    assert url.startswith("duckdb:////")
    store = open_store(url)
    store.close()
    assert store.path == str(target)
    assert target.is_file()


def test_open_store_takes_a_bare_file_path(tmp_path: Path) -> None:
    target = tmp_path / "bare.duckdb"
    store = open_store(str(target))
    store.close()
    assert target.is_file()


@pytest.mark.parametrize("url", ["sqlite:///cim.db", "postgis://h/db", "mysql://cim@db/cim"])
def test_open_store_refuses_an_unknown_scheme(url: str) -> None:
    with pytest.raises(UnsupportedError, match="no store backend"):
        open_store(url)


def test_duckdb_store_creates_the_spatial_indexes(store: DuckDBStore) -> None:
    names = {r[0] for r in store.read().execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert {"pipe_points_geom", "pipe_segments_geom", "features_geom"} <= names


# -- versioned writes -------------------------------------------------------------------------------


def test_first_write_is_version_one_and_adds_everything(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    result = _write(store, point_table, segment_table)
    assert result.version == 1
    assert result.counts["pipe_points"] == {
        "added": 4,
        "modified": 0,
        "deleted": 0,
        "unchanged": 0,
        "total": 4,
    }
    assert result.counts["pipe_segments"] == {
        "added": 2,
        "modified": 0,
        "deleted": 0,
        "unchanged": 0,
        "total": 2,
    }
    assert store.count("pipe_points") == 4 and store.count("pipe_segments") == 2
    (version,) = store.versions("jinan-water")
    assert version["version"] == 1 and version["action"] == "ingest"
    assert json.loads(version["counts"]) == result.counts
    entry = store.get_dataset("jinan-water")
    assert entry["current_version"] == 1 and entry["grade"] == "重要" and entry["title"] == "济南给水管网"


def test_rewriting_identical_data_is_version_two_with_nothing_changed(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    before = {t: store.count(t, current=False) for t in ("pipe_points", "pipe_segments")}
    result = _write(store, point_table, segment_table)
    assert result.version == 2
    assert result.counts["pipe_points"] == {
        "added": 0,
        "modified": 0,
        "deleted": 0,
        "unchanged": 4,
        "total": 4,
    }
    assert result.counts["pipe_segments"] == {
        "added": 0,
        "modified": 0,
        "deleted": 0,
        "unchanged": 2,
        "total": 2,
    }
    assert {t: store.count(t, current=False) for t in before} == before
    rows = store.read().execute("SELECT DISTINCT version_from, version_to FROM pipe_points").fetchall()
    assert rows == [(1, None)]
    assert [v["version"] for v in store.versions("jinan-water")] == [1, 2]
    assert store.get_dataset("jinan-water")["current_version"] == 2


def test_changing_one_material_closes_the_old_row_and_adds_the_new_one(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    changed = [dict(SEGMENTS[0], material="PVC"), SEGMENTS[1]]
    result = _write(store, point_table, segment_table, segments=changed)
    assert result.version == 2
    assert result.counts["pipe_segments"] == {
        "added": 0,
        "modified": 1,
        "deleted": 0,
        "unchanged": 1,
        "total": 2,
    }
    assert result.counts["pipe_points"]["unchanged"] == 4
    history = (
        store.read()
        .execute(
            "SELECT material, version_from, version_to FROM pipe_segments WHERE feature_id = 'S0' ORDER BY version_from"
        )
        .fetchall()
    )
    assert history == [("PE", 1, 2), ("PVC", 2, None)]
    current = (
        store.read()
        .execute(
            "SELECT feature_id, material FROM pipe_segments WHERE version_to IS NULL ORDER BY feature_id"
        )
        .fetchall()
    )
    assert current == [("S0", "PVC"), ("S1", "PE")]
    assert store.count("pipe_segments") == 2 and store.count("pipe_segments", current=False) == 3


def test_changing_a_null_field_to_a_value_counts_as_a_modification(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    changed = [POINTS[0], dict(POINTS[1], road="经十路"), *POINTS[2:]]
    result = _write(store, point_table, segment_table, points=changed)
    assert result.counts["pipe_points"]["modified"] == 1


def test_removing_a_point_deletes_it_from_the_current_version(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    result = _write(store, point_table, segment_table, points=POINTS[:3])
    assert result.counts["pipe_points"] == {
        "added": 0,
        "modified": 0,
        "deleted": 1,
        "unchanged": 3,
        "total": 3,
    }
    assert store.count("pipe_points") == 3 and store.count("pipe_points", current=False) == 4
    closed = store.read().execute(
        "SELECT feature_id, version_to FROM pipe_points WHERE version_to IS NOT NULL"
    )
    assert closed.fetchall() == [("P9", 2)]
    again = _write(store, point_table, segment_table)
    assert again.counts["pipe_points"]["added"] == 1
    assert store.count("pipe_points") == 4


def test_datasets_do_not_close_each_others_rows(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table, dataset_id="a")
    _write(store, point_table, segment_table, dataset_id="b", points=POINTS[:1], segments=[])
    assert store.count("pipe_points", "a") == 4 and store.count("pipe_segments", "a") == 2
    assert store.count("pipe_points", "b") == 1 and store.count("pipe_segments", "b") == 0
    assert [d["id"] for d in store.datasets()] == ["a", "b"]


# -- all or nothing ---------------------------------------------------------------------------------


def test_a_segments_table_missing_a_column_raises_store_error_and_changes_nothing(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    before = _snapshot(store)
    bad = segment_table(SEGMENTS).drop_columns(["material"])
    with pytest.raises(StoreError, match="material"):
        store.write_pipe_network(_info(), point_table(POINTS[:1]), bad)
    assert _snapshot(store) == before


@pytest.mark.parametrize("first_write", [False, True], ids=["after-version-1", "into-an-empty-store"])
def test_an_exception_after_the_first_insert_leaves_every_table_as_it_was(
    store: DuckDBStore,
    point_table: TableOf,
    segment_table: TableOf,
    monkeypatch: pytest.MonkeyPatch,
    first_write: bool,
) -> None:
    if not first_write:
        _write(store, point_table, segment_table)
    before = _snapshot(store)
    real_merge = DuckDBStore._merge
    merged: list[str] = []

    def merge_then_fail(self: DuckDBStore, con: duckdb.DuckDBPyConnection, table: str, *args: Any) -> Any:
        if merged:
            raise RuntimeError("disk full")
        result = real_merge(self, con, table, *args)
        merged.append(table)
        assert con.execute(f"SELECT count(*) FROM {table} WHERE version_to IS NULL").fetchone()[0] > 0
        return result

    monkeypatch.setattr(DuckDBStore, "_merge", merge_then_fail)
    changed = [dict(p, ground_h=p["ground_h"] + 1.0) for p in POINTS]
    with pytest.raises(RuntimeError, match="disk full"):
        _write(store, point_table, segment_table, points=changed)
    assert merged == ["pipe_points"]
    assert _snapshot(store) == before
    monkeypatch.undo()
    result = _write(store, point_table, segment_table, points=changed)
    assert result.version == (1 if first_write else 2)


def test_a_failure_while_writing_the_topology_rolls_back_the_features(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    before = _snapshot(store)
    bad_nodes = pa.table(
        {"node": ["not-an-int"], "point_id": ["J0"], "category": ["JS"], "degree": [1], "component": [0]}
    )
    with pytest.raises(duckdb.Error):
        store.write_pipe_network(
            _info(), point_table(POINTS[:2]), segment_table(SEGMENTS[:1]), nodes=bad_nodes
        )
    assert _snapshot(store) == before


def test_a_bad_value_in_the_segments_rolls_back_the_points(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    before = _snapshot(store)
    bad = segment_table(SEGMENTS).set_column(
        list(segment_table(SEGMENTS).column_names).index("x1"), "x1", pa.array(["east", "west"])
    )
    with pytest.raises(duckdb.Error):
        store.write_pipe_network(_info(), point_table(POINTS), bad)
    assert _snapshot(store) == before
    assert store.datasets() == []


@pytest.mark.parametrize(
    "info",
    [
        _info(grade="绝密"),
        _info(grade=""),
        _info(dataset_id=""),
        _info(dataset_id="a/b"),
        _info(dataset_id="with space"),
        _info(dataset_id="what?"),
        _info(dataset_id="frag#1"),
    ],
    ids=["grade", "empty-grade", "empty-id", "slash", "space", "question-mark", "hash"],
)
def test_an_invalid_grade_or_dataset_id_is_refused_before_writing(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf, info: DatasetInfo
) -> None:
    before = _snapshot(store)
    with pytest.raises(InvalidInputError):
        store.write_pipe_network(info, point_table(POINTS), segment_table(SEGMENTS))
    assert _snapshot(store) == before


@pytest.mark.parametrize("grade", ["核心", "重要", "一般"])
def test_every_gb_t_43697_grade_is_accepted(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf, grade: str
) -> None:
    store.write_pipe_network(_info(grade=grade), point_table(POINTS), segment_table(SEGMENTS))
    assert store.get_dataset("jinan-water")["grade"] == grade


def test_store_lookups_refuse_unknown_names(store: DuckDBStore) -> None:
    with pytest.raises(NotFoundError):
        store.get_dataset("nope")
    with pytest.raises(InvalidInputError):
        store.count("datasets")


# -- geometry, extent, persistence ------------------------------------------------------------------


def test_geometries_are_3d_at_the_given_heights(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    points = (
        store.read()
        .execute(
            "SELECT feature_id, ST_X(geom), ST_Y(geom), ST_Z(geom), ST_HasZ(geom) FROM pipe_points ORDER BY 1"
        )
        .fetchall()
    )
    assert points == [(p["feature_id"], p["x"], p["y"], p["ground_h"], True) for p in POINTS]
    segments = (
        store.read()
        .execute(
            "SELECT feature_id, ST_ZMin(geom), ST_ZMax(geom), ST_AsText(geom) FROM pipe_segments ORDER BY 1"
        )
        .fetchall()
    )
    assert segments[0][:3] == ("S0", 28.5, 29.0)
    assert segments[1][:3] == ("S1", 29.0, 30.25)
    assert segments[1][3] == "LINESTRING Z (500010 4057000 29, 500020 4057005 30.25)"


def test_datasets_carry_the_3d_extent_of_the_current_rows(
    store: DuckDBStore, point_table: TableOf, segment_table: TableOf
) -> None:
    _write(store, point_table, segment_table)
    (entry,) = store.datasets()
    extent = tuple(entry[k] for k in ("minx", "miny", "minz", "maxx", "maxy", "maxz"))
    assert extent == (500000.0, 4057000.0, 28.5, 500300.0, 4057400.0, 32.5)
    _write(store, point_table, segment_table, points=POINTS[:3])
    entry = store.get_dataset("jinan-water")
    assert (entry["maxx"], entry["maxy"]) == (500020.0, 4057005.0)


def test_a_file_store_persists_data_and_rtree_indexes_across_reopening(
    tmp_path: Path, point_table: TableOf, segment_table: TableOf
) -> None:
    url = "duckdb:///" + str(tmp_path / "cim.duckdb")
    store = open_store(url)
    _write(store, point_table, segment_table)
    before = _snapshot(store)
    store.close()

    store = open_store(url)
    try:
        assert _snapshot(store) == before
        indexes = dict(store.read().execute("SELECT index_name, table_name FROM duckdb_indexes()").fetchall())
        assert indexes["pipe_points_geom"] == "pipe_points"
        assert indexes["pipe_segments_geom"] == "pipe_segments"
        bbox = "ST_Intersects(geom, ST_MakeEnvelope(500005, 4056990, 500025, 4057010))"
        found = store.read().execute(f"SELECT feature_id FROM pipe_points WHERE {bbox} ORDER BY 1").fetchall()
        assert found == [("P1",), ("P2",)]
        found = (
            store.read().execute(f"SELECT feature_id FROM pipe_segments WHERE {bbox} ORDER BY 1").fetchall()
        )
        assert found == [("S0",), ("S1",)]
        explain = store.read().execute(f"EXPLAIN SELECT feature_id FROM pipe_points WHERE {bbox}").fetchall()
        plan = "".join(row[1] for row in explain)
        assert "RTREE_INDEX_SCAN" in plan
        result = _write(store, point_table, segment_table)
        assert result.version == 2
        assert result.counts["pipe_points"]["unchanged"] == 4  # row hashes survive the reopen
    finally:
        store.close()
