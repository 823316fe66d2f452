"""Placing store geometry in the 3D Tiles earth-centred frame.

The store keeps easting/northing in the storage CRS and 1985 normal heights (EPSG:5737).
3D Tiles wants ECEF (EPSG:4978, metres) placed by *ellipsoidal* height, so the chain is::

    storage CRS --cim.crs.to_lonlat--> CGCS2000 lon/lat
    h = H(1985) + N(geoid)                              (cim.heights)
    geodetic (lon, lat, h) --closed form--> ECEF

Conventions:

* Geodetic → ECEF uses the closed-form formula on the CGCS2000 ellipsoid (a = 6 378 137 m,
  f = 1/298.257222101). CGCS2000 is treated as WGS84 (the ellipsoids differ by 0.1 mm in the
  semi-minor axis; the frames by centimetres), so the result is EPSG:4978 for viewers.
* A tile's content is written in a local east-north-up (ENU) frame in metres around a tile
  centre; :func:`enu_matrix` is the 4×4 transform ENU → ECEF (columns east, north, up, origin)
  and :func:`tile_transform` flattens it column-major for the tile's ``transform``.
* glTF is y-up; 3D Tiles clients rotate glTF content to z-up, so ENU is written into glTF
  as (east, up, −north) by :func:`enu_to_gltf`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cim.crs import CRSLike, to_lonlat
from cim.heights import GeoidModel, to_ellipsoidal

#: CGCS2000 / GRS80 semi-major axis (m), shared with WGS84.
A = 6_378_137.0
#: CGCS2000 flattening (WGS84: 1/298.257223563; the difference is 0.1 mm in b).
F = 1.0 / 298.257222101
E2 = F * (2.0 - F)

#: The rotation 3D Tiles clients apply to glTF content (y-up → z-up): +90° about x.
#: ``Y_UP_TO_Z_UP @ (x, y, z) = (x, −z, y)``; it undoes :func:`enu_to_gltf`.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def geodetic_to_ecef(lon_deg: np.ndarray, lat_deg: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Geodetic lon/lat (degrees) and ellipsoidal height (m) to ECEF, shape (n, 3) float64."""
    lon = np.radians(np.atleast_1d(np.asarray(lon_deg, dtype="f8")))
    lat = np.radians(np.atleast_1d(np.asarray(lat_deg, dtype="f8")))
    h = np.atleast_1d(np.asarray(h, dtype="f8"))
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    n = A / np.sqrt(1.0 - E2 * sin_lat * sin_lat)
    out = np.empty((np.broadcast(lon, lat, h).size, 3), dtype="f8")
    out[:, 0] = (n + h) * cos_lat * np.cos(lon)
    out[:, 1] = (n + h) * cos_lat * np.sin(lon)
    out[:, 2] = (n * (1.0 - E2) + h) * sin_lat
    return out


def to_ecef(
    x: np.ndarray,
    y: np.ndarray,
    h_normal: np.ndarray,
    *,
    storage_crs: CRSLike,
    geoid: GeoidModel,
) -> np.ndarray:
    """Storage easting/northing and 1985 normal heights to ECEF (EPSG:4978), shape (n, 3) float64.

    ``storage_crs`` may be a configured city-independent system; ``geoid`` gives N in ``h = H + N``.
    """
    x = np.atleast_1d(np.asarray(x, dtype="f8"))
    y = np.atleast_1d(np.asarray(y, dtype="f8"))
    h_normal = np.broadcast_to(np.asarray(h_normal, dtype="f8"), x.shape)
    lon, lat = to_lonlat(x, y, storage_crs)
    h = to_ellipsoidal(geoid, lon, lat, h_normal)
    return geodetic_to_ecef(lon, lat, h)


def enu_matrix(lon_deg: float, lat_deg: float, h: float) -> np.ndarray:
    """The ENU frame at a geodetic point as a 4×4 transform from local ENU metres to ECEF.

    Columns: east, north, up (unit vectors, up = ellipsoid normal) and the origin in ECEF.
    """
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    sl, cl = math.sin(lon), math.cos(lon)
    sp, cp = math.sin(lat), math.cos(lat)
    m = np.eye(4)
    m[:3, 0] = (-sl, cl, 0.0)
    m[:3, 1] = (-sp * cl, -sp * sl, cp)
    m[:3, 2] = (cp * cl, cp * sl, sp)
    m[:3, 3] = geodetic_to_ecef(lon_deg, lat_deg, h)[0]
    return m


