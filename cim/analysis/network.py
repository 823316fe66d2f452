"""A dataset's current pipe network compiled to arrays, for fast repeated network queries.

Nodes are pipe points and edges segments, exactly as ``network_nodes`` / ``network_edges`` hold them
for the dataset's current version, with the attributes analyses need joined from the current
``pipe_points`` / ``pipe_segments``. Everything is numpy (text columns dictionary-encoded, ids kept as
Arrow arrays) plus a CSR node → incident-edge index, so a million-edge city network compiles in a few
seconds and a query walks only what it touches.

Compiled networks are cached per store object, dataset and version: a re-ingest makes a new version,
so the cache never serves a stale network. Analyses keep their own precomputations on the compiled
network with :meth:`Network.memo`.

Example::

    net = compiled(store, "jinan_district")
    e = net.edge_index("JS1-JS21")
    net.node_ids(net.src[[e]])  # -> ['JS1']
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from cim.errors import InvalidInputError, NotFoundError
from cim.pipes.dictionaries import CATEGORIES, POINT_TYPES, resolve_point_type
from cim.store import DuckDBStore

T = TypeVar("T")

#: Pressure networks: isolation by closing valves applies; flow runs away from the sources.
PRESSURE_CATEGORIES = ("JS", "RQ", "RL", "GY")
#: Gravity networks: flow follows the recorded direction or the falling inverts.
GRAVITY_CATEGORIES = ("PS",)

#: Supply sources per pressure network (feature or appurtenance, aliases such as 水厂 included).
#: 热源/换热站 are no CJJ 61 point types but are how heat surveys name their plants.
SOURCES: dict[str, tuple[str, ...]] = {
    "JS": ("水源", "水池", "泵站"),
    "RQ": ("调压箱",),
    "RL": ("热源", "换热站"),
    "GY": (),
}

#: Nodes with their point rows. Points sharing (point_id, category) are matched in delivery order, as
#: the topology numbered them; the window query is only needed when such duplicates exist.
_NODES_SQL = """
SELECT n.node, n.point_id, n.category, p.feature_id, p.feature, p.appurtenance, p.x, p.y, p.ground_h
FROM network_nodes n
LEFT JOIN pipe_points p ON p.dataset_id = $ds AND p.version_to IS NULL AND p.point_id = n.point_id
  AND p.category IS NOT DISTINCT FROM n.category
WHERE n.dataset_id = $ds"""

_NODES_DUPLICATES_SQL = """
WITH p AS (
  SELECT feature_id, point_id, category, feature, appurtenance, x, y, ground_h,
         row_number() OVER (PARTITION BY point_id, category ORDER BY source_file, source_row, feature_id) AS k
  FROM pipe_points WHERE dataset_id = $ds AND version_to IS NULL AND point_id IS NOT NULL),
n AS (
  SELECT node, point_id, category, row_number() OVER (PARTITION BY point_id, category ORDER BY node) AS k
  FROM network_nodes WHERE dataset_id = $ds)
SELECT n.node, n.point_id, n.category, p.feature_id, p.feature, p.appurtenance, p.x, p.y, p.ground_h
FROM n LEFT JOIN p ON p.point_id = n.point_id AND p.category IS NOT DISTINCT FROM n.category AND p.k = n.k"""

_EDGES_SQL = """
SELECT e.edge, e.from_node, e.to_node, e.feature_id, s.line_id, coalesce(s.category, e.category) AS category,
       s.subtype, s.kind, s.flow_dir, s.start_h, s.end_h, s.start_z, s.end_z,
       coalesce(s.length_3d, ST_Length(s.geom)) AS length, coalesce(s.diameter_mm, s.width_mm) AS diameter
