"""Spatial queries on a stored point cloud: count or extract the points in a polygon, a 3D box or around a
pipe point (a manhole), optionally of some ASPRS classes.

A converted cloud keeps a query copy beside its tiles (``points/index.json`` and one ``.npy`` per tile, in
the file's own CRS: raw LAS integers with the header's scales and offsets). A query transforms its region
into that CRS once, reads only the tiles whose bounds it touches and counts whole tiles that lie inside it
from the index, without reading them.

Example::

    index = PointIndex(build_dir)
    region = index.region(polygon={"type": "Polygon", "coordinates": [...]}, crs="OGC:CRS84")
    index.select(region, classes={2}, limit=10_000)          # -> Selection (native x/y/z, attributes)

Heights: ``zmin``/``zmax`` and the ``h`` of results are metres in the cloud's own height system (its Z
times the vertical unit: 1985 heights for a CGCS2000 delivery, NAVD88 for ``simple.copc.laz``); GeoJSON
output adds the geoid undulation to give the ellipsoidal heights the 3D Tiles use.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry

from cim.crs import get_crs, transform_xy
from cim.errors import CRSError, InvalidInputError, NotFoundError
from cim.heights import GeoidModel, to_ellipsoidal

CRS84 = "OGC:CRS84"
#: Most points one extraction returns.
MAX_LIMIT = 5_000_000


@dataclass(frozen=True)
class Region:
    """A query region in the cloud's native CRS: a polygon (or ``None`` for everything) and a height range
    (native Z units, ``None`` for open)."""

    polygon: BaseGeometry | None
    zmin: float | None = None
    zmax: float | None = None
    description: str = ""

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        return None if self.polygon is None else tuple(self.polygon.bounds)  # type: ignore[return-value]


@dataclass
class Selection:
    """Points of a query: ``matched`` in all; the first ``limit`` of them (coarse tiles first, so a
    truncated answer is a spatially even sample) as native coordinates and attributes."""

    matched: int
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    intensity: np.ndarray
    classification: np.ndarray
    rgb: np.ndarray | None
    truncated: bool
    tiles_read: int

    @property
    def returned(self) -> int:
        return len(self.x)


def _parse_geometry(geometry: dict[str, Any] | str | BaseGeometry) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        return geometry
    try:
        if isinstance(geometry, str):
            text = geometry.strip()
            if not text.startswith("{"):
                return shapely.from_wkt(text)
            geometry = json.loads(text)
        if isinstance(geometry, dict) and geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        return shapely.geometry.shape(geometry)
    except Exception as exc:  # noqa: BLE001 - shapely/json raise many types for bad input
        raise InvalidInputError(f"polygon is not a GeoJSON geometry or WKT: {exc}", field="polygon") from None


class PointIndex:
    """The query copy of one converted cloud (its build folder)."""

    def __init__(self, build_dir: str | Path) -> None:
        self.root = Path(build_dir) / "points"
        path = self.root / "index.json"
        if not path.is_file():
            raise NotFoundError(f"the point cloud in {build_dir} has no query copy (points/index.json)")
        doc = json.loads(path.read_text(encoding="utf-8"))
        self.crs: CRS = get_crs(doc["crs_wkt"])
        self.scales = np.asarray(doc["scales"], "f8")
        self.offsets = np.asarray(doc["offsets"], "f8")
        self.z_to_metres = float(doc.get("z_to_metres", 1.0))
        self.has_rgb = bool(doc.get("has_rgb"))
        self.ellipsoidal = bool(doc.get("ellipsoidal"))
        self.points = int(doc["points"])
        self.nodes: list[dict[str, Any]] = doc["nodes"]
        b = np.asarray([n["bounds"] for n in self.nodes], "f8").reshape(-1, 6)
        self._bounds = b

    # -- regions ------------------------------------------------------------------------------------------
    def _to_native(self, geom: BaseGeometry, crs: str | None) -> BaseGeometry:
        src = crs or CRS84
        try:
            src_crs = get_crs(src)
        except CRSError as exc:
            raise CRSError(str(exc), field="crs", value=src) from None
        if src_crs.equals(self.crs, ignore_axis_order=True):
            return geom
        xy = shapely.get_coordinates(geom)
        if src_crs.is_geographic and (np.abs(xy) > 360).any():
            raise InvalidInputError(f"coordinates like ({xy[0, 0]:.6g}, {xy[0, 1]:.6g}) are not degrees of {src}: "
                                    "give the CRS they are in", field="crs")
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        step = max(float((hi - lo).max()) / 32, 1e-9)
        dense = shapely.segmentize(geom, step)  # edges follow the projection's curvature
        with np.errstate(all="ignore"):
            out = shapely.transform(dense, lambda c: np.column_stack(transform_xy(c[:, 0], c[:, 1], src, self.crs)))
        if not np.isfinite(shapely.get_coordinates(out)).all():
            raise InvalidInputError(f"the region cannot be transformed from {src} to the cloud's CRS "
                                    f"({self.crs.name})", field="crs")
        return out

    def _z(self, h: float | None) -> float | None:
        return None if h is None else float(h) / self.z_to_metres

    def region(self, *, polygon: dict[str, Any] | str | BaseGeometry | None = None,
               bbox: tuple[float, ...] | list[float] | None = None, crs: str | None = None,
               zmin: float | None = None, zmax: float | None = None) -> Region:
        """A region from a polygon (GeoJSON/WKT) or a bbox ``minx,miny,maxx,maxy[,zmin,zmax]`` in ``crs``
        (default CRS84 lon/lat), with heights in metres of the cloud's height system."""
        if (polygon is None) == (bbox is None):
            raise InvalidInputError("give a polygon or a bbox (one of them)", field="polygon")
        if bbox is not None:
            b = [float(v) for v in bbox]
            if len(b) not in (4, 6) or not all(math.isfinite(v) for v in b):
                raise InvalidInputError("bbox is minx,miny,maxx,maxy or minx,miny,minz,maxx,maxy,maxz", field="bbox")
            if len(b) == 6:
                b, zmin, zmax = [b[0], b[1], b[3], b[4]], (b[2] if zmin is None else zmin), (
                    b[5] if zmax is None else zmax)
            if b[0] >= b[2] or b[1] >= b[3]:
                raise InvalidInputError(f"bbox {b} is empty or inverted", field="bbox")
            geom: BaseGeometry = shapely_box(*b)
            what = f"box {b}"
        else:
            geom = _parse_geometry(polygon)  # type: ignore[arg-type]
            if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
                raise InvalidInputError(f"polygon must be a (Multi)Polygon, got {geom.geom_type}", field="polygon")
            if not np.isfinite(shapely.get_coordinates(geom)).all():
                raise InvalidInputError("polygon has coordinates that are not finite numbers", field="polygon")
            geom = shapely.force_2d(geom)
            what = f"{geom.geom_type.lower()} of {len(shapely.get_coordinates(geom))} vertices"
        if zmin is not None and zmax is not None and zmin > zmax:
            raise InvalidInputError(f"zmin {zmin} is above zmax {zmax}", field="zmin")
        native = self._to_native(geom, crs)
        if not native.is_valid:
            native = shapely.make_valid(native)
        return Region(native, self._z(zmin), self._z(zmax), f"{what} in {crs or CRS84}")

    def circle(self, x: float, y: float, radius_m: float, crs: str, *, zmin: float | None = None,
               zmax: float | None = None, label: str = "") -> Region:
        """Points within ``radius_m`` metres (horizontally) of ``(x, y)`` in the metric ``crs``."""
        if not (0 < radius_m <= 10_000):
            raise InvalidInputError(f"radius {radius_m} m must be in (0, 10000]", field="radius")
        disc = shapely.Point(x, y).buffer(radius_m, 64)
        return Region(self._to_native(disc, crs), self._z(zmin), self._z(zmax),
                      f"{radius_m} m around {label or (x, y)}")

    # -- reading ------------------------------------------------------------------------------------------
    def _candidates(self, region: Region) -> tuple[list[int], list[int]]:
        """Tiles the region touches, split into (read, wholly inside and counted from the index)."""
        b = self._bounds
        mask = np.ones(len(b), dtype=bool)
        if region.polygon is not None:
            minx, miny, maxx, maxy = region.bounds  # type: ignore[misc]
            mask &= (b[:, 3] >= minx) & (b[:, 0] <= maxx) & (b[:, 4] >= miny) & (b[:, 1] <= maxy)
        if region.zmin is not None:
            mask &= b[:, 5] >= region.zmin
        if region.zmax is not None:
            mask &= b[:, 2] <= region.zmax
        read, whole = [], []
        prepared = region.polygon
        if prepared is not None:
            shapely.prepare(prepared)
        for i in np.flatnonzero(mask).tolist():
            lo, hi = b[i, :3], b[i, 3:]
            inside_z = (region.zmin is None or lo[2] >= region.zmin) and (region.zmax is None or hi[2] <= region.zmax)
            inside_xy = prepared is None or prepared.covers(shapely_box(lo[0], lo[1], max(hi[0], lo[0] + 1e-9),
                                                                          max(hi[1], lo[1] + 1e-9)))
            (whole if inside_z and inside_xy else read).append(i)
        return read, whole

    def _load(self, i: int) -> np.ndarray:
        return np.load(self.root / self.nodes[i]["file"], mmap_mode="r")

    def _match(self, rec: np.ndarray, region: Region, classes: set[int] | None) -> tuple[np.ndarray, ...]:
        x = rec["X"] * self.scales[0] + self.offsets[0]
        y = rec["Y"] * self.scales[1] + self.offsets[1]
        z = rec["Z"] * self.scales[2] + self.offsets[2]
        keep = np.ones(len(rec), dtype=bool)
        if region.zmin is not None:
            keep &= z >= region.zmin
        if region.zmax is not None:
            keep &= z <= region.zmax
        if classes is not None:
            keep &= np.isin(rec["classification"], list(classes))
        if region.polygon is not None:
            minx, miny, maxx, maxy = region.bounds  # type: ignore[misc]
            keep &= (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)
            idx = np.flatnonzero(keep)
            if len(idx):
                keep[idx] = shapely.intersects_xy(region.polygon, x[idx], y[idx])  # boundary included
        return keep, x, y, z

    def count(self, region: Region, classes: set[int] | None = None) -> int:
        """How many points lie in ``region`` (of ``classes``)."""
        read, whole = self._candidates(region)
        total = sum(self._whole_count(i, classes) for i in whole)
        for i in read:
            keep, *_ = self._match(self._load(i), region, classes)
            total += int(keep.sum())
        return total

    def _whole_count(self, i: int, classes: set[int] | None) -> int:
        node = self.nodes[i]
        if classes is None:
            return int(node["count"])
        return sum(int(v) for k, v in node["classes"].items() if int(k) in classes)

    def select(self, region: Region, classes: set[int] | None = None, limit: int = 100_000) -> Selection:
        """The points in ``region``: all counted, at most ``limit`` returned (coarse tiles first)."""
        if not (0 <= limit <= MAX_LIMIT):
            raise InvalidInputError(f"limit {limit} must be in 0..{MAX_LIMIT}", field="limit")
        read, whole = self._candidates(region)
        order = sorted(read + whole)  # the index lists tiles coarse to fine
        whole_set = set(whole)
        parts: list[tuple[np.ndarray, ...]] = []
        matched = got = tiles = 0
        for i in order:
            if got >= limit and i in whole_set:
                matched += self._whole_count(i, classes)
                continue
            rec = self._load(i)
            tiles += 1
            keep, x, y, z = self._match(rec, region, classes)
            idx = np.flatnonzero(keep)
            matched += len(idx)
            take = idx[: max(0, limit - got)]
            if len(take):
                sub = rec[take]
                rgb = np.column_stack([sub["red"], sub["green"], sub["blue"]]) if self.has_rgb else None
                parts.append((x[take], y[take], z[take], np.asarray(sub["intensity"]),
                              np.asarray(sub["classification"]), rgb))
                got += len(take)
        if parts:
            cols = [np.concatenate([p[k] for p in parts]) for k in range(5)]
            rgb = np.concatenate([p[5] for p in parts]) if self.has_rgb else None
        else:
            cols = [np.zeros(0, "f8")] * 3 + [np.zeros(0, "u2"), np.zeros(0, "u1")]
            rgb = np.zeros((0, 3), "u2") if self.has_rgb else None
        return Selection(matched, cols[0], cols[1], cols[2], cols[3], cols[4], rgb, matched > got, tiles)

    # -- output -------------------------------------------------------------------------------------------
    def heights(self, sel: Selection) -> np.ndarray:
        """Heights in metres of the cloud's height system."""
        return sel.z * self.z_to_metres

    def xy_in(self, sel: Selection, crs: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The selection's x/y in ``crs`` (default: CRS84 lon/lat)."""
        return transform_xy(sel.x, sel.y, self.crs, crs or CRS84) if len(sel.x) else (sel.x, sel.y)

    def to_json(self, sel: Selection, crs: str | None = None, **extra: Any) -> dict[str, Any]:
        """Columns: ``x``, ``y`` in ``crs``, ``h`` (m), ``intensity``, ``classification`` (and ``rgb``)."""
        x, y = self.xy_in(sel, crs)
        out: dict[str, Any] = {**extra, "matched": sel.matched, "returned": sel.returned,
                               "truncated": sel.truncated, "crs": crs or CRS84,
                               "x": np.round(x, 9).tolist(), "y": np.round(y, 9).tolist(),
                               "h": np.round(self.heights(sel), 4).tolist(),
                               "intensity": sel.intensity.tolist(), "classification": sel.classification.tolist()}
        if sel.rgb is not None:
            out["rgb"] = sel.rgb.tolist()
        return out

    def to_geojson(self, sel: Selection, geoid: GeoidModel | None = None, **extra: Any) -> dict[str, Any]:
        """A FeatureCollection of points in CRS84 lon/lat; the third coordinate is the ellipsoidal height
        (height + geoid undulation, the frame of the 3D Tiles) when ``geoid`` is given, ``h`` a property."""
        lon, lat = self.xy_in(sel, CRS84)
        h = self.heights(sel)
        hz = h if geoid is None or self.ellipsoidal or not len(h) else to_ellipsoidal(geoid, lon, lat, h)
        feats = []
        for k in range(sel.returned):
            props: dict[str, Any] = {"h": round(float(h[k]), 4), "intensity": int(sel.intensity[k]),
                                     "classification": int(sel.classification[k])}
            if sel.rgb is not None:
                props["rgb"] = [int(v) for v in sel.rgb[k]]
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [
                round(float(lon[k]), 9), round(float(lat[k]), 9), round(float(hz[k]), 4)]}, "properties": props})
        return {"type": "FeatureCollection", "features": feats, "matched": sel.matched, "returned": sel.returned,
                "truncated": sel.truncated, **extra}

    def to_csv(self, sel: Selection, crs: str | None = None) -> str:
        """CSV: x, y (in ``crs``), h, intensity, classification (, red, green, blue)."""
        x, y = self.xy_in(sel, crs)
        buf = io.StringIO()
        cols = ["x", "y", "h", "intensity", "classification"] + (["red", "green", "blue"] if sel.rgb is not None else [])
        buf.write(",".join(cols) + "\n")
        h = self.heights(sel)
        for k in range(sel.returned):
            row = [f"{x[k]:.9g}" if abs(x[k]) < 1000 else f"{x[k]:.4f}",
                   f"{y[k]:.9g}" if abs(y[k]) < 1000 else f"{y[k]:.4f}", f"{h[k]:.4f}",
                   str(int(sel.intensity[k])), str(int(sel.classification[k]))]
            if sel.rgb is not None:
                row += [str(int(v)) for v in sel.rgb[k]]
            buf.write(",".join(row) + "\n")
        return buf.getvalue()

    def to_las(self, sel: Selection) -> bytes:
        """A LAS 1.4 file of the selection in the cloud's CRS, with its scales and offsets (exact values)."""
        import laspy

        header = laspy.LasHeader(point_format=7 if sel.rgb is not None else 6, version="1.4")
        header.scales = self.scales
        header.offsets = self.offsets
        header.add_crs(self.crs)
        las = laspy.LasData(header)
        las.X = np.rint((sel.x - self.offsets[0]) / self.scales[0]).astype("i4")
        las.Y = np.rint((sel.y - self.offsets[1]) / self.scales[1]).astype("i4")
        las.Z = np.rint((sel.z - self.offsets[2]) / self.scales[2]).astype("i4")
        las.intensity = sel.intensity
        las.classification = sel.classification
        if sel.rgb is not None:
            las.red, las.green, las.blue = sel.rgb[:, 0], sel.rgb[:, 1], sel.rgb[:, 2]
        buf = io.BytesIO()
        las.write(buf)
        return buf.getvalue()


