"""Gas-adjacent underground spaces (燃气相邻地下空间): chambers of other utilities near gas mains, ranked.

Leaking gas migrates along other utilities' conduits and collects in their chambers — sewer and drain
manholes, power and telecom manholes/handholes (domain brief §5.1, §5.4). The Hefei lifeline practice puts
methane sensors in such chambers, chosen by proximity to gas mains: this analysis lists the candidates.

Score (0–100, higher = worse), the product of four documented factors scaled by their maximum:

* proximity ``1 − 0.8·d/distance_m`` — 1 at the gas pipe's outer wall, 0.2 at the distance limit
  (``d`` = plan distance from the chamber centre to the wall of the nearest current RQ segment);
* gas pressure weight by class (§2.10, parsed from the ``pressure`` text by :func:`pressure_class`):
  低压 1.0, 中压B 1.5, 中压 (unlettered) 1.75, 中压A 2.0, 次高压B 2.5, 次高压A 3.0, 高压B 3.5, 高压A 4.0;
  unknown pressure counts as 中压 (1.75);
* space weight: the classic accumulation spaces — drainage (PS) chambers and power/telecom (DL/TX)
  manholes and work wells — 1.0; handholes 0.8 (small); other chambers (valve, meter wells...) 0.7;
  septic tanks and grease traps 1.2 (already gassy);
* depth weight ``1 + 0.5·min(depth, 5)/5`` (deeper, larger enclosed volume; depth from ``well_depth`` or
  ground − ``well_bottom_h``; unknown 1.25).

Example::

    result = gas_adjacent_chambers(store, frame, distance_m=5.0, limit=20)
    result.entries[0].point_id, result.entries[0].score
"""

from __future__ import annotations

import math
import re
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
)
from cim.errors import InvalidInputError
from cim.pipes.dictionaries import resolve_point_type
from cim.store import DuckDBStore

GAS = "RQ"
#: Largest distance accepted (m): beyond it a chamber is not "adjacent".
MAX_DISTANCE_M = 100.0
#: Largest gas pipe radius the candidate envelope allows for (m).
MAX_GAS_RADIUS_M = 1.0


@dataclass(frozen=True)
class PressureClass:
    """A gas pressure class (GB 50028 / domain brief §2.10) and its weight in the score."""

    name: str
    max_mpa: float  # upper bound (inclusive, except 低压 which is < 0.01)
    weight: float


#: Pressure classes from low to high (lettered classes by their upper bound in MPa).
PRESSURE_CLASSES: tuple[PressureClass, ...] = (
    PressureClass("低压", 0.01, 1.0),
    PressureClass("中压B", 0.2, 1.5),
    PressureClass("中压A", 0.4, 2.0),
    PressureClass("次高压B", 0.8, 2.5),
    PressureClass("次高压A", 1.6, 3.0),
    PressureClass("高压B", 2.5, 3.5),
    PressureClass("高压A", 4.0, 4.0),
)
#: Classes named without A/B, and the weight used when the pressure is unknown.
UNLETTERED = {"中压": 1.75, "次高压": 2.75, "高压": 3.75}
UNKNOWN_PRESSURE_WEIGHT = 1.75
#: Space weights by appurtenance (others 0.7 unless drainage/power/telecom, which count 1.0).
SPACE_WEIGHTS = {"手孔": 0.8, "化粪池": 1.2, "隔油池": 1.2}
ACCUMULATING = ("PS", "DL", "TX")
OTHER_SPACE_WEIGHT = 0.7
UNKNOWN_DEPTH_WEIGHT = 1.25
_MAX_SCORE = 1.0 * 4.0 * 1.2 * 1.5

_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(mpa|kpa|bar|pa)?", re.IGNORECASE)
_UNITS = {"mpa": 1.0, "kpa": 1e-3, "bar": 0.1, "pa": 1e-6}