FROM network_edges e
LEFT JOIN pipe_segments s ON s.feature_id = e.feature_id AND s.dataset_id = $ds AND s.version_to IS NULL
WHERE e.dataset_id = $ds"""


class SortedIds:
    """Text ids sorted once with Arrow and found by binary search (no Python dict over a million strings)."""

    def __init__(self, ids: pa.Array) -> None:
        order = pc.array_sort_indices(ids)  # nulls last
        present = len(ids) - ids.null_count
        self._positions = order.to_numpy()[:present]
        self._sorted = ids.take(order).slice(0, present)

    def __len__(self) -> int:
        return len(self._sorted)

    def __getitem__(self, i: int) -> str:
        return self._sorted[i].as_py()

    def find(self, key: str) -> np.ndarray:
        """Positions (in the original array) holding ``key``."""
        lo = bisect.bisect_left(self, key)
        hi = bisect.bisect_right(self, key, lo)
        return self._positions[lo:hi]


@dataclass(frozen=True)
class Labels:
    """A text column dictionary-encoded: ``codes`` (int32, -1 = NULL) index ``labels``."""

    codes: np.ndarray
    labels: tuple[str, ...]

    @classmethod
    def encode(
        cls, column: pa.ChunkedArray | pa.Array, canonical: Callable[[str], str] | None = None
    ) -> Labels:
        """Encode an Arrow string column; ``canonical`` maps each distinct value (alias → name)."""
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        encoded = pc.dictionary_encode(array.cast(pa.string()))
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
        labels = tuple(str(v) for v in encoded.dictionary.to_pylist())
        if canonical is None:
            return cls(codes, labels)
        names = [canonical(v) for v in labels]
        unique = tuple(dict.fromkeys(names))
        remap = np.array([unique.index(n) for n in names] + [-1], dtype=np.int32)
        return cls(remap[codes], unique)

    def mask(self, names: Iterable[str]) -> np.ndarray:
        """True where the value is one of ``names``."""
        chosen = set(names)
        wanted = [i for i, label in enumerate(self.labels) if label in chosen]
        if not wanted:
            return np.zeros(len(self.codes), dtype=bool)
        lookup = np.zeros(len(self.labels) + 1, dtype=bool)  # the last slot answers for NULL (-1)
        lookup[wanted] = True
        return lookup[self.codes]

    def take(self, index: np.ndarray | Sequence[int]) -> list[str | None]:
        """The values at ``index`` (None for NULL)."""
        codes = self.codes[np.asarray(index, dtype=np.int64)]
        return [self.labels[c] if c >= 0 else None for c in codes.tolist()]

    def at(self, i: int) -> str | None:
        """The value at position ``i``."""
        c = int(self.codes[i])
        return self.labels[c] if c >= 0 else None


def point_type_name(text: str) -> str:
    """The standard name of a 特征/附属物 value (窨井 → 检修井), or the text itself when unknown."""
    p = resolve_point_type(text)
    return p.name if p else text


class Network:
    """One dataset's current network as arrays; see the module docstring. Build with :func:`compiled`.

    Node arrays (length ``n_nodes``): ``point_id``, ``node_feature_id`` (Arrow), ``node_category``,
    ``feature``, ``appurtenance`` (:class:`Labels`, point types by standard name), ``is_chamber``, ``x``,
    ``y``, ``ground_h``. Edge arrays (length ``n_edges``): ``feature_id``, ``line_id`` (Arrow),
    ``category``, ``subtype``, ``kind``, ``flow_dir`` (Labels), ``src``, ``dst`` (node indices),
    ``start_h``, ``end_h``, ``start_z``, ``end_z``, ``length`` (m), ``diameter`` (mm). Incidence CSR: the
    incidences of node ``v`` are ``inc[indptr[v]:indptr[v + 1]]``; incidence ``i < n_edges`` is edge ``i``'s
    start, ``i ≥ n_edges`` edge ``i - n_edges``'s end.
    """

    def __init__(self, dataset: str, version: int, nodes: pa.Table, edges: pa.Table) -> None:
        self.dataset, self.version = dataset, version
        self.point_id = nodes.column("point_id").combine_chunks()
        self.node_feature_id = nodes.column("feature_id").combine_chunks()
        self.node_category = Labels.encode(nodes.column("category"))
        self.feature = Labels.encode(nodes.column("feature"), point_type_name)
        self.appurtenance = Labels.encode(nodes.column("appurtenance"), point_type_name)
        chamber_labels = [
            i
            for i, name in enumerate(self.appurtenance.labels)
            if name in POINT_TYPES and POINT_TYPES[name].is_chamber
        ]
        self.is_chamber = np.isin(self.appurtenance.codes, chamber_labels)
        self.x, self.y, self.ground_h = (_floats(nodes.column(c)) for c in ("x", "y", "ground_h"))
        self.feature_id = edges.column("feature_id").combine_chunks()
        self.line_id = edges.column("line_id").combine_chunks()
        self.category = Labels.encode(edges.column("category"))
        self.subtype = Labels.encode(edges.column("subtype"))
        self.kind = Labels.encode(edges.column("kind"))
        self.flow_dir = Labels.encode(edges.column("flow_dir"))
        self.src = edges.column("from_node").to_numpy().astype(np.int64)
        self.dst = edges.column("to_node").to_numpy().astype(np.int64)
        self.start_h, self.end_h, self.start_z, self.end_z, self.length, self.diameter = (
            _floats(edges.column(c)) for c in ("start_h", "end_h", "start_z", "end_z", "length", "diameter")
        )
        self.n_nodes, self.n_edges = nodes.num_rows, edges.num_rows
        ends = np.concatenate([self.src, self.dst])
        self.inc = np.argsort(ends, kind="stable")
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(ends, minlength=self.n_nodes))])
        self.degree = np.diff(self.indptr)
        self._edge_ids, self._line_ids = SortedIds(self.feature_id), SortedIds(self.line_id)
        self._node_fids, self._node_pids = SortedIds(self.node_feature_id), SortedIds(self.point_id)
        self._memo: dict[Any, Any] = {}
        self._type_masks: dict[frozenset[str], np.ndarray] = {}
        self._lock = threading.RLock()

    # -- lookups -------------------------------------------------------------------------------
    def edge_index(self, feature_id: str) -> int | None:
        """The edge of a segment feature_id, or None."""
        found = self._edge_ids.find(feature_id)
        return int(found[0]) if len(found) else None

    def edges_by_line_id(self, line_id: str) -> list[int]:
        """Edges whose delivered line_id (e.g. an EPANET link name) is ``line_id``."""
        return sorted(self._line_ids.find(line_id).tolist())

    def find_edge(self, key: str, *, field: str = "segment") -> int:
        """The edge of a segment feature_id or line_id.

        Raises:
            NotFoundError: no current segment of the dataset has that id, or it is not in the network.
            InvalidInputError: the line_id names several segments.
        """
        e = self.edge_index(key)
        if e is not None:
            return e
        found = self.edges_by_line_id(key)
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(self.edge_ids(found[:5]))
            raise InvalidInputError(
                f"line_id {key!r} names {len(found)} segments of dataset {self.dataset!r} "
                f"({ids}): give the feature_id",
                field=field,
            )
        raise NotFoundError(
            f"segment {key!r} is not in the current network of dataset {self.dataset!r} "
            "(neither a segment feature_id nor a line_id, or its end points are missing)"
        )

    def find_nodes(self, key: str) -> list[int]:
        """The node of a point feature_id, else the nodes of a point_id (several if categories share it)."""
        found = self._node_fids.find(key)
        if not len(found):
            found = self._node_pids.find(key)
        return sorted(found.tolist())

    # -- ids and attributes ----------------------------------------------------------------------
    def edge_ids(self, index: np.ndarray | Sequence[int]) -> list[str]:
        """Segment feature_ids of edges."""
        return self.feature_id.take(pa.array(np.asarray(index, dtype=np.int64))).to_pylist()

    def node_ids(self, index: np.ndarray | Sequence[int]) -> list[str | None]:
        """point_ids of nodes."""
        return self.point_id.take(pa.array(np.asarray(index, dtype=np.int64))).to_pylist()

    def node_feature_ids(self, index: np.ndarray | Sequence[int]) -> list[str | None]:
        """Point feature_ids of nodes (None where the point row was not found)."""
        return self.node_feature_id.take(pa.array(np.asarray(index, dtype=np.int64))).to_pylist()

    def node_types(self, names: Iterable[str]) -> np.ndarray:
        """Mask of nodes whose 特征 or 附属物 is one of ``names`` (standard names or aliases)."""
        standard = frozenset(point_type_name(n) for n in names)
        mask = self._type_masks.get(standard)
        if mask is None:
            mask = self._type_masks[standard] = self.feature.mask(standard) | self.appurtenance.mask(standard)
            mask.flags.writeable = False
        return mask

    def category_name(self, code: str | None) -> str:
        """'JS (给水)' for a category code."""
        cat = CATEGORIES.get(code or "")
        return f"{code} ({cat.name_zh})" if cat else str(code)

    def incident_edges(self, node: int) -> np.ndarray:
        """Edges meeting at ``node``."""
        return self.inc[self.indptr[node] : self.indptr[node + 1]] % max(self.n_edges, 1)

    # -- geometry -----------------------------------------------------------------------------
    def edge_lines(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Centre-lines (LINESTRING Z, storage CRS, 1985 heights) of edges as a shapely array."""
        e = np.asarray(index, dtype=np.int64)
        a, b = self.src[e], self.dst[e]
        coords = np.stack(
            [
                np.column_stack([self.x[a], self.y[a], self.start_z[e]]),
                np.column_stack([self.x[b], self.y[b], self.end_z[e]]),
            ],
            axis=1,
        )
        return shapely.linestrings(coords)

    def node_points(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Points (POINT Z at ground level) of nodes as a shapely array."""
        v = np.asarray(index, dtype=np.int64)
        return shapely.points(np.column_stack([self.x[v], self.y[v], self.ground_h[v]]))

    # -- per-network precomputations ---------------------------------------------------------------
    def memo(self, key: tuple, build: Callable[[], T]) -> T:
        """``build()`` once per network and ``key`` (thread-safe), e.g. valve segments or flow arcs.

        ``key[0]`` names the kind of value; building a new key drops older values of the same kind (say,
        valve segments for a valve table that has since changed).
        """
        with self._lock:
            if key not in self._memo:
                for old in [k for k in self._memo if k[0] == key[0]]:
                    del self._memo[old]
                self._memo[key] = build()
            return self._memo[key]


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow column as float64 with NaN for NULL (never DuckDB's masked 0)."""
    return np.asarray(column.to_numpy(), dtype="f8") if len(column) else np.zeros(0)


_CACHE: weakref.WeakKeyDictionary[DuckDBStore, dict[str, Network]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_COMPILE_LOCK = threading.Lock()


def current_version(store: DuckDBStore, dataset: str) -> int:
    """The dataset's current version; raises NotFoundError for an unknown dataset."""
    cur = store.read()
    try:
        row = cur.execute("SELECT current_version FROM datasets WHERE id = ?", [dataset]).fetchone()
    finally:
        cur.close()
    if row is None:
        raise NotFoundError(f"dataset {dataset!r} does not exist")
    return int(row[0])


def compiled(store: DuckDBStore, dataset: str) -> Network:
    """The compiled current network of ``dataset`` (cached per store, dataset and version).

    Raises:
        NotFoundError: the dataset does not exist or has no pipe network.
    """
    version = current_version(store, dataset)
    with _CACHE_LOCK:
        net = _CACHE.get(store, {}).get(dataset)
    if net is not None and net.version == version:
        return net
    with _COMPILE_LOCK:
        with _CACHE_LOCK:
            net = _CACHE.get(store, {}).get(dataset)
        if net is not None and net.version == version:
            return net
        net = _compile(store, dataset, version)
        with _CACHE_LOCK:
            _CACHE.setdefault(store, {})[dataset] = net
        return net


def _compile(store: DuckDBStore, dataset: str, version: int) -> Network:
    cur = store.read()
    try:
        nodes = cur.execute(_NODES_SQL, {"ds": dataset}).to_arrow_table()
        count = cur.execute("SELECT count(*) FROM network_nodes WHERE dataset_id = ?", [dataset]).fetchone()[
            0
        ]
        if nodes.num_rows != count:
            nodes = cur.execute(_NODES_DUPLICATES_SQL, {"ds": dataset}).to_arrow_table()
        edges = cur.execute(_EDGES_SQL, {"ds": dataset}).to_arrow_table()
    finally:
        cur.close()
    if nodes.num_rows == 0:
        raise NotFoundError(f"dataset {dataset!r} has no pipe network (no pipe points were ingested)")
    return Network(dataset, version, _by(nodes, "node"), _by(edges, "edge"))


def _by(table: pa.Table, column: str) -> pa.Table:
    """``table`` in the order of ``column`` (a permutation of 0..n-1), combined into single chunks."""
    order = np.argsort(table.column(column).to_numpy(), kind="stable")
    return table.take(pa.array(order)).combine_chunks()


def locate(
    store: DuckDBStore, key: str, dataset: str | None, *, segments: bool = True, points: bool = True
) -> str:
    """The dataset holding a current segment (feature_id, line_id) or point (feature_id, point_id) ``key``.

    With ``dataset`` given it is returned as is (:func:`compiled` checks it); else every dataset is searched.

    Raises:
        NotFoundError: no dataset holds ``key``.
        InvalidInputError: several datasets hold ``key`` (they are listed).
    """
    if dataset:
        return dataset  # checked by compiled()
    parts = []
    if segments:
        parts.append(
            "SELECT dataset_id FROM pipe_segments WHERE version_to IS NULL "
            "AND (feature_id = $k OR line_id = $k)"
        )
    if points:
        parts.append(
            "SELECT dataset_id FROM pipe_points WHERE version_to IS NULL "
            "AND (feature_id = $k OR point_id = $k)"
        )
    cur = store.read()
    try:
        found = [
            r[0]
            for r in cur.execute(
                f"SELECT DISTINCT dataset_id FROM ({' UNION ALL '.join(parts)}) ORDER BY 1", {"k": key}
            ).fetchall()
        ]
    finally:
        cur.close()
    what = " or ".join(w for w, on in (("segment", segments), ("point", points)) if on)
    if not found:
        raise NotFoundError(f"no dataset holds a current {what} {key!r}")
    if len(found) > 1:
        raise InvalidInputError(
            f"{what} {key!r} exists in several datasets ({', '.join(found)}): name the dataset",
            field="dataset",
        )
    return found[0]
