"""连通性分析 and 上下游追踪: connected parts and dangling ends; where flow comes from and goes to.

* :func:`connectivity` — connected components (edges, length, categories, whether they hold a source)
  and dangling ends (degree-1 points) with their 特征/附属物, so planned stubs (预留口) and terminals
  (出水口, 消防栓...) can be told from real gaps.
* :func:`trace` — up- or downstream from a point or segment. Gravity networks (PS) flow as recorded in
  ``flow_dir`` when given, else from the higher to the lower invert (``start_h`` vs ``end_h``; a flat
  pipe is passable both ways and reported). Pressure networks (JS, RQ, RL, GY) flow away from their
  sources (:data:`~cim.analysis.network.SOURCES`) by hop distance; equal distances pass both ways.
* :func:`pollution_sources` — 污染溯源 in drainage: the inlets (雨水箅, 进水口, 入户) and upstream ends
  that drain to a point.

Example::

    down = trace(store, frame, start="YS1-YS21", direction="downstream")
    down.to_dict()["ends"]  # -> the outfalls reached
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, dijkstra

from cim.analysis.common import Frame, Located, clean, feature_collection, pick_dataset
from cim.analysis.network import (
    GRAVITY_CATEGORIES,
    PRESSURE_CATEGORIES,
    SOURCES,
    Labels,
    Network,
    compiled,
    locate,
)
from cim.errors import InvalidInputError, NotFoundError
from cim.pipes.dictionaries import FEATURE, POINT_TYPES
from cim.store import DuckDBStore

#: ``flow_dir`` values meaning start → end, and end → start (compared lower-cased, trimmed).
FORWARD_FLOW = frozenset(
    {"1", "+1", "forward", "正向", "顺向", "顺流", "start→end", "s-e", "s→e", "start->end"}
)
REVERSED_FLOW = frozenset(
    {"-1", "reverse", "reversed", "反向", "逆向", "逆流", "end→start", "e-s", "e→s", "end->start"}
)
#: Invert difference (m) below which a gravity pipe counts as flat (direction unknown).
FLAT_TOLERANCE_M = 0.0005
#: Where surface water or sewage enters a drainage network.
INLET_TYPES = ("雨水箅", "进水口", "入户")
#: Where a drainage network discharges.
OUTFALL_TYPES = ("出水口", "排放口")
#: Point types that legitimately end a pipe: single-pipe 特征 (预留口, 出水口, 盖堵...) and terminal 附属物.
EXPECTED_ENDS = tuple(p.name for p in POINT_TYPES.values() if p.kind == FEATURE and p.valence == (1, 1)) + (
    "排放口",
    "雨水箅",
    "消防栓",
    "水源",
    "水池",
    "泵站",
    "调压箱",
    "水表",
    "水表井",
    "化粪池",
    "隔油池",
    "调蓄池",
    "排气阀",
    "排污阀",
    "凝水缸",
)

Direction = Literal["upstream", "downstream"]


@dataclass
class ConnectivityResult:
    """Connected components (``labels`` per node, -1 = outside the selection) and dangling ends."""

    network: Network
    frame: Frame
    category: str | None
    edges: np.ndarray
    labels: np.ndarray
    components: list[dict[str, Any]]
    dangling: np.ndarray
    isolated_points: int

    def dangling_dicts(self) -> list[dict[str, Any]]:
        """Dangling ends with their type and whether such a point is expected to end a pipe."""
        net = self.network
        d = self.dangling
        expected = net.node_types(EXPECTED_ENDS)[d]
        return [
            {
                "point_id": pid,
                "feature_id": fid,
                "category": cat,
                "feature": f,
                "appurtenance": a,
                "expected": bool(x),
                "component": int(c),
            }
            for pid, fid, cat, f, a, x, c in zip(
                net.node_ids(d),
                net.node_feature_ids(d),
                net.node_category.take(d),
                net.feature.take(d),
                net.appurtenance.take(d),
                expected,
                self.labels[d],
                strict=True,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """Components (largest first) and dangling ends, JSON-ready."""
        ends = self.dangling_dicts()
        return clean(
            {
                "dataset": self.network.dataset,
                "version": self.network.version,
                "category": self.category,
                "component_count": len(self.components),
                "summary": {"components": len(self.components), "dangling_ends": len(ends),
                            "unexpected_dangling": sum(not e["expected"] for e in ends),
                            "isolated_points": self.isolated_points},
                "components": self.components,
                "dangling_count": len(ends),
                "unexpected_dangling": sum(not e["expected"] for e in ends),
                "dangling": ends,
                "isolated_points": self.isolated_points,
            }
        )

    def to_geojson(self) -> dict[str, Any]:
        """Dangling ends (role dangling) and the pipes of every component but the largest of its network (its
        main sub-type, else category) as role island."""
        net = self.network
        items = [
            Located(g, {"role": "dangling", "dataset": net.dataset, **d})
            for g, d in zip(net.node_points(self.dangling), self.dangling_dicts(), strict=True)
        ]
        main = {c["network"]: c["id"] for c in reversed(self.components)}
        islands = [c["id"] for c in self.components if main.get(c["network"]) != c["id"]]
        e = self.edges[np.isin(self.labels[self.network.src[self.edges]], islands)]
        for g, fid, cat, comp in zip(
            net.edge_lines(e), net.edge_ids(e), net.category.take(e), self.labels[net.src[e]], strict=True
        ):
            items.append(
                Located(
                    g,
                    {
                        "role": "island",
                        "feature_id": fid,
                        "dataset": net.dataset,
                        "category": cat,
                        "component": int(comp),
                    },
                )
            )
        return feature_collection(items, self.frame)


@dataclass
class TraceResult:
    """What a trace reached: node and edge indices of :attr:`network`, the ends, (drainage) the sources."""

    network: Network
    frame: Frame
    category: str
    direction: str
    start: str
    start_nodes: np.ndarray
    start_edge: int
    method: str
    nodes: np.ndarray
    edges: np.ndarray
    ends: np.ndarray
    undetermined: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    warnings: list[str] = field(default_factory=list)

    @property
    def length(self) -> float:
        """Length (m) of the traced pipes."""
        return float(np.nansum(self.network.length[self.edges]))

    def _points(self, nodes: np.ndarray) -> list[dict[str, Any]]:
        net = self.network
        return [
            {"point_id": pid, "feature_id": fid, "type": a or f}
            for pid, fid, a, f in zip(
                net.node_ids(nodes),
                net.node_feature_ids(nodes),
                net.appurtenance.take(nodes),
                net.feature.take(nodes),
                strict=True,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready trace: segments and points reached, ends, sources, undetermined pipes, warnings."""
        net = self.network
        return clean(
            {
                "dataset": net.dataset,
                "version": net.version,
                "category": self.category,
                "start": self.start,
                "direction": self.direction,
                "method": self.method,
                "summary": {"segments": len(self.edges), "points": len(self.nodes), "length_m": self.length,
                            "ends": len(self.ends), "sources": len(self.sources),
                            "undetermined_segments": len(self.undetermined)},
                "segments": net.edge_ids(self.edges),
                "nodes": net.node_ids(self.nodes),
                "length_m": self.length,
                "ends": self._points(self.ends),
                "sources": self._points(self.sources),
                "undetermined_segments": net.edge_ids(self.undetermined),
                "warnings": self.warnings,
            }
        )

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection with roles start, traced, end and (pollution sources) inlet."""
        net = self.network
        base = {"dataset": net.dataset}
        items: list[Located] = []
        if self.start_edge >= 0:
            items.append(
                Located(
                    net.edge_lines([self.start_edge])[0],
                    {
                        "role": "start",
                        "feature_id": net.edge_ids([self.start_edge])[0],
                        **base,
                        "category": net.category.at(self.start_edge),
                    },
                )
            )
        else:
            for g, v in zip(net.node_points(self.start_nodes), self.start_nodes.tolist(), strict=True):
                items.append(
                    Located(
                        g,
                        {
                            "role": "start",
                            "feature_id": net.node_feature_ids([v])[0],
                            "point_id": net.node_ids([v])[0],
                            **base,
                            "category": net.node_category.at(v),
                        },
                    )
                )
        undetermined = set(self.undetermined.tolist())
        e = self.edges[self.edges != self.start_edge]
        for g, i, fid, cat in zip(
            net.edge_lines(e), e.tolist(), net.edge_ids(e), net.category.take(e), strict=True
        ):
            items.append(
                Located(
                    g,
                    {
                        "role": "traced",
                        "feature_id": fid,
                        **base,
                        "category": cat,
                        "direction_known": i not in undetermined,
                    },
                )
            )
        for nodes, role in ((self.ends, "end"), (self.sources, "inlet")):
            for g, d, cat in zip(
                net.node_points(nodes), self._points(nodes), net.node_category.take(nodes), strict=True
            ):
                items.append(Located(g, {"role": role, **d, **base, "category": cat}))
        return feature_collection(items, self.frame)


def connectivity(
    store: DuckDBStore, frame: Frame, *, dataset: str | None = None, category: str | None = None
) -> ConnectivityResult:
    """Connected components and dangling ends of a dataset's network (one category, or all).

    Raises:
        NotFoundError: unknown dataset, or the store holds no pipe network.
        InvalidInputError: no dataset named while several hold pipes; a category the network lacks.
    """
    net = compiled(store, pick_dataset(store, dataset))
    if category is not None:
        category = category.upper()
        if category not in net.category.labels:
            raise InvalidInputError(
                f"dataset {net.dataset!r} has no {category} segments (it has "
                f"{', '.join(sorted(net.category.labels))})",
                field="category",
            )
        edges = np.flatnonzero(net.category.mask([category]))
    else:
        edges = np.arange(net.n_edges)
    n = net.n_nodes
    src, dst = net.src[edges], net.dst[edges]
    degree = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (src, dst)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    active = degree > 0
    # renumber components holding edges 0..k-1, largest first
    sizes = np.bincount(raw[src], minlength=n)
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    renumber = np.full(n, -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    labels = np.where(active, renumber[raw], -1)
    k = len(order)
    edge_label = labels[src]
    lengths = np.bincount(edge_label, weights=np.nan_to_num(net.length[edges]), minlength=k)
    node_counts = np.bincount(labels[active], minlength=k)
    fed = np.bincount(labels[_source_nodes(net) & active], minlength=k) > 0
    per_cat = _counts(net.category, edges, edge_label, k)
    per_sub = _counts(net.subtype, edges, edge_label, k)
    components = []
    for c in range(k):
        present = {label: int(v[c]) for label, v in per_cat.items() if v[c]}
        subs = {label: int(v[c]) for label, v in per_sub.items() if v[c]}
        main = max(subs or present, key=(subs or present).__getitem__) if present else None
        components.append(
            {
                "id": c,
                "edges": int(sizes[order[c]]),
                "nodes": int(node_counts[c]),
                "length_m": float(lengths[c]),
                "categories": sorted(present),
                "subtypes": sorted(subs),
                "network": main,
                "has_source": bool(fed[c]),
            }
        )
    lone = net.degree == 0
    if category is not None:
        lone &= net.node_category.mask([category])
    return ConnectivityResult(
        net,
        frame,
        category,
        edges,
        labels,
        components,
        np.flatnonzero(degree == 1),
        int(np.count_nonzero(lone)),
    )


def trace(
    store: DuckDBStore, frame: Frame, *, start: str, direction: Direction, dataset: str | None = None
) -> TraceResult:
    """Everything up- or downstream of a point (point_id / feature_id) or segment (feature_id / line_id).

    Raises:
        NotFoundError: unknown dataset, point or segment.
        InvalidInputError: bad direction; an ambiguous id; a network without flow (power, telecom) or,
            for a pressure network, without any source to tell the direction.
    """
    if direction not in ("upstream", "downstream"):
        raise InvalidInputError(
            f"direction must be 'upstream' or 'downstream', got {direction!r}", field="direction"
        )
    net = compiled(store, locate(store, start, dataset))
    category, start_nodes, start_edge = _start(net, start)
    flow = _flow(net, category)
    return _follow(net, frame, flow, category, start, start_nodes, start_edge, direction)


def pollution_sources(
    store: DuckDBStore, frame: Frame, *, at: str, dataset: str | None = None
) -> TraceResult:
    """污染溯源: the inlets (雨水箅, 进水口, 入户) and upstream ends of a drainage network that reach ``at``.

    Raises:
        NotFoundError: unknown dataset, point or segment.
        InvalidInputError: ``at`` is not in a drainage (PS) network.
    """
    net = compiled(store, locate(store, at, dataset))
    category, start_nodes, start_edge = _start(net, at)
    if category not in GRAVITY_CATEGORIES:
        raise InvalidInputError(
            f"{at!r} belongs to {net.category_name(category)}: pollution sources are traced "
            "in drainage networks (PS); use trace(direction='upstream') elsewhere",
            field="at",
        )
    result = _follow(net, frame, _flow(net, category), category, at, start_nodes, start_edge, "upstream")
    inlets = net.node_types(INLET_TYPES)[result.nodes]
    result.sources = result.nodes[inlets | np.isin(result.nodes, result.ends)]
    return result


# -- internals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flow:
    """Directed arcs of one category: arc i runs ``tail[i] → head[i]`` along edge ``edge[i]``."""

    method: str
    tail: np.ndarray
    head: np.ndarray
    edge: np.ndarray
    undetermined: np.ndarray
    down: csr_matrix
    up: csr_matrix
    out_degree: np.ndarray
    in_degree: np.ndarray
    warnings: tuple[str, ...]


def _start(net: Network, key: str) -> tuple[str, np.ndarray, int]:
    nodes = net.find_nodes(key)
    if len(nodes) > 1:
        raise InvalidInputError(
            f"point {key!r} exists in several networks of dataset {net.dataset!r} "
            f"({', '.join(str(c) for c in net.node_category.take(nodes))}): give its feature_id",
            field="start",
        )
    if nodes:
        v = nodes[0]
        edges = net.incident_edges(v)
        if not len(edges):
            raise NotFoundError(
                f"point {key!r} of dataset {net.dataset!r} has no pipe connected: nothing to trace"
            )
        return net.category.at(int(edges[0])) or "?", np.array([v], dtype=np.int64), -1
    e = net.find_edge(key, field="start")
    return net.category.at(e) or "?", np.array([net.src[e], net.dst[e]], dtype=np.int64), e


def _flow(net: Network, category: str) -> _Flow:
    if category in GRAVITY_CATEGORIES:
        return net.memo((("flow", category),), lambda: _gravity_flow(net, category))
    if category in PRESSURE_CATEGORIES:
        return net.memo((("flow", category),), lambda: _pressure_flow(net, category))
    raise InvalidInputError(
        f"{net.category_name(category)} carries no flow to trace; tracing applies to drainage "
        f"(PS) and pressure networks ({', '.join(PRESSURE_CATEGORIES)}); use connectivity",
        field="start",
    )


def _gravity_flow(net: Network, category: str) -> _Flow:
    edges = np.flatnonzero(net.category.mask([category]))
    recorded = np.array([_recorded_sense(label) for label in net.flow_dir.labels] + [0], dtype=np.int8)[
        net.flow_dir.codes[edges]
    ]
    drop = net.start_h[edges] - net.end_h[edges]
    by_invert = np.where(drop > FLAT_TOLERANCE_M, 1, np.where(drop < -FLAT_TOLERANCE_M, -1, 0))
    sense = np.where(recorded != 0, recorded, by_invert)
    warnings = []
    flat = edges[sense == 0]
    if len(flat):
        warnings.append(
            f"{len(flat)} {category} segments have no recorded flow direction and flat or missing "
            "inverts: traced both ways"
        )
    return _arcs(net, edges, sense, "recorded flow direction, else invert elevations (high → low)", warnings)


def _recorded_sense(flow_dir: str) -> int:
    """1 for a recorded start → end flow, -1 for end → start, 0 when the text says neither."""
    text = flow_dir.strip().lower()
    return 1 if text in FORWARD_FLOW else -1 if text in REVERSED_FLOW else 0


def _pressure_flow(net: Network, category: str) -> _Flow:
    edges = np.flatnonzero(net.category.mask([category]))
    names = SOURCES.get(category, ())
    sources = np.flatnonzero(net.node_types(names) & net.node_category.mask([category])) if names else []
    if not len(sources):
        raise InvalidInputError(
            f"network {category} of dataset {net.dataset} has no source "
            f"({'/'.join(names) or 'none defined'}): "
            "the flow direction of a pressure network is unknown without one",
            field="start",
        )
    n = net.n_nodes
    graph = coo_matrix((np.ones(len(edges)), (net.src[edges], net.dst[edges])), shape=(n, n)).tocsr()
    dist = dijkstra(graph, directed=False, indices=sources, unweighted=True, min_only=True)
    a, b = dist[net.src[edges]], dist[net.dst[edges]]
    sense = np.where(a < b, 1, np.where(a > b, -1, 0))
    warnings = []
    unfed = np.count_nonzero(np.isinf(a) & np.isinf(b))
    if unfed:
        warnings.append(f"{unfed} {category} segments are not connected to any source: traced both ways")
    return _arcs(net, edges, sense, "away from the sources (hop distance)", warnings)


def _arcs(net: Network, edges: np.ndarray, sense: np.ndarray, method: str, warnings: list[str]) -> _Flow:
    fwd, rev = sense >= 0, sense <= 0
    tail = np.concatenate([net.src[edges[fwd]], net.dst[edges[rev]]])
    head = np.concatenate([net.dst[edges[fwd]], net.src[edges[rev]]])
    edge = np.concatenate([edges[fwd], edges[rev]])
    n = net.n_nodes
    ones = np.ones(len(tail), dtype=np.int8)
    return _Flow(
        method,
        tail,
        head,
        edge,
        edges[sense == 0],
        csr_matrix((ones, (tail, head)), shape=(n, n)),
        csr_matrix((ones, (head, tail)), shape=(n, n)),
        np.bincount(tail, minlength=n),
        np.bincount(head, minlength=n),
        tuple(warnings),
    )


def _follow(
    net: Network,
    frame: Frame,
    flow: _Flow,
    category: str,
    start: str,
    start_nodes: np.ndarray,
    start_edge: int,
    direction: str,
) -> TraceResult:
    downstream = direction == "downstream"
    graph = flow.down if downstream else flow.up
    if start_edge >= 0:  # a segment starts from its downstream (or upstream) end(s)
        arcs = flow.edge == start_edge
        seeds = np.unique((flow.head if downstream else flow.tail)[arcs])
    else:
        seeds = start_nodes
    reached = np.zeros(net.n_nodes, dtype=bool)
    for s in seeds.tolist():
        if not reached[s]:
            reached[breadth_first_order(graph, s, directed=True, return_predecessors=False)] = True
    along = reached[flow.tail] if downstream else reached[flow.head]
    edges = np.unique(
        np.concatenate([flow.edge[along], [start_edge] if start_edge >= 0 else []]).astype(np.int64)
    )
    nodes = np.flatnonzero(reached)
    ends = nodes[(flow.out_degree if downstream else flow.in_degree)[nodes] == 0]
    undetermined = np.intersect1d(flow.undetermined, edges)
    warnings = list(flow.warnings) if len(undetermined) else []
    return TraceResult(
        net,
        frame,
        category,
        direction,
        start,
        start_nodes,
        start_edge,
        flow.method,
        nodes,
        edges,
        ends,
        undetermined,
        warnings=warnings,
    )


def _counts(labels: Labels, edges: np.ndarray, edge_label: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Edges per component for each value of ``labels``."""
    codes = labels.codes[edges]
    return {label: np.bincount(edge_label[codes == i], minlength=k) for i, label in enumerate(labels.labels)}


def _source_nodes(net: Network) -> np.ndarray:
    mask = np.zeros(net.n_nodes, dtype=bool)
    for category, names in SOURCES.items():
        if names:
            mask |= net.node_types(names) & net.node_category.mask([category])
    return mask
