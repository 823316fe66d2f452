"""Long profile (纵断面) of a gravity run (排水): inverts, crowns, ground, slopes and the usual defects.

The run is an ordered list of segment ids forming a connected chain, or the shortest path (plan length) between
two point ids along the gravity segments of one category. Stations are plan distances from the first node.
Inverts are the recorded start_h/end_h (gravity convention, domain brief §2.6); crowns are invert + inner
height. Ground at a node is the point's surveyed ground elevation, else the ground model. When a ground model
(a DEM) is given, every node also reports its height (``ground_model``) and ``ground_mismatch`` where it
differs from the surveyed ground by more than ``ground_tolerance`` (default
:data:`cim.analysis.cover.GROUND_MISMATCH_M`).

Flow runs start → end of each segment unless its flow_dir says reversed (as in the QC rules), so a run may be
drawn either way; flags are judged along the flow:

* reversed slope (倒坡): the invert rises along the flow by more than :data:`REVERSED_TOLERANCE_M`;
* under minimum slope (:func:`min_slope`): GB 50014-2021 Table 5.2.10 — DN < 300 (inlet leads) 0.01, DN300
  0.003 (plastic 0.002); larger DN max(0.0005, 0.9/D[mm]) as the project's QC rule (DN400 0.00225, DN600
  0.0015, DN1000 0.0009);
* diameter decreasing downstream (管径逆变, GB 50014 §5.2.11) between consecutive segments of the run.

Example::

    prof = long_profile(store, frame, start="YS1", end="YS6")
    [(s.feature_id, round(s.slope_permille, 2), s.reversed_slope) for s in prof.segments]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
import numpy as np
from shapely.geometry import LineString, Point

from cim.analysis.common import Frame, Located, clean, feature_collection, pick_dataset
from cim.analysis.cover import GROUND_MISMATCH_M
from cim.analysis.ground import Ground, SurveyedGround
from cim.analysis.sections import category_name, section_dims, size_text
from cim.errors import InvalidInputError, NotFoundError
from cim.store import DuckDBStore

#: Rise (m) along the flow tolerated before a segment is called reversed (QC tolerance reversed_slope_m).
REVERSED_TOLERANCE_M = 0.005
#: Plastic materials (CJJ 61 codes) allowed the smaller DN300 minimum slope.
PLASTIC = ("PE", "PVC", "BLG")
_REVERSED_FLOW = ("-1", "reverse", "reversed", "反向", "逆向", "end→start", "e-s")


def min_slope(d_mm: float | None, material: str | None = None) -> float | None:
    """Minimum slope (m/m) of a gravity pipe of inner height ``d_mm`` (None when unknown); see the module text."""
    if d_mm is None or not math.isfinite(d_mm) or d_mm <= 0:
        return None
    if d_mm < 300:
        return 0.01
    if d_mm <= 300:
        return 0.002 if material in PLASTIC else 0.003
    return max(0.0005, 0.9 / d_mm)


@dataclass
class ProfileNode:
    """A node of the run (a manhole or feature point)."""

    point_id: str
    station: float
    x: float
    y: float
    ground: float
    ground_from: str
    invert: float
    depth: float
    ground_model: float | None = None
    ground_mismatch: bool = False


@dataclass
class ProfileSegment:
    """One segment as the run passes it (``from_id`` → ``to_id``); heights 1985, slope ‰ falling along the run."""

    feature_id: str
    from_id: str
    to_id: str
    forward: bool
    along_flow: bool
    station_from: float
    station_to: float
    length_m: float
    size: str | None
    height_m: float
    material: str | None
    invert_from: float
    invert_to: float
    crown_from: float
    crown_to: float
    slope_permille: float
    min_slope_permille: float | None
    reversed_slope: bool = False
    under_min_slope: bool = False
    diameter_decrease: bool = False

    @property
    def flags(self) -> list[str]:
        """Names of the raised flags."""
        return [n for n in ("reversed_slope", "under_min_slope", "diameter_decrease") if getattr(self, n)]


@dataclass
class LongProfile:
    """The result of :func:`long_profile`; keeps the frame to place its GeoJSON."""

    dataset: str
    category: str | None
    nodes: list[ProfileNode]
    segments: list[ProfileSegment]
    ground_name: str | None
    frame: Frame = field(repr=False)

    @property
    def length(self) -> float:
        """Plan length of the run (m)."""
        return self.nodes[-1].station if self.nodes else 0.0

    @property
    def direction(self) -> str:
        """``downstream`` when the run follows the flow throughout, ``upstream`` against it, else ``mixed``."""
        along = {s.along_flow for s in self.segments}
        return "downstream" if along == {True} else "upstream" if along == {False} else "mixed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result: summary, nodes and segments in run order, each segment with its flags."""
        count = {n: sum(getattr(s, n) for s in self.segments)
                 for n in ("reversed_slope", "under_min_slope", "diameter_decrease")}
        return clean({
            "summary": {"dataset": self.dataset, "category": self.category,
                        "category_name": category_name(self.category), "from": self.nodes[0].point_id,
                        "to": self.nodes[-1].point_id, "length_m": self.length, "segments": len(self.segments),
                        "direction": self.direction, **count, "ground_model": self.ground_name,
                        "ground_mismatches": sum(n.ground_mismatch for n in self.nodes)},
            "nodes": [asdict(n) for n in self.nodes],
            "segments": [{**asdict(s), "flags": s.flags} for s in self.segments],
        })

    def to_geojson(self) -> dict[str, Any]:
        """Segments along their inverts (role profile_segment, with flags) and nodes at the ground (role node)."""
        by_id = {n.point_id: n for n in self.nodes}
        items = []
        for s in self.segments:
            a, b = by_id[s.from_id], by_id[s.to_id]
            coords = [(a.x, a.y, s.invert_from), (b.x, b.y, s.invert_to)]
            geom = LineString(coords) if all(math.isfinite(c[2]) for c in coords) else LineString([c[:2] for c in coords])
            items.append(Located(geom, {"role": "profile_segment", "feature_id": s.feature_id, "dataset": self.dataset,
                                        "category": self.category, "size": s.size, "slope_permille": s.slope_permille,
                                        "flags": s.flags}, s.feature_id))
        for n in self.nodes:
            geom = Point(n.x, n.y, n.ground) if math.isfinite(n.ground) else Point(n.x, n.y)
            items.append(Located(geom, {"role": "node", "point_id": n.point_id, "station": n.station,
                                        "ground": n.ground, "invert": n.invert, "depth": n.depth}, n.point_id))
        return feature_collection(items, self.frame, summary=self.to_dict()["summary"])

    def svg(self) -> str:
        """Printable SVG drawing of the profile (see :mod:`cim.analysis.charts`)."""
        from cim.analysis.charts import profile_svg

        return profile_svg(self)

    def png(self, dpi: int = 150) -> bytes:
        """Printable PNG drawing of the profile."""
        from cim.analysis.charts import profile_png

        return profile_png(self, dpi)


