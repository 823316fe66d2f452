"""Cesium quantized-mesh-1.0 terrain from a DEM GeoTIFF, produced on demand.

Tiling: the geographic scheme Cesium expects for ``projection: EPSG:4326`` — two 180° root tiles at level 0,
each tile split in four below, TMS rows (``y = 0`` at the south). Per tile the DEM is resampled (bilinear,
GDAL's warper) to a 65 × 65 grid of lon/lat points including the tile edges, its heights turned into 1985
normal heights (the DEM's vertical datum) and then ellipsoidal heights (``h = H + N``, the configured
geoid), and triangulated with pydelatin within :func:`max_error` of that grid. The ellipsoid's curvature is
added to the heights Delatin sees, so large tiles keep enough vertices to follow the globe. Grid points
with no DEM value (outside the raster, nodata) lie on the ellipsoid (``h = 0``), like Cesium's own
``EllipsoidTerrainProvider``; tiles outside the DEM are such flat tiles, so Cesium never meets a missing tile.

Encoding uses quantized_mesh_encoder's header, vertex, index and edge-index writers (and its
``octvertexnormals`` extension when the client asks for it); the u/v/height quantisation is done here in
float64 with rounding, because the library's own path rounds lon/lat through float32 (≈ 0.5 m at 117°E)
and truncates, which can drop east/north edge vertices from the edge lists.

Example::

    source = TerrainSource(Path("dem.tif"), "EPSG:5737", get_geoid("egm96"))
    layer = source.layer_json()
    data = source.tile(15, 53590, 22766)   # bytes of application/vnd.quantized-mesh
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.heights import GeoidModel
from cim.realscene.elevation import to_normal_1985

#: Samples per tile edge (Cesium's heightmap size; tile edges included).
GRID = 65
#: WGS 84 semi-major axis (m).
RADIUS = 6378137.0
#: Cesium's estimate for level 0 of a 65-sample heightmap with two root tiles (m).
LEVEL0_GEOMETRIC_ERROR = RADIUS * 2 * math.pi * 0.25 / (GRID * 2)
MAX_LEVEL = 20
MEDIA_TYPE = "application/vnd.quantized-mesh"


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """West, south, east, north (degrees) of TMS tile ``z/x/y`` in the geographic scheme."""
    size = 180.0 / (1 << z)
    return -180.0 + x * size, -90.0 + y * size, -180.0 + (x + 1) * size, -90.0 + (y + 1) * size


def valid_tile(z: int, x: int, y: int) -> bool:
    """Whether ``z/x/y`` exists in the scheme (levels 0 … :data:`MAX_LEVEL`)."""
    return 0 <= z <= MAX_LEVEL and 0 <= x < (2 << z) and 0 <= y < (1 << z)


def tile_range(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """First and last column and row (TMS) of the tiles at level ``z`` touching lon/lat ``bounds``."""
    size = 180.0 / (1 << z)
    w, s, e, n = bounds
    x0 = max(0, int(math.floor((w + 180.0) / size)))
    x1 = min((2 << z) - 1, int(math.ceil((e + 180.0) / size)) - 1)
    y0 = max(0, int(math.floor((s + 90.0) / size)))
    y1 = min((1 << z) - 1, int(math.ceil((n + 90.0) / size)) - 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def level_geometric_error(z: int) -> float:
    """Cesium's geometric error for level ``z`` (m)."""
    return LEVEL0_GEOMETRIC_ERROR / (1 << z)


def max_error(z: int) -> float:
    """Largest height error (m) the mesh of a level-``z`` tile may have against its 65 × 65 grid: a quarter
    of Cesium's geometric error for the level (≈ 0.29 m at level 16, 0.15 m at 17)."""
    return level_geometric_error(z) / 4.0


def max_level_for(res_m: float, lat: float) -> int:
    """The first level whose grid spacing is at most the DEM's cell size ``res_m`` (m) at latitude ``lat``."""
    for z in range(MAX_LEVEL + 1):
        step_deg = 180.0 / (1 << z) / (GRID - 1)
        if step_deg * 111_320.0 * max(math.cos(math.radians(lat)), 0.1) <= res_m:
            return z
    return MAX_LEVEL