def pipe_point(store: Any, point_id: str, dataset: str | None = None) -> tuple[float, float, float | None, str]:
    """Where a pipe point (manhole, valve…) lies: storage x, y, ground height and its dataset.

    Raises:
        NotFoundError: no current point has this id (in ``dataset`` when given).
        InvalidInputError: the id is used in several datasets and none was named.
    """
    sql = "SELECT x, y, ground_h, dataset_id FROM pipe_points WHERE point_id = ? AND version_to IS NULL"
    args: list[Any] = [point_id]
    if dataset:
        sql += " AND dataset_id = ?"
        args.append(dataset)
    rows = store.read().execute(sql + " ORDER BY dataset_id", args).fetchall()
    if not rows:
        raise NotFoundError(f"no pipe point {point_id!r}" + (f" in dataset {dataset!r}" if dataset else ""))
    if len({r[3] for r in rows}) > 1:
        raise InvalidInputError(f"pipe point {point_id!r} is in several datasets ({', '.join(sorted({r[3] for r in rows}))}): "
                                "name one", field="near")
    x, y, h, ds = rows[0]
    if x is None or y is None:
        raise InvalidInputError(f"pipe point {point_id!r} has no coordinates", field="near")
    return float(x), float(y), (None if h is None else float(h)), str(ds)