def long_profile(
    store: DuckDBStore,
    frame: Frame,
    *,
    segments: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    dataset: str | None = None,
    ground: Ground | None = None,
    ground_tolerance: float | None = None,
) -> LongProfile:
    """The long profile of a gravity run: ``segments`` (ids in run order) or the path from ``start`` to ``end``.

    Raises:
        InvalidInputError: neither or both ways given; segments not gravity, repeated or not connected (the gap
            is named); start and end in different categories.
        NotFoundError: unknown segment or point ids; no gravity path between start and end.
    """
    ds = pick_dataset(store, dataset)
    if segments and (start or end):
        raise InvalidInputError("give either segments or start and end, not both", field="segments")
    if segments:
        rows = _by_ids(store, ds, list(segments))
        chain = _chain(rows)
    elif start and end:
        chain = _path(store, ds, start, end)
    else:
        raise InvalidInputError("give the run's segment ids, or a start and an end point id", field="segments")
    prof = _build(store, frame, ds, chain, ground)
    if ground is not None:
        _compare_ground(prof.nodes, ground, GROUND_MISMATCH_M if ground_tolerance is None else ground_tolerance)
    return prof


def _compare_ground(nodes: list[ProfileNode], ground: Ground, tolerance: float) -> None:
    """The ground model's height at every node, flagged where it and the survey differ by over ``tolerance``."""
    model = ground.heights(np.array([n.x for n in nodes], dtype="f8"), np.array([n.y for n in nodes], dtype="f8"))
    for node, h in zip(nodes, model, strict=True):
        if not math.isfinite(float(h)):
            continue
        node.ground_model = float(h)
        node.ground_mismatch = node.ground_from == "surveyed point" and abs(float(h) - node.ground) > tolerance


_COLUMNS = """feature_id, category, subtype, kind, shape, diameter_mm, width_mm, height_mm, material, flow_dir,
    start_id, end_id, start_h, end_h, start_z, end_z,
    ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1,
    ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2"""


