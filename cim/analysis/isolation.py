"""爆管关阀分析 (burst / valve isolation): which valves to close when a pressure pipe fails, what is cut off.

Domain §5.4. The network is cut into **valve segments** once per version and valve table: connected
components of the node–link incidence graph with the incidences blocked by operable valves removed —
exactly ``wntr.metrics.topographic.valve_segments`` (a point valve blocks every incidence at its node).
A query is then a walk over the small segment graph: starting at the failed pipe's segment, every valve
on the boundary is a valve to close; a valve in ``failed_valves`` (二次关阀: it does not close) is open,
so the walk goes on past it to the next ring of valves.

**Secondary outage**: with the isolated segments removed and their valves closed, every part of the
failed pipe's network no longer connected to a source (:data:`~cim.analysis.network.SOURCES`) is out of
supply. **Affected**: chambers and users (水表/水表井, 入户) in the isolated and outage parts, and the
buildings (``features`` of collection buildings / bim_elements) within :data:`AFFECTED_BUFFER_M` of
affected pipes, whose buffer is also the affected-area polygon.

Example::

    result = isolate(store, frame, segment="JS22-JS6", failed_valves=["JS22"])
    [v.valve_id for v in result.valves if v.state == "close"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components
from shapely.geometry.base import BaseGeometry

from cim.analysis.common import Frame, Located, clean, feature_collection, to_lonlat_geometry
from cim.analysis.network import GRAVITY_CATEGORIES, PRESSURE_CATEGORIES, SOURCES, Network, compiled, locate
from cim.analysis.valves import VALVE_POINT_TYPES, NetworkValves, network_valves, valve_state
from cim.errors import InvalidInputError
from cim.store import DuckDBStore

#: Points that stand for consumers: water meters and house connections.
USER_TYPES = ("水表", "水表井", "入户")
#: ``features`` collections counted as buildings.
BUILDING_COLLECTIONS = ("buildings", "bim_elements")
#: Buffer (m) around affected pipes: the affected area, and the distance for counting buildings.
AFFECTED_BUFFER_M = 30.0


@dataclass(frozen=True)
class ValveSegments:
    """A network cut into valve segments, with the valve incidences that join them.

    Segment labels: ``node_seg`` / ``edge_seg``; members of segment ``s``: ``seg_nodes[node_ptr[s]:
    node_ptr[s + 1]]`` and likewise ``seg_edges``. Entry ``j`` (valve ``entry_valve[j]`` blocking incidence
    ``entry_inc[j]``) joins segment ``entry_node_seg[j]`` (the node's side) and ``entry_edge_seg[j]``;
    ``seg_entries[entry_ptr[s]:entry_ptr[s + 1]]`` are the entries at the boundary of ``s``.
    """

    valves: NetworkValves
    n_segments: int
    node_seg: np.ndarray
    edge_seg: np.ndarray
    node_ptr: np.ndarray
    seg_nodes: np.ndarray
    edge_ptr: np.ndarray
    seg_edges: np.ndarray
    entry_node_seg: np.ndarray
    entry_edge_seg: np.ndarray
    entry_ptr: np.ndarray
    seg_entries: np.ndarray
    valves_on_incidence: np.ndarray

    def nodes_of(self, segments: np.ndarray) -> np.ndarray:
        """Nodes of ``segments``."""
        return _gather(self.node_ptr, self.seg_nodes, segments)

    def edges_of(self, segments: np.ndarray) -> np.ndarray:
        """Edges of ``segments``."""
        return _gather(self.edge_ptr, self.seg_edges, segments)


@dataclass(frozen=True)
class ValveAction:
    """A valve of the isolation: to ``close``, or ``failed`` (given as failing, so passed)."""

    valve: int  # index into the network's valves
    valve_id: str
    kind: str  # point | edge
    node: int
    edge: int  # -1 for point valves
    state: str  # close | failed


@dataclass
class IsolationResult:
    """What a failed pipe isolates (node/edge arrays index :attr:`network`; no outage without a source)."""

    network: Network
    frame: Frame
    category: str
    failed_edge: int
    valves: list[ValveAction]
    isolated_edges: np.ndarray
    isolated_nodes: np.ndarray
    outage_edges: np.ndarray | None
    outage_nodes: np.ndarray | None
    chambers: np.ndarray
    users: np.ndarray
    buildings: int
    warnings: list[str]

    @cached_property
    def area(self) -> BaseGeometry | None:
        """The affected area: the isolated and outage pipes buffered by :data:`AFFECTED_BUFFER_M` (2D)."""
        parts = [self.isolated_edges] + ([self.outage_edges] if self.outage_edges is not None else [])
        return _area(self.network, np.concatenate(parts))

    @property
    def isolated_length(self) -> float:
        """Length (m) of the isolated pipes."""
        return float(np.nansum(self.network.length[self.isolated_edges]))

    @property
    def outage_length(self) -> float | None:
        """Length (m) of the pipes out of supply, None when not computed."""
        return None if self.outage_edges is None else float(np.nansum(self.network.length[self.outage_edges]))

    def valve_dicts(self) -> list[dict[str, Any]]:
        """The valves as JSON-ready dicts with positions (lon, lat, ellipsoidal h)."""
        net = self.network
        nodes = np.array([v.node for v in self.valves], dtype=np.int64)
        lon, lat, h = self.frame.place(net.x[nodes], net.y[nodes], net.ground_h[nodes])
        pids = net.node_ids(nodes)
        out = []
        for i, v in enumerate(self.valves):
            out.append(
                {
                    "valve_id": v.valve_id,
                    "kind": v.kind,
                    "point_id": pids[i],
                    "segment": net.edge_ids([v.edge])[0] if v.edge >= 0 else None,
                    "type": net.appurtenance.at(v.node) if v.kind == "point" else "edge valve",
                    "position": [lon[i], lat[i], h[i]],
                    "state": v.state,
                }
            )
        return out

    def _points(self, nodes: np.ndarray, part: dict[int, str]) -> list[dict[str, Any]]:
        net = self.network
        return [
            {"point_id": pid, "feature_id": fid, "type": a or f, "part": part.get(int(n))}
            for n, pid, fid, a, f in zip(
                nodes,
                net.node_ids(nodes),
                net.node_feature_ids(nodes),
                net.appurtenance.take(nodes),
                net.feature.take(nodes),
                strict=True,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary like Giswater's mincut: failed segment, valves, isolated and outage parts,
        who is affected."""
        net = self.network
        part = {int(n): "isolated" for n in self.isolated_nodes}
        if self.outage_nodes is not None:
            part.update({int(n): "outage" for n in self.outage_nodes})
        outage = None
        if self.outage_edges is not None and self.outage_nodes is not None:
            outage = {
                "segments": net.edge_ids(self.outage_edges),
                "nodes": net.node_ids(self.outage_nodes),
                "length_m": self.outage_length,
            }
        return clean(
            {
                "dataset": net.dataset,
                "version": net.version,
                "category": self.category,
                "failed_segment": net.edge_ids([self.failed_edge])[0],
                "summary": {
                    "valves_to_close": sum(v.state == "close" for v in self.valves),
                    "failed_valves": sum(v.state == "failed" for v in self.valves),
                    "isolated_segments": len(self.isolated_edges),
                    "isolated_length_m": self.isolated_length,
                    "outage_segments": None if self.outage_edges is None else len(self.outage_edges),
                    "outage_length_m": self.outage_length if self.outage_edges is not None else None,
                    "chambers": len(self.chambers), "users": len(self.users), "buildings": self.buildings,
                },
                "valves": self.valve_dicts(),
                "valves_to_close": sum(v.state == "close" for v in self.valves),
                "isolated": {
                    "segments": net.edge_ids(self.isolated_edges),
                    "nodes": net.node_ids(self.isolated_nodes),
                    "length_m": self.isolated_length,
                },
                "outage": outage,
                "affected": {
                    "chambers": len(self.chambers),
                    "users": len(self.users),
                    "buildings": self.buildings,
                    "chamber_list": self._points(self.chambers, part),
                    "user_list": self._points(self.users, part),
                },
                "area": to_lonlat_geometry(self.area, self.frame) if self.area is not None else None,
                "area_buffer_m": AFFECTED_BUFFER_M,
                "warnings": self.warnings,
            }
        )

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection with roles failed, isolated, outage, valve, valve_failed, chamber, user, area."""
        net = self.network
        items: list[Located] = []

        def edges(index: np.ndarray, role: str) -> None:
            for geom, fid, cat in zip(
                net.edge_lines(index), net.edge_ids(index), net.category.take(index), strict=True
            ):
                items.append(
                    Located(geom, {"role": role, "feature_id": fid, "dataset": net.dataset, "category": cat})
                )

        def points(index: np.ndarray, role: str, extra: list[dict[str, Any]] | None = None) -> None:
            for i, (geom, fid, pid, cat) in enumerate(
                zip(
                    net.node_points(index),
                    net.node_feature_ids(index),
                    net.node_ids(index),
                    net.node_category.take(index),
                    strict=True,
                )
            ):
                props = {
                    "role": role,
                    "feature_id": fid,
                    "point_id": pid,
                    "dataset": net.dataset,
                    "category": cat,
                }
                items.append(Located(geom, {**props, **(extra[i] if extra else {})}))

        edges(np.array([self.failed_edge]), "failed")
        edges(self.isolated_edges[self.isolated_edges != self.failed_edge], "isolated")
        if self.outage_edges is not None:
            edges(self.outage_edges, "outage")
        valves = self.valve_dicts()
        for state, role in (("close", "valve"), ("failed", "valve_failed")):
            chosen = [i for i, v in enumerate(self.valves) if v.state == state]
            points(
                np.array([self.valves[i].node for i in chosen], dtype=np.int64),
                role,
                [
                    {
                        "valve_id": valves[i]["valve_id"],
                        "kind": valves[i]["kind"],
                        "segment": valves[i]["segment"],
                    }
                    for i in chosen
                ],
            )
        points(self.chambers, "chamber")
        points(self.users, "user")
        if self.area is not None:
            items.append(
                Located(
                    self.area,
                    {
                        "role": "area",
                        "dataset": net.dataset,
                        "category": self.category,
                        "buffer_m": AFFECTED_BUFFER_M,
                    },
                )
            )
        return feature_collection(items, self.frame)


def isolate(
    store: DuckDBStore,
    frame: Frame,
    *,
    segment: str,
    dataset: str | None = None,
    failed_valves: Sequence[str] = (),
) -> IsolationResult:
    """Isolate a failed pressure pipe: valves to close, isolated and out-of-supply parts, who is affected.

    Args:
        segment: the failed segment's feature_id or line_id.
        dataset: the dataset; without it the segment is looked up in every dataset.
        failed_valves: ids of valves that fail to close (valve_id, or point_id of a valve point): the
            isolation goes on past them to the next ring (二次关阀).

    Raises:
        NotFoundError: unknown dataset or segment.
        InvalidInputError: the segment id is ambiguous, it is not in a pressure network (JS, RQ, RL, GY),
            or a failed valve id is unknown.
    """
    dataset = locate(store, segment, dataset, points=False)
    net = compiled(store, dataset)
    e = net.find_edge(segment)
    category = net.category.at(e) or "?"
    _check_category(net, segment, category)
    state = valve_state(store, net.dataset)
    segs = valve_segments(store, net, state)
    failed = _failed_valves(net, segs.valves, failed_valves)
    warnings = list(segs.valves.skipped)

    inside, actions = _walk(segs, int(segs.edge_seg[e]), failed)
    touched = {a.valve for a in actions if a.state == "failed"}
    for key in failed_valves:
        if not touched.intersection(segs.valves.find(key, net)):
            warnings.append(
                f"failed valve {key!r} is not on the way out of the isolated part: it changes nothing"
            )
    if not any(a.state == "close" for a in actions):
        warnings.append(
            f"no operable valve bounds segment {net.edge_ids([e])[0]!r}: its whole connected "
            f"{category} network is isolated"
        )
    iso_edges, iso_nodes = np.sort(segs.edges_of(inside)), np.sort(segs.nodes_of(inside))

    out_edges = out_nodes = None
    outage = _outage(supply_tree(store, net, category, state), net, segs, inside, actions, category)
    if isinstance(outage, str):
        warnings.append(outage)
    else:
        out_edges, out_nodes = np.sort(segs.edges_of(outage)), np.sort(segs.nodes_of(outage))

    affected_nodes = iso_nodes if out_nodes is None else np.concatenate([iso_nodes, out_nodes])
    chambers = affected_nodes[net.is_chamber[affected_nodes]]
    users = affected_nodes[net.node_types(USER_TYPES)[affected_nodes]]
    result = IsolationResult(
        network=net,
        frame=frame,
        category=category,
        failed_edge=e,
        valves=actions,
        isolated_edges=iso_edges,
        isolated_nodes=iso_nodes,
        outage_edges=out_edges,
        outage_nodes=out_nodes,
        chambers=chambers,
        users=users,
        buildings=0,
        warnings=warnings,
    )
    if _has_buildings(store):  # the area is only drawn when there is something to count in it
        result.buildings = _buildings(store, result.area)
    return result


def valve_segments(store: DuckDBStore, net: Network, state: tuple | None = None) -> ValveSegments:
    """The valve segments of ``net`` with its current valves (memoised per network and valve table).

    ``state`` is :func:`~cim.analysis.valves.valve_state`, read here when not given.
    """
    state = state if state is not None else valve_state(store, net.dataset)
    return net.memo(("valve_segments", state), lambda: _segment(net, network_valves(store, net, state)))


def _check_category(net: Network, segment: str, category: str) -> None:
    if category in PRESSURE_CATEGORIES:
        return
    why = (
        "a gravity drainage network has no valves to close (trace it up- or downstream instead)"
        if category in GRAVITY_CATEGORIES
        else "it carries no pressurised flow that valves could shut off"
    )
    raise InvalidInputError(
        f"segment {segment!r} of dataset {net.dataset!r} belongs to {net.category_name(category)}: {why}; "
        f"valve isolation applies to the pressure networks {', '.join(PRESSURE_CATEGORIES)}",
        field="segment",
    )


def _failed_valves(net: Network, valves: NetworkValves, keys: Sequence[str]) -> set[int]:
    failed: set[int] = set()
    for key in keys:
        found = valves.find(key, net)
        if not found:
            raise InvalidInputError(
                f"failed valve {key!r} is not an operable valve of dataset {net.dataset!r} "
                f"(neither a valve id nor the point_id of a {'/'.join(VALVE_POINT_TYPES)} point)",
                field="failed_valves",
                value=key,
            )
        failed.update(found)
    return failed


def _walk(segs: ValveSegments, start: int, failed: set[int]) -> tuple[np.ndarray, list[ValveAction]]:
    """Segments reachable from ``start`` through failed valves only, and the valves met on the way."""
    valves = segs.valves
    entry_valve, entry_inc = valves.entry_valve, valves.entry_inc
    failed_on: dict[int, int] = {}
    for j in np.flatnonzero(np.isin(entry_valve, list(failed))).tolist() if failed else []:
        failed_on[int(entry_inc[j])] = failed_on.get(int(entry_inc[j]), 0) + 1

    def passable(inc: int) -> bool:
        return failed_on.get(inc, 0) == segs.valves_on_incidence[inc]

    inside = {start}
    stack = [start]
    while stack:
        s = stack.pop()
        for j in segs.seg_entries[segs.entry_ptr[s] : segs.entry_ptr[s + 1]].tolist():
            a, b = int(segs.entry_node_seg[j]), int(segs.entry_edge_seg[j])
            other = b if a == s else a
            if other not in inside and passable(int(entry_inc[j])):
                inside.add(other)
                stack.append(other)
    actions: dict[int, str] = {}
    for s in inside:
        for j in segs.seg_entries[segs.entry_ptr[s] : segs.entry_ptr[s + 1]].tolist():
            v = int(entry_valve[j])
            if v in failed:
                actions[v] = "failed"
            elif not (int(segs.entry_node_seg[j]) in inside and int(segs.entry_edge_seg[j]) in inside):
                actions.setdefault(v, "close")
    ordered = sorted(actions, key=lambda v: (actions[v] != "close", valves.ids[v]))
    return np.array(sorted(inside), dtype=np.int64), [
        ValveAction(
            v,
            valves.ids[v],
            "point" if valves.is_point[v] else "edge",
            int(valves.node[v]),
            int(valves.edge[v]),
            actions[v],
        )
        for v in ordered
    ]


@dataclass(frozen=True)
class SupplyTree:
    """A breadth-first spanning tree of the segment graph (all valves open) grown from a category's sources.

    Segment ``s`` is fed in normal operation iff ``pre[s] >= 0``; its tree descendants are
    ``by_pre[pre[s]:pre[s] + size[s]]``. A segment whose tree path to a source avoids the removed segments
    stays fed, so after a failure only the descendants of the removed segments need checking.
    """

    pre: np.ndarray
    size: np.ndarray
    by_pre: np.ndarray


def supply_tree(store: DuckDBStore, net: Network, category: str, state: tuple | None = None) -> SupplyTree:
    """The supply tree of ``category`` (memoised per network, valve table and category)."""
    state = state if state is not None else valve_state(store, net.dataset)
    segs = valve_segments(store, net, state)
    return net.memo((("supply_tree", category), state), lambda: _grow(net, segs, category))


def _grow(net: Network, segs: ValveSegments, category: str) -> SupplyTree:
    n = segs.n_segments
    names = SOURCES.get(category, ())
    sources = np.flatnonzero(net.node_types(names) & net.node_category.mask([category])) if names else []
    roots = np.unique(segs.node_seg[sources]) if len(sources) else np.zeros(0, np.int64)
    a, b = segs.entry_node_seg, segs.entry_edge_seg
    root = n
    rows = np.concatenate([a, b, np.full(len(roots), root)])
    cols = np.concatenate([b, a, roots])
    graph = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1))
    order, pred = breadth_first_order(graph, root, directed=True, return_predecessors=True)
    order = order[1:]
    parent = pred[order].astype(np.int64)
    child_ptr, child_pos = _csr(parent, n + 1)
    children = order[child_pos]
    levels = [np.array([root])]
    while True:
        kids = _gather(child_ptr, children, levels[-1])
        if not len(kids):
            break
        levels.append(kids)
    size = np.ones(n + 1, dtype=np.int64)
    for level in reversed(levels[1:]):
        np.add.at(size, pred[level], size[level])
    pre = np.full(n + 1, -1, dtype=np.int64)  # the virtual root takes no place: sources start at 0
    for frontier, kids in zip(levels[:-1], levels[1:], strict=True):
        counts = child_ptr[frontier + 1] - child_ptr[frontier]
        nz = counts > 0
        sizes = size[kids]
        before = np.cumsum(sizes) - sizes  # preorder: a parent, then each child's subtree in turn
        group_start = np.repeat(before[(np.cumsum(counts) - counts)[nz]], counts[nz])
        pre[kids] = np.repeat(pre[frontier][nz], counts[nz]) + 1 + before - group_start
    by_pre = np.full(n, -1, dtype=np.int64)
    fed = pre[:n] >= 0
    by_pre[pre[:n][fed]] = np.flatnonzero(fed)
    return SupplyTree(pre[:n], size[:n], by_pre[: int(fed.sum())])


def _outage(
    tree: SupplyTree,
    net: Network,
    segs: ValveSegments,
    inside: np.ndarray,
    actions: list[ValveAction],
    category: str,
) -> np.ndarray | str:
    """Segments cut off from every source once ``inside`` is removed and its valves closed, or a warning."""
    if tree.pre[inside[0]] < 0:
        names = SOURCES.get(category, ())
        listed = "/".join(names) if names else "none defined"
        anywhere = bool(names) and bool((net.node_types(names) & net.node_category.mask([category])).any())
        if not anywhere:
            return (
                f"network {category} of dataset {net.dataset} has no source ({listed}): "
                "secondary outage not computed"
            )
        first = net.edge_ids([segs.edges_of(inside)[0]])[0]
        return (
            f"the {category} network part of segment {first} in dataset {net.dataset} is connected to no "
            f"source ({listed}): secondary outage not computed"
        )
    closed_points = [segs.node_seg[a.node] for a in actions if a.state == "close" and a.kind == "point"]
    removed = np.unique(np.concatenate([inside, np.asarray(closed_points, dtype=np.int64)]))
    removed = removed[tree.pre[removed] >= 0]
    # only tree descendants of the removed segments can have lost their supply
    candidates = np.setdiff1d(tree.by_pre[_ranges(tree.pre[removed], tree.size[removed])], removed)
    if not len(candidates):
        return candidates
    entries = _gather(segs.entry_ptr, segs.seg_entries, candidates)
    a, b = segs.entry_node_seg[entries], segs.entry_edge_seg[entries]
    fed = len(candidates)
    ia, ib = _local(candidates, a, fed), _local(candidates, b, fed)
    keep = ~np.isin(a, removed) & ~np.isin(b, removed)
    graph = coo_matrix(
        (np.ones(int(keep.sum()), dtype=np.int8), (ia[keep], ib[keep])), shape=(fed + 1, fed + 1)
    )
    _, labels = connected_components(graph, directed=False)
    return candidates[labels[:fed] != labels[fed]]


def _local(candidates: np.ndarray, segments: np.ndarray, outside: int) -> np.ndarray:
    """Index of each segment in the sorted ``candidates``, ``outside`` for segments not among them."""
    at = np.minimum(np.searchsorted(candidates, segments), len(candidates) - 1)
    return np.where(candidates[at] == segments, at, outside)


def _area(net: Network, edges: np.ndarray) -> BaseGeometry | None:
    if not len(edges):
        return None
    lines = shapely.force_2d(net.edge_lines(edges))
    return shapely.buffer(shapely.multilinestrings(lines), AFFECTED_BUFFER_M, quad_segs=4)


def _has_buildings(store: DuckDBStore) -> bool:
    cur = store.read()
    try:
        return bool(
            cur.execute(
                "SELECT count(*) FROM (SELECT 1 FROM features WHERE version_to IS NULL AND "
                "list_contains(?, collection) LIMIT 1)",
                [list(BUILDING_COLLECTIONS)],
            ).fetchone()[0]
        )
    finally:
        cur.close()


def _buildings(store: DuckDBStore, area: BaseGeometry | None) -> int:
    if area is None:
        return 0
    cur = store.read()
    try:
        return int(
            cur.execute(
                """SELECT count(*) FROM features WHERE version_to IS NULL AND list_contains(?, collection)
               AND ST_Intersects(geom, ST_GeomFromWKB(?))""",
                [list(BUILDING_COLLECTIONS), shapely.to_wkb(area)],
            ).fetchone()[0]
        )
    finally:
        cur.close()


def _gather(ptr: np.ndarray, data: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``data[ptr[g]:ptr[g + 1]]`` for every g of ``groups``, concatenated (vectorised)."""
    groups = np.asarray(groups, dtype=np.int64)
    return data[_ranges(ptr[groups], ptr[groups + 1] - ptr[groups])]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``arange(s, s + n)`` for every start s and length n, concatenated (vectorised)."""
    total = int(lengths.sum())
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)


def _csr(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, order): the positions of each key value 0..size-1 grouped, as a CSR index."""
    order = np.argsort(keys, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=size))]).astype(np.int64), order


