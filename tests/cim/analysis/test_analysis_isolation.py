"""Valve isolation (爆管关阀, 二次关阀) on the sample district: valve rings checked against the stored points,
secondary outage checked with networkx from the 水源 point, edge valves from a CSV, buildings, errors, and
the compiled-network cache across re-ingests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest
import shapely

from cim.analysis.isolation import AFFECTED_BUFFER_M, isolate
from cim.analysis.network import compiled
from cim.analysis.valves import ValveSpec, import_valves, read_valve_csv
from cim.errors import InvalidInputError, MissingColumnsError, NotFoundError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")
DS = "jinan_district"
VALVE_TYPES = {"阀门", "阀门井"}


def js_network(store: DuckDBStore) -> tuple[nx.MultiGraph, dict[str, str | None], dict[str, tuple[str, str]]]:
    """The stored JS network: graph of point_ids keyed by segment, point type by point_id, ends by segment."""
    cur = store.read()
    points = dict(
        cur.execute(
            """SELECT point_id, coalesce(appurtenance, feature) FROM pipe_points
                                 WHERE dataset_id = ? AND category = 'JS' AND version_to IS NULL""",
            [DS],
        ).fetchall()
    )
    ends = {
        fid: (a, b)
        for fid, a, b in cur.execute(
            """SELECT feature_id, start_id, end_id FROM pipe_segments
           WHERE dataset_id = ? AND category = 'JS' AND version_to IS NULL""",
            [DS],
        ).fetchall()
    }
    graph = nx.MultiGraph()
    for fid, (a, b) in ends.items():
        graph.add_edge(a, b, key=fid)
    return graph, points, ends


def closing(result) -> set[str]:
    return {v.valve_id for v in result.valves if v.state == "close"}


def test_a_burst_is_bounded_by_the_valve_points_around_it(district, frame) -> None:
    graph, types, ends = js_network(district)
    result = isolate(district, frame, segment="JS22-JS6")
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    isolated = set(d["isolated"]["segments"])
    assert "JS22-JS6" in isolated and d["category"] == "JS"
    # the isolated part is closed: every end is a closed valve point, or all its pipes are isolated too
    boundary = set()
    for fid in isolated:
        for p in ends[fid]:
            if types[p] in VALVE_TYPES:
                boundary.add(p)
            else:
                assert {k for _, _, k in graph.edges(p, keys=True)} <= isolated, p
    assert closing(result) == boundary == {"JS22", "JS24", "JS59"}
    assert all(
        v["kind"] == "point" and v["type"] in VALVE_TYPES and v["state"] == "close" for v in d["valves"]
    )
    assert not boundary & set(d["isolated"]["nodes"])  # closed valve points stay outside
    lengths = dict(
        district.read()
        .execute(
            "SELECT feature_id, length_3d FROM pipe_segments WHERE version_to IS NULL AND dataset_id = ?",
            [DS],
        )
        .fetchall()
    )
    assert d["isolated"]["length_m"] == pytest.approx(sum(lengths[f] for f in isolated), abs=0.01)


def test_a_valve_that_fails_to_close_gives_the_next_ring(district, frame) -> None:
    first = isolate(district, frame, segment="JS22-JS6")
    second = isolate(district, frame, segment="JS22-JS6", failed_valves=["JS22"])
    a, b = set(first.to_dict()["isolated"]["segments"]), set(second.to_dict()["isolated"]["segments"])
    assert a < b
    assert {"JS21-JS22", "JS22-JS83"} <= b - a  # the pipes behind the failed valve well
    assert "JS22" not in closing(second) and [v.state for v in second.valves if v.valve_id == "JS22"] == [
        "failed"
    ]
    assert "JS21" in closing(second) - closing(first)  # the new ring
    assert {f["properties"]["role"] for f in second.to_geojson()["features"]} >= {
        "failed",
        "isolated",
        "valve",
        "valve_failed",
        "area",
    }


def test_the_secondary_outage_is_what_the_water_source_can_no_longer_reach(district, frame) -> None:
    graph, types, ends = js_network(district)
    (source,) = [p for p, t in types.items() if t == "水源"]
    for segment in ("JS22-JS6", "JS1-JS21", "JS114-JS1", "JS40-JS9"):
        result = isolate(district, frame, segment=segment)
        d = result.to_dict()
        assert d["outage"] is not None and not d["warnings"]
        cut = graph.copy()
        cut.remove_edges_from([(*ends[f], f) for f in d["isolated"]["segments"]])
        cut.remove_nodes_from(v.valve_id for v in result.valves if v.state == "close")
        fed = nx.node_connected_component(cut, source) if source in cut else set()
        expected = {f for f in ends if f not in d["isolated"]["segments"] and not set(ends[f]) & fed}
        assert set(d["outage"]["segments"]) == expected, segment
    whole = isolate(district, frame, segment="JS114-JS1").to_dict()  # the source's own main
    assert len(whole["outage"]["segments"]) == len(ends) - 1
    assert whole["affected"]["chambers"] == sum(
        1 for p, t in types.items() if t in ("阀门井", "检修井") and p != "JS1"
    )


def test_edge_valves_from_a_csv_bound_the_isolation(js_store, frame, tmp_path) -> None:
    before = isolate(js_store, frame, segment="JS6-JS23", dataset="js")
    assert set(before.to_dict()["isolated"]["segments"]) == {"JS22-JS6", "JS23-JS24", "JS6-JS23", "JS6-JS59"}
    csv = tmp_path / "valves.csv"
    csv.write_text("valve_id,link,node\nEV1,JS6-JS23,JS6\nEV2,JS6-JS59,JS6\n", encoding="utf-8")
    assert import_valves(js_store, "js", read_valve_csv(csv), source=str(csv)) == 2
    after = isolate(js_store, frame, segment="JS6-JS23", dataset="js")
    d = after.to_dict()
    assert set(d["isolated"]["segments"]) == {"JS6-JS23", "JS23-JS24"}
    assert {(v["valve_id"], v["kind"], v["point_id"], v["segment"]) for v in d["valves"]} == {
        ("EV1", "edge", "JS6", "JS6-JS23"),
        ("JS24", "point", "JS24", None),
    }
    # replacing the valve table takes effect at once (no stale cache)
    import_valves(js_store, "js", [], source="none")
    assert (
        isolate(js_store, frame, segment="JS6-JS23", dataset="js").to_dict()["isolated"]
        == before.to_dict()["isolated"]
    )


def test_bad_valve_tables_are_refused_with_the_valve_and_the_id(js_store, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("valve_id,link\nV1,JS6-JS23\n", encoding="utf-8")
    with pytest.raises(MissingColumnsError, match="node"):
        read_valve_csv(bad)
    bad.write_text("valve_id,link,node\nV1,JS6-JS23,JS6\nV2,,JS6\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="row 2.*'link'.*link is empty"):
        read_valve_csv(bad)
    with pytest.raises(InvalidInputError, match="valve 'V9'.*link 'NOPE'"):
        import_valves(js_store, "js", [ValveSpec("V9", "NOPE", "JS6")], source="t")
    with pytest.raises(InvalidInputError, match="valve 'V8'.*node 'JS1' is not an end of segment 'JS6-JS23'"):
        import_valves(js_store, "js", [ValveSpec("V8", "JS6-JS23", "JS1")], source="t")


def test_buildings_near_the_affected_pipes_are_counted(js_store, frame) -> None:
    result = isolate(js_store, frame, segment="JS22-JS6", dataset="js")
    assert result.buildings == 0
    pipe = shapely.force_2d(
        shapely.from_wkb(
            bytes(
                js_store.read()
                .execute(
                    "SELECT ST_AsWKB(geom) FROM pipe_segments "
                    "WHERE feature_id = 'JS22-JS6' AND dataset_id = 'js'"
                )
                .fetchone()[0]
            )
        )
    )
    near = shapely.box(*pipe.buffer(AFFECTED_BUFFER_M - 5).bounds).difference(
        pipe.buffer(AFFECTED_BUFFER_M - 10)
    )
    far = shapely.Point(pipe.centroid.x + 500, pipe.centroid.y + 500).buffer(10)
    with js_store.transaction() as con:
        for fid, geom in (("B1", near), ("B2", far)):
            con.execute(
                """INSERT INTO features (dataset_id, collection, feature_id, version_from, geom)
                           VALUES ('city', 'buildings', ?, 1, ST_GeomFromText(?))""",
                [fid, geom.wkt],
            )
    try:
        again = isolate(js_store, frame, segment="JS22-JS6", dataset="js")
        assert again.buildings == 1 and again.area is not None and again.area.intersects(near)
    finally:
        with js_store.transaction() as con:
            con.execute("DELETE FROM features WHERE dataset_id = 'city'")


def test_wrong_segments_and_networks_are_refused_clearly(district, frame) -> None:
    with pytest.raises(NotFoundError, match="NOPE"):
        isolate(district, frame, segment="NOPE")
    with pytest.raises(NotFoundError, match="NOPE"):
        isolate(district, frame, segment="NOPE", dataset=DS)
    with pytest.raises(InvalidInputError, match="PS.*no valves to close"):
        isolate(district, frame, segment="YS1-YS21")
    with pytest.raises(InvalidInputError, match="'JS9999'"):
        isolate(district, frame, segment="JS22-JS6", failed_valves=["JS9999"])


def test_gas_without_a_source_still_isolates_and_says_why_there_is_no_outage(district, frame) -> None:
    result = isolate(district, frame, segment=_first(district, "RQ"))
    d = result.to_dict()
    assert d["category"] == "RQ" and d["outage"] is None and result.outage_edges is None
    assert any("network RQ" in w and "no source (调压箱)" in w and "not computed" in w for w in d["warnings"])
    assert d["isolated"]["segments"] and all(v["type"] == "阀门" for v in d["valves"])


def test_a_segment_id_in_two_datasets_needs_the_dataset(js_store, frame) -> None:
    with pytest.raises(InvalidInputError, match=r"several datasets \(js, js2\)"):
        isolate(js_store, frame, segment="JS22-JS6")  # in both, even after js2 was re-ingested
    assert isolate(js_store, frame, segment="JS22-JS6", dataset="js2").to_dict()["dataset"] == "js2"


def test_a_reingest_never_serves_the_old_network(js_store, frame, tmp_path) -> None:
    first = compiled(js_store, "js2")
    assert compiled(js_store, "js2") is first
    src = _js_delivery(tmp_path, "js2")
    lines = (src / "JSLINE.csv").read_text(encoding="utf-8-sig").splitlines()
    (src / "JSLINE.csv").write_text(
        "\n".join(line for line in lines if not line.startswith("JS6,JS23,")) + "\n", encoding="utf-8-sig"
    )
    ingest_survey([src], js_store, SurveyOptions(), SETTINGS)
    second = compiled(js_store, "js2")
    assert second.version == first.version + 1 and second.n_edges == first.n_edges - 1
    with pytest.raises(NotFoundError, match="JS6-JS23"):
        isolate(js_store, frame, segment="JS6-JS23", dataset="js2")
    assert isolate(js_store, frame, segment="JS6-JS23").to_dict()["dataset"] == "js"  # now only in js


# -- fixtures and helpers -------------------------------------------------------------------------


def _first(store: DuckDBStore, category: str) -> str:
    return (
        store.read()
        .execute(
            """SELECT feature_id FROM pipe_segments WHERE dataset_id = ? AND category = ?
                                   AND version_to IS NULL ORDER BY feature_id LIMIT 1""",
            [DS, category],
        )
        .fetchone()[0]
    )


def _js_delivery(folder: Path, dataset_id: str) -> Path:
    """The sample's water network alone, as its own delivery."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("JSPOINT.csv", "JSLINE.csv"):
        shutil.copy(SAMPLE / name, folder / name)
    toml = (SAMPLE / "dataset.toml").read_text(encoding="utf-8")
    (folder / "dataset.toml").write_text(
        toml.replace('id = "jinan_district"', f'id = "{dataset_id}"'), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def js_store(tmp_path_factory) -> Iterator[DuckDBStore]:
    """A writable store with the sample's water network twice: datasets ``js`` and ``js2``."""
    store = DuckDBStore(":memory:")
    for ds in ("js", "js2"):
        ingest_survey([_js_delivery(tmp_path_factory.mktemp(ds), ds)], store, SurveyOptions(), SETTINGS)
    yield store
    store.close()
