"""Ground elevation from a catalogued DEM: heights at points and along lines, as 1985 normal heights.

A DEM raster (``kind="raster"``, ``metadata["role"] == "dem"``) records the vertical datum of its cells in
``metadata["vertical_datum"]``; every answer is turned into 1985 national heights (EPSG:5737):

* ``EPSG:5737`` 1985 national heights — as they are;
* ``EPSG:5736`` Yellow Sea 1956 heights — ``H1985 = H1956 − 0.029 m``;
* ``EPSG:5773`` EGM96 heights — ``h = H + N_EGM96``, then ``H1985 = h − N`` of the configured geoid;
* ``ellipsoidal`` — ``H1985 = h − N`` of the configured geoid.

Points come in any CRS; positions off the raster or on nodata cells give ``None`` (NaN in arrays).
:class:`DEM` also answers the :class:`cim.analysis.ground.Ground` protocol (storage-CRS positions), so
cover checks and long profiles can use a catalogued DEM.

Example::

    dem = open_dem(store, settings, "district_dem")
    dem.sample([117.02], [36.66], crs="EPSG:4490")    # -> array([74.9])
    dem.profile(line, crs="EPSG:4548", spacing=5.0)    # stations every 5 m
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cim.crs import CRSLike, get_crs
from cim.errors import CRSError, InvalidInputError, NotFoundError
from cim.heights import GeoidModel, get_geoid
from cim.realscene.catalogue import build_dir_of
from cim.settings import Settings
from cim.store.duckdb_ import json_value

#: Vertical datums a DEM may carry and how they reach 1985 heights.
VERTICAL_DATUMS: dict[str, str] = {
    "EPSG:5737": "1985 national height (1985国家高程基准)",
    "EPSG:5736": "Yellow Sea 1956 height (1956黄海高程系): H1985 = H1956 - 0.029 m",
    "EPSG:5773": "EGM96 height: H1985 = H + N(EGM96) - N(configured geoid)",
    "ellipsoidal": "ellipsoidal height (CGCS2000/WGS 84): H1985 = h - N(configured geoid)",
}
YELLOW_SEA_1956_OFFSET = -0.029
Method = Literal["bilinear", "nearest"]
#: Most points one request may sample.
MAX_POINTS = 100_000


def normalise_datum(text: str | int | None) -> str:
    """The key of :data:`VERTICAL_DATUMS` for ``text`` (``5737``, ``EPSG:5737``, ``ellipsoidal``, ...)."""
    if text is None:
        return "EPSG:5737"
    key = str(text).strip()
    low = key.lower()
    if low in ("ellipsoidal", "ellipsoid", "epsg:4979", "epsg:4937", "epsg:4490+ellipsoidal"):
        return "ellipsoidal"
    if low.isdigit():
        key = f"EPSG:{low}"
    key = key.upper()
    if key not in VERTICAL_DATUMS:
        raise CRSError(f"vertical datum {text!r} cannot be turned into 1985 heights; supported: "
                       f"{', '.join(VERTICAL_DATUMS)}", field="vertical_datum")
    return key


def to_normal_1985(datum: str, lon: np.ndarray, lat: np.ndarray, values: np.ndarray,
                   geoid: GeoidModel | None) -> np.ndarray:
    """DEM ``values`` in ``datum`` as 1985 normal heights (NaN stays NaN)."""
    values = np.asarray(values, dtype="f8")
    if datum == "EPSG:5737":
        return values
    if datum == "EPSG:5736":
        return values + YELLOW_SEA_1956_OFFSET
    if geoid is None:
        raise CRSError(f"a DEM in {datum} needs a geoid model to give 1985 heights")
    n = geoid.undulation(lon, lat)
    if datum == "EPSG:5773":
        egm = geoid if geoid.name == "egm96" else get_geoid("egm96")
        return values + egm.undulation(lon, lat) - n
    return values - n


@dataclass
class DEM:
    """A catalogued DEM file with its datum; samples in any CRS, answers 1985 heights."""

    path: Path
    dataset_id: str
    vertical_datum: str
    geoid: GeoidModel | None
    storage_crs: str = "EPSG:4548"
    method: Method = "bilinear"

    def __post_init__(self) -> None:
        import rasterio

        with rasterio.open(self.path) as src:
            if src.crs is None:
                raise CRSError(f"DEM {self.dataset_id}: the file has no CRS")
            self.crs = get_crs(src.crs.to_wkt())
            self.nodata = src.nodata
            self.bounds = tuple(src.bounds)
            self.shape = (src.height, src.width)
            self.transform = src.transform
        self.name = f"DEM {self.dataset_id}"
        self.source = f"catalogued DEM {self.dataset_id} ({VERTICAL_DATUMS[self.vertical_datum].split(' (')[0]})"

    # -- positions ---------------------------------------------------------------------------
    def to_native(self, x: np.ndarray, y: np.ndarray, crs: CRSLike) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``crs`` as the raster's own x/y."""
        from pyproj import Transformer

        src = get_crs(crs)
        if src.equals(self.crs, ignore_axis_order=True):
            return np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")
        t = Transformer.from_crs(src, self.crs, always_xy=True)
        with np.errstate(all="ignore"):
            nx, ny = t.transform(np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8"), errcheck=False)
        return np.asarray(nx, dtype="f8"), np.asarray(ny, dtype="f8")

    def lonlat(self, nx: np.ndarray, ny: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native x/y as CGCS2000 lon/lat (for the geoid)."""
        from pyproj import Transformer

        t = Transformer.from_crs(self.crs, "EPSG:4490", always_xy=True)
        lon, lat = t.transform(nx, ny, errcheck=False)
        return np.asarray(lon, dtype="f8"), np.asarray(lat, dtype="f8")

    # -- sampling ----------------------------------------------------------------------------
    def raw(self, nx: np.ndarray, ny: np.ndarray, method: Method | None = None) -> np.ndarray:
        """Cell values at native positions (the DEM's own datum), NaN off the raster or on nodata.

        ``nearest`` is the value of the cell containing the point (what ``rasterio``'s ``sample`` gives);
        ``bilinear`` interpolates between the four nearest cell centres, NaN when a nodata cell has weight.
        """
        import rasterio
        from rasterio.windows import Window

        method = method or self.method
        nx, ny = np.atleast_1d(np.asarray(nx, dtype="f8")), np.atleast_1d(np.asarray(ny, dtype="f8"))
        out = np.full(nx.shape, np.nan)
        inv = ~self.transform
        col, row = inv * (nx, ny)
        col, row = np.asarray(col, dtype="f8"), np.asarray(row, dtype="f8")
        nrow, ncol = self.shape
        ok = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (row >= 0) & (col < ncol) & (row < nrow)
        if not ok.any():
            return out
        c, r = col[ok], row[ok]
        if method == "bilinear":  # integers are cell centres after the half-pixel shift
            c = np.clip(c - 0.5, 0, ncol - 1)
            r = np.clip(r - 0.5, 0, nrow - 1)
        c0, r0 = int(np.floor(c.min())), int(np.floor(r.min()))
        c1, r1 = min(int(np.floor(c.max())) + 2, ncol), min(int(np.floor(r.max())) + 2, nrow)
        with rasterio.open(self.path) as src:
            block = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
        z = np.ma.filled(block.astype("f8"), np.nan)
        if self.nodata is not None and np.isfinite(self.nodata):
            z[z == self.nodata] = np.nan
        if method == "nearest":
            out[ok] = z[np.floor(r).astype(int) - r0, np.floor(c).astype(int) - c0]
            return out
        ci = np.minimum(np.floor(c).astype(int), max(ncol - 2, 0))
        ri = np.minimum(np.floor(r).astype(int), max(nrow - 2, 0))
        fc, fr = c - ci, r - ri
        ci, ri = ci - c0, ri - r0
        cj, rj = np.minimum(ci + 1, z.shape[1] - 1), np.minimum(ri + 1, z.shape[0] - 1)
        values = np.stack([z[ri, ci], z[ri, cj], z[rj, ci], z[rj, cj]])
        weights = np.stack([(1 - fc) * (1 - fr), fc * (1 - fr), (1 - fc) * fr, fc * fr])
        out[ok] = np.where(weights > 0, values * weights, 0.0).sum(axis=0)
        return out

    def sample(self, x: Any, y: Any, crs: CRSLike = "EPSG:4490", method: Method | None = None) -> np.ndarray:
        """1985 normal heights at positions in ``crs``; NaN off the raster or on nodata."""
        x, y = np.atleast_1d(np.asarray(x, dtype="f8")), np.atleast_1d(np.asarray(y, dtype="f8"))
        if x.shape != y.shape:
            raise InvalidInputError("x and y differ in length", field="points")
        if x.size > MAX_POINTS:
            raise InvalidInputError(f"{x.size} points: at most {MAX_POINTS} per request", field="points")
        nx, ny = self.to_native(x, y, crs)
        values = self.raw(nx, ny, method)
        if self.vertical_datum == "EPSG:5737" or not np.isfinite(values).any():
            return values
        lon, lat = self.lonlat(nx, ny)
        return to_normal_1985(self.vertical_datum, lon, lat, values, self.geoid)

    def heights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The :class:`~cim.analysis.ground.Ground` protocol: heights at storage-CRS easting/northing."""
        x = np.asarray(x, dtype="f8")
        return self.sample(x.ravel(), np.asarray(y, dtype="f8").ravel(), self.storage_crs).reshape(x.shape)

    def profile(self, coords: list[list[float]] | np.ndarray, crs: CRSLike = "EPSG:4490", spacing: float = 10.0,
                method: Method | None = None) -> list[dict[str, Any]]:
        """Stations along a polyline every ``spacing`` metres (geodesic, on the CGCS2000 ellipsoid), plus
        every vertex: ``distance`` (m from the start), ``x``/``y`` in ``crs``, ``lon``/``lat``, ``h`` (1985 or
        None)."""
        from pyproj import Geod, Transformer

        pts = np.asarray(coords, dtype="f8")
        if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] < 2 or not np.isfinite(pts[:, :2]).all():
            raise InvalidInputError("a profile line needs at least two finite positions", field="line")
        if not (np.isfinite(spacing) and spacing > 0):
            raise InvalidInputError(f"spacing {spacing} must be a positive number of metres", field="spacing")
        src = get_crs(crs)
        to_ll = Transformer.from_crs(src, "EPSG:4490", always_xy=True)
        lon, lat = (np.asarray(v, dtype="f8") for v in to_ll.transform(pts[:, 0], pts[:, 1], errcheck=False))
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise CRSError(f"the line cannot be placed on the earth in {src.name}", field="line")
        geod = Geod(ellps="GRS80")
        _, _, seg = geod.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
        total = float(np.sum(seg))
        if total / spacing > MAX_POINTS:
            raise InvalidInputError(f"{total:.0f} m at {spacing} m spacing is more than {MAX_POINTS} stations",
                                    field="spacing")
        s_lon, s_lat, s_dist = [float(lon[0])], [float(lat[0])], [0.0]
        start = 0.0
        for i, length in enumerate(np.asarray(seg, dtype="f8")):
            inner = np.arange(np.ceil(start / spacing) * spacing, start + length, spacing)
            inner = inner[(inner > start) & (inner < start + length)]
            if inner.size:
                az = geod.inv(lon[i], lat[i], lon[i + 1], lat[i + 1])[0]
                ilon, ilat, _ = geod.fwd(np.full(inner.size, lon[i]), np.full(inner.size, lat[i]),
                                         np.full(inner.size, az), inner - start)
                s_lon += list(ilon)
                s_lat += list(ilat)
                s_dist += list(inner)
            start += float(length)
            s_lon.append(float(lon[i + 1]))
            s_lat.append(float(lat[i + 1]))
            s_dist.append(start)
        slon, slat = np.array(s_lon), np.array(s_lat)
        h = self.sample(slon, slat, "EPSG:4490", method)
        back = Transformer.from_crs("EPSG:4490", src, always_xy=True)
        bx, by = back.transform(slon, slat)
        return [{"distance": round(float(d), 3), "x": float(a), "y": float(b), "lon": float(lo), "lat": float(la),
                 "h": None if not np.isfinite(v) else round(float(v), 3)}
                for d, a, b, lo, la, v in zip(s_dist, np.atleast_1d(bx), np.atleast_1d(by), slon, slat, h,
                                              strict=True)]


def dem_row_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a catalogue row that must be a DEM raster (NotFoundError otherwise)."""
    meta = json_value(row.get("metadata")) or {}
    if row.get("kind") != "raster" or meta.get("role") != "dem":
        raise NotFoundError(f"dataset {row.get('id')!r} is not a DEM raster")
    return meta


def dem_of_row(row: dict[str, Any], settings: Settings, store_path: str | Path | None = None,
               geoid: GeoidModel | None = None) -> DEM:
    """The :class:`DEM` of a catalogue row (its current build's file)."""
    meta = dem_row_meta(row)
    folder = build_dir_of(settings, row, store_path)
    datum = normalise_datum(meta.get("vertical_datum"))
    if geoid is None and datum in ("EPSG:5773", "ellipsoidal"):
        geoid = get_geoid(settings.geoid, settings.geoid_path)
    return DEM(folder / str(meta.get("file", "dem.tif")), str(row["id"]), datum, geoid, settings.storage_crs)


def open_dem(store: Any, settings: Settings, dataset_id: str, geoid: GeoidModel | None = None) -> DEM:
    """The catalogued DEM ``dataset_id`` of ``store``."""
    return dem_of_row(store.get_dataset(dataset_id), settings, getattr(store, "path", None), geoid)


def parse_points(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``"x,y;x,y"`` as two arrays (a clear error names the bad pair)."""
    xs, ys = [], []
    for i, pair in enumerate(p for p in text.split(";") if p.strip()):
        parts = pair.split(",")
        try:
            x, y = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise InvalidInputError(f"point {i + 1} {pair.strip()!r} is not 'x,y'", field="points") from None
        if len(parts) > 3 or not (np.isfinite(x) and np.isfinite(y)):
            raise InvalidInputError(f"point {i + 1} {pair.strip()!r} is not 'x,y'", field="points")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise InvalidInputError("no points given ('lon,lat;lon,lat')", field="points")
    if len(xs) > MAX_POINTS:
        raise InvalidInputError(f"{len(xs)} points: at most {MAX_POINTS} per request", field="points")
    return np.array(xs), np.array(ys)
