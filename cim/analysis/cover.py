"""Cover check (覆土/埋深分析): cover at every current segment end against the minimum for its category and road.

Cover = ground − outer top of the pipe. Pipe top by depth convention (domain brief §2.6): gravity = recorded
invert + inner height + two walls (wall not surveyed: estimated from the material, :data:`WALL_FRACTION`);
pressure and duct = the recorded top. Ground = the surveyed ground elevation of the end's point (else recorded
elevation + depth, else the ground model). When a ground model (DEM) is given, its height is reported beside
the survey and ends where the two differ by more than :data:`GROUND_MISMATCH_M` are listed with both covers.

Minima come from ``cim/pipes/data/min_cover.csv`` (category × road type, per-row confidence and source);
categories without a row are counted as unchecked. Overhead/surface/riser segments (架空, 地面, 上架) and
negative recorded depths are listed separately, as are pipes not in soil (tunnels, inside chambers or drains).

Example::

    res = cover_check(store, frame, road_type="footway")
    [(f.feature_id, f.end, f.cover, f.required) for f in res.findings]
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Point

from cim.analysis.common import (
    POLYGONAL,
    Frame,
    Located,
    clean,
    feature_collection,
    pick_dataset,
    read_geometry,
)
from cim.analysis.ground import Ground
from cim.analysis.sections import category_name, section_dims, size_text
from cim.errors import InvalidInputError
from cim.store import DuckDBStore

MIN_COVER_TABLE = Path(__file__).resolve().parents[1] / "pipes" / "data" / "min_cover.csv"
#: Ground model and survey disagreeing by more than this (m) are both reported.
GROUND_MISMATCH_M = 0.3
#: Deficits below this (m) are rounding, not findings.
TOLERANCE_M = 0.001
#: Burial codes of pipes above ground (架空, 地面, 上架): no cover requirement, listed separately.
ABOVE_GROUND = ("JK", "DM", "SJ")
#: Burial codes of pipes not in soil (utility tunnel, civil-defence tunnel, inside a chamber or a drain).
NOT_IN_SOIL = ("ZH", "RF", "JN", "XTD")
#: Wall thickness of gravity pipes as a fraction of the inner height, by material (estimate; not surveyed):
#: reinforced concrete GB/T 11836 ≈ D/10 (DN300 30 mm … DN1000 100 mm), plastic/GRP structured walls ≈ D/15,
#: iron and steel ≈ D/30, masonry boxes ≈ D/6. Unknown materials take the concrete value (less cover: stricter).
WALL_FRACTION: dict[str, float] = {"T": 0.10, "TC": 0.10, "SM": 0.08, "PE": 0.07, "PVC": 0.07, "BLG": 0.07,
                                   "G": 0.03, "ZT": 0.03, "QM": 0.03, "Z": 0.17, "S": 0.17, "ZS": 0.17}
DEFAULT_WALL_FRACTION = 0.10


@dataclass(frozen=True)
class MinCover:
    """One row of the minimum-cover table."""

    category: str
    road_type: str
    min_cover_m: float
    confidence: str
    source: str


@lru_cache(maxsize=4)
def load_min_cover(path: Path = MIN_COVER_TABLE) -> tuple[MinCover, ...]:
    """Rows of a minimum-cover table file (lines starting with '#' are comments)."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    return tuple(MinCover(r["category"], r["road_type"], float(r["min_cover_m"]), r["confidence"], r["source"])
                 for r in csv.DictReader(lines))


@dataclass
class CoverEnd:
    """Cover at one segment end (m; heights 1985)."""

    feature_id: str
    dataset: str
    category: str | None
    category_name: str | None
    size: str | None
    burial: str | None
    end: str
    point_id: str | None
    x: float
    y: float
    depth: float
    top: float
    ground: float
    ground_from: str
    cover: float
    required: float | None
    deficit: float | None
    ground_model: float | None = None
    cover_model: float | None = None
    confidence: str | None = None


