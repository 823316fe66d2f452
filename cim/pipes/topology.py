"""The pipe network graph: nodes are pipe points, edges are segments; kept in the store for analyses.

Built set-wise from the staged tables; connected components come from scipy's sparse graph
routines, so a million-edge city network takes a second, not minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import networkx as nx
import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Topology:
    """Node and edge tables (store layout of ``network_nodes`` / ``network_edges``)."""

    nodes: pa.Table
    edges: pa.Table
    components: int


def build_topology(con: duckdb.DuckDBPyConnection) -> Topology:
    """Nodes and edges from ``stg_points`` / ``stg_segments`` joined with the final feature ids.

    Expects temp tables ``final_points`` (prow, feature_id, point_id, category) and ``final_segments``
    (feature_id, category, start_prow, end_prow).
    """
    edges = con.execute(
        """SELECT feature_id, category, start_prow, end_prow FROM final_segments
           WHERE start_prow IS NOT NULL AND end_prow IS NOT NULL ORDER BY feature_id"""
    ).to_arrow_table()
    nodes = con.execute("SELECT prow, point_id, category FROM final_points ORDER BY prow").to_arrow_table()
    prow = nodes.column("prow").to_numpy().astype(np.int64)
    n = len(prow)
    index = np.full(int(prow.max()) + 1 if n else 0, -1, dtype=np.int64)
    index[prow] = np.arange(n)
    a = index[edges.column("start_prow").to_numpy().astype(np.int64)] if edges.num_rows else np.array([], np.int64)
    b = index[edges.column("end_prow").to_numpy().astype(np.int64)] if edges.num_rows else np.array([], np.int64)
    if n:
        graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
        count, labels = connected_components(graph, directed=False)
    else:
        count, labels = 0, np.array([], dtype=np.int32)
    degree = np.bincount(np.concatenate([a, b]), minlength=n) if n else np.array([], np.int64)
    node_table = pa.table(
        {
            "node": pa.array(np.arange(n, dtype=np.int32)),
            "point_id": nodes.column("point_id"),
            "category": nodes.column("category"),
            "degree": pa.array(degree.astype(np.int32)),
            "component": pa.array(labels.astype(np.int32)),
        }
    )
    edge_table = pa.table(
        {
            "edge": pa.array(np.arange(edges.num_rows, dtype=np.int32)),
            "feature_id": edges.column("feature_id"),
            "category": edges.column("category"),
            "from_node": pa.array(a.astype(np.int32)),
            "to_node": pa.array(b.astype(np.int32)),
            "component": pa.array(labels[a].astype(np.int32) if len(a) else np.array([], np.int32)),
        }
    )
    return Topology(node_table, edge_table, int(count))


def load_graph(store_con: duckdb.DuckDBPyConnection, dataset_id: str) -> nx.MultiGraph:
    """The stored network of a dataset as a networkx multigraph (nodes carry point_id and category)."""
    graph: nx.MultiGraph = nx.MultiGraph()
    for node, point_id, category, degree in store_con.execute(
        "SELECT node, point_id, category, degree FROM network_nodes WHERE dataset_id = ?", [dataset_id]
    ).fetchall():
        graph.add_node(node, point_id=point_id, category=category, degree=degree)
    for edge, feature_id, a, b in store_con.execute(
        "SELECT edge, feature_id, from_node, to_node FROM network_edges WHERE dataset_id = ?", [dataset_id]
    ).fetchall():
        graph.add_edge(a, b, key=edge, feature_id=feature_id)
    return graph
