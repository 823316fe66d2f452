"""Excavation analysis (开挖分析): which pipes and chambers a planned pit hits or comes too close to.

The pit is a prism: a polygon in plan between a bottom and a top height (1985 heights). Give either
``depth_m`` below the surveyed ground at the pit, or an absolute ``bottom_h`` (and optionally ``top_h``,
default the ground). Candidates come from the store's R-tree (one constant envelope: the pit's bounding box
grown by the largest safety distance and :data:`MAX_HALF_SECTION_M`); the 3D clearance between each
pipe's outer surface and the prism is computed in numpy/shapely:

* plan distance ``dh`` of the centre-line from the polygon, vertical gap ``dv`` between the centre-line's
  heights where it passes the pit (inside the polygon, else at its nearest point) and the pit's height range;
* a round pipe is its centre-line grown by D/2, a box section by half its width across and half its height
  up and down, so ``gh = dh − W/2``, ``gv = dv − H/2`` and the clearance is ``√(gh² + gv²) − D/2`` when both
  gaps are positive, else ``max(gh, gv) − D/2`` (≤ 0 means overlap: a **hit**);
* a pipe within its owner's safety distance (:data:`SAFETY_M`, after GB 50289 practice and owner buffers)
  is **near**.

Appurtenances (chambers, valves, hydrants...) are vertical columns from the ground down to the chamber
bottom (``well_bottom_h``, else ground − ``well_depth``, else the lowest pipe joining them, else
:data:`ASSUMED_POINT_DEPTH_M`) of radius :data:`CHAMBER_RADIUS_M` (chambers) or :data:`APPURTENANCE_RADIUS_M`.
A pipe without heights is taken to run at the pit's depth (flagged ``height_known: false``).

Example::

    result = excavate(store, frame, area=pit_geojson, depth_m=3.0, contacts=load_contacts("owners.csv"))
    result.summary()["by_owner"]     # hits / near per owner
    html = result.report_html()      # printable report
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
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
    to_lonlat_geometry,
)
from cim.analysis.contacts import OwnerContact
from cim.errors import InvalidInputError
from cim.pipes.dictionaries import CATEGORIES, MATERIALS, resolve_category, resolve_point_type
from cim.store import DuckDBStore

#: Largest pit accepted (m²): bigger areas are site-wide surveys, not an excavation check.
MAX_AREA_M2 = 1_000_000.0
#: Surveyed ground within this plan distance of the pit (m) gives the pit's ground height.
GROUND_RADIUS_M = 50.0
#: Largest half size of a pipe section the candidate envelope allows for (m): sections up to 10 m across.
MAX_HALF_SECTION_M = 5.0
#: Owner safety distances by major category (m): water 2, heat 3, gas 5, telecom 1.5 (one lifeline project's
#: owner buffers, domain brief §5.4 — not normative); industrial gases are treated like gas.
SAFETY_M: dict[str, float] = {"JS": 2.0, "RL": 3.0, "RQ": 5.0, "TX": 1.5, "GY": 5.0}
#: Safety distance of every other category (drainage, power, other) (m).
DEFAULT_SAFETY_M = 1.0
#: Largest safety distance accepted (m): the candidate envelope grows by it.
MAX_SAFETY_M = 50.0
#: Plan radius of a chamber's outer wall (m) (a DN1000 manhole with walls) and of other appurtenances.
CHAMBER_RADIUS_M = 0.6
APPURTENANCE_RADIUS_M = 0.2
#: Depth below ground assumed for an appurtenance with no recorded depth and no pipe joining it (m).
ASSUMED_POINT_DEPTH_M = 1.5
#: Owner label for items whose owner is not recorded.
UNKNOWN_OWNER = "(owner not recorded)"
NO_CONTACT = "no contact on file"

#: Current segments touching a constant envelope: DuckDB plans an RTREE_INDEX_SCAN on pipe_segments_geom.
SEGMENTS_SQL = """
    SELECT feature_id, category, subtype, kind, diameter_mm, width_mm, height_mm, material, owner, pressure,
           status, start_id, end_id, start_z, end_z,
           ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1,
           ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2
    FROM pipe_segments
    WHERE ST_Intersects(geom, ST_MakeEnvelope($minx, $miny, $maxx, $maxy))
      AND version_to IS NULL AND dataset_id = $dataset"""
#: Current points inside a constant envelope (RTREE_INDEX_SCAN on pipe_points_geom).
POINTS_SQL = """
    SELECT feature_id, point_id, category, subtype, appurtenance, x, y, ground_h, well_depth, well_bottom_h
    FROM pipe_points
    WHERE ST_Intersects(geom, ST_MakeEnvelope($minx, $miny, $maxx, $maxy))
      AND version_to IS NULL AND dataset_id = $dataset"""


@dataclass(frozen=True)
class Pit:
    """The excavation prism in the storage CRS: plan polygon between ``bottom_h`` and ``top_h`` (1985 m)."""

    polygon: BaseGeometry
    bottom_h: float
    top_h: float
    ground_h: float | None
    ground_source: str

    @property
    def depth_m(self) -> float:
        """Depth of the pit below its top."""
        return self.top_h - self.bottom_h

    def to_dict(self, frame: Frame) -> dict[str, Any]:
        """The pit as a JSON-ready dict (polygon in lon/lat)."""
        return clean({"area_m2": self.polygon.area, "bottom_h": self.bottom_h, "top_h": self.top_h,
                      "depth_m": self.depth_m, "ground_h": self.ground_h, "ground_source": self.ground_source,
                      "polygon": to_lonlat_geometry(self.polygon, frame)})


@dataclass(frozen=True)
class ExcavationItem:
    """A pipe segment or appurtenance the pit hits (clearance ≤ 0) or comes near (≤ its safety distance)."""

    feature_id: str
    dataset: str
    item: str  # segment | point
    status: str  # hit | near
    category: str | None
    subtype: str | None
    kind: str | None
    size: str | None
    material: str | None
    owner: str | None
    clearance_m: float
    safety_m: float
    depth_m: float | None  # pipes: cover from the pit's ground to the pipe top there; points: depth of the bottom
    top_h: float | None
    height_known: bool
    appurtenance: str | None = None
    is_chamber: bool = False
    pressure: str | None = None
    geometry: BaseGeometry | None = field(default=None, compare=False, repr=False)

    @property
    def owner_label(self) -> str:
        """The owner, or :data:`UNKNOWN_OWNER`."""
        return self.owner or UNKNOWN_OWNER

    def to_dict(self) -> dict[str, Any]:
        """The item as a JSON-ready dict (no geometry)."""
        material = MATERIALS.get(self.material or "")
        return clean({
            "feature_id": self.feature_id, "dataset": self.dataset, "item": self.item, "status": self.status,
            "category": self.category, "subtype": self.subtype, "kind": self.kind, "size": self.size,
            "material": self.material, "material_name": material.name_zh if material else None,
            "owner": self.owner, "clearance_m": self.clearance_m, "safety_m": self.safety_m,
            "depth_m": self.depth_m, "top_h": self.top_h, "height_known": self.height_known,
            "appurtenance": self.appurtenance, "is_chamber": self.is_chamber, "pressure": self.pressure})


@dataclass
class ExcavationResult:
    """What a pit hits and comes near, with owners' contacts; keeps the frame for GeoJSON."""

    frame: Frame
    dataset: str
    pit: Pit
    safety_m: dict[str, float]
    items: list[ExcavationItem]
    contacts: dict[str, OwnerContact]

    @property
    def hits(self) -> list[ExcavationItem]:
        """Items the pit hits."""
        return [i for i in self.items if i.status == "hit"]

    @property
    def near(self) -> list[ExcavationItem]:
        """Items within their safety distance but not hit."""
        return [i for i in self.items if i.status == "near"]

    def owner_contacts(self) -> list[dict[str, Any]]:
        """One entry per owner concerned: the contact on file, or the owner with ``note`` 'no contact on file'."""
        out = []
        for owner in sorted({i.owner_label for i in self.items}):
            known = self.contacts.get(owner)
            entry = known.to_dict() if known else {"owner": owner, "department": None, "phone": None,
                                                   "email": None}
            out.append({**entry, "note": None if known else NO_CONTACT})
        return out

    def summary(self) -> dict[str, Any]:
        """Counts of hits and near items by category and by owner."""
        by_category: dict[str, dict[str, int]] = {}
        by_owner: dict[str, dict[str, int]] = {}
        for item in self.items:
            for table, key in ((by_category, item.category or "?"), (by_owner, item.owner_label)):
                counts = table.setdefault(key, {"hit": 0, "near": 0})
                counts[item.status] += 1
        return {"hits": len(self.hits), "near": len(self.near),
                "by_category": dict(sorted(by_category.items())), "by_owner": dict(sorted(by_owner.items()))}

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return clean({"dataset": self.dataset, "pit": self.pit.to_dict(self.frame), "safety_m": self.safety_m,
                      "summary": self.summary(), "hits": [i.to_dict() for i in self.hits],
                      "near": [i.to_dict() for i in self.near], "contacts": self.owner_contacts()})

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: the pit polygon at its top height (role excavation), pipes (hit/near),
        chambers (role chamber, with their status) and other appurtenances (hit/near)."""
        top = shapely.force_3d(self.pit.polygon, self.pit.top_h)
        pit = {k: v for k, v in self.pit.to_dict(self.frame).items() if k != "polygon"}
        located = [Located(top, {"role": "excavation", "dataset": self.dataset, **pit}, id="excavation")]
        for item in self.items:
            role = "chamber" if item.is_chamber else item.status
            props = {"role": role, **item.to_dict()}
            located.append(Located(item.geometry, props, id=f"{item.dataset}/{item.feature_id}"))
        return feature_collection(located, self.frame, summary=clean(self.summary()))

    def report_html(self) -> str:
        """A printable HTML report: the pit, a table by owner with contacts, and every item (text escaped)."""
        return _report(self)


def excavate(
    store: DuckDBStore,
    frame: Frame,
    *,
    area: dict[str, Any] | str | BaseGeometry,
    crs: str | None = None,
    depth_m: float | None = None,
    bottom_h: float | None = None,
    top_h: float | None = None,
    safety_m: float | Mapping[str, float] | None = None,
    dataset: str | None = None,
    contacts: Mapping[str, OwnerContact] | None = None,
) -> ExcavationResult:
    """Pipes and appurtenances of ``dataset`` that a pit over ``area`` (polygon in ``crs``, default CRS84)
    hits or comes within the safety distance of.

    Args:
        depth_m: pit depth below the surveyed ground at the pit (exclusive with ``bottom_h``).
        bottom_h, top_h: absolute 1985 heights of the pit's bottom and top (top defaults to the ground).
        safety_m: one distance for every category, or category → distance over :data:`SAFETY_M`
            (keys: codes or names such as ``RQ``/``燃气``; ``default`` for the rest).
        contacts: owner → contact (see :func:`cim.analysis.contacts.load_contacts`).

    Raises:
        InvalidInputError: bad depth/height combination, area too large, unknown safety category.
        OutOfRegionError: the polygon lies outside the region (e.g. metres given as lon/lat).
        NotFoundError: the dataset does not exist.
    """
    _check_heights(depth_m, bottom_h, top_h)
    safety, default_safety = _safety(safety_m)
    polygon = read_geometry(area, crs, frame, kinds=POLYGONAL, field_name="area")
    if polygon.area > MAX_AREA_M2:
        raise InvalidInputError(f"the pit covers {polygon.area:,.0f} m², more than the {MAX_AREA_M2:,.0f} m² "
                                "an excavation check accepts: split the area", field="area")
    dataset = pick_dataset(store, dataset)
    grow = max([default_safety, *safety.values()]) + MAX_HALF_SECTION_M
    cur = store.read()
    try:
        segs = _fetch(cur, SEGMENTS_SQL, polygon, grow, dataset)
        points = _fetch(cur, POINTS_SQL, polygon, max(grow, GROUND_RADIUS_M), dataset)
    finally:
        cur.close()
    shapely.prepare(polygon)
    pit = _pit(polygon, points, depth_m, bottom_h, top_h)
    safety_of = _safety_lookup(safety, default_safety)
    seg_items, joins = _segment_items(segs, pit, dataset, safety_of)
    items = seg_items + _point_items(points, pit, dataset, safety_of, joins)
    items.sort(key=lambda i: (i.status != "hit", i.clearance_m, i.feature_id))
    return ExcavationResult(frame, dataset, pit, {**dict(sorted(safety.items())), "default": default_safety},
                            items, dict(contacts or {}))


# -- inputs -------------------------------------------------------------------------------------------------
def _finite(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}", field=name) from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}", field=name)
    return number


def _check_heights(depth_m: float | None, bottom_h: float | None, top_h: float | None) -> None:
    depth_m, bottom_h, top_h = (_finite(v, n) for v, n in ((depth_m, "depth_m"), (bottom_h, "bottom_h"),
                                                              (top_h, "top_h")))
    if (depth_m is None) == (bottom_h is None):
        raise InvalidInputError("give exactly one of depth_m (below the ground) or bottom_h (absolute height)"
                                + (", not both" if depth_m is not None else ""), field="depth_m")
    if depth_m is not None and depth_m <= 0:
        raise InvalidInputError(f"depth_m must be positive, got {depth_m:g}", field="depth_m")
    if depth_m is not None and top_h is not None:
        raise InvalidInputError("top_h goes with bottom_h; with depth_m the pit starts at the ground", field="top_h")
    if bottom_h is not None and top_h is not None and bottom_h >= top_h:
        raise InvalidInputError(f"bottom_h {bottom_h:g} must be below top_h {top_h:g}", field="bottom_h")


def _safety(safety_m: float | Mapping[str, float] | None) -> tuple[dict[str, float], float]:
    """Category → safety distance and the default for the rest, after overrides."""
    if safety_m is None or isinstance(safety_m, Mapping):
        table, default = dict(SAFETY_M), DEFAULT_SAFETY_M
        for key, value in (safety_m or {}).items():
            number = _finite(value, "safety_m")
            if number is None or not 0 <= number <= MAX_SAFETY_M:
                raise InvalidInputError(f"safety distance for {key!r} must be in [0, {MAX_SAFETY_M:g}] m, got "
                                        f"{value!r}", field="safety_m")
            if str(key).lower() in ("default", "*"):
                default = number
                continue
            resolved = resolve_category(str(key))
            if resolved is None:
                raise InvalidInputError(f"unknown pipe category {key!r} in safety_m (use codes such as RQ, "
                                        "JS, PS or names such as 燃气; 'default' for the rest)", field="safety_m")
            table[resolved[0]] = number
        return table, default
    number = _finite(safety_m, "safety_m")
    if number is None or not 0 <= number <= MAX_SAFETY_M:
        raise InvalidInputError(f"safety_m must be in [0, {MAX_SAFETY_M:g}] m, got {safety_m!r}", field="safety_m")
    return dict.fromkeys(SAFETY_M, number), number


SafetyOf = Callable[[str | None], float]


def _safety_lookup(table: dict[str, float], default: float) -> SafetyOf:
    return lambda category: table.get(category or "", default)


def _fetch(cur: Any, sql: str, polygon: BaseGeometry, grow: float, dataset: str) -> dict[str, np.ndarray]:
    minx, miny, maxx, maxy = polygon.bounds
    table: pa.Table = cur.execute(sql, {"minx": minx - grow, "miny": miny - grow, "maxx": maxx + grow,
                                        "maxy": maxy + grow, "dataset": dataset}).to_arrow_table()
    out = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            out[name] = column.to_numpy().astype("f8") if column.null_count == 0 else \
                np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="f8")
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def _pit(polygon: BaseGeometry, points: dict[str, np.ndarray], depth_m: float | None, bottom_h: float | None,
         top_h: float | None) -> Pit:
    ground, source = _ground(polygon, points)
    if depth_m is not None:
        if ground is None:
            raise InvalidInputError(f"no surveyed ground within {GROUND_RADIUS_M:g} m of the pit to measure "
                                    "depth_m from: give bottom_h (and top_h) as absolute 1985 heights",
                                    field="depth_m")
        return Pit(polygon, ground - float(depth_m), ground, ground, source)
    bottom = float(bottom_h if bottom_h is not None else math.nan)
    if top_h is not None:
        return Pit(polygon, bottom, float(top_h), ground, "given top_h")
    if ground is None:
        raise InvalidInputError(f"no surveyed ground within {GROUND_RADIUS_M:g} m of the pit for its top: "
                                "give top_h", field="top_h")
    if not bottom < ground:
        raise InvalidInputError(f"bottom_h {bottom:g} is not below the pit top, the surveyed ground at "
                                f"{ground:.3f}", field="bottom_h")
    return Pit(polygon, bottom, ground, ground, source)


def _ground(polygon: BaseGeometry, points: dict[str, np.ndarray]) -> tuple[float | None, str]:
    """Ground height at the pit's centroid from surveyed points within GROUND_RADIUS_M of the pit: a plane
    fitted by least squares with inverse-distance weights (streets slope), clamped to the points' range; the
    inverse-distance mean when the points are too few or collinear."""
    h, x, y = points["ground_h"], points["x"], points["y"]
    ok = np.isfinite(h) & np.isfinite(x) & np.isfinite(y)
    d = shapely.distance(polygon, shapely.points(x[ok], y[ok]))
    near = d <= GROUND_RADIUS_M
    if not near.any():
        return None, "no surveyed ground"
    h, x, y, w = h[ok][near], x[ok][near], y[ok][near], 1.0 / (1.0 + d[near]) ** 2
    c = polygon.centroid
    design = np.column_stack([np.ones_like(x), x - c.x, y - c.y]) * np.sqrt(w)[:, None]
    coef, _, rank, _ = np.linalg.lstsq(design, h * np.sqrt(w), rcond=None)
    if len(h) >= 3 and rank == 3:
        return float(np.clip(coef[0], h.min(), h.max())), \
            f"surveyed ground (plane through {len(h)} points within {GROUND_RADIUS_M:g} m)"
    return float((w * h).sum() / w.sum()), \
        f"surveyed ground (inverse-distance mean of {len(h)} points within {GROUND_RADIUS_M:g} m)"


# -- geometry -----------------------------------------------------------------------------------------------
def _clearance(dh: np.ndarray, dv: np.ndarray, hw: np.ndarray, hh: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Clearance of a section (round radius ``r`` or box half sizes ``hw``×``hh``) at plan gap ``dh`` and signed
    vertical gap ``dv`` of its axis from the pit; negative = overlap."""
    gh, gv = dh - hw, dv - hh
    apart = (gh > 0) & (gv > 0)
    with np.errstate(invalid="ignore"):
        return np.where(apart, np.hypot(np.maximum(gh, 0), np.maximum(gv, 0)), np.maximum(gh, gv)) - r