@dataclass
class CoverResult:
    """The result of :func:`cover_check`; keeps the frame to place its GeoJSON."""

    dataset: str
    road_type: str
    ground_name: str | None
    checked: int
    findings: list[CoverEnd]
    above_ground: list[CoverEnd]
    mismatches: list[CoverEnd]
    unknown: list[CoverEnd]
    not_in_soil: int
    unchecked_categories: dict[str, int]
    minimums: list[MinCover]
    frame: Frame = field(repr=False)
    ground_tolerance: float = GROUND_MISMATCH_M

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result: summary, findings (deficits, worst first), above-ground ends, ground mismatches."""
        return clean({
            "summary": {"dataset": self.dataset, "road_type": self.road_type, "ends_checked": self.checked,
                        "below_minimum": len(self.findings),
                        "segments_below_minimum": len({f.feature_id for f in self.findings}),
                        "above_ground": len(self.above_ground), "ground_mismatches": len(self.mismatches),
                        "unknown_cover": len(self.unknown), "not_in_soil": self.not_in_soil,
                        "unchecked_categories": self.unchecked_categories, "ground_model": self.ground_name,
                        "ground_tolerance_m": self.ground_tolerance if self.ground_name else None},
            "findings": [asdict(f) for f in self.findings],
            "above_ground": [asdict(f) for f in self.above_ground],
            "ground_mismatches": [asdict(f) for f in self.mismatches],
            "unknown_cover": [asdict(f) for f in self.unknown],
            "minimums": [asdict(m) for m in self.minimums],
        })

    def to_geojson(self) -> dict[str, Any]:
        """Each finding at the pipe top of its end (lon/lat/h): roles cover_deficit, above_ground, ground_mismatch."""
        items = []
        for role, ends in (("cover_deficit", self.findings), ("above_ground", self.above_ground),
                           ("ground_mismatch", self.mismatches)):
            for e in ends:
                props = {"role": role, **asdict(e)}
                geom = Point(e.x, e.y, e.top) if math.isfinite(e.top) else Point(e.x, e.y)
                items.append(Located(geom, props, f"{e.feature_id}/{e.end}/{role}"))
        return feature_collection(items, self.frame, summary=self.to_dict()["summary"])


_SQL = """
WITH pg AS (SELECT point_id, category, avg(ground_h) AS h FROM pipe_points
            WHERE version_to IS NULL AND dataset_id = $ds AND isfinite(ground_h) GROUP BY ALL),
     pa AS (SELECT point_id, avg(h) AS h FROM pg GROUP BY ALL),
     s AS (SELECT * FROM pipe_segments WHERE version_to IS NULL AND dataset_id = $ds {area})
SELECT s.feature_id, s.category, s.kind, s.shape, s.diameter_mm, s.width_mm, s.height_mm, s.material, s.burial,
       e.end_name, e.point_id, e.h, e.depth, e.z,
       CASE e.end_name WHEN 'start' THEN ST_X(ST_StartPoint(s.geom)) ELSE ST_X(ST_EndPoint(s.geom)) END AS x,
       CASE e.end_name WHEN 'start' THEN ST_Y(ST_StartPoint(s.geom)) ELSE ST_Y(ST_EndPoint(s.geom)) END AS y,
       coalesce(g.h, ga.h) AS ground_h
FROM s
CROSS JOIN LATERAL (VALUES ('start', s.start_id, s.start_h, s.start_depth, s.start_z),
                           ('end', s.end_id, s.end_h, s.end_depth, s.end_z)) e(end_name, point_id, h, depth, z)
