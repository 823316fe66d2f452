"""Cross-section (横断面): every pipe crossing a drawn line, at its true height, with the ground above it.

The line is read in any CRS (default CRS84) and cut against the current pipe segments in the storage CRS:
an R-tree prefilter by the line's envelope in DuckDB, then exact 2D intersection in shapely. At each crossing
the centre height is interpolated along the segment in 3D; top and bottom follow the section (round D/2, box
H/2); the depth of the top is ground − top, ground from the ground model (default: the surveyed ground),
else interpolated between the segment's recorded end grounds (elevation + depth).

Example::

    sec = cross_section(store, frame, line={"type": "LineString", "coordinates": [[117.02, 36.65], ...]})
    [(c.feature_id, round(c.station, 1), round(c.depth_top, 2)) for c in sec.crossings]
    Path("section.svg").write_text(sec.svg())
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from cim.analysis.common import LINEAR, Frame, Located, clean, feature_collection, pick_dataset, read_geometry
from cim.analysis.ground import Ground, SurveyedGround
from cim.errors import InvalidInputError
from cim.pipes.dictionaries import CATEGORIES, MATERIALS
from cim.store import DuckDBStore

#: Longest section line accepted (m): a section is a street-scale drawing, not a district scan.
MAX_LINE_M = 2000.0
#: Ground samples along the line: every metre, at most this many.
MAX_GROUND_SAMPLES = 200
#: Surveyed points used for the default ground: those within this distance (m) of the line's envelope.
GROUND_MARGIN_M = 150.0
#: Crossing angles below this are treated as this when widening a section along the line (1 / sin θ).
MIN_ANGLE_DEG = 10.0


def size_text(shape: str | None, diameter_mm: float | None, width_mm: float | None,
              height_mm: float | None) -> str | None:
    """``DN300`` for round pipes, ``800×600`` (width × height, mm) for boxes, None when unknown."""
    def ok(v: float | None) -> bool:
        return v is not None and math.isfinite(v) and v > 0

    if ok(width_mm) and ok(height_mm) and (shape == "rect" or not ok(diameter_mm)):
        return f"{width_mm:g}×{height_mm:g}"
    if ok(diameter_mm):
        return f"DN{diameter_mm:g}"
    return None


def section_dims(diameter_mm: float | None, width_mm: float | None, height_mm: float | None
                 ) -> tuple[float, float]:
    """(width, height) of a section in metres: the box's sides or the diameter twice; NaN when unknown."""
    def m(v: float | None) -> float:
        return v / 1000.0 if v is not None and math.isfinite(v) and v > 0 else math.nan

    d = m(diameter_mm)
    w, h = m(width_mm), m(height_mm)
    return (w if math.isfinite(w) else d, h if math.isfinite(h) else d)


def category_name(code: str | None) -> str | None:
    """Chinese name of a CJJ 61 category code (``PS`` → 排水)."""
    cat = CATEGORIES.get(code or "")
    return cat.name_zh if cat else None


def material_name(code: str | None) -> str | None:
    """Chinese name of a CJJ 61 material code (``T`` → 混凝土), the code itself when unknown."""
    term = MATERIALS.get(code or "")
    return term.name_zh if term else code


@dataclass
class Crossing:
    """One pipe cut by the section line (heights 1985, metres; depth = ground − top)."""

    feature_id: str
    category: str | None
    category_name: str | None
    subtype: str | None
    kind: str | None
    shape: str | None
    size: str | None
    width_m: float
    height_m: float
    material: str | None
    material_name: str | None
    owner: str | None
    start_id: str | None
    end_id: str | None
    station: float
    x: float
    y: float
    z: float
    top: float
    bottom: float
    ground: float
    ground_from: str
    depth_top: float
    angle_deg: float
    fraction: float
    collinear: bool = False

    @property
    def half_width_along(self) -> float:
        """Half the width the section occupies along the line (widened by 1/sin of the crossing angle)."""
        s = math.sin(math.radians(max(self.angle_deg, MIN_ANGLE_DEG)))
        return self.width_m / 2 / s if math.isfinite(self.width_m) else 0.0


@dataclass
class Spacing:
    """Clear distances between two pipes next to each other along the line (negative = overlap)."""

    a: str
    b: str
    horizontal_m: float
    vertical_m: float
    clear_m: float


