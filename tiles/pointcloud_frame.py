"""Fast placement of many points: a file's native coordinates to one local east-north-up frame.

The exact chain for one point is::

    native (x, y) --pyproj--> lon/lat           h = z · unit + N_geoid(lon, lat)   (unless z is ellipsoidal)
    geodetic (lon, lat, h) --closed form--> ECEF --rotation--> ENU of the frame origin

At tens of millions of points pyproj and the geoid cost about 2 µs a point. The chain is linear in the
ellipsoidal height: ``ENU = P(x, y) + h · n(x, y)``, with ``P`` the ENU position of the ellipsoid point and
``n`` the ellipsoid normal in ENU. :class:`GridTransform` evaluates the exact chain at the nodes of a
regular grid over the file's extent (at most :data:`MAX_CELL_M` metres a cell) and interpolates ``P`` and
the geoid bilinearly, ``n`` affinely; the interpolation error is below a millimetre (``P``'s curvature term
is ``c²/8R`` for a cell of ``c`` metres; ``n`` deviates from affine by ``(d/R)²`` over a distance ``d``) and
:meth:`GridTransform.check` measures it against the exact chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cim.crs import CRSLike, get_crs, transformer
from cim.heights import GeoidModel
from tiles.frames import enu_matrix, geodetic_to_ecef

#: Largest grid cell (m): interpolation error ≈ c²/(8 R) ≈ 0.2 mm.
MAX_CELL_M = 100.0
#: Most cells along one axis (a 100 km extent still interpolates to about 3 mm).
MAX_CELLS = 512


@dataclass(frozen=True)
class HeightModel:
    """How a file's Z become ellipsoidal heights: ``h = z · to_metres (+ N_geoid unless ellipsoidal)``."""

    to_metres: float = 1.0
    ellipsoidal: bool = False