def pressure_class(text: str | None) -> tuple[str | None, float]:
    """(class name, score weight) of a gas ``pressure`` text: 低压, 中压, 中压A/B, 次高压A/B, 高压A/B, or a
    number with unit (0.3MPa, 300kPa, 4bar; a bare number is MPa below 10, else kPa). Unknown → (None, 1.75)."""
    if not text or not text.strip():
        return None, UNKNOWN_PRESSURE_WEIGHT
    value = text.strip().upper().replace("Ａ", "A").replace("Ｂ", "B").replace(" ", "")
    for base in ("次高压", "高压", "中压", "低压"):
        if base in value:
            if base == "低压":
                return "低压", PRESSURE_CLASSES[0].weight
            letter = value[value.index(base) + len(base):][:1]
            named = {c.name: c for c in PRESSURE_CLASSES}.get(base + letter)
            return (named.name, named.weight) if named else (base, UNLETTERED[base])
    match = _NUMBER.search(value.lower())
    if not match:
        return None, UNKNOWN_PRESSURE_WEIGHT
    number = float(match.group(1))
    unit = (match.group(2) or ("mpa" if number < 10 else "kpa")).lower()
    mpa = number * _UNITS[unit]
    if mpa < PRESSURE_CLASSES[0].max_mpa:
        return PRESSURE_CLASSES[0].name, PRESSURE_CLASSES[0].weight
    for cls in PRESSURE_CLASSES[1:]:
        if mpa <= cls.max_mpa:
            return cls.name, cls.weight
    return "超高压", PRESSURE_CLASSES[-1].weight


@dataclass(frozen=True)
class GasRiskChamber:
    """A chamber near a gas main, with its score and rank (1 = worst)."""

    rank: int
    score: float
    feature_id: str
    point_id: str | None
    dataset: str
    category: str | None
    subtype: str | None
    appurtenance: str
    depth_m: float | None
    distance_m: float
    gas_segment: str
    gas_pressure: str | None
    pressure_class: str | None
    gas_owner: str | None
    geometry: BaseGeometry = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (no geometry)."""
        return clean({k: getattr(self, k) for k in (
            "rank", "score", "feature_id", "point_id", "dataset", "category", "subtype", "appurtenance",
            "depth_m", "distance_m", "gas_segment", "gas_pressure", "pressure_class", "gas_owner")})


@dataclass
class GasRiskResult:
    """Ranked chambers near gas mains and the gas segments they are nearest to; keeps the frame."""

    frame: Frame
    dataset: str
    distance_m: float
    entries: list[GasRiskChamber]
    gas_mains: dict[str, Located]
    candidates: int  # chambers within the distance before ``limit``

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return clean({"dataset": self.dataset, "distance_m": self.distance_m, "candidates": self.candidates,
                      "chambers": [e.to_dict() for e in self.entries]})

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: ranked chambers (role chamber) and the nearest gas segments (role gas_main)."""
        items = [Located(e.geometry, {"role": "chamber", **e.to_dict()}, id=f"{e.dataset}/{e.feature_id}")
                 for e in self.entries]
        items += list(self.gas_mains.values())
        return feature_collection(items, self.frame, distance_m=self.distance_m)


_GAS_SQL = """
    SELECT feature_id, diameter_mm, width_mm, pressure, owner, start_z, end_z,
           ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1,
           ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2
    FROM pipe_segments WHERE {where} AND category = 'RQ' AND version_to IS NULL AND dataset_id = $dataset"""
_CHAMBER_SQL = """
    SELECT feature_id, point_id, category, subtype, appurtenance, x, y, ground_h, well_depth, well_bottom_h
    FROM pipe_points WHERE {where} AND category IS DISTINCT FROM 'RQ' AND list_contains($names, appurtenance)
      AND version_to IS NULL AND dataset_id = $dataset"""
#: Gas segments near an area: R-tree scan; chambers in an area: the x/y columns' zone maps (faster than
#: fetching thousands of rows through the R-tree).
_ENVELOPE = "ST_Intersects(geom, ST_MakeEnvelope($minx, $miny, $maxx, $maxy))"
_BOX = "x BETWEEN $minx AND $maxx AND y BETWEEN $miny AND $maxy"