@dataclass
class CrossSection:
    """The result of :func:`cross_section`; keeps the frame to place its GeoJSON."""

    dataset: str
    line: LineString
    crossings: list[Crossing]
    spacings: list[Spacing]
    stations: np.ndarray
    ground_h: np.ndarray
    ground_name: str
    ground_source: str
    frame: Frame = field(repr=False)

    @property
    def length(self) -> float:
        """Length of the section line (m)."""
        return float(self.line.length)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result: summary, crossings by station, spacings and the ground profile."""
        cats: dict[str, int] = {}
        for c in self.crossings:
            cats[c.category or "?"] = cats.get(c.category or "?", 0) + 1
        tight = [s for s in self.spacings if s.clear_m < 0]
        return clean({
            "summary": {"dataset": self.dataset, "length_m": self.length, "crossings": len(self.crossings),
                        "by_category": cats, "overlapping_pairs": len(tight), "ground": self.ground_name},
            "line": shapely.geometry.mapping(self.line),
            "crs": self.frame.storage_crs,
            "crossings": [asdict(c) for c in self.crossings],
            "spacings": [asdict(s) for s in self.spacings],
            "ground": {"name": self.ground_name, "source": self.ground_source,
                       "stations": [float(v) for v in self.stations], "heights": [float(v) for v in self.ground_h]},
        })

    def to_geojson(self) -> dict[str, Any]:
        """The line, the ground profile (3D, where known) and each crossing at its centre (lon/lat/h)."""
        items = [Located(self.line, {"role": "section_line", "length_m": self.length, "dataset": self.dataset})]
        ok = np.isfinite(self.ground_h)
        if ok.sum() >= 2:
            xy = shapely.get_coordinates(shapely.line_interpolate_point(self.line, self.stations[ok]))
            items.append(Located(LineString(np.column_stack([xy, self.ground_h[ok]])),
                                 {"role": "ground_profile", "ground": self.ground_name}))
        for c in self.crossings:
            props = {"role": "crossing", "feature_id": c.feature_id, "dataset": self.dataset,
                     "category": c.category, "category_name": c.category_name, "size": c.size,
                     "station": c.station, "top": c.top, "bottom": c.bottom, "depth_top": c.depth_top,
                     "angle_deg": c.angle_deg, "material": c.material_name, "owner": c.owner}
            z = c.z if math.isfinite(c.z) else None
            items.append(Located(Point(c.x, c.y, z) if z is not None else Point(c.x, c.y), props, c.feature_id))
        return feature_collection(items, self.frame, summary=self.to_dict()["summary"])

    def svg(self) -> str:
        """Printable SVG drawing of the section (see :mod:`cim.analysis.charts`)."""
        from cim.analysis.charts import section_svg

        return section_svg(self)

    def png(self, dpi: int = 150) -> bytes:
        """Printable PNG drawing of the section."""
        from cim.analysis.charts import section_png

        return section_png(self, dpi)


def cross_section(
    store: DuckDBStore,
    frame: Frame,
    *,
    line: dict[str, Any] | str | LineString,
    crs: str | None = None,
    dataset: str | None = None,
    ground: Ground | None = None,
) -> CrossSection:
    """Every current pipe segment of ``dataset`` crossing ``line`` (a GeoJSON/WKT LineString in ``crs``).

    Raises:
        InvalidInputError: the line is not a LineString, has fewer than 2 points, no length or is longer
            than :data:`MAX_LINE_M`.
        OutOfRegionError: a vertex lies outside the region (e.g. metres given as CRS84).
        NotFoundError: the dataset does not exist or the store holds no pipes.
    """
    _check_points(line)
    geom = read_geometry(line, crs, frame, kinds=LINEAR, field_name="line")
    assert isinstance(geom, LineString)
    if geom.length <= 0:
        raise InvalidInputError("line has no length: give two different points", field="line")
    if geom.length > MAX_LINE_M:
        raise InvalidInputError(f"line is {geom.length:.0f} m long; a cross-section is limited to {MAX_LINE_M:.0f} m",
                                field="line")
    ds = pick_dataset(store, dataset)
    if ground is None:
        x0, y0, x1, y1 = geom.bounds
        m = GROUND_MARGIN_M
        ground = SurveyedGround.from_store(store, ds, bbox=(x0 - m, y0 - m, x1 + m, y1 + m))
    crossings = _crossings(store, ds, geom, ground)
    n = int(min(MAX_GROUND_SAMPLES, max(2, math.ceil(geom.length) + 1)))
    stations = np.linspace(0.0, geom.length, n)
    xy = shapely.get_coordinates(shapely.line_interpolate_point(geom, stations))
    heights = ground.heights(xy[:, 0], xy[:, 1])
    return CrossSection(ds, geom, crossings, _spacings(crossings), stations, heights,
                        ground.name, ground.source, frame)


def _check_points(line: Any) -> None:
    coords = None
    if isinstance(line, dict):
        geometry = line.get("geometry") if line.get("type") == "Feature" else line
        coords = (geometry or {}).get("coordinates") if isinstance(geometry, dict) else None
    if isinstance(coords, Sequence) and not isinstance(coords, str) and len(coords) < 2:
        raise InvalidInputError(f"line has {len(coords)} point(s); a section line needs at least 2", field="line")


_SQL = """
SELECT feature_id, category, subtype, kind, shape, diameter_mm, width_mm, height_mm, material, owner,
       start_id, end_id, start_z, end_z, start_h, end_h, start_depth, end_depth,
       ST_AsWKB(ST_Force2D(geom)) AS wkb
