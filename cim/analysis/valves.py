"""Isolation valves of a pipe network: valve points from the survey and edge-end valves in ``pipe_valves``.

Two kinds of valve shut a network off:

* **point valves** — pipe points whose 附属物 is 阀门 or 阀门井 (aliases such as 闸阀 included): closing
  one blocks all passage through that node;
* **edge valves** — like WNTR's valve layer, a valve on link L at node N blocks passage between L and N.
  They are stored in ``pipe_valves`` (segment feature_id + point_id of the end) from a CSV of
  (valve_id, link, node) or from :func:`wntr_valve_layer`, via :func:`import_valves`.

Both reduce to *valve incidences*: (edge, end) pairs of the network that an operable valve blocks;
:func:`network_valves` gives them for a compiled network (cached per valve-table state).

Example::

    specs = read_valve_csv(Path("valves.csv"))
    import_valves(store, "Net3", specs, source="valves.csv")
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.analysis.network import Network, compiled
from cim.errors import InvalidInputError, MissingColumnsError, NotFoundError, UnsupportedError
from cim.store import DuckDBStore

#: 附属物 whose point is an isolation valve (closing it blocks the node).
VALVE_POINT_TYPES = ("阀门", "阀门井")

#: Accepted CSV header names (lower case) for each field.
_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "valve_id": ("valve_id", "valve", "id", "阀门编号"),
    "link": ("link", "segment", "feature_id", "line_id", "管段"),
    "node": ("node", "point_id", "节点", "管线点"),
    "operable": ("operable", "可操作"),
}
_TRUE = {"1", "true", "t", "yes", "y", "是", "可", "可操作"}
_FALSE = {"0", "false", "f", "no", "n", "否", "不可", "不可操作"}


@dataclass(frozen=True)
class ValveSpec:
    """An edge-end valve as delivered: on ``link`` (segment feature_id or line_id) at ``node`` (point_id)."""

    valve_id: str
    link: str
    node: str
    operable: bool = True


@dataclass(frozen=True)
class NetworkValves:
    """The operable valves of a compiled network and the incidences they block.

    Valve ``k`` is ``ids[k]``; ``is_point[k]`` tells a point valve (``edge[k]`` = -1) from an edge valve;
    ``node[k]`` is its node. Entry ``j`` says valve ``entry_valve[j]`` blocks incidence ``entry_inc[j]``
    (numbered as in :class:`Network`). ``skipped`` explains stored valves that are not in the current
    network (e.g. after a re-ingest removed their segment).
    """

    ids: tuple[str, ...]
    is_point: np.ndarray
    node: np.ndarray
    edge: np.ndarray
    entry_valve: np.ndarray
    entry_inc: np.ndarray
    skipped: tuple[str, ...]

    def find(self, key: str, net: Network) -> list[int]:
        """Valves whose id is ``key``, or point valves at a point_id ``key``."""
        by_id = self._by_id.get(key)
        if by_id is not None:
            return list(by_id)
        nodes = set(net.find_nodes(key))
        return [int(k) for k in np.flatnonzero(self.is_point) if int(self.node[k]) in nodes]

    @cached_property
    def _by_id(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for k, vid in enumerate(self.ids):
            index.setdefault(vid, []).append(k)
        return index


def read_valve_csv(path: Path) -> list[ValveSpec]:
    """Edge-end valves from a CSV with columns valve_id, link, node (optional operable; UTF-8 or GB18030).

    Raises:
        InvalidInputError: missing file, missing columns, an empty field, a bad operable value or a
            repeated valve_id — with file, row (1 = first data row) and field.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("file does not exist", file=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030", errors="replace")
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise InvalidInputError("the valve table is empty", file=str(path))
    where = _header(rows[0], str(path))
    specs: list[ValveSpec] = []
    seen: dict[str, int] = {}
    for row_no, row in enumerate(rows[1:], start=1):
        if any(cell.strip() for cell in row):
            spec = _valve_row(row, where, str(path), row_no)
            if spec.valve_id in seen:
                raise InvalidInputError(
                    f"valve_id {spec.valve_id!r} repeats row {seen[spec.valve_id]}",
                    file=str(path),
                    row=row_no,
                    field="valve_id",
                    value=spec.valve_id,
                )
            seen[spec.valve_id] = row_no
            specs.append(spec)
    return specs


def _header(header: list[str], file: str) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    where = {
        name: names.index(alias)
        for name, aliases in _CSV_COLUMNS.items()
        for alias in reversed(aliases)
        if alias in names
    }
    missing = [n for n in ("valve_id", "link", "node") if n not in where]
    if missing:
        raise MissingColumnsError(f"the valve table lacks columns {missing} (has {header})", file=file)
    return where


def _valve_row(row: list[str], where: dict[str, int], file: str, row_no: int) -> ValveSpec:
    def cell(name: str) -> str:
        return row[where[name]].strip() if name in where and where[name] < len(row) else ""

    values = {}
    for name in ("valve_id", "link", "node"):
        values[name] = cell(name)
        if not values[name]:
            raise InvalidInputError(f"{name} is empty", file=file, row=row_no, field=name)
    flag = cell("operable").lower()
    if flag and flag not in _TRUE | _FALSE:
        raise InvalidInputError(
            f"operable must be true/false (or 1/0, 是/否), got {flag!r}",
            file=file,
            row=row_no,
            field="operable",
            value=flag,
        )
    return ValveSpec(values["valve_id"], values["link"], values["node"], flag not in _FALSE)


def wntr_valve_layer(
    inp_path: Path, placement: str = "strategic", n: int = 2, seed: int | None = 123
) -> list[ValveSpec]:
    """WNTR's generated valve layer of an EPANET model (``wntr.network.generate_valve_layer``).

    ``placement`` is 'strategic' (``n`` = links per node left without a valve: N-n placement) or 'random'
    (``n`` valves). Valve ids are ``V<index>`` of WNTR's table, links and nodes the model's names (stored
    by the EPANET converter as line_id and point_id).
    """
    if placement not in ("strategic", "random"):
        raise InvalidInputError(
            f"placement must be 'strategic' or 'random', got {placement!r}", field="placement"
        )
    try:
        import wntr
    except ImportError:
        raise UnsupportedError(
            "generating a valve layer needs wntr: pip install 'cim-service[network]'"
        ) from None
    try:
        wn = wntr.network.WaterNetworkModel(str(inp_path))
    except Exception as exc:  # noqa: BLE001 - wntr raises ValueError, KeyError, EpanetException...
        raise InvalidInputError(f"EPANET model could not be read: {exc}", file=str(inp_path)) from None
    layer = wntr.network.generate_valve_layer(wn, placement_type=placement, n=n, seed=seed)
    return [
        ValveSpec(f"V{i}", str(link), str(node))
        for i, link, node in zip(layer.index, layer["link"], layer["node"], strict=True)
    ]


def import_valves(
    store: DuckDBStore, dataset: str, valves: Sequence[ValveSpec], *, source: str, replace: bool = True
) -> int:
    """Store edge-end valves of ``dataset`` in ``pipe_valves`` (one transaction); returns the number stored.

    Each link must be a segment (feature_id, or line_id such as an EPANET link name) of the dataset's
    current network and each node one of that segment's ends. ``replace`` drops the dataset's stored
    valves first; otherwise valve ids must not clash with stored ones.

    Raises:
        NotFoundError: the dataset does not exist or has no network.
        InvalidInputError: a repeated valve id, an unknown link or node, or a node not at the link's ends
            (naming the valve and the id).
    """
    net = compiled(store, dataset)
    rows: dict[str, list] = {"valve_id": [], "feature_id": [], "point_id": [], "operable": []}
    seen: set[str] = set()
    for v in valves:
        if v.valve_id in seen:
            raise InvalidInputError(
                f"valve {v.valve_id!r} is given twice", field="valve_id", value=v.valve_id
            )
        seen.add(v.valve_id)
        try:
            e = net.find_edge(v.link, field="link")
        except (NotFoundError, InvalidInputError) as exc:  # re-raised naming the valve
            raise InvalidInputError(
                f"valve {v.valve_id!r}: link {v.link!r}: {exc}", field="link", value=v.link
            ) from None
        ends = (int(net.src[e]), int(net.dst[e]))
        at = [n for n in net.find_nodes(v.node) if n in ends]
        if not at:
            known = "is not a point" if not net.find_nodes(v.node) else "is not an end"
            raise InvalidInputError(
                f"valve {v.valve_id!r}: node {v.node!r} {known} of segment {net.edge_ids([e])[0]!r} in "
                f"dataset {dataset!r} (its ends are {', '.join(str(p) for p in net.node_ids(list(ends)))})",
                field="node",
                value=v.node,
            )
        rows["valve_id"].append(v.valve_id)
        rows["feature_id"].append(net.edge_ids([e])[0])
        rows["point_id"].append(net.node_ids([at[0]])[0])
        rows["operable"].append(bool(v.operable))
    table = pa.table(
        {
            **{k: pa.array(rows[k], pa.string()) for k in ("valve_id", "feature_id", "point_id")},
            "operable": pa.array(rows["operable"], pa.bool_()),
        }
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.transaction() as con:
        if replace:
            con.execute("DELETE FROM pipe_valves WHERE dataset_id = ?", [dataset])
        else:
            clash = con.execute(
                "SELECT valve_id FROM pipe_valves WHERE dataset_id = ? AND list_contains(?, valve_id) "
                "LIMIT 5",
                [dataset, rows["valve_id"]],
            ).fetchall()
            if clash:
                raise InvalidInputError(
                    f"valves {[c[0] for c in clash]} are already stored for dataset {dataset!r}: "
                    "use replace=True or new ids",
                    field="valve_id",
                )
        con.register("_valves", table)
        try:
            con.execute(
                """INSERT INTO pipe_valves (dataset_id, valve_id, feature_id, point_id, operable, source,
                                           created_at)
                   SELECT ?, valve_id, feature_id, point_id, operable, ?, ? FROM _valves""",
                [dataset, source, now],
            )
        finally:
            con.unregister("_valves")
    return table.num_rows


def valve_state(store: DuckDBStore, dataset: str) -> tuple:
    """A cheap fingerprint of the dataset's stored valves (changes with any insert, delete or edit)."""
    cur = store.read()
    try:
        return tuple(
            cur.execute(
                """SELECT count(*), max(created_at), bit_xor(hash(valve_id, feature_id, point_id, operable))
                   FROM pipe_valves WHERE dataset_id = ?""",
                [dataset],
            ).fetchone()
        )
    finally:
        cur.close()


def network_valves(store: DuckDBStore, net: Network, state: tuple | None = None) -> NetworkValves:
    """The operable valves of ``net``: its valve points and the stored edge valves (memoised on the network).

    ``state`` is :func:`valve_state`, read here when not given.
    """
    state = state if state is not None else valve_state(store, net.dataset)
    return net.memo(("valves", state), lambda: _load(store, net))


def _load(store: DuckDBStore, net: Network) -> NetworkValves:
    point_nodes = np.flatnonzero(net.appurtenance.mask(VALVE_POINT_TYPES))
    ids: list[str] = [
        fid if fid is not None else str(pid)
        for fid, pid in zip(net.node_feature_ids(point_nodes), net.node_ids(point_nodes), strict=True)
    ]
    counts = net.degree[point_nodes]
    first = np.repeat(net.indptr[point_nodes] - np.cumsum(counts) + counts, counts)
    point_inc = net.inc[first + np.arange(int(counts.sum()))]
    entry_valve = [np.repeat(np.arange(len(point_nodes)), counts)]
    entry_inc = [point_inc]
    cur = store.read()
    try:
        stored = cur.execute(
            """SELECT valve_id, feature_id, point_id FROM pipe_valves
               WHERE dataset_id = ? AND operable ORDER BY valve_id""",
            [net.dataset],
        ).fetchall()
    finally:
        cur.close()
    nodes, edges, skipped = [point_nodes], [np.full(len(point_nodes), -1, dtype=np.int64)], []
    valve_ids, feature_ids, point_ids = (
        (list(c) for c in zip(*stored, strict=True)) if stored else ([], [], [])
    )
    e = np.array(
        [net.edge_index(f) if net.edge_index(f) is not None else -1 for f in feature_ids], dtype=np.int64
    )
    for k in np.flatnonzero(e < 0):
        skipped.append(f"valve {valve_ids[k]!r}: segment {feature_ids[k]!r} is not in the current network")
    known = np.flatnonzero(e >= 0)
    ek = e[known]
    pid = pa.array([point_ids[k] for k in known], pa.string())
    at_start = pc.equal(pa.array(net.node_ids(net.src[ek]), pa.string()), pid).to_numpy(zero_copy_only=False)
    at_end = pc.equal(pa.array(net.node_ids(net.dst[ek]), pa.string()), pid).to_numpy(zero_copy_only=False)
    for k in known[~(at_start | at_end)]:
        skipped.append(
            f"valve {valve_ids[k]!r}: point {point_ids[k]!r} is no longer an end of segment "
            f"{feature_ids[k]!r}"
        )
    ok = at_start | at_end
    first = len(ids)
    ids += [valve_ids[k] for k in known[ok]]
    numbers = first + np.arange(int(ok.sum()))
    edges.append(ek[ok])
    nodes.append(np.where(at_start[ok], net.src[ek[ok]], net.dst[ek[ok]]))
    entry_valve += [numbers[at_start[ok]], numbers[at_end[ok]]]
    entry_inc += [ek[ok][at_start[ok]], ek[ok][at_end[ok]] + net.n_edges]
    return NetworkValves(
        ids=tuple(ids),
        is_point=np.arange(len(ids)) < len(point_nodes),
        node=np.concatenate(nodes).astype(np.int64),
        edge=np.concatenate(edges).astype(np.int64),
        entry_valve=np.concatenate(entry_valve).astype(np.int64),
        entry_inc=np.concatenate(entry_inc).astype(np.int64),
        skipped=tuple(skipped),
    )