def gas_adjacent_chambers(
    store: DuckDBStore,
    frame: Frame,
    *,
    distance_m: float = 5.0,
    dataset: str | None = None,
    area: dict[str, Any] | str | BaseGeometry | None = None,
    crs: str | None = None,
    limit: int | None = None,
) -> GasRiskResult:
    """Chambers of other utilities within ``distance_m`` (plan, chamber centre to the gas pipe's outer wall)
    of current gas segments, ranked by the module's score; only chambers inside ``area`` when given.

    Raises:
        InvalidInputError: distance not in (0, MAX_DISTANCE_M], limit < 1, bad area.
        OutOfRegionError: the area lies outside the region.
        NotFoundError: the dataset does not exist.
    """
    distance_m = _check(distance_m, limit)
    polygon = read_geometry(area, crs, frame, kinds=POLYGONAL, field_name="area") if area is not None else None
    dataset = pick_dataset(store, dataset)
    chambers, gas = _query(store, dataset, polygon, distance_m)
    entries = _rank(chambers, gas, distance_m, dataset)
    candidates = len(entries)
    if limit is not None:
        entries = entries[:limit]
    return GasRiskResult(frame, dataset, distance_m, entries, _mains(gas, entries, dataset), candidates)


def _query(store: DuckDBStore, dataset: str, polygon: BaseGeometry | None, distance_m: float
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Chambers of other utilities (inside ``polygon`` when given) and the gas segments that can reach them."""
    cur = store.read()
    try:
        names = _chamber_values(cur, dataset)
        if polygon is None:
            chambers = _table(cur.execute(_CHAMBER_SQL.format(where="TRUE"), {"dataset": dataset, "names": names}))
            gas = _table(cur.execute(_GAS_SQL.format(where="TRUE"), {"dataset": dataset}))
            return chambers, gas
        minx, miny, maxx, maxy = polygon.bounds
        box = {"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "dataset": dataset}
        chambers = _table(cur.execute(_CHAMBER_SQL.format(where=_BOX), {**box, "names": names}))
        grow = distance_m + MAX_GAS_RADIUS_M
        gas = _table(cur.execute(_GAS_SQL.format(where=_ENVELOPE), {
            "minx": minx - grow, "miny": miny - grow, "maxx": maxx + grow, "maxy": maxy + grow, "dataset": dataset}))
    finally:
        cur.close()
    if len(chambers["x"]):
        inside = shapely.covers(polygon, shapely.points(chambers["x"], chambers["y"]))
        chambers = {k: v[inside] for k, v in chambers.items()}
    return chambers, gas


def _check(distance_m: float, limit: int | None) -> float:
    try:
        distance = float(distance_m)
    except (TypeError, ValueError):
        raise InvalidInputError(f"distance_m must be a number, got {distance_m!r}", field="distance_m") from None
    if not math.isfinite(distance) or not 0 < distance <= MAX_DISTANCE_M:
        raise InvalidInputError(f"distance_m must be in (0, {MAX_DISTANCE_M:g}] m, got {distance_m!r}",
                                field="distance_m")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be a positive integer, got {limit!r}", field="limit")
    return distance


def _chamber_values(cur: Any, dataset: str) -> list[str]:
    """The dataset's appurtenance values (names or aliases) that are chambers."""
    values = cur.execute("SELECT DISTINCT appurtenance FROM pipe_points WHERE appurtenance IS NOT NULL "
                         "AND version_to IS NULL AND dataset_id = ?", [dataset]).fetchall()
    return sorted(v for (v,) in values if (kind := resolve_point_type(v)) is not None and kind.is_chamber)


def _table(result: Any) -> dict[str, np.ndarray]:
    table: pa.Table = result.to_arrow_table()
    out = {}
    for name in table.column_names:
        column = table.column(name)
        numeric = pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
        out[name] = (np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="f8") if numeric
                     else column.to_numpy(zero_copy_only=False))
    return out