def _exact_enu(crs: CRSLike, x: np.ndarray, y: np.ndarray, h_geoid: bool, geoid: GeoidModel,
               matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ENU of the ellipsoid point under (x, y), the ENU normal there, and the geoid undulation."""
    lon, lat = transformer(crs, "EPSG:4326").transform(np.asarray(x, "f8"), np.asarray(y, "f8"))
    lon, lat = np.asarray(lon, "f8"), np.asarray(lat, "f8")
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError("the extent cannot be placed on the earth in this CRS")
    und = geoid.undulation(lon, lat) if h_geoid else np.zeros_like(lon)
    rot, origin = matrix[:3, :3], matrix[:3, 3]
    p0 = (geodetic_to_ecef(lon, lat, np.zeros_like(lon)) - origin) @ rot
    p1 = (geodetic_to_ecef(lon, lat, np.ones_like(lon)) - origin) @ rot
    return p0, p1 - p0, np.asarray(und, "f8")


class GridTransform:
    """Native (x, y, z) of one CRS to ENU metres around ``origin`` (lon, lat, ellipsoidal h).

    Example::

        t = GridTransform("EPSG:4548", (500000, 4057000, 500400, 4057300), HeightModel(), egm96)
        enu = t.enu(x, y, z)        # (n, 3) float64 metres in t.matrix's frame
    """

    def __init__(self, crs: CRSLike, bbox_xy: tuple[float, float, float, float], heights: HeightModel,
                 geoid: GeoidModel, *, origin: tuple[float, float, float] | None = None,
                 units_per_metre: float = 1.0) -> None:
        self.crs = get_crs(crs)
        self.heights = heights
        self.geoid = geoid
        minx, miny, maxx, maxy = (float(v) for v in bbox_xy)
        # pad the grid a little: points a rounding error outside the header box are still interpolated
        pad = max(maxx - minx, maxy - miny, 1e-9) * 1e-3
        minx, miny, maxx, maxy = minx - pad, miny - pad, maxx + pad, maxy + pad
        if origin is None:
            cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
            lon, lat = transformer(self.crs, "EPSG:4326").transform(cx, cy)
            origin = (float(lon), float(lat), 0.0)
        self.origin = origin
        self.matrix = enu_matrix(*origin)
        span_m = max(maxx - minx, maxy - miny) / units_per_metre
        cells = int(min(MAX_CELLS, max(2, np.ceil(span_m / MAX_CELL_M))))
        self.nx = self.ny = cells
        self.x0, self.y0 = minx, miny
        self.dx = (maxx - minx) / cells
        self.dy = (maxy - miny) / cells
        gx = self.x0 + self.dx * np.arange(cells + 1)
        gy = self.y0 + self.dy * np.arange(cells + 1)
        xx, yy = np.meshgrid(gx, gy)  # (ny+1, nx+1)
        p0, normal, und = _exact_enu(self.crs, xx.ravel(), yy.ravel(), not heights.ellipsoidal, geoid,
                                     self.matrix)
        # bilinear coefficients per cell: f = a + b·tx + c·ty + d·tx·ty
        self._coef = [self._bilinear(p0[:, k].reshape(xx.shape)) for k in range(3)]
        self._coef.append(self._bilinear(und.reshape(xx.shape)))
        # the normal is affine in (x, y) to (d/R)²: least squares over the grid nodes
        design = np.column_stack([np.ones(xx.size), (xx.ravel() - self.x0) / self.dx,
                                  (yy.ravel() - self.y0) / self.dy])
        self._normal, *_ = np.linalg.lstsq(design, normal, rcond=None)  # (3 coefficients, 3 axes)

    def __getstate__(self) -> dict[str, Any]:
        # workers interpolate only: the geoid grid (megabytes) stays in the parent
        return {**self.__dict__, "geoid": None}

    def _bilinear(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        f00, f10, f01, f11 = f[:-1, :-1], f[:-1, 1:], f[1:, :-1], f[1:, 1:]
        return (f00.ravel().copy(), (f10 - f00).ravel(), (f01 - f00).ravel(), (f11 - f10 - f01 + f00).ravel())

    def enu(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """ENU metres (n, 3) float64 of native coordinates (arrays of equal length)."""
        fx = (np.asarray(x, "f8") - self.x0) * (1.0 / self.dx)
        fy = (np.asarray(y, "f8") - self.y0) * (1.0 / self.dy)
        ix = np.clip(fx.astype(np.int64), 0, self.nx - 1)
        iy = np.clip(fy.astype(np.int64), 0, self.ny - 1)
        tx = fx - ix
        ty = fy - iy
        cell = iy * self.nx + ix
        txy = tx * ty
        vals = []
        for a, b, c, d in self._coef:
            v = a.take(cell)
            v += b.take(cell) * tx
            v += c.take(cell) * ty
            v += d.take(cell) * txy
            vals.append(v)
        h = np.asarray(z, "f8") * self.heights.to_metres
        h += vals[3]
        out = np.empty((len(h), 3), dtype="f8")
        n = self._normal
        for k in range(3):
            nk = n[0, k] + n[1, k] * fx + n[2, k] * fy
            nk *= h
            nk += vals[k]
            out[:, k] = nk
        return out

    def exact(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The same through the exact chain (pyproj, geoid, ECEF), for checks."""
        p0, normal, und = _exact_enu(self.crs, x, y, not self.heights.ellipsoidal, self.geoid, self.matrix)
        h = np.asarray(z, "f8") * self.heights.to_metres + und
        return p0 + normal * h[:, None]

    def check(self, bbox: tuple[float, float, float, float, float, float], samples: int = 400) -> float:
        """Largest distance (m) between :meth:`enu` and :meth:`exact` at random points of ``bbox``."""
        rng = np.random.default_rng(0)
        lo, hi = np.array(bbox[:3], "f8"), np.array(bbox[3:], "f8")
        p = lo + (hi - lo) * rng.random((samples, 3))
        a = self.enu(p[:, 0], p[:, 1], p[:, 2])
        b = self.exact(p[:, 0], p[:, 1], p[:, 2])
        return float(np.linalg.norm(a - b, axis=1).max())
