"""Tests for cim.pipes.topology: the pipe network graph built set-wise in DuckDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import networkx as nx
import pyarrow as pa
import pytest

from cim.pipes.topology import Topology, build_topology, load_graph
from cim.store import DatasetInfo, DuckDBStore
from cim.store.spatial import connect

# prow values are deliberately sparse; 40 is an isolated point, 50 a point no segment reaches.
#   component A: 10 -- 11 -- 12 and 11 -- 13 (a tee at 11)
#   component B: 20 -- 21 (two parallel segments)
POINTS = [
    (10, "P10", "J10", "JS"),
    (11, "P11", "J11", "JS"),
    (12, "P12", "J12", "JS"),
    (13, "P13", "J13", "JS"),
    (20, "P20", "Y20", "PS"),
    (21, "P21", "Y21", "PS"),
    (40, "P40", "Y40", "PS"),
]
SEGMENTS = [
    ("S1", "JS", 10, 11),
    ("S2", "JS", 11, 12),
    ("S3", "JS", 11, 13),
    ("S4", "PS", 20, 21),
    ("S5", "PS", 21, 20),
    ("S6", "PS", 21, None),  # dangling: no end point matched, so no edge
]


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect()
    yield connection
    connection.close()


def _stage(
    con: duckdb.DuckDBPyConnection, points: list[tuple[Any, ...]], segments: list[tuple[Any, ...]]
) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE final_points (prow BIGINT, feature_id VARCHAR, point_id VARCHAR, category VARCHAR)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE final_segments "
        "(feature_id VARCHAR, category VARCHAR, start_prow BIGINT, end_prow BIGINT)"
    )
    if points:
        con.executemany("INSERT INTO final_points VALUES (?, ?, ?, ?)", points)
    if segments:
        con.executemany("INSERT INTO final_segments VALUES (?, ?, ?, ?)", segments)


def _by_point(topology: Topology, column: str) -> dict[str, int]:
    nodes = topology.nodes.to_pydict()
    return dict(zip(nodes["point_id"], nodes[column], strict=True))


def test_build_topology_finds_two_components_and_an_isolated_node(con: duckdb.DuckDBPyConnection) -> None:
    _stage(con, POINTS, SEGMENTS)
    topology = build_topology(con)
    assert topology.components == 3
    component = _by_point(topology, "component")
    assert component["J10"] == component["J11"] == component["J12"] == component["J13"]
    assert component["Y20"] == component["Y21"]
    assert len({component["J10"], component["Y20"], component["Y40"]}) == 3


def test_build_topology_counts_degrees_including_parallel_segments(con: duckdb.DuckDBPyConnection) -> None:
    _stage(con, POINTS, SEGMENTS)
    degree = _by_point(build_topology(con), "degree")
    assert degree == {"J10": 1, "J11": 3, "J12": 1, "J13": 1, "Y20": 2, "Y21": 2, "Y40": 0}


def test_build_topology_numbers_nodes_densely_and_maps_segment_ends(con: duckdb.DuckDBPyConnection) -> None:
    _stage(con, POINTS, SEGMENTS)
    topology = build_topology(con)
    nodes = topology.nodes.to_pydict()
    assert nodes["node"] == list(range(len(POINTS)))
    assert nodes["point_id"] == [p[2] for p in POINTS]
    assert nodes["category"] == [p[3] for p in POINTS]
    edges = topology.edges.to_pydict()
    assert edges["feature_id"] == ["S1", "S2", "S3", "S4", "S5"]  # S6 has no end point
    assert edges["edge"] == [0, 1, 2, 3, 4]
    assert list(zip(edges["from_node"], edges["to_node"], strict=True)) == [
        (0, 1),
        (1, 2),
        (1, 3),
        (4, 5),
        (5, 4),
    ]
    node_component = dict(zip(nodes["node"], nodes["component"], strict=True))
    assert edges["component"] == [node_component[a] for a in edges["from_node"]]
    assert topology.nodes.schema.field("node").type == pa.int32()
    assert topology.edges.schema.field("to_node").type == pa.int32()


def test_build_topology_of_points_without_segments_has_one_component_each(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _stage(con, POINTS[:3], [])
    topology = build_topology(con)
    assert topology.components == 3
    assert topology.edges.num_rows == 0
    assert topology.nodes.column("degree").to_pylist() == [0, 0, 0]


def test_build_topology_of_an_empty_network_is_empty(con: duckdb.DuckDBPyConnection) -> None:
    _stage(con, [], [])
    topology = build_topology(con)
    assert topology.components == 0
    assert topology.nodes.num_rows == 0 and topology.edges.num_rows == 0


def test_build_topology_agrees_with_networkx_on_a_longer_chain(con: duckdb.DuckDBPyConnection) -> None:
    points = [(3 * i, f"F{i}", f"N{i}", "RQ") for i in range(60)]
    segments = [(f"E{i:03d}", "RQ", 3 * i, 3 * (i + 1)) for i in range(59) if i % 20 != 19]
    _stage(con, points, segments)
    topology = build_topology(con)
    graph = nx.Graph()
    graph.add_nodes_from(p[0] for p in points)
    graph.add_edges_from((s[2], s[3]) for s in segments)
    assert topology.components == nx.number_connected_components(graph) == 3


def test_load_graph_reads_back_the_topology_written_through_the_store(
    con: duckdb.DuckDBPyConnection,
    store: DuckDBStore,
    point_table: Callable[[list[dict[str, Any]]], pa.Table],
    segment_table: Callable[[list[dict[str, Any]]], pa.Table],
) -> None:
    _stage(con, POINTS, SEGMENTS)
    topology = build_topology(con)
    points = [
        {
            "feature_id": fid,
            "point_id": pid,
            "category": cat,
            "x": 500000.0 + prow,
            "y": 4057000.0,
            "ground_h": 30.0,
        }
        for prow, fid, pid, cat in POINTS
    ]
    segments = [
        {"feature_id": fid, "category": cat, "x1": 500000.0, "y1": 4057000.0, "x2": 500001.0, "y2": 4057000.0}
        for fid, cat, _, _ in SEGMENTS
    ]
    info = DatasetInfo(id="net", title="net", kind="pipe_survey", storage_crs="EPSG:4548")
    store.write_pipe_network(
        info, point_table(points), segment_table(segments), nodes=topology.nodes, edges=topology.edges
    )
    graph = load_graph(store.read(), "net")
    assert isinstance(graph, nx.MultiGraph)
    assert graph.number_of_nodes() == 7
    assert graph.number_of_edges() == 5
    assert nx.number_connected_components(graph) == 3
    assert graph.nodes[1] == {"point_id": "J11", "category": "JS", "degree": 3}
    assert graph.degree[1] == 3 and graph.degree[6] == 0
    assert graph.number_of_edges(4, 5) == 2
    assert sorted(d["feature_id"] for _, _, d in graph.edges(data=True)) == ["S1", "S2", "S3", "S4", "S5"]
    assert load_graph(store.read(), "other").number_of_nodes() == 0

    store.write_pipe_network(
        info, point_table(points), segment_table(segments), nodes=topology.nodes, edges=topology.edges
    )
    assert load_graph(store.read(), "net").number_of_nodes() == 7  # a re-ingest replaces, never duplicates