def _by_ids(store: DuckDBStore, ds: str, ids: list[str]) -> list[dict[str, Any]]:
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidInputError(f"segments repeat {', '.join(repeated)}", field="segments")
    cur = store.read()
    try:
        found = {r["feature_id"]: r for r in cur.execute(
            f"""SELECT {_COLUMNS} FROM pipe_segments
                WHERE version_to IS NULL AND dataset_id = $ds AND list_contains($ids, feature_id)""",
            {"ds": ds, "ids": ids}).to_arrow_table().to_pylist()}
    finally:
        cur.close()
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(f"dataset {ds} has no current segment {', '.join(missing)}")
    wrong = [f"{i} ({found[i]['kind'] or 'unknown kind'})" for i in ids if found[i]["kind"] != "gravity"]
    if wrong:
        raise InvalidInputError(f"a long profile needs gravity segments; not gravity: {', '.join(wrong)}",
                                field="segments")
    return [found[i] for i in ids]


def _chain(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """(row, forward) in run order; raises naming the first gap."""
    if len(rows) == 1:
        return [(rows[0], True)]
    first, second = rows[0], rows[1]
    ends2 = {second["start_id"], second["end_id"]}
    if first["end_id"] in ends2:
        at, out = first["end_id"], [(first, True)]
    elif first["start_id"] in ends2:
        at, out = first["start_id"], [(first, False)]
    else:
        raise _gap(first, second)
    for row in rows[1:]:
        if row["start_id"] == at:
            out.append((row, True))
            at = row["end_id"]
        elif row["end_id"] == at:
            out.append((row, False))
            at = row["start_id"]
        else:
            raise _gap(out[-1][0], row, at)
    return out


def _gap(a: dict[str, Any], b: dict[str, Any], at: str | None = None) -> InvalidInputError:
    where = f"the run reaches {at} after {a['feature_id']}" if at else (
        f"{a['feature_id']} runs {a['start_id']}–{a['end_id']}")
    return InvalidInputError(f"segments {a['feature_id']} and {b['feature_id']} are not connected: {where}, "
                             f"{b['feature_id']} runs {b['start_id']}–{b['end_id']}", field="segments")


def _path(store: DuckDBStore, ds: str, start: str, end: str) -> list[tuple[dict[str, Any], bool]]:
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT {_COLUMNS} FROM pipe_segments WHERE version_to IS NULL AND dataset_id = $ds
                AND kind = 'gravity' AND start_id IS NOT NULL AND end_id IS NOT NULL ORDER BY feature_id""",
            {"ds": ds}).to_arrow_table().to_pylist()
    finally:
        cur.close()
    cats = {}
    for pid, name in ((start, "start"), (end, "end")):
        cats[name] = {r["category"] for r in rows if pid in (r["start_id"], r["end_id"])}
        if not cats[name]:
            raise NotFoundError(f"point {pid} is not on a gravity segment of dataset {ds}")
    common = sorted(cats["start"] & cats["end"], key=str)
    if not common:
        raise InvalidInputError(f"{start} ({'/'.join(map(str, cats['start']))}) and {end} "
                                f"({'/'.join(map(str, cats['end']))}) lie in different pipe categories", field="end")
    graph: nx.Graph = nx.Graph()
    for r in rows:
        if r["category"] != common[0] or r["start_id"] == r["end_id"]:
            continue
        length = math.hypot(r["x2"] - r["x1"], r["y2"] - r["y1"])
        old = graph.get_edge_data(r["start_id"], r["end_id"])
        if old is None or length < old["weight"]:
            graph.add_edge(r["start_id"], r["end_id"], weight=length, row=r)
    try:
        nodes = nx.shortest_path(graph, start, end, weight="weight")
    except nx.NetworkXNoPath:
        raise NotFoundError(f"no gravity path of category {common[0]} from {start} to {end}") from None
    if len(nodes) < 2:
        raise InvalidInputError("start and end are the same point", field="end")
    chain = []
    for a, b in zip(nodes, nodes[1:], strict=False):
        row = graph.edges[a, b]["row"]
        chain.append((row, row["start_id"] == a))
    return chain


def _f(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _build(store: DuckDBStore, frame: Frame, ds: str, chain: list[tuple[dict[str, Any], bool]],
           ground: Ground | None) -> LongProfile:
    segs: list[ProfileSegment] = []
    node_xy: list[tuple[str, float, float]] = []
    station = 0.0
    for row, forward in chain:
        a, b = ("start", "end") if forward else ("end", "start")
        xa, ya, xb, yb = (_f(row[k]) for k in (("x1", "y1", "x2", "y2") if forward else ("x2", "y2", "x1", "y1")))
        if not node_xy:
            node_xy.append((row[f"{a}_id"], xa, ya))
        node_xy.append((row[f"{b}_id"], xb, yb))
        _, height = section_dims(row["diameter_mm"], row["width_mm"], row["height_mm"])
        inv = {e: _f(row[f"{e}_h"]) if row[f"{e}_h"] is not None else _f(row[f"{e}_z"]) - height / 2
               for e in ("start", "end")}
        length = math.hypot(xb - xa, yb - ya)
        reversed_flow = str(row["flow_dir"] or "").strip().lower() in _REVERSED_FLOW
        along = forward != reversed_flow
        fall = inv[a] - inv[b]  # along the run
        flow_fall = fall if along else -fall
        need = min_slope(height * 1000 if math.isfinite(height) else None, row["material"])
        slope = fall / length if length > 0 else math.nan
        segs.append(ProfileSegment(
            feature_id=row["feature_id"], from_id=row[f"{a}_id"], to_id=row[f"{b}_id"], forward=forward,
            along_flow=along, station_from=station, station_to=station + length, length_m=length,
            size=size_text(row["shape"], row["diameter_mm"], row["width_mm"], row["height_mm"]), height_m=height,
            material=row["material"], invert_from=inv[a], invert_to=inv[b], crown_from=inv[a] + height,
            crown_to=inv[b] + height, slope_permille=slope * 1000, min_slope_permille=need * 1000 if need else None,
            reversed_slope=bool(flow_fall < -REVERSED_TOLERANCE_M),
            under_min_slope=bool(need is not None and length > 1 and flow_fall >= -REVERSED_TOLERANCE_M
                                 and flow_fall / length < need - 1e-9),
        ))
        station += length
    _flag_decrease(segs)
    nodes, ground_name = _nodes(store, ds, chain[0][0]["category"], node_xy, segs, ground)
    return LongProfile(ds, chain[0][0]["category"], nodes, segs, ground_name, frame)


def _flag_decrease(segs: list[ProfileSegment]) -> None:
    """Flag the downstream segment of each consecutive pair whose size drops along the flow."""
    for a, b in zip(segs, segs[1:], strict=False):
        if a.along_flow and b.along_flow:
            up, down = a, b
        elif not a.along_flow and not b.along_flow:
            up, down = b, a
        else:
            continue
        if math.isfinite(up.height_m) and math.isfinite(down.height_m) and down.height_m < up.height_m - 1e-9:
            down.diameter_decrease = True


def _nodes(store: DuckDBStore, ds: str, category: str | None, node_xy: list[tuple[str, float, float]],
           segs: list[ProfileSegment], ground: Ground | None) -> tuple[list[ProfileNode], str | None]:
    ids = [n[0] for n in node_xy]
    cur = store.read()
    try:
        surveyed = dict(cur.execute(
            """SELECT point_id, avg(ground_h) FILTER (WHERE category IS NOT DISTINCT FROM $cat) AS same
               FROM pipe_points WHERE version_to IS NULL AND dataset_id = $ds AND list_contains($ids, point_id)
                 AND isfinite(ground_h) GROUP BY point_id""", {"ds": ds, "cat": category, "ids": ids}).fetchall())
        anycat = dict(cur.execute(
            """SELECT point_id, avg(ground_h) FROM pipe_points WHERE version_to IS NULL AND dataset_id = $ds
               AND list_contains($ids, point_id) AND isfinite(ground_h) GROUP BY point_id""",
            {"ds": ds, "ids": ids}).fetchall())
    finally:
        cur.close()
    missing = [i for i, (pid, _, _) in enumerate(node_xy) if surveyed.get(pid) is None and anycat.get(pid) is None]
    model = None
    if missing:
        if ground is None:
            xs, ys = [n[1] for n in node_xy], [n[2] for n in node_xy]
            ground = SurveyedGround.from_store(store, ds, bbox=(min(xs) - 150, min(ys) - 150,
                                                                max(xs) + 150, max(ys) + 150))
        model = ground.heights(np.array([node_xy[i][1] for i in missing]), np.array([node_xy[i][2] for i in missing]))
    modelled = dict(zip(missing, [] if model is None else model, strict=True))
    inverts: list[list[float]] = [[] for _ in node_xy]
    for i, s in enumerate(segs):
        inverts[i].append(s.invert_from)
        inverts[i + 1].append(s.invert_to)
    nodes = []
    for i, (pid, x, y) in enumerate(node_xy):
        g = surveyed.get(pid)
        g = g if g is not None else anycat.get(pid)
        g_from = "surveyed point"
        if g is None:
            g, g_from = float(modelled.get(i, math.nan)), "ground model"
        finite = [v for v in inverts[i] if math.isfinite(v)]
        inv = min(finite) if finite else math.nan
        station = segs[i].station_from if i < len(segs) else segs[-1].station_to
        nodes.append(ProfileNode(pid, station, x, y, float(g), g_from, inv, float(g) - inv))
    return nodes, (ground.name if ground else None)