def _vertical_gap(lo: np.ndarray, hi: np.ndarray, pit: Pit) -> np.ndarray:
    """Signed gap between the height ranges [lo, hi] and the pit's (negative = overlap; unknown = -inf)."""
    gap = np.maximum(lo - pit.top_h, pit.bottom_h - hi)
    return np.where(np.isfinite(gap), gap, -np.inf)


def _segment_items(s: dict[str, np.ndarray], pit: Pit, dataset: str, safety_of: SafetyOf
                   ) -> tuple[list[ExcavationItem], dict[tuple[str, str], tuple[float, str | None]]]:
    n = len(s["feature_id"])
    joins: dict[tuple[str, str], tuple[float, str | None]] = {}
    if not n:
        return [], joins
    a = np.column_stack([s["x1"], s["y1"]])
    b = np.column_stack([s["x2"], s["y2"]])
    lines = shapely.linestrings(np.stack([a, b], axis=1))
    dh = shapely.distance(pit.polygon, lines)
    lo, hi = _z_range(lines, a, b, s["start_z"], s["end_z"], pit.polygon, dh)
    hw, hh, r = _section(s["diameter_mm"], s["width_mm"], s["height_mm"])
    clear = _clearance(dh, _vertical_gap(lo, hi, pit), hw, hh, r)
    safety = np.array([safety_of(c) for c in s["category"]])
    top = hi + hh + r
    bottom = np.fmin(s["start_z"], s["end_z"]) - hh - r
    for i in range(n):  # lowest pipe at each end point: an appurtenance's depth when none is recorded
        for end in (s["start_id"][i], s["end_id"][i]):
            key = (s["category"][i], end)
            if end is not None and (key not in joins or bottom[i] < joins[key][0]):
                joins[key] = (float(bottom[i]), s["owner"][i])
    items = []
    for i in np.flatnonzero(clear <= safety):
        z_known = bool(np.isfinite(s["start_z"][i]) and np.isfinite(s["end_z"][i]))
        z = np.array([s["start_z"][i], s["end_z"][i]])
        geom = shapely.linestrings(np.column_stack([np.r_[a[i], b[i]].reshape(2, 2), z])) if z_known \
            else lines[i]
        items.append(ExcavationItem(
            feature_id=s["feature_id"][i], dataset=dataset, item="segment",
            status="hit" if clear[i] <= 0 else "near", category=s["category"][i], subtype=s["subtype"][i],
            kind=s["kind"][i], size=_size(s["diameter_mm"][i], s["width_mm"][i], s["height_mm"][i]),
            material=s["material"][i], owner=s["owner"][i], clearance_m=float(clear[i]),
            safety_m=float(safety[i]), depth_m=_depth(pit, top[i]), top_h=_num(top[i]), height_known=z_known,
            pressure=s["pressure"][i], geometry=geom))
    return items, joins