def tile_transform(matrix: np.ndarray) -> list[float]:
    """The 16 numbers of a 4×4 matrix in column-major order, as 3D Tiles ``transform`` wants."""
    m = np.asarray(matrix, dtype="f8")
    if m.shape != (4, 4):
        raise ValueError(f"a tile transform is a 4×4 matrix, got shape {m.shape}")
    return [float(v) for v in m.flatten(order="F")]


def ecef_to_enu(points_ecef: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """ECEF points (n, 3) to the ENU frame of ``matrix`` (from :func:`enu_matrix`), (n, 3) float64."""
    p = np.atleast_2d(np.asarray(points_ecef, dtype="f8"))
    m = np.asarray(matrix, dtype="f8")
    # the rotation is orthonormal: its inverse is its transpose
    return (p - m[:3, 3]) @ m[:3, :3]


def enu_to_ecef(points_enu: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """ENU points (n, 3) in the frame of ``matrix`` to ECEF, (n, 3) float64."""
    p = np.atleast_2d(np.asarray(points_enu, dtype="f8"))
    m = np.asarray(matrix, dtype="f8")
    return p @ m[:3, :3].T + m[:3, 3]


def enu_to_gltf(points: np.ndarray) -> np.ndarray:
    """ENU (x=east, y=north, z=up) to glTF y-up axes: (east, up, −north).

    The client applies :data:`Y_UP_TO_Z_UP` to glTF content, which maps this back to ENU.
    """
    p = np.atleast_2d(np.asarray(points))
    return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)


@dataclass
class LocalFrame:
    """A tile's local ENU frame: origin (lon/lat degrees, ellipsoidal h) and its ENU → ECEF matrix.

    ``storage_crs`` and ``geoid`` are what :meth:`to_local` uses to bring store coordinates in.
    """

    lon: float
    lat: float
    h: float
    matrix: np.ndarray
    storage_crs: CRSLike
    geoid: GeoidModel
    _rotation: np.ndarray = field(init=False, repr=False)
    _origin: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype="f8")
        self._rotation = np.ascontiguousarray(self.matrix[:3, :3])
        self._origin = self.matrix[:3, 3].copy()

    @classmethod
    def at(cls, x: float, y: float, h_normal: float, storage_crs: CRSLike, geoid: GeoidModel) -> LocalFrame:
        """The ENU frame at a tile centre given in storage coordinates and 1985 normal height."""
        lon, lat = to_lonlat(np.array([x], dtype="f8"), np.array([y], dtype="f8"), storage_crs)
        h = to_ellipsoidal(geoid, lon, lat, np.array([h_normal], dtype="f8"))
        lon0, lat0, h0 = float(lon[0]), float(lat[0]), float(h[0])
        return cls(lon0, lat0, h0, enu_matrix(lon0, lat0, h0), storage_crs, geoid)

    def to_local(self, x: np.ndarray, y: np.ndarray, h_normal: np.ndarray) -> np.ndarray:
        """Store coordinates (arrays) to ENU metres in this frame, (n, 3) float64."""
        ecef = to_ecef(x, y, h_normal, storage_crs=self.storage_crs, geoid=self.geoid)
        ecef -= self._origin
        return ecef @ self._rotation

    def transform(self) -> list[float]:
        """This frame's matrix as a 3D Tiles ``transform`` (column-major)."""
        return tile_transform(self.matrix)


def region_bounds(
    lon_min: float, lat_min: float, lon_max: float, lat_max: float, h_min: float, h_max: float
) -> list[float]:
    """A 3D Tiles ``boundingVolume.region``: [west, south, east, north] radians, [min, max] ellipsoidal m.

    ``lon_min > lon_max`` is allowed (a region across the antimeridian), inverted latitudes or
    heights are not.
    """
    if lat_min > lat_max:
        raise ValueError(f"region south {lat_min} is north of north {lat_max}")
    if h_min > h_max:
        raise ValueError(f"region minimum height {h_min} is above maximum height {h_max}")
    if not (-90.0 <= lat_min <= 90.0 and -90.0 <= lat_max <= 90.0):
        raise ValueError(f"region latitudes {lat_min}, {lat_max} outside ±90°")
    return [
        math.radians(lon_min),
        math.radians(lat_min),
        math.radians(lon_max),
        math.radians(lat_max),
        float(h_min),
        float(h_max),
    ]


def relative_transform(matrix: np.ndarray, parent: np.ndarray | None) -> list[float]:
    """A tile transform relative to its parent's (3D Tiles composes them parent × child), column-major."""
    m = matrix if parent is None else np.linalg.solve(parent, matrix)
    return [float(v) for v in np.asarray(m).T.reshape(-1)]