FROM pipe_segments
WHERE version_to IS NULL AND dataset_id = $ds
  AND ST_Intersects(geom, ST_MakeEnvelope($x0, $y0, $x1, $y1))
ORDER BY feature_id"""


def _num(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _crossings(store: DuckDBStore, ds: str, line: LineString, ground: Ground) -> list[Crossing]:
    x0, y0, x1, y1 = line.bounds
    cur = store.read()
    try:
        tbl = cur.execute(_SQL, {"ds": ds, "x0": x0 - 1e-6, "y0": y0 - 1e-6, "x1": x1 + 1e-6, "y1": y1 + 1e-6}
                          ).to_arrow_table()
    finally:
        cur.close()
    if not tbl.num_rows:
        return []
    rows = tbl.drop(["wkb"]).to_pylist()
    segs = shapely.from_wkb(tbl.column("wkb").to_pylist())
    cuts = shapely.intersection(segs, line)
    found: list[tuple[dict[str, Any], LineString, Point, bool]] = []
    for row, seg, cut in zip(rows, segs, cuts, strict=True):
        for part in getattr(cut, "geoms", [cut]):
            if part.is_empty:
                continue
            if part.geom_type == "Point":
                found.append((row, seg, part, False))
            else:  # the line runs along the pipe: report the middle of the shared stretch
                found.append((row, seg, part.interpolate(0.5, normalized=True), True))
    if not found:
        return []
    pts = np.array([[p.x, p.y] for _, _, p, _ in found])
    model = ground.heights(pts[:, 0], pts[:, 1])
    out = [_crossing(row, seg, pt, collinear, line, float(g))
           for (row, seg, pt, collinear), g in zip(found, model, strict=True)]
    return sorted(out, key=lambda c: (c.station, c.z if math.isfinite(c.z) else 0.0, c.feature_id))



def _crossing(row: dict[str, Any], seg: LineString, pt: Point, collinear: bool, line: LineString,
              model_ground: float) -> Crossing:
    t = float(seg.project(pt, normalized=True)) if seg.length > 0 else 0.0
    z1, z2 = _num(row["start_z"]), _num(row["end_z"])
    z = z1 + (z2 - z1) * t
    w, h = section_dims(row["diameter_mm"], row["width_mm"], row["height_mm"])
    top, bottom = z + h / 2, z - h / 2
    recorded = [_num(row[f"{e}_h"]) + _num(row[f"{e}_depth"]) for e in ("start", "end")]
    if math.isfinite(model_ground):
        g, g_from = model_ground, "model"
    else:
        g, g_from = recorded[0] + (recorded[1] - recorded[0]) * t, "segment ends"
    station = float(line.project(pt))
    return Crossing(
        feature_id=row["feature_id"], category=row["category"], category_name=category_name(row["category"]),
        subtype=row["subtype"], kind=row["kind"], shape=row["shape"],
        size=size_text(row["shape"], row["diameter_mm"], row["width_mm"], row["height_mm"]),
        width_m=w, height_m=h, material=row["material"], material_name=material_name(row["material"]),
        owner=row["owner"], start_id=row["start_id"], end_id=row["end_id"], station=station,
        x=float(pt.x), y=float(pt.y), z=z, top=top, bottom=bottom, ground=g, ground_from=g_from,
        depth_top=g - top, angle_deg=_angle(line, station, seg, t), fraction=t, collinear=collinear,
    )


def _direction(geom: LineString, at: float, step: float) -> np.ndarray:
    a = geom.interpolate(max(at - step, 0.0))
    b = geom.interpolate(min(at + step, geom.length))
    v = np.array([b.x - a.x, b.y - a.y])
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


def _angle(line: LineString, station: float, seg: LineString, t: float) -> float:
    """Acute angle (degrees) between the section line and the pipe at the crossing."""
    u = _direction(line, station, 0.05)
    v = _direction(seg, t * seg.length, 0.05)
    cos = min(1.0, abs(float(u @ v)))
    return math.degrees(math.acos(cos))


def _spacings(crossings: list[Crossing]) -> list[Spacing]:
    """Clear distances of each pair of neighbours along the line (bounding boxes of the sections)."""
    def span(c: Crossing) -> tuple[float, float]:  # unknown size: the centre line
        return (c.bottom, c.top) if math.isfinite(c.height_m) else (c.z, c.z)

    out = []
    for a, b in zip(crossings, crossings[1:], strict=False):
        horizontal = (b.station - a.station) - a.half_width_along - b.half_width_along
        (a_bottom, a_top), (b_bottom, b_top) = span(a), span(b)
        vertical = max(a_bottom - b_top, b_bottom - a_top)
        if horizontal > 0 and vertical > 0:
            clear = math.hypot(horizontal, vertical)
        else:
            clear = max(horizontal, vertical)
        out.append(Spacing(a.feature_id, b.feature_id, horizontal, vertical, clear))
    return out
