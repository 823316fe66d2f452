"""Clearance check (净距): pipes against each other and structures against the pipes, GB 50289-2016.

Two checks between current pipe segments of one dataset:

* ``parallel``: pairs whose plan axes are near-parallel (angle ≤ :data:`PARALLEL_ANGLE_DEG` = 20°, so a
  pipe that bends away slowly still counts as running alongside) and overlap along the axis by at least
  :data:`MIN_OVERLAP_M` = 1 m (shorter side-by-side stretches are end-to-end contacts, not runs).
  Horizontal clearance = plan distance between the centre-lines minus both outer half-widths (outer wall
  to outer wall, domain brief §2.8), compared with the Table 4.1.9 cell.
* ``crossing``: pairs that cross in plan. Vertical clear gap at the crossing point =
  ``|z_a − z_b| − (h_a/2 + h_b/2)`` with the centre heights interpolated along each segment and ``h`` the
  section height (or diameter), compared with the Table 4.1.14 cell.

Pairs of one network (same category) are checked only where the table has a cell for them (gas↔gas,
power↔power, drain↔drain at crossings...), and never when they share a node: connected pipes are not a
clearance problem. Other pairs without a cell are counted as "no requirement in table" in the summary.

Structures (buildings, basements, foundations) are checked with the Table 4.1.9 building row: the horizontal
distance from the footprint to each pipe's outer wall; a pipe whose outer wall reaches into the footprint
in plan is a ``clash`` when it lies within the structure's height range (the vertical overlap is reported),
and ``under``/``over`` when it passes below the bottom or above the top.

Segments are straight survey segments (start and end point; heights ``start_z``/``end_z`` interpolated
linearly). Each finding has a ``location`` (closest points' midpoint, crossing point, or the pipe's point
nearest the structure) and a ``measure`` line (centre-line to centre-line, the vertical between the two
centre heights at a crossing, footprint edge to centre-line, or pipe top to structure bottom).

Survey data describe what is in the ground, so findings are risk flags, not errors: severity ``warn`` when
the deficit exceeds ``tolerance_m`` (default 0.10 m, about the plan/depth accuracy of hidden survey points,
CJJ 61: ±0.05 h and ±0.075 h), the cell is of confidence H or M and nothing was assumed (unknown size,
height, diameter or gas pressure class); ``info`` otherwise. Clashes are ``warn`` unless a height is
unknown. Sizes are nominal (wall thickness unknown), so outer walls are approximate.

Example::

    res = clearance_check(store, frame, dataset="jinan_district")
    res.summary["parallel"]["by_pair"]["drain|heat"]   # pairs, violations, min clearance, required
    res.to_geojson()                                     # findings as points, measures as lines
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from shapely.geometry.base import BaseGeometry

from cim.analysis.common import (
    POLYGONAL,
    Frame,
    Located,
    clean,
    feature_collection,
    pick_dataset,
    read_geometry,
)
from cim.errors import InvalidInputError, NotFoundError
from cim.pipes.clearance import (
    CellMatch,
    SegmentProfile,
    building_cell,
    horizontal_cell,
    largest_building_clearance,
    largest_pipe_clearance,
    segment_profile,
    vertical_cell,
)
from cim.pipes.dictionaries import CATEGORIES
from cim.store import DuckDBStore

CHECKS = ("parallel", "crossing")
#: Finding kinds of a structure check (building row of 4.1.9, plan contact in/under/over the height range).
STRUCTURE_CHECKS = ("structure", "clash", "under", "over")
#: Largest angle (degrees) between two plan axes that still counts as running in parallel.
PARALLEL_ANGLE_DEG = 20.0
#: Shortest overlap (m) along the axis for a parallel run.
MIN_OVERLAP_M = 1.0
#: How far apart (m, outer wall to outer wall) parallel pipes are examined and summarised by default.
SEARCH_M = 3.0
#: Largest ``search_m`` accepted: candidate pairs grow with its square.
MAX_SEARCH_M = 50.0
#: Deficits up to this (m) are within survey accuracy: reported as info.
TOLERANCE_M = 0.10
_EPS = 1e-9

XYZ = tuple[float, float, float]


@dataclass(frozen=True)
class ClearanceFinding:
    """One clearance shortfall or clash.

    ``feature_id``/``category`` name the pipe; ``other_*`` the second pipe or the structure (name or feature
    id, its collection as category). ``actual_m`` is the clear distance (horizontal for parallel/structure,
    vertical for crossing); ``required_m``/``cell`` are None where the table has no requirement (a clash is
    reported all the same). ``location`` is in the storage CRS with 1985 heights.
    """

    check: str
    severity: str
    feature_id: str
    category: str | None
    pipe_class: str
    other_id: str
    other_category: str | None
    other_class: str
    required_m: float | None
    actual_m: float
    cell: CellMatch | None
    location: XYZ
    measure: tuple[XYZ, XYZ] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    other_dataset: str | None = None

    @property
    def deficit_m(self) -> float | None:
        """How much clearance is missing (m), None without a requirement."""
        return None if self.required_m is None else self.required_m - self.actual_m

    def properties(self, dataset: str) -> dict[str, Any]:
        """The finding's JSON properties (no position)."""
        cell = self.cell.to_dict() if self.cell else None
        return {
            "check": self.check, "severity": self.severity, "feature_id": self.feature_id, "dataset": dataset,
            "category": self.category, "pipe_class": self.pipe_class, "other_feature_id": self.other_id,
            "other_dataset": self.other_dataset if self.check in STRUCTURE_CHECKS else dataset,
            "other_category": self.other_category,
            "other_class": self.other_class, "required_m": self.required_m, "actual_m": self.actual_m,
            "deficit_m": self.deficit_m, "cell": cell, **self.details,
        }


