"""The ground surface for sections, profiles and cover checks: the surveyed pipe-point ground or a DEM GeoTIFF.

Every ground model answers ``heights(x, y)``: storage-CRS easting/northing → 1985 heights, NaN where it does
not know. :class:`SurveyedGround` triangulates the current pipe points' ground elevations (linear inside their
convex hull, NaN outside); :class:`RasterGround` samples a DEM bilinearly in the raster's own CRS.

Example::

    ground = ground_model(store, dem=Path("dem.tif"))
    ground.heights(np.array([502010.0]), np.array([4058070.0]))  # -> array([74.8])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError

from cim.crs import get_crs, transform_xy
from cim.errors import CRSError, InvalidInputError, NotFoundError, UnsupportedError
from cim.store import DuckDBStore

DEFAULT_STORAGE_CRS = "EPSG:4548"


@runtime_checkable
class Ground(Protocol):
    """A ground surface: 1985 heights at storage-CRS positions (NaN where unknown)."""

    name: str
    source: str

    def heights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground heights at easting/northing ``x``, ``y`` (same shape as ``x``)."""
        ...


@dataclass
class SurveyedGround:
    """Ground interpolated linearly (Delaunay) from surveyed pipe-point ground elevations; NaN outside the hull."""

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    name: str = "surveyed ground"
    source: str = "pipe_points.ground_h"
    _interp: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.x, self.y, self.h = (np.asarray(v, dtype="f8") for v in (self.x, self.y, self.h))
        if len(self.x) >= 3:
            try:
                self._interp = LinearNDInterpolator(np.column_stack([self.x, self.y]), self.h)
            except QhullError:  # all points on one line: no triangle to interpolate in
                self._interp = None

    @classmethod
    def from_store(cls, store: DuckDBStore, dataset: str | None = None, *,
                   bbox: tuple[float, float, float, float] | None = None) -> SurveyedGround:
        """The ground of the current pipe points of ``dataset`` (all datasets when None), only those in ``bbox``
        (minx, miny, maxx, maxy; storage CRS) when given; points sharing a position (to the mm) are averaged."""
        if dataset:
            store.get_dataset(dataset)
        params: dict[str, Any] = {"ds": dataset}
        window = ""
        if bbox is not None:
            params.update(zip(("x0", "y0", "x1", "y1"), map(float, bbox), strict=True))
            window = "AND ST_Intersects(geom, ST_MakeEnvelope($x0, $y0, $x1, $y1))"
        cur = store.read()
        try:
            tbl = cur.execute(
                f"""SELECT round(x, 3) AS x, round(y, 3) AS y, avg(ground_h) AS h FROM pipe_points
                    WHERE version_to IS NULL AND isfinite(x) AND isfinite(y) AND isfinite(ground_h)
                      AND (CAST($ds AS VARCHAR) IS NULL OR dataset_id = $ds) {window}
                    GROUP BY 1, 2 ORDER BY 1, 2""", params).to_arrow_table()
        finally:
            cur.close()
        where = f"dataset {dataset}" if dataset else "all datasets"
        return cls(tbl.column("x").to_numpy(), tbl.column("y").to_numpy(), tbl.column("h").to_numpy(),
                   source=f"pipe_points.ground_h of {where} ({tbl.num_rows} points)")

    def heights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Linear interpolation inside the surveyed points' convex hull, NaN outside."""
        x, y = np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")
        if self._interp is None:
            return np.full(x.shape, np.nan)
        return np.asarray(self._interp(x, y), dtype="f8").reshape(x.shape)