LEFT JOIN pg g ON g.point_id = e.point_id AND g.category IS NOT DISTINCT FROM s.category
LEFT JOIN pa ga ON ga.point_id = e.point_id
ORDER BY s.feature_id, e.end_name DESC"""


def cover_check(
    store: DuckDBStore,
    frame: Frame,
    *,
    dataset: str | None = None,
    area: dict[str, Any] | str | None = None,
    crs: str | None = None,
    road_type: str = "carriageway",
    ground: Ground | None = None,
    ground_tolerance: float | None = None,
) -> CoverResult:
    """Cover at both ends of every current segment (in ``area`` when given) against the minimum table.

    With a ``ground`` model (a DEM) every end also reports the model's ground and the cover below it, and ends
    where model and survey differ by more than ``ground_tolerance`` (default :data:`GROUND_MISMATCH_M`) are
    listed as ground mismatches.

    Raises:
        InvalidInputError: unknown ``road_type`` or a bad area polygon.
        NotFoundError: the dataset does not exist or the store holds no pipes.
    """
    table = load_min_cover()
    road_types = sorted({m.road_type for m in table})
    if road_type not in road_types:
        raise InvalidInputError(f"road_type {road_type!r} is not one of {', '.join(road_types)}", field="road_type")
    minimum = {m.category: m for m in table if m.road_type == road_type}
    ds = pick_dataset(store, dataset)
    rows = _rows(store, ds, area, crs, frame)
    model = ground.heights(np.array([r["x"] for r in rows], dtype="f8"),
                           np.array([r["y"] for r in rows], dtype="f8")) if ground and rows else None
    if ground_tolerance is not None and not (math.isfinite(ground_tolerance) and ground_tolerance >= 0):
        raise InvalidInputError(f"ground tolerance {ground_tolerance} must be ≥ 0 m", field="ground_tolerance")
    res = CoverResult(ds, road_type, ground.name if ground else None, 0, [], [], [], [], 0, {},
                      sorted(minimum.values(), key=lambda m: m.category), frame,
                      GROUND_MISMATCH_M if ground_tolerance is None else float(ground_tolerance))
    for i, row in enumerate(rows):
        _judge(res, _end(row, ds, None if model is None else float(model[i]), minimum.get(row["category"] or "")))
    res.findings.sort(key=lambda e: (-(e.deficit or 0.0), e.feature_id, e.end))
    return res


def _rows(store: DuckDBStore, ds: str, area: Any, crs: str | None, frame: Frame) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"ds": ds}
    where = ""
    if area is not None:
        poly = read_geometry(area, crs, frame, kinds=POLYGONAL, field_name="area")
        x0, y0, x1, y1 = poly.bounds
        params.update(x0=x0, y0=y0, x1=x1, y1=y1, wkb=poly.wkb)
        where = ("AND ST_Intersects(geom, ST_MakeEnvelope($x0, $y0, $x1, $y1)) "
                 "AND ST_Intersects(geom, ST_GeomFromWKB($wkb))")
    cur = store.read()
    try:
        return cur.execute(_SQL.format(area=where), params).to_arrow_table().to_pylist()
    finally:
        cur.close()


def _f(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _end(row: dict[str, Any], ds: str, model: float | None, minimum: MinCover | None) -> CoverEnd:
    _, height = section_dims(row["diameter_mm"], row["width_mm"], row["height_mm"])
    h, z = _f(row["h"]), _f(row["z"])
    if row["kind"] == "gravity":
        invert = h if math.isfinite(h) else z - height / 2
        top = invert + height * (1 + 2 * WALL_FRACTION.get(row["material"] or "", DEFAULT_WALL_FRACTION))
    else:
        top = h if math.isfinite(h) else z + height / 2
    ground, ground_from = _f(row["ground_h"]), "surveyed point"
    if not math.isfinite(ground):
        ground, ground_from = h + _f(row["depth"]), "recorded depth"
    if not math.isfinite(ground) and model is not None:
        ground, ground_from = model, "ground model"
    cover = ground - top
    required = minimum.min_cover_m if minimum else None
    deficit = required - cover if required is not None and math.isfinite(cover) else None
    cover_model = model - top if model is not None and math.isfinite(model) else None
    return CoverEnd(
        feature_id=row["feature_id"], dataset=ds, category=row["category"], category_name=category_name(row["category"]),
        size=size_text(row["shape"], row["diameter_mm"], row["width_mm"], row["height_mm"]), burial=row["burial"],
        end=row["end_name"], point_id=row["point_id"], x=_f(row["x"]), y=_f(row["y"]), depth=_f(row["depth"]), top=top, ground=ground,
        ground_from=ground_from, cover=cover, required=required, deficit=deficit,
        ground_model=model if model is not None and math.isfinite(model) else None, cover_model=cover_model,
        confidence=minimum.confidence if minimum else None,
    )


def _judge(res: CoverResult, e: CoverEnd) -> None:
    """File one end under the right list of ``res``."""
    if e.burial in NOT_IN_SOIL:
        res.not_in_soil += 1
        return
    if e.burial in ABOVE_GROUND or e.depth < 0:  # 上架 segments carry negative depths
        res.above_ground.append(e)
        return
    if not math.isfinite(e.cover):
        res.unknown.append(e)
        return
    if e.ground_model is not None and abs(e.ground_model - e.ground) > res.ground_tolerance:
        res.mismatches.append(e)
    if e.required is None:
        key = e.category or "?"
        res.unchecked_categories[key] = res.unchecked_categories.get(key, 0) + 1
        return
    res.checked += 1
    if e.deficit is not None and e.deficit > TOLERANCE_M:
        res.findings.append(e)