@dataclass(frozen=True)
class Structure:
    """A footprint (storage CRS) with its bottom and optional top (1985 heights)."""

    name: str
    footprint: BaseGeometry
    bottom_h: float
    top_h: float | None = None
    feature_id: str | None = None
    dataset: str | None = None
    collection: str | None = None


@dataclass
class ClearanceResult:
    """Findings, a summary by pair of classes, and what was checked."""

    dataset: str
    frame: Frame
    checks: tuple[str, ...]
    findings: list[ClearanceFinding]
    summary: dict[str, Any]
    structures: list[Structure] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def _lonlat(self) -> list[tuple[float, float, float]]:
        if not self.findings:
            return []
        x, y, h = (np.array([f.location[k] for f in self.findings], dtype="f8") for k in range(3))
        lon, lat, eh = self.frame.place(x, y, h)
        return list(zip(lon.tolist(), lat.tolist(), eh.tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe result; each finding carries its storage position and lon/lat/ellipsoidal height."""
        findings = []
        for f, (lon, lat, eh) in zip(self.findings, self._lonlat(), strict=True):
            x, y, h = f.location
            findings.append({**f.properties(self.dataset), "x": x, "y": y, "h": h,
                             "lon": round(lon, 9), "lat": round(lat, 9), "ellipsoidal_h": eh})
        structures = [{"name": s.name, "feature_id": s.feature_id, "dataset": s.dataset,
                       "collection": s.collection, "bottom_h": s.bottom_h, "top_h": s.top_h,
                       "area_m2": s.footprint.area} for s in self.structures]
        return clean({
            "dataset": self.dataset, "storage_crs": self.frame.storage_crs, "checks": list(self.checks),
            "parameters": self.parameters, "summary": self.summary, "structures": structures,
            "findings": findings,
        })

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: ``finding`` points, ``measure`` lines (the measured gap) and ``structure`` footprints."""
        items: list[Located] = []
        for s in self.structures:
            props = {"role": "structure", "name": s.name, "bottom_h": s.bottom_h, "top_h": s.top_h}
            if s.feature_id is not None:
                props |= {"feature_id": s.feature_id, "dataset": s.dataset, "category": s.collection}
            items.append(Located(s.footprint, props))
        for n, f in enumerate(self.findings):
            props = f.properties(self.dataset)
            point = f.location if math.isfinite(f.location[2]) else f.location[:2]
            items.append(Located(shapely.Point(point), {"role": "finding", **props}, id=f"finding-{n}"))
            if f.measure is not None and np.isfinite(f.measure).all():
                items.append(Located(shapely.LineString(f.measure),
                                     {"role": "measure", "check": f.check, "feature_id": f.feature_id,
                                      "dataset": self.dataset, "category": f.category,
                                      "actual_m": f.actual_m}, id=f"measure-{n}"))
        return feature_collection(items, self.frame, summary=clean(self.summary))


# ---------------------------------------------------------------------------------------------
# segments


@dataclass
class _Segments:
    """Current segments of a dataset as numpy arrays, with one :class:`SegmentProfile` per distinct kind."""

    table: pa.Table
    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    z1: np.ndarray
    z2: np.ndarray
    hw: np.ndarray  # outer half-width in plan (m), NaN when unknown
    hh: np.ndarray  # outer half-height (m), NaN when unknown
    node_a: np.ndarray
    node_b: np.ndarray
    cat: np.ndarray  # category index into ``categories``
    pid: np.ndarray  # profile index into ``profiles``
    categories: list[str | None]
    profiles: list[SegmentProfile]

    def __len__(self) -> int:
        return len(self.x1)

    def ids(self, idx: np.ndarray) -> list[str]:
        return self.table.column("feature_id").take(pa.array(idx, pa.int64())).to_pylist()

    def lines(self) -> np.ndarray:
        coords = np.stack([np.column_stack([self.x1, self.y1]), np.column_stack([self.x2, self.y2])], axis=1)
        return shapely.linestrings(coords)


_SEGMENTS_SQL = """
SELECT feature_id, category, subtype, burial, pressure, diameter_mm, width_mm, height_mm, start_z, end_z,
       ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1,
       ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2,
       hash(coalesce(category, ''), coalesce(start_id, '#' || feature_id || '#s')) AS node_a,
       hash(coalesce(category, ''), coalesce(end_id, '#' || feature_id || '#e')) AS node_b,
       dense_rank() OVER (ORDER BY category, subtype, burial, pressure, coalesce(diameter_mm, width_mm)) - 1 AS pid,
       dense_rank() OVER (ORDER BY category) - 1 AS cat
FROM pipe_segments
WHERE dataset_id = $dataset AND version_to IS NULL AND geom IS NOT NULL {where}
ORDER BY feature_id"""


def _floats(t: pa.Table, name: str) -> np.ndarray:
    return np.asarray(pc.fill_null(t.column(name).cast(pa.float64()), math.nan).to_numpy(), dtype="f8")


def _load_segments(store: DuckDBStore, dataset: str, *, within: BaseGeometry | None = None,
                   categories: Sequence[str] | None = None) -> _Segments:
    """Current segments of ``dataset`` (optionally intersecting ``within`` and of ``categories``)."""
    where = ""
    if within is not None:
        where += f" AND ST_Intersects(geom, ST_GeomFromText('{shapely.to_wkt(within, rounding_precision=-1)}'))"
    if categories is not None:
        where += " AND category IN (" + ", ".join(f"'{c}'" for c in categories) + ")"
    cur = store.read()
    try:
        t = cur.execute(_SEGMENTS_SQL.format(where=where), {"dataset": dataset}).to_arrow_table()
    finally:
        cur.close()
    x1, y1, x2, y2 = (_floats(t, c) for c in ("x1", "y1", "x2", "y2"))
    d, w, h = (_floats(t, c) / 1000.0 for c in ("diameter_mm", "width_mm", "height_mm"))
    pid = t.column("pid").to_numpy().astype(np.int64)
    cat = t.column("cat").to_numpy().astype(np.int64)
    profiles: list[SegmentProfile] = []
    categories_: list[str | None] = []
    if len(t):
        _, first = np.unique(pid, return_index=True)
        cols = {c: t.column(c).take(pa.array(first)).to_pylist()
                for c in ("category", "subtype", "burial", "pressure", "diameter_mm", "width_mm")}
        profiles = [segment_profile(**{c: cols[c][k] for c in cols}) for k in range(len(first))]
        _, cfirst = np.unique(cat, return_index=True)
        categories_ = t.column("category").take(pa.array(cfirst)).to_pylist()
    return _Segments(
        t, x1, y1, x2, y2, _floats(t, "start_z"), _floats(t, "end_z"),
        np.where(np.isfinite(w), w, d) / 2, np.where(np.isfinite(h), h, d) / 2,
        t.column("node_a").to_numpy(), t.column("node_b").to_numpy(), cat, pid, categories_, profiles,
    )


def _check_categories(categories: Sequence[str] | None) -> list[str] | None:
    if categories is None:
        return None
    if isinstance(categories, str):
        categories = [categories]
    out = [str(c).strip().upper() for c in categories]
    bad = [c for c in out if c not in CATEGORIES]
    if bad or not out:
        raise InvalidInputError(
            f"categories must be CJJ 61 category codes ({', '.join(CATEGORIES)}), got {', '.join(bad) or 'none'}",
            field="categories")
    return out


# ---------------------------------------------------------------------------------------------
# pipe pairs


def _candidate_pairs(s: _Segments, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) whose plan boxes lie within ``reach`` plus both half-widths (STRtree envelope query)."""
    if len(s) < 2:
        return np.array([], np.int64), np.array([], np.int64)
    grow = reach / 2 + np.nan_to_num(s.hw)  # both boxes grown: gap ≤ reach + hw_i + hw_j
    boxes = shapely.box(np.minimum(s.x1, s.x2) - grow, np.minimum(s.y1, s.y2) - grow,
                        np.maximum(s.x1, s.x2) + grow, np.maximum(s.y1, s.y2) + grow)
    i, j = shapely.STRtree(boxes).query(boxes)
    keep = i < j
    i, j = i[keep], j[keep]
    shared = ((s.node_a[i] == s.node_a[j]) | (s.node_a[i] == s.node_b[j])
              | (s.node_b[i] == s.node_a[j]) | (s.node_b[i] == s.node_b[j]))
    return i[~shared], j[~shared]


def _closest(px: np.ndarray, py: np.ndarray, ax: np.ndarray, ay: np.ndarray, dx: np.ndarray, dy: np.ndarray,
             ll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points p to segments a + t·d (``ll`` = |d|²), and t."""
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.where(ll > 0, ll, 1.0), 0.0, 1.0)
    return np.hypot(ax + t * dx - px, ay + t * dy - py), t


@dataclass
class _Pairs:
    """Geometry of candidate pairs: crossing flags, crossing parameters, closest points, angle and overlap."""

    i: np.ndarray
    j: np.ndarray
    crosses: np.ndarray
    s: np.ndarray  # parameter on i (crossing point or closest point)
    t: np.ndarray  # parameter on j
    dist: np.ndarray  # plan distance between centre-lines (0 where crossing)
    angle: np.ndarray  # degrees, 0..90
    overlap: np.ndarray  # m, along i's axis


def _pair_geometry(seg: _Segments, i: np.ndarray, j: np.ndarray) -> _Pairs:
    """Crossing test for every pair; closest points only for the near-parallel ones that do not cross."""
    ax, ay, bx, by = seg.x1[i], seg.y1[i], seg.x1[j], seg.y1[j]
    adx, ady = seg.x2[i] - ax, seg.y2[i] - ay
    bdx, bdy = seg.x2[j] - bx, seg.y2[j] - by
    la = np.hypot(adx, ady)
    lb = np.hypot(bdx, bdy)
    cross = adx * bdy - ady * bdx
    with np.errstate(invalid="ignore", divide="ignore"):
        sin = np.abs(cross) / (la * lb)
        dot = (adx * bdx + ady * bdy) / (la * lb)
        qx, qy = bx - ax, by - ay
        sc = (qx * bdy - qy * bdx) / cross
        tc = (qx * ady - qy * adx) / cross
        p1 = (qx * adx + qy * ady) / la  # j's ends projected on i's axis
        p2 = ((qx + bdx) * adx + (qy + bdy) * ady) / la
    crosses = (sin > 1e-9) & (sc >= -_EPS) & (sc <= 1 + _EPS) & (tc >= -_EPS) & (tc <= 1 + _EPS)
    angle = np.nan_to_num(np.degrees(np.arctan2(sin, np.abs(dot))), nan=90.0)
    overlap = np.nan_to_num(np.minimum(la, np.maximum(p1, p2)) - np.maximum(0.0, np.minimum(p1, p2)), nan=0.0)
    s = np.where(crosses, np.clip(np.nan_to_num(sc), 0, 1), 0.0)
    t = np.where(crosses, np.clip(np.nan_to_num(tc), 0, 1), 0.0)
    dist = np.zeros(len(i))
    m = ~crosses & (angle <= PARALLEL_ANGLE_DEG) & (overlap >= MIN_OVERLAP_M)
    if m.any():  # closest points: four end-to-segment distances (exact for segments that do not cross)
        ax, ay, bx, by, adx, ady, bdx, bdy = (v[m] for v in (ax, ay, bx, by, adx, ady, bdx, bdy))
        la2, lb2 = la[m] ** 2, lb[m] ** 2
        d0, s0 = _closest(bx, by, ax, ay, adx, ady, la2)
        d1, s1 = _closest(bx + bdx, by + bdy, ax, ay, adx, ady, la2)
        d2, t2 = _closest(ax, ay, bx, by, bdx, bdy, lb2)
        d3, t3 = _closest(ax + adx, ay + ady, bx, by, bdx, bdy, lb2)
        k = np.argmin(np.stack([d0, d1, d2, d3]), axis=0)
        one, zero = np.ones_like(d0), np.zeros_like(d0)
        dist[m] = np.choose(k, [d0, d1, d2, d3])
        s[m] = np.choose(k, [s0, s1, zero, one])
        t[m] = np.choose(k, [zero, one, t2, t3])
    return _Pairs(i, j, crosses, s, t, dist, angle, overlap)


def _cells(seg: _Segments, i: np.ndarray, j: np.ndarray, table: str
           ) -> tuple[np.ndarray, list[CellMatch | None], np.ndarray, list[str]]:
    """Per pair: cell index (−1: no cell) and label code; the cells and the ``classA|classB`` labels.
    Cells are looked up once per pair of profiles."""
    n = max(len(seg.profiles), 1)
    uniq, inv = np.unique(seg.pid[i] * n + seg.pid[j], return_inverse=True)
    pick = horizontal_cell if table == "4.1.9" else vertical_cell
    cells, names = [], []
    for k in uniq:
        a, b = seg.profiles[int(k // n)], seg.profiles[int(k % n)]
        cells.append(pick(a, b))
        names.append("|".join(sorted((_class_name(a, table), _class_name(b, table)))))
    has = np.array([c is not None for c in cells], dtype=bool)
    inv = inv.reshape(-1)
    labels = sorted(set(names))
    code = np.array([labels.index(x) for x in names], dtype=np.int64)
    return np.where(has[inv], inv, -1), cells, code[inv] if len(code) else inv, labels


def _class_name(p: SegmentProfile, table: str) -> str:
    return (p.vertical or p.horizontal) if table == "4.1.14" else p.horizontal


def _severity(deficit: float, cell: CellMatch | None, assumed: bool, tolerance: float) -> str:
    sure = cell is not None and cell.confidence in ("H", "M") and not cell.notes and not assumed
    return "warn" if sure and deficit > tolerance else "info"


def _summarise(labels: list[str], code: np.ndarray, checked: np.ndarray, actual: np.ndarray,
               required: np.ndarray, violation: np.ndarray, warn: np.ndarray) -> dict[str, Any]:
    """Per pair of classes: pairs checked, violations (warn/info), the smallest clearance, the requirement."""
    out: dict[str, Any] = {}
    for c in np.unique(code[checked]):
        m = checked & (code == c)
        out[labels[c]] = {
            "pairs": int(m.sum()), "violations": int((m & violation).sum()),
            "warn": int((m & violation & warn).sum()), "info": int((m & violation & ~warn).sum()),
            "min_actual_m": float(np.min(actual[m])), "required_m": sorted({float(v) for v in np.unique(required[m])}),
        }
    return out


def _counts(labels: list[str], code: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    counts = np.bincount(code[mask], minlength=len(labels))
    return {labels[c]: int(n) for c, n in enumerate(counts) if n}


def _z_at(seg: _Segments, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    return seg.z1[idx] + (seg.z2[idx] - seg.z1[idx]) * t


def _parallel(seg: _Segments, pr: _Pairs, search: float, tolerance: float
              ) -> tuple[list[ClearanceFinding], dict[str, Any]]:
    par = ~pr.crosses & (pr.angle <= PARALLEL_ANGLE_DEG) & (pr.overlap >= MIN_OVERLAP_M)
    i, j = pr.i[par], pr.j[par]
    hw_i, hw_j = seg.hw[i], seg.hw[j]
    size_known = np.isfinite(hw_i) & np.isfinite(hw_j)
    actual = pr.dist[par] - np.nan_to_num(hw_i) - np.nan_to_num(hw_j)
    idx, cells, code, labels = _cells(seg, i, j, "4.1.9")
    required = np.array([c.clearance_m if c else np.nan for c in cells] + [np.nan])[idx]
    same = seg.cat[i] == seg.cat[j]
    near = actual < search
    checked = (idx >= 0) & near
    violation = checked & (actual < required - _EPS)
    findings, warn = _pair_findings(seg, pr, par, i, j, idx, cells, actual, required, violation,
                                    ~size_known, "parallel", tolerance)
    summary = {
        "checked": int(checked.sum()), "violations": int(violation.sum()),
        "by_pair": _summarise(labels, code, checked, actual, required, violation, warn),
        "no_requirement": _counts(labels, code, (idx < 0) & ~same & near),
        "same_network_without_cell": int(((idx < 0) & same & near).sum()),
        "unknown_size": int((checked & ~size_known).sum()),
    }
    return findings, summary


def _crossing(seg: _Segments, pr: _Pairs, search: float, tolerance: float
              ) -> tuple[list[ClearanceFinding], dict[str, Any]]:
    cr = pr.crosses
    i, j = pr.i[cr], pr.j[cr]
    za, zb = _z_at(seg, i, pr.s[cr]), _z_at(seg, j, pr.t[cr])
    hh_i, hh_j = seg.hh[i], seg.hh[j]
    size_known = np.isfinite(hh_i) & np.isfinite(hh_j)
    gap = np.abs(za - zb) - np.nan_to_num(hh_i) - np.nan_to_num(hh_j)
    idx, cells, code, labels = _cells(seg, i, j, "4.1.14")
    required = np.array([c.clearance_m if c else np.nan for c in cells] + [np.nan])[idx]
    same = seg.cat[i] == seg.cat[j]
    height_known = np.isfinite(gap)
    checked = (idx >= 0) & height_known
    violation = checked & (gap < required - _EPS)
    findings, warn = _pair_findings(seg, pr, cr, i, j, idx, cells, gap, required, violation,
                                    ~size_known, "crossing", tolerance)
    summary = {
        "checked": int(checked.sum()), "violations": int(violation.sum()),
        "by_pair": _summarise(labels, code, checked, gap, required, violation, warn),
        "no_requirement": _counts(labels, code, (idx < 0) & ~same),
        "same_network_without_cell": int(((idx < 0) & same).sum()),
        "unknown_height": int(((idx >= 0) & ~height_known).sum()),
        "unknown_size": int((checked & ~size_known).sum()),
    }
    return findings, summary


def _pair_findings(seg: _Segments, pr: _Pairs, mask: np.ndarray, i: np.ndarray, j: np.ndarray,
                   idx: np.ndarray, cells: list[CellMatch | None], actual: np.ndarray, required: np.ndarray,
                   violation: np.ndarray, assumed: np.ndarray, check: str, tolerance: float
                   ) -> tuple[list[ClearanceFinding], np.ndarray]:
    """Findings for the violating pairs; also the warn flag of every pair (for the summary)."""
    warn = np.zeros(len(i), dtype=bool)
    rows = np.flatnonzero(violation)
    if not len(rows):
        return [], warn
    s, t, dist, angle, overlap = (v[mask][rows] for v in (pr.s, pr.t, pr.dist, pr.angle, pr.overlap))
    a, b = i[rows], j[rows]
    ax, ay = seg.x1[a] + (seg.x2[a] - seg.x1[a]) * s, seg.y1[a] + (seg.y2[a] - seg.y1[a]) * s
    bx, by = seg.x1[b] + (seg.x2[b] - seg.x1[b]) * t, seg.y1[b] + (seg.y2[b] - seg.y1[b]) * t
    za, zb = _z_at(seg, a, s), _z_at(seg, b, t)
    ids_a, ids_b = seg.ids(a), seg.ids(b)
    findings = []
    for n, r in enumerate(rows):
        cell = cells[idx[r]]
        pa_, pb_ = seg.profiles[seg.pid[a[n]]], seg.profiles[seg.pid[b[n]]]
        z_mid = float(np.nanmean([za[n], zb[n]])) if np.isfinite([za[n], zb[n]]).any() else math.nan
        sev = _severity(float(required[r] - actual[r]), cell, bool(assumed[r]), tolerance)
        warn[r] = sev == "warn"
        if check == "parallel":
            details = {"plan_distance_m": float(dist[n]), "angle_deg": float(angle[n]),
                       "overlap_m": float(overlap[n])}
            loc = ((ax[n] + bx[n]) / 2, (ay[n] + by[n]) / 2, z_mid)
        else:
            details = {"z_a": float(za[n]), "z_b": float(zb[n])}
            loc = (float(ax[n]), float(ay[n]), z_mid)
        if assumed[r]:
            details["notes"] = ["section size unknown: centre-line used for that pipe"]
        findings.append(ClearanceFinding(
            check, sev, ids_a[n], seg.categories[seg.cat[a[n]]], pa_.label, ids_b[n],
            seg.categories[seg.cat[b[n]]], pb_.label, float(required[r]), float(actual[r]), cell,
            tuple(float(v) for v in loc),  # type: ignore[arg-type]
            ((float(ax[n]), float(ay[n]), float(za[n])), (float(bx[n]), float(by[n]), float(zb[n]))), details))
    return findings, warn


def clearance_check(
    store: DuckDBStore,
    frame: Frame,
    *,
    dataset: str | None = None,
    area: dict[str, Any] | str | BaseGeometry | None = None,
    crs: str | None = None,
    categories: Sequence[str] | None = None,
    checks: Sequence[str] = CHECKS,
    search_m: float = SEARCH_M,
    tolerance_m: float = TOLERANCE_M,
) -> ClearanceResult:
    """Parallel runs (Table 4.1.9) and crossings (Table 4.1.14) of the current pipes of ``dataset``.

    ``area`` (a polygon in ``crs``, default CRS84) limits the check to segments that touch it; ``categories``
    (CJJ 61 codes, e.g. ``["JS", "PS"]``) to those networks. Parallel pairs are examined up to ``search_m``
    apart (outer wall to outer wall; never less than the table's largest pipe value, 2.0 m). Only shortfalls
    are findings; the summary lists, per check and pair of classes, the pairs checked, violations (warn/info),
    the smallest clearance and the requirement, plus the pairs with no requirement in the table.

    Raises:
        NotFoundError: no such dataset / no pipes.
        InvalidInputError: unknown check or category, bad area, negative tolerance.
        OutOfRegionError: the area lies outside the region (e.g. given in the wrong CRS).
    """
    checks = tuple(dict.fromkeys([checks] if isinstance(checks, str) else checks))
    bad = [c for c in checks if c not in CHECKS]
    if bad or not checks:
        raise InvalidInputError(f"checks must be among {', '.join(CHECKS)}, got {', '.join(bad) or 'none'}",
                                field="checks")
    if not (0 <= search_m <= MAX_SEARCH_M):
        raise InvalidInputError(f"search_m must be between 0 and {MAX_SEARCH_M:g} m, got {search_m}",
                                field="search_m")
    search = max(float(search_m), largest_pipe_clearance())
    if not (tolerance_m >= 0 and math.isfinite(tolerance_m)):
        raise InvalidInputError(f"tolerance_m must be a non-negative number, got {tolerance_m}", field="tolerance_m")
    cats = _check_categories(categories)
    within = read_geometry(area, crs, frame, kinds=POLYGONAL, field_name="area") if area is not None else None
    ds = pick_dataset(store, dataset)
    seg = _load_segments(store, ds, within=within, categories=cats)
    i, j = _candidate_pairs(seg, search)
    pr = _pair_geometry(seg, i, j)
    findings: list[ClearanceFinding] = []
    summary: dict[str, Any] = {"segments": len(seg), "candidate_pairs": len(i)}
    for check, run in (("parallel", _parallel), ("crossing", _crossing)):
        if check in checks:
            f, summary[check] = run(seg, pr, search, tolerance_m)
            findings += f
    findings.sort(key=lambda f: (f.severity != "warn", -(f.deficit_m or 0.0)))
    summary["findings"] = {"warn": sum(f.severity == "warn" for f in findings),
                           "info": sum(f.severity == "info" for f in findings)}
    params = {"parallel_angle_deg": PARALLEL_ANGLE_DEG, "min_overlap_m": MIN_OVERLAP_M, "search_m": search,
              "tolerance_m": tolerance_m, "categories": cats, "area": within is not None}
    return ClearanceResult(ds, frame, checks, findings, summary, parameters=params)


# ---------------------------------------------------------------------------------------------
# structures


def _structure_findings(seg: _Segments, lines: np.ndarray, tree: shapely.STRtree, st: Structure,
                        tolerance: float) -> tuple[list[ClearanceFinding], dict[str, Any]]:
    """The building row of Table 4.1.9 and clashes for one structure against ``seg``."""
    reach = largest_building_clearance()
    hw = np.nan_to_num(seg.hw)
    cand = np.sort(tree.query(st.footprint, predicate="dwithin", distance=reach + float(hw.max(initial=0))))
    clear = shapely.distance(st.footprint, lines[cand]) - hw[cand]
    ids = seg.ids(cand)
    findings: list[ClearanceFinding] = []
    by_class: dict[str, dict[str, Any]] = {}
    no_req: dict[str, int] = {}
    for n, k in enumerate(cand):
        if clear[n] >= reach:
            continue
        prof = seg.profiles[seg.pid[k]]
        cell = building_cell(prof)
        if clear[n] < 0:
            f = _contact_finding(seg, int(k), st, prof, cell, ids[n], float(clear[n]), tolerance)
        elif cell is None:
            no_req[prof.horizontal] = no_req.get(prof.horizontal, 0) + 1
            continue
        else:
            f = _near_finding(seg, int(k), st, prof, cell, ids[n], float(clear[n]), tolerance)
        entry = by_class.setdefault(prof.horizontal, {"pipes": 0, "violations": 0, "clashes": 0,
                                                      "min_actual_m": math.inf, "required_m": set()})
        entry["pipes"] += 1
        entry["min_actual_m"] = min(entry["min_actual_m"], max(float(clear[n]), 0.0))
        if cell is not None:
            entry["required_m"].add(cell.clearance_m)
        if f is not None:
            entry["violations"] += 1
            entry["clashes"] += f.check == "clash"
            findings.append(f)
    for entry in by_class.values():
        entry["required_m"] = sorted(entry["required_m"])
    summary = {"name": st.name, "feature_id": st.feature_id,
               "pipes_checked": sum(e["pipes"] for e in by_class.values()), "violations": len(findings),
               "clashes": sum(f.check == "clash" for f in findings), "by_class": by_class,
               "no_requirement": no_req}
    return findings, summary


def _near_finding(seg: _Segments, k: int, st: Structure, prof: SegmentProfile, cell: CellMatch | None,
                  fid: str, clear: float, tolerance: float) -> ClearanceFinding | None:
    """A pipe outside the footprint closer than the building cell (None when it keeps it)."""
    if cell is None or clear >= cell.clearance_m - _EPS:
        return None
    line = shapely.LineString([(seg.x1[k], seg.y1[k]), (seg.x2[k], seg.y2[k])])
    on_fp, on_pipe = shapely.get_coordinates(shapely.shortest_line(st.footprint, line))
    t = _param(seg, k, on_pipe)
    z = float(_z_at(seg, np.array([k]), np.array([t]))[0])
    assumed = not np.isfinite(seg.hw[k])
    details: dict[str, Any] = {"plan_distance_m": clear + float(np.nan_to_num(seg.hw[k])),
                               "structure_bottom_h": st.bottom_h, "structure_top_h": st.top_h}
    if assumed:
        details["notes"] = ["section size unknown: centre-line used"]
    return ClearanceFinding(
        "structure", _severity(cell.clearance_m - clear, cell, assumed, tolerance), fid,
        seg.categories[seg.cat[k]], prof.label, st.feature_id or st.name, st.collection, "building",
        cell.clearance_m, clear, cell,
        (float(on_pipe[0]), float(on_pipe[1]), z),
        ((float(on_fp[0]), float(on_fp[1]), z), (float(on_pipe[0]), float(on_pipe[1]), z)), details,
        st.dataset)


def _param(seg: _Segments, k: int, xy: np.ndarray) -> float:
    dx, dy = seg.x2[k] - seg.x1[k], seg.y2[k] - seg.y1[k]
    ll = dx * dx + dy * dy
    return float(np.clip(((xy[..., 0] - seg.x1[k]) * dx + (xy[..., 1] - seg.y1[k]) * dy) / ll, 0, 1)) if ll > 0 \
        else 0.0


def _contact_finding(seg: _Segments, k: int, st: Structure, prof: SegmentProfile, cell: CellMatch | None,
                     fid: str, clear: float, tolerance: float) -> ClearanceFinding:
    """A pipe whose outer wall reaches into the footprint: clash in the height range, else under/over."""
    line = shapely.LineString([(seg.x1[k], seg.y1[k]), (seg.x2[k], seg.y2[k])])
    hw = float(np.nan_to_num(seg.hw[k]))
    part = shapely.intersection(line, st.footprint.buffer(hw) if hw > 0 else st.footprint)
    xy = shapely.get_coordinates(part) if not part.is_empty else shapely.get_coordinates(
        shapely.shortest_line(line, st.footprint))[:1]
    dx, dy = seg.x2[k] - seg.x1[k], seg.y2[k] - seg.y1[k]
    ll = dx * dx + dy * dy
    ts = np.clip(((xy[:, 0] - seg.x1[k]) * dx + (xy[:, 1] - seg.y1[k]) * dy) / (ll if ll > 0 else 1.0), 0, 1)
    zs = seg.z1[k] + (seg.z2[k] - seg.z1[k]) * ts
    hh = float(seg.hh[k])
    top, bottom = float(np.max(zs) + np.nan_to_num(hh)), float(np.min(zs) - np.nan_to_num(hh))
    s_top = math.inf if st.top_h is None else st.top_h
    mid = (ts.min() + ts.max()) / 2
    loc = (float(seg.x1[k] + dx * mid), float(seg.y1[k] + dy * mid), float(seg.z1[k] + (seg.z2[k] - seg.z1[k]) * mid))
    details: dict[str, Any] = {"pipe_top_h": top, "pipe_bottom_h": bottom, "structure_bottom_h": st.bottom_h,
                               "structure_top_h": st.top_h, "length_in_footprint_m": float(part.length)}
    required = cell.clearance_m if cell else None
    actual = max(clear, 0.0)
    if not np.isfinite(top) or not np.isfinite(hh):
        check, sev = "clash", "info"
        details["notes"] = ["pipe height or section unknown: vertical position not checked"]
    elif top > st.bottom_h and bottom < s_top:
        check, sev = "clash", "warn"
        details["vertical_overlap_m"] = min(top, s_top) - max(bottom, st.bottom_h)
    elif top <= st.bottom_h:
        check = "under"
        details["vertical_gap_m"] = st.bottom_h - top
        sev = _severity(required - actual, cell, False, tolerance) if required is not None else "info"
    else:
        check = "over"
        details["vertical_gap_m"] = bottom - s_top
        sev = _severity(required - actual, cell, False, tolerance) if required is not None else "info"
    measure = ((loc[0], loc[1], top), (loc[0], loc[1], st.bottom_h)) if np.isfinite(top) else None
    return ClearanceFinding(check, sev, fid, seg.categories[seg.cat[k]], prof.label, st.feature_id or st.name,
                            st.collection, "building", required, actual, cell, loc, measure, details, st.dataset)


def _run_structures(store: DuckDBStore, frame: Frame, structures: list[Structure], dataset: str,
                    tolerance: float, extra: dict[str, Any] | None = None) -> ClearanceResult:
    reach = largest_building_clearance()
    region = shapely.union_all([s.footprint.envelope for s in structures]).buffer(reach + 5.0)
    seg = _load_segments(store, dataset, within=region)
    lines = seg.lines()
    tree = shapely.STRtree(lines)
    findings: list[ClearanceFinding] = []
    per: list[dict[str, Any]] = []
    for st in structures:
        f, summ = _structure_findings(seg, lines, tree, st, tolerance)
        findings += f
        per.append(summ)
    findings.sort(key=lambda f: (f.check != "clash", f.severity != "warn", -(f.deficit_m or 0.0)))
    summary = {"structures": per, "segments_near": len(seg), **(extra or {}),
               "findings": {"warn": sum(f.severity == "warn" for f in findings),
                            "info": sum(f.severity == "info" for f in findings),
                            "clash": sum(f.check == "clash" for f in findings)}}
    params = {"tolerance_m": tolerance, "largest_building_clearance_m": reach}
    return ClearanceResult(dataset, frame, ("structure",), findings, summary, structures, params)


def _check_heights(bottom_h: float, top_h: float | None) -> None:
    if not (isinstance(bottom_h, int | float) and math.isfinite(bottom_h)):
        raise InvalidInputError(f"bottom_h must be a finite 1985 height in metres, got {bottom_h!r}", field="bottom_h")
    if top_h is not None and not (math.isfinite(top_h) and top_h > bottom_h):
        raise InvalidInputError(f"top_h ({top_h}) must be above bottom_h ({bottom_h})", field="top_h")


def structure_clearance(
    store: DuckDBStore,
    frame: Frame,
    *,
    footprint: dict[str, Any] | str | BaseGeometry,
    crs: str | None = None,
    bottom_h: float,
    top_h: float | None = None,
    name: str = "structure",
    dataset: str | None = None,
    tolerance_m: float = TOLERANCE_M,
) -> ClearanceResult:
    """A building/basement/foundation footprint (polygon in ``crs``, default CRS84) with its bottom (and optional
    top) 1985 height against every current pipe within the largest building value of Table 4.1.9.

    Pipes outside the footprint closer than their building cell are ``structure`` findings; pipes whose outer
    wall reaches into the footprint are ``clash`` (within the height range, vertical overlap reported), or
    ``under``/``over`` (vertical gap reported) — a pipe under a building still breaks the horizontal rule.
    ``top_h`` None: the structure reaches the ground.

    Raises:
        NotFoundError / InvalidInputError / OutOfRegionError as :func:`clearance_check`.
    """
    _check_heights(bottom_h, top_h)
    fp = read_geometry(footprint, crs, frame, kinds=POLYGONAL, field_name="footprint")
    ds = pick_dataset(store, dataset)
    st = Structure(name, fp, float(bottom_h), None if top_h is None else float(top_h))
    return _run_structures(store, frame, [st], ds, tolerance_m)


def structure_clearance_from_store(
    store: DuckDBStore,
    frame: Frame,
    *,
    structures_dataset: str,
    collection: str | None = None,
    pipes_dataset: str | None = None,
    tolerance_m: float = TOLERANCE_M,
) -> ClearanceResult:
    """Structures held in the store's ``features`` table (a BIM model's footprints) against the pipes.

    Expected rows: current features (``version_to IS NULL``) of ``structures_dataset`` (and ``collection``)
    with a polygonal ``geom`` in the storage CRS (``POLYGON``/``MULTIPOLYGON``, 2D or Z; Z is dropped for the
    footprint) and 1985 heights in ``attrs``: bottom ``min_z`` (or ``bottom_h``), top ``max_z`` (or ``top_h``,
    optional) and an optional ``name``; without heights the geometry's Z range is used. Features that are not polygons or have no bottom
    height are skipped and listed in the summary.

    Raises:
        NotFoundError: the dataset does not exist or holds no usable structure.
    """
    store.get_dataset(structures_dataset)
    ds = pick_dataset(store, pipes_dataset)
    sql = """SELECT feature_id, collection, ST_AsWKB(ST_Force2D(geom)) AS wkb, CAST(attrs AS VARCHAR) AS attrs,
                    ST_GeometryType(geom)::VARCHAR AS gtype,
                    CASE WHEN ST_HasZ(geom) THEN ST_ZMin(geom) END AS zmin,
                    CASE WHEN ST_HasZ(geom) THEN ST_ZMax(geom) END AS zmax
             FROM features WHERE dataset_id = ? AND version_to IS NULL AND geom IS NOT NULL
               AND (? IS NULL OR collection = ?) ORDER BY feature_id"""
    cur = store.read()
    try:
        rows = cur.execute(sql, [structures_dataset, collection, collection]).fetchall()
    finally:
        cur.close()
    structures, skipped = [], []
    for fid, coll, wkb, attrs_text, gtype, zmin, zmax in rows:
        attrs = json.loads(attrs_text) if attrs_text else {}
        attrs = attrs if isinstance(attrs, dict) else {}
        if gtype not in ("POLYGON", "MULTIPOLYGON"):
            skipped.append({"feature_id": fid, "reason": f"geometry is a {gtype}, not a polygon"})
            continue
        bottom = _first_number(attrs, ("min_z", "bottom_h"), zmin)
        top = _first_number(attrs, ("max_z", "top_h"), zmax)
        if bottom is None:
            skipped.append({"feature_id": fid, "reason": "no bottom height (attrs min_z/bottom_h or geometry Z)"})
            continue
        fp = shapely.from_wkb(bytes(wkb))
        fp = fp if fp.is_valid else shapely.make_valid(fp)
        structures.append(Structure(str(attrs.get("name") or fid), fp, bottom,
                                    top if top is not None and top > bottom else None, fid, structures_dataset, coll))
    if not structures:
        what = f"collection {collection!r} of " if collection else ""
        reasons = "; ".join(f"{s['feature_id']}: {s['reason']}" for s in skipped[:5])
        raise NotFoundError(f"{what}dataset {structures_dataset!r} holds no polygonal feature with a bottom "
                            f"height{': ' + reasons if reasons else ''}")
    return _run_structures(store, frame, structures, ds, tolerance_m,
                           {"structures_dataset": structures_dataset, "collection": collection, "skipped": skipped})


def _first_number(attrs: dict[str, Any], keys: tuple[str, ...], fallback: float | None) -> float | None:
    for key in keys:
        try:
            v = float(attrs[key])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(v):
            return v
    return None if fallback is None or not math.isfinite(fallback) else float(fallback)