def _z_range(lines: np.ndarray, a: np.ndarray, b: np.ndarray, z1: np.ndarray, z2: np.ndarray,
             polygon: BaseGeometry, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest centre-line height where each segment passes the pit: over its part inside the
    polygon, else at its point nearest to it."""
    ab = b - a
    len2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    inside = dh <= 0
    pts = a.copy()
    idx = np.arange(len(a))
    if (~inside).any():
        nearest = shapely.get_coordinates(shapely.get_point(shapely.shortest_line(lines[~inside], polygon), 0))
        pts[~inside] = nearest
    t_lo = np.clip(((pts - a) * ab).sum(axis=1) / len2, 0, 1)
    t_hi = t_lo.copy()
    if inside.any():
        rows = idx[inside]
        coords, which = shapely.get_coordinates(shapely.intersection(lines[rows], polygon), return_index=True)
        seg = rows[which]
        t = np.clip(((coords - a[seg]) * ab[seg]).sum(axis=1) / len2[seg], 0, 1)
        t_lo[rows], t_hi[rows] = 1.0, 0.0
        np.minimum.at(t_lo, seg, t)
        np.maximum.at(t_hi, seg, t)
        empty = rows[t_lo[rows] > t_hi[rows]]  # touching at a single point lost by the intersection
        t_lo[empty] = t_hi[empty] = 0.0
    za, zb = z1 + t_lo * (z2 - z1), z1 + t_hi * (z2 - z1)
    return np.fmin(za, zb), np.fmax(za, zb)


def _section(d_mm: np.ndarray, w_mm: np.ndarray, h_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(half width, half height, radius) in metres: round pipes by D/2, boxes by W/2 × H/2, unknown 0."""
    round_ = np.isfinite(d_mm)
    r = np.where(round_, d_mm / 2000, 0.0)
    w = np.where(np.isfinite(w_mm), w_mm, h_mm)
    h = np.where(np.isfinite(h_mm), h_mm, w_mm)
    hw = np.where(~round_ & np.isfinite(w), w / 2000, 0.0)
    hh = np.where(~round_ & np.isfinite(h), h / 2000, 0.0)
    return hw, hh, r


def _size(d: float, w: float, h: float) -> str | None:
    if math.isfinite(d):
        return f"DN{d:g}"
    if math.isfinite(w) or math.isfinite(h):
        return f"{w:g}×{h:g}".replace("nan", "?")
    return None


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _depth(pit: Pit, top: float) -> float | None:
    return pit.ground_h - float(top) if pit.ground_h is not None and math.isfinite(top) else None


def _point_items(p: dict[str, np.ndarray], pit: Pit, dataset: str, safety_of: SafetyOf,
                 joins: dict[tuple[str, str], tuple[float, str | None]]) -> list[ExcavationItem]:
    keep = np.flatnonzero(np.array([a is not None for a in p["appurtenance"]], dtype=bool))
    if not len(keep):
        return []
    x, y, ground = p["x"][keep], p["y"][keep], p["ground_h"][keep]
    names = p["appurtenance"][keep]
    chamber = np.array([_is_chamber(n) for n in names], dtype=bool)
    joined = [joins.get((p["category"][k], p["point_id"][k])) for k in keep]
    bottom = np.where(np.isfinite(p["well_bottom_h"][keep]), p["well_bottom_h"][keep], ground - p["well_depth"][keep])
    via_pipe = np.array([j[0] if j else np.nan for j in joined])
    bottom = np.where(np.isfinite(bottom), bottom, np.where(np.isfinite(via_pipe), via_pipe,
                                                            ground - ASSUMED_POINT_DEPTH_M))
    radius = np.where(chamber, CHAMBER_RADIUS_M, APPURTENANCE_RADIUS_M)
    dh = shapely.distance(pit.polygon, shapely.points(x, y))
    top = np.where(np.isfinite(ground), ground, pit.top_h)
    zero = np.zeros(len(keep))
    clear = _clearance(dh, _vertical_gap(bottom, top, pit), radius, zero, zero)
    safety = np.array([safety_of(p["category"][k]) for k in keep])
    items = []
    for j in np.flatnonzero(clear <= safety):
        k = keep[j]
        known = bool(np.isfinite(ground[j]))
        geom = shapely.points(x[j], y[j], ground[j]) if known else shapely.points(x[j], y[j])
        items.append(ExcavationItem(
            feature_id=p["feature_id"][k], dataset=dataset, item="point", status="hit" if clear[j] <= 0 else "near",
            category=p["category"][k], subtype=p["subtype"][k], kind=None, size=None, material=None,
            owner=joined[j][1] if joined[j] else None, clearance_m=float(clear[j]), safety_m=float(safety[j]),
            depth_m=_num(top[j] - bottom[j]), top_h=_num(top[j]), height_known=known, appurtenance=names[j],
            is_chamber=bool(chamber[j]), geometry=geom))
    return items


def _is_chamber(appurtenance: str) -> bool:
    kind = resolve_point_type(appurtenance)
    return bool(kind and kind.is_chamber)


# -- report -------------------------------------------------------------------------------------------------
_CSS = """body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #999;padding:4px 6px;text-align:left}
th{background:#eee}.hit{color:#b00;font-weight:bold}.near{color:#a60}@media print{body{margin:0}}"""


def _cell(value: Any) -> str:
    if value is None:
        return "<td>–</td>"
    if isinstance(value, float):
        value = f"{value:.2f}"
    return f"<td>{html.escape(str(value))}</td>"


def _report(result: ExcavationResult) -> str:
    pit, summary = result.pit, result.summary()
    e = html.escape
    ground = f"{pit.ground_h:.2f} m" if pit.ground_h is not None else "unknown"
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>开挖分析报告 Excavation report — {e(result.dataset)}</title><style>{_CSS}</style></head><body>",
        f"<h1>开挖分析报告 Excavation report</h1><p>Dataset {e(result.dataset)}</p>",
        "<h2>基坑 Pit</h2><table>",
        f"<tr><th>area</th><td>{pit.polygon.area:,.1f} m²</td></tr>",
        f"<tr><th>top / bottom (1985 height)</th><td>{pit.top_h:.2f} m / {pit.bottom_h:.2f} m</td></tr>",
        f"<tr><th>depth</th><td>{pit.depth_m:.2f} m</td></tr>",
        f"<tr><th>ground</th><td>{e(ground)} ({e(pit.ground_source)})</td></tr>",
        f"<tr><th>bounds (storage CRS)</th><td>{e(', '.join(f'{v:.1f}' for v in pit.polygon.bounds))}</td></tr>",
        f"<tr><th>result</th><td><span class='hit'>{summary['hits']} hit</span>, "
        f"<span class='near'>{summary['near']} within the safety distance</span></td></tr></table>",
        "<h2>权属单位 Owners</h2><table><tr><th>owner</th><th>department</th><th>phone</th><th>email</th>"
        "<th>hit</th><th>near</th><th>note</th></tr>",
    ]
    for contact in result.owner_contacts():
        counts = summary["by_owner"].get(contact["owner"], {"hit": 0, "near": 0})
        parts.append("<tr>" + "".join(_cell(contact[k]) for k in ("owner", "department", "phone", "email"))
                     + _cell(counts["hit"]) + _cell(counts["near"]) + _cell(contact["note"]) + "</tr>")
    parts.append("</table><h2>管线与附属物 Items</h2><table><tr><th>status</th><th>feature</th>"
                 "<th>category</th><th>kind / appurtenance</th><th>size</th><th>material</th><th>owner</th>"
                 "<th>depth (m): cover at the pit / chamber depth</th><th>clearance (m)</th><th>safety (m)</th></tr>")
    for item in result.items:
        category = CATEGORIES.get(item.category or "")
        material = MATERIALS.get(item.material or "")
        parts.append(
            f"<tr class='{item.status}'>" + _cell(item.status) + _cell(item.feature_id)
            + _cell(f"{item.category} {category.name_zh}" if category else item.category)
            + _cell(item.appurtenance or item.kind) + _cell(item.size)
            + _cell(material.name_zh if material else item.material) + _cell(item.owner_label)
            + _cell(item.depth_m) + _cell(item.clearance_m) + _cell(item.safety_m) + "</tr>")
    parts.append("</table><p>Clearance: outer wall of the pipe or chamber to the pit; ≤ 0 is a hit. Safety "
                 "distances by owner category: " + e(", ".join(f"{k} {v:g} m" for k, v in result.safety_m.items()))
                 + ".</p></body></html>")
    return "\n".join(parts)