def _segment(net: Network, valves: NetworkValves) -> ValveSegments:
    n, m = net.n_nodes, net.n_edges
    ends = np.concatenate([net.src, net.dst])
    blocked = np.zeros(2 * m, dtype=bool)
    blocked[valves.entry_inc] = True
    # networks of different categories never connect, even where a point_id was shared by mistake
    to_node_label = {label: i for i, label in enumerate(net.node_category.labels)}
    edge_cat = np.array([to_node_label.get(label, -2) for label in net.category.labels] + [-1])[
        net.category.codes
    ]
    edge_cat = np.concatenate([edge_cat, edge_cat])
    node_cat = net.node_category.codes[ends]
    blocked |= (edge_cat != -1) & (node_cat != -1) & (edge_cat != node_cat)
    inc = np.flatnonzero(~blocked)
    graph = coo_matrix(
        (np.ones(len(inc), dtype=np.int8), (ends[inc], n + inc % max(m, 1))), shape=(n + m, n + m)
    )
    n_seg, labels = connected_components(graph, directed=False)
    node_seg, edge_seg = labels[:n].astype(np.int64), labels[n:].astype(np.int64)
    node_ptr, seg_nodes = _csr(node_seg, n_seg)
    edge_ptr, seg_edges = _csr(edge_seg, n_seg)
    e_node = node_seg[ends[valves.entry_inc]] if len(valves.entry_inc) else np.zeros(0, np.int64)
    e_edge = edge_seg[valves.entry_inc % max(m, 1)] if len(valves.entry_inc) else np.zeros(0, np.int64)
    between = np.flatnonzero(e_node != e_edge)
    entry_ptr, order = _csr(np.concatenate([e_node[between], e_edge[between]]), n_seg)
    seg_entries = np.concatenate([between, between])[order]
    return ValveSegments(
        valves=valves,
        n_segments=int(n_seg),
        node_seg=node_seg,
        edge_seg=edge_seg,
        node_ptr=node_ptr,
        seg_nodes=seg_nodes,
        edge_ptr=edge_ptr,
        seg_edges=seg_edges,
        entry_node_seg=e_node,
        entry_edge_seg=e_edge,
        entry_ptr=entry_ptr,
        seg_entries=seg_entries,
        valves_on_incidence=np.bincount(valves.entry_inc, minlength=2 * m),
    )