@dataclass
class TerrainSource:
    """A DEM file as a quantized-mesh tile source; finished tiles are kept in a small LRU."""

    path: Path
    vertical_datum: str
    geoid: GeoidModel
    name: str = "terrain"
    cache_size: int = 1024
    _cache: OrderedDict[tuple[int, int, int, bool], bytes] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        import rasterio
        from rasterio.warp import transform_bounds

        with rasterio.open(self.path) as src:
            self.crs = src.crs
            self.lonlat = tuple(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
            res_deg_or_m = abs(src.transform.a)
            self.res_m = res_deg_or_m * (111_320.0 if src.crs.is_geographic else 1.0)
            self.overviews = tuple(src.overviews(1))
        self.maxzoom = max_level_for(self.res_m, (self.lonlat[1] + self.lonlat[3]) / 2)

    # -- layer.json --------------------------------------------------------------------------
    def available(self) -> list[list[dict[str, int]]]:
        """Per level, the TMS ranges Cesium may request: both root tiles, then the tiles over the DEM."""
        levels = [[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]]
        for z in range(1, self.maxzoom + 1):
            x0, y0, x1, y1 = tile_range(self.lonlat, z)
            levels.append([{"startX": x0, "startY": y0, "endX": x1, "endY": y1}])
        return levels

    def layer_json(self, version: str = "1") -> dict[str, Any]:
        """The ``layer.json`` CesiumTerrainProvider reads."""
        return {
            "tilejson": "2.1.0", "name": self.name, "version": "1.0.0", "format": "quantized-mesh-1.0",
            "scheme": "tms", "projection": "EPSG:4326", "tiles": [f"{{z}}/{{x}}/{{y}}.terrain?v={version}"],
            "bounds": [round(v, 9) for v in self.lonlat], "minzoom": 0, "maxzoom": self.maxzoom,
            "available": self.available(), "extensions": ["octvertexnormals"],
            "description": f"1985 heights ({self.vertical_datum}) + geoid {self.geoid.name} = ellipsoidal heights",
        }

    # -- tiles -------------------------------------------------------------------------------
    def covers(self, z: int, x: int, y: int) -> bool:
        """Whether the tile overlaps the DEM's lon/lat bounds."""
        w, s, e, n = tile_bounds(z, x, y)
        lw, ls, le, ln = self.lonlat
        return w < le and e > lw and s < ln and n > ls

    def heights(self, z: int, x: int, y: int) -> np.ndarray:
        """Ellipsoidal heights on the tile's 65 × 65 grid (row 0 = north edge); 0 where the DEM has none."""
        w, s, e, n = tile_bounds(z, x, y)
        grid = np.zeros((GRID, GRID), dtype="f8")
        if not self.covers(z, x, y):
            return grid
        import rasterio
        from rasterio.transform import Affine
        from rasterio.warp import Resampling, reproject

        dx, dy = (e - w) / (GRID - 1), (n - s) / (GRID - 1)
        raw = np.full((GRID, GRID), np.nan, dtype="f4")
        with rasterio.open(self.path, **self._overview(dx)) as src:
            reproject(rasterio.band(src, 1), raw, src_nodata=src.nodata, dst_nodata=np.nan,
                      dst_transform=Affine(dx, 0, w - dx / 2, 0, -dy, n + dy / 2), dst_crs="EPSG:4326",
                      resampling=Resampling.bilinear)
        valid = np.isfinite(raw)
        if not valid.any():
            return grid
        lon, lat = np.meshgrid(w + dx * np.arange(GRID), n - dy * np.arange(GRID))
        normal = to_normal_1985(self.vertical_datum, lon[valid], lat[valid], raw[valid].astype("f8"), self.geoid)
        grid[valid] = normal + self.geoid.undulation(lon[valid], lat[valid])
        return grid

    def _overview(self, step_deg: float) -> dict[str, int]:
        """``overview_level`` of the coarsest overview still finer than the tile grid (none at deep levels), so
        coarse tiles of a large DEM read little."""
        step_m = step_deg * 111_320.0 * max(math.cos(math.radians((self.lonlat[1] + self.lonlat[3]) / 2)), 0.1)
        fine_enough = [i for i, f in enumerate(self.overviews) if self.res_m * f <= step_m / 2]
        return {"overview_level": fine_enough[-1]} if fine_enough else {}

    def tile(self, z: int, x: int, y: int, normals: bool = False) -> bytes:
        """The encoded quantized-mesh tile (cached)."""
        key = (z, x, y, normals)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = encode_tile(self.heights(z, x, y), tile_bounds(z, x, y), max_error(z), normals=normals)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data


def _curvature(bounds: tuple[float, float, float, float]) -> np.ndarray:
    """How far the ellipsoid drops below the tile centre's tangent plane on the grid (m, ≤ 0)."""
    w, s, e, n = bounds
    lon = np.radians(np.linspace(w, e, GRID))[None, :]
    lat = np.radians(np.linspace(n, s, GRID))[:, None]
    lon0, lat0 = math.radians((w + e) / 2), math.radians((s + n) / 2)
    cos_theta = np.sin(lat) * math.sin(lat0) + np.cos(lat) * math.cos(lat0) * np.cos(lon - lon0)
    return -RADIUS * (1.0 - np.clip(cos_theta, -1.0, 1.0))


def triangulate(heights: np.ndarray, bounds: tuple[float, float, float, float],
                error: float) -> tuple[np.ndarray, np.ndarray]:
    """Delatin mesh of the grid: vertices as (lon, lat, h) float64 and counter-clockwise triangles."""
    from pydelatin import Delatin

    tin = Delatin((heights + _curvature(bounds)).astype("f4"), max_error=float(error))
    cols = np.rint(tin.vertices[:, 0]).astype(int)
    rows = (GRID - 1) - np.rint(tin.vertices[:, 1]).astype(int)  # pydelatin's y points up (row 0 = its top)
    w, s, e, n = bounds
    positions = np.column_stack([w + (e - w) * cols / (GRID - 1), n - (n - s) * rows / (GRID - 1),
                                 heights[rows, cols]])
    tri = tin.triangles.astype(np.uint32).reshape(-1, 3)
    a, b, c = (positions[tri[:, i], :2] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri[cross < 0] = tri[cross < 0][:, ::-1]
    # high-water-mark index coding needs vertices numbered in the order triangles first use them
    flat = tri.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    renumber = np.empty(len(positions), dtype=np.uint32)
    renumber[order] = np.arange(len(order), dtype=np.uint32)
    return positions[order], renumber[tri]


def quantize(positions: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """u, v, height in 0 … 32767 (rounded; edges exactly 0 and 32767)."""
    w, s, e, n = bounds
    h = positions[:, 2]
    lo, hi = float(h.min()), float(h.max())
    u = np.rint((positions[:, 0] - w) / (e - w) * 32767)
    v = np.rint((positions[:, 1] - s) / (n - s) * 32767)
    q = np.rint((h - lo) / (hi - lo) * 32767) if hi > lo else np.zeros_like(h)
    return np.clip(np.column_stack([u, v, q]), 0, 32767).astype(np.int16)


def encode_tile(heights: np.ndarray, bounds: tuple[float, float, float, float], error: float, *,
                normals: bool = False) -> bytes:
    """One quantized-mesh-1.0 tile from a 65 × 65 grid of ellipsoidal heights over ``bounds``."""
    from quantized_mesh_encoder.encode import (
        compute_header,
        encode_header,
        write_edge_indices,
        write_indices,
        write_vertices,
    )
    from quantized_mesh_encoder.extensions import VertexNormalsExtension

    positions, tri = triangulate(heights, bounds, error)
    uvh = quantize(positions, bounds)
    f = io.BytesIO()
    encode_header(f, compute_header(positions, "naive"))
    write_vertices(f, uvh, len(uvh))
    write_indices(f, tri, len(uvh))
    write_edge_indices(f, uvh, len(uvh))
    if normals:
        f.write(VertexNormalsExtension(indices=tri, positions=positions).encode())
    return f.getvalue()