class RasterGround:
    """A DEM GeoTIFF (any CRS PROJ knows; heights in its unit plus ``vertical_offset`` = 1985 heights),
    sampled bilinearly; nodata and positions off the raster give NaN. The raster is read into memory once."""

    def __init__(self, path: str | Path, vertical_offset: float = 0.0, *,
                 storage_crs: str = DEFAULT_STORAGE_CRS) -> None:
        try:
            import rasterio
            from rasterio.errors import RasterioIOError
        except ImportError:  # pragma: no cover - depends on the installation
            raise UnsupportedError("a DEM needs rasterio: pip install 'rasterio>=1.4'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"DEM {self.path} does not exist")
        self.vertical_offset = float(vertical_offset)
        self.storage_crs = storage_crs
        try:
            with rasterio.open(self.path) as src:
                if src.crs is None:
                    raise CRSError(f"DEM {self.path.name} has no CRS: write one into the GeoTIFF "
                                   f"(e.g. gdal_edit.py -a_srs {storage_crs})", field="dem")
                self.crs = src.crs.to_wkt()
                inv = ~src.transform
                self._inverse = (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f)
                band = src.read(1, masked=True)
        except RasterioIOError as exc:
            raise InvalidInputError(f"DEM {self.path.name} is not a readable raster: {exc}", field="dem") from None
        get_crs(self.crs)
        self._data = np.ma.filled(band.astype("f8"), np.nan)
        self.name = f"DEM {self.path.name}"
        epsg = get_crs(self.crs).to_epsg()
        offset = f", {self.vertical_offset:+g} m" if self.vertical_offset else ""
        self.source = f"{self.path.name} ({f'EPSG:{epsg}' if epsg else 'custom CRS'}{offset})"

    def heights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear heights at storage easting/northing; NaN off the raster or where a nodata cell has weight."""
        x, y = np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")
        shape = x.shape
        rx, ry = transform_xy(x.ravel(), y.ravel(), self.storage_crs, self.crs)
        ia, ib, ic, id_, ie, if_ = self._inverse
        rx, ry = np.asarray(rx, dtype="f8"), np.asarray(ry, dtype="f8")
        col, row = ia * rx + ib * ry + ic, id_ * rx + ie * ry + if_
        nrow, ncol = self._data.shape
        out = np.full(col.shape, np.nan)
        ok = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (row >= 0) & (col <= ncol) & (row <= nrow)
        # pixel centres sit at i + 0.5: shift so that integers are centres; the outer half pixel takes the edge
        c = np.clip(col[ok] - 0.5, 0, ncol - 1)
        r = np.clip(row[ok] - 0.5, 0, nrow - 1)
        c0 = np.minimum(np.floor(c).astype(int), max(ncol - 2, 0))
        r0 = np.minimum(np.floor(r).astype(int), max(nrow - 2, 0))
        c1, r1 = np.minimum(c0 + 1, ncol - 1), np.minimum(r0 + 1, nrow - 1)
        fc, fr = c - c0, r - r0
        z = self._data
        values = np.stack([z[r0, c0], z[r0, c1], z[r1, c0], z[r1, c1]])
        weights = np.stack([(1 - fc) * (1 - fr), fc * (1 - fr), (1 - fc) * fr, fc * fr])
        # a nodata corner spoils the sample only when it carries weight
        out[ok] = np.where(weights > 0, values * weights, 0.0).sum(axis=0) + self.vertical_offset
        return out.reshape(shape)


def storage_crs_of(store: DuckDBStore, dataset: str | None = None) -> str:
    """The storage CRS recorded for ``dataset`` (or the only one in the store; the default when empty)."""
    if dataset:
        return str(store.get_dataset(dataset)["storage_crs"])
    cur = store.read()
    try:
        crs = [r[0] for r in cur.execute("SELECT DISTINCT storage_crs FROM datasets").fetchall()]
    finally:
        cur.close()
    return crs[0] if len(crs) == 1 else DEFAULT_STORAGE_CRS


def ground_model(store: DuckDBStore, *, dem: Path | None = None, dataset: str | None = None,
                 vertical_offset: float = 0.0) -> Ground:
    """The DEM at ``dem`` when given (positions in the store's CRS), else the surveyed ground of ``dataset``."""
    if dem is not None:
        return RasterGround(dem, vertical_offset, storage_crs=storage_crs_of(store, dataset))
    return SurveyedGround.from_store(store, dataset)


def catalogued_dem(store: DuckDBStore, dataset_id: str, settings: Any = None, geoid: Any = None) -> Ground:
    """The catalogued DEM raster ``dataset_id`` (:mod:`cim.realscene.elevation`) as a ground model in 1985
    heights; a caller-scoped store must grant full access to it."""
    from cim.realscene.elevation import open_dem
    from cim.settings import get_settings

    if hasattr(store, "require"):  # a ScopedStore: the caller must read the DEM in full
        store.require(dataset_id)
    return open_dem(getattr(store, "base", store), settings or get_settings(), dataset_id, geoid)


def dem_option(store: DuckDBStore, value: str | Path | None, settings: Any = None) -> Ground | None:
    """``--dem``/``dem=``: a GeoTIFF path when that file exists, else a catalogued DEM dataset id."""
    if value is None or str(value) == "":
        return None
    path = Path(value)
    if path.is_file():
        return RasterGround(path, storage_crs=(settings.storage_crs if settings else storage_crs_of(store)))
    if path.suffix.lower() in (".tif", ".tiff") or "/" in str(value) or "\\" in str(value):
        raise NotFoundError(f"DEM {value} does not exist")
    return catalogued_dem(store, str(value), settings)