def _rank(c: dict[str, np.ndarray], g: dict[str, np.ndarray], distance_m: float, dataset: str
          ) -> list[GasRiskChamber]:
    """Each chamber within ``distance_m`` of a gas wall, with its nearest gas segment, scored and ranked."""
    if not len(c["x"]) or not len(g["x1"]):
        return []
    lines = shapely.linestrings(np.stack([np.column_stack([g["x1"], g["y1"]]),
                                          np.column_stack([g["x2"], g["y2"]])], axis=1))
    radius = np.nan_to_num(np.where(np.isfinite(g["diameter_mm"]), g["diameter_mm"], g["width_mm"]) / 2000)
    points = shapely.points(c["x"], c["y"])
    pi, li = shapely.STRtree(lines).query(points, predicate="dwithin", distance=distance_m + radius.max())
    wall = np.maximum(shapely.distance(points[pi], lines[li]) - radius[li], 0.0)
    ok = wall <= distance_m
    order = np.lexsort((wall[ok], pi[ok]))  # per chamber, nearest wall first
    pi, li, wall = pi[ok][order], li[ok][order], wall[ok][order]
    first = np.r_[True, pi[1:] != pi[:-1]] if len(pi) else np.zeros(0, dtype=bool)
    pi, li, wall = pi[first], li[first], wall[first]
    classes = {t: pressure_class(t) for t in set(g["pressure"][li])}
    pressure_w = np.array([classes[t][1] for t in g["pressure"][li]])
    space_w = np.array([_space_weight(cat, app) for cat, app in zip(c["category"][pi], c["appurtenance"][pi],
                                                                     strict=True)])
    depth = np.where(np.isfinite(c["well_depth"]), c["well_depth"], c["ground_h"] - c["well_bottom_h"])[pi]
    depth_w = np.where(np.isfinite(depth), 1 + 0.5 * np.clip(depth, 0, 5) / 5, UNKNOWN_DEPTH_WEIGHT)
    score = np.round(100 * (1 - 0.8 * wall / distance_m) * pressure_w * space_w * depth_w / _MAX_SCORE, 2)
    ground = c["ground_h"][pi]
    geoms = shapely.points(c["x"][pi], c["y"][pi], np.nan_to_num(ground))
    geoms[~np.isfinite(ground)] = points[pi][~np.isfinite(ground)]
    fids = c["feature_id"][pi]
    ranked = sorted(range(len(pi)), key=lambda k: (-score[k], wall[k], fids[k]))
    return [GasRiskChamber(rank, float(score[k]), fids[k], c["point_id"][pi[k]], dataset, c["category"][pi[k]],
                           c["subtype"][pi[k]], c["appurtenance"][pi[k]],
                           float(depth[k]) if np.isfinite(depth[k]) else None, float(wall[k]),
                           g["feature_id"][li[k]], g["pressure"][li[k]], classes[g["pressure"][li[k]]][0],
                           g["owner"][li[k]], geoms[k])
            for rank, k in enumerate(ranked, start=1)]


def _space_weight(category: str | None, appurtenance: str) -> float:
    kind = resolve_point_type(appurtenance)
    if kind is not None and kind.name in SPACE_WEIGHTS:
        return SPACE_WEIGHTS[kind.name]
    return 1.0 if category in ACCUMULATING else OTHER_SPACE_WEIGHT


def _mains(g: dict[str, np.ndarray], entries: list[GasRiskChamber], dataset: str) -> dict[str, Located]:
    """The gas segments nearest to ``entries`` (role gas_main), 3D where their heights are known."""
    wanted = {e.gas_segment for e in entries}
    rows = np.flatnonzero(np.array([f in wanted for f in g["feature_id"]], dtype=bool))
    z1, z2 = g["start_z"][rows], g["end_z"][rows]
    known = np.isfinite(z1) & np.isfinite(z2)
    coords = np.stack([np.column_stack([g["x1"][rows], g["y1"][rows], np.nan_to_num(z1)]),
                       np.column_stack([g["x2"][rows], g["y2"][rows], np.nan_to_num(z2)])], axis=1)
    geoms = shapely.linestrings(coords) if len(rows) else np.empty(0, dtype=object)
    if (~known).any():
        geoms[~known] = shapely.linestrings(coords[~known][:, :, :2])
    out = {}
    for k, s in enumerate(rows):
        d, fid, pressure = g["diameter_mm"][s], g["feature_id"][s], g["pressure"][s]
        out[fid] = Located(geoms[k], {"role": "gas_main", "feature_id": fid, "dataset": dataset, "category": GAS,
                                      "pressure": pressure, "pressure_class": pressure_class(pressure)[0],
                                      "size": f"DN{d:g}" if np.isfinite(d) else None, "owner": g["owner"][s]},
                           id=f"{dataset}/{fid}")
    return out
