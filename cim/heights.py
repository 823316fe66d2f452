"""Heights: 1985 national (normal) heights to ellipsoidal heights through a pluggable geoid model.

3D Tiles viewers place content by ellipsoidal height; survey data carry 1985 normal heights
(EPSG:5737). ``h = H + N`` with ``N`` the geoid undulation (height anomaly). EGM96 is the default
model; a refined quasi-geoid (often classified) is configured, never committed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cim.errors import CRSError


class GeoidModel(Protocol):
    """A geoid or quasi-geoid: undulation ``N`` in metres at CGCS2000/WGS84 lon/lat."""

    name: str

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Geoid undulation N (m) at each position."""
        ...


def to_ellipsoidal(model: GeoidModel, lon: np.ndarray, lat: np.ndarray, h_normal: np.ndarray) -> np.ndarray:
    """Ellipsoidal heights from normal heights: ``h = H + N``."""
    return np.asarray(h_normal, dtype="f8") + model.undulation(lon, lat)


def to_normal(model: GeoidModel, lon: np.ndarray, lat: np.ndarray, h_ellipsoidal: np.ndarray) -> np.ndarray:
    """Normal heights from ellipsoidal heights: ``H = h - N``."""
    return np.asarray(h_ellipsoidal, dtype="f8") - model.undulation(lon, lat)


@dataclass
class GtxGeoid:
    """A geoid grid in NOAA/PROJ ``.gtx`` form, bilinearly interpolated (e.g. ``egm96_15.gtx``)."""

    path: Path
    name: str = "gtx"

    def __post_init__(self) -> None:
        raw = Path(self.path).read_bytes()
        if len(raw) < 40:
            raise CRSError(f"geoid grid {self.path} is not a .gtx file")
        lat0, lon0, dlat, dlon, rows, cols = struct.unpack(">4d2i", raw[:40])
        if rows <= 1 or cols <= 1 or len(raw) < 40 + 4 * rows * cols:
            raise CRSError(f"geoid grid {self.path} is truncated or has an invalid header ({rows}×{cols})")
        grid = np.frombuffer(raw, dtype=">f4", offset=40, count=rows * cols)
        self._lat0, self._lon0, self._dlat, self._dlon = lat0, lon0, dlat, dlon
        self._grid = grid.reshape(rows, cols).astype("f8")
        self._global = abs(cols * dlon - 360.0) < 1e-6

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the grid at each lon/lat."""
        lon = np.atleast_1d(np.asarray(lon, dtype="f8"))
        lat = np.atleast_1d(np.asarray(lat, dtype="f8"))
        rows, cols = self._grid.shape
        fr = (lat - self._lat0) / self._dlat
        fc = (lon - self._lon0) / self._dlon
        if self._global:
            fc = np.mod(fc, cols)
        r0 = np.clip(np.floor(fr).astype(int), 0, rows - 2)
        c0 = np.floor(fc).astype(int)
        c1 = (c0 + 1) % cols if self._global else np.clip(c0 + 1, 0, cols - 1)
        c0 = np.clip(c0, 0, cols - 1)
        tr = np.clip(fr - r0, 0.0, 1.0)
        tc = np.clip(fc - np.floor(fc), 0.0, 1.0)
        g = self._grid
        top = g[r0 + 1, c0] * (1 - tc) + g[r0 + 1, c1] * tc
        bottom = g[r0, c0] * (1 - tc) + g[r0, c1] * tc
        return bottom * (1 - tr) + top * tr


@dataclass
class ConstantGeoid:
    """A constant undulation, for tests and for sites that publish a single local offset."""

    value: float = 0.0
    name: str = "constant"

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The same ``value`` everywhere."""
        return np.full(np.shape(np.atleast_1d(lon)), float(self.value))


@dataclass
class PlaneGeoid:
    """A local height-anomaly surface fitted to control points: ``N = a + b·Δlon + c·Δlat``."""

    a: float
    b: float
    c: float
    lon0: float
    lat0: float
    name: str = "plane"

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The fitted plane at each position."""
        lon = np.atleast_1d(np.asarray(lon, dtype="f8"))
        lat = np.atleast_1d(np.asarray(lat, dtype="f8"))
        return self.a + self.b * (lon - self.lon0) + self.c * (lat - self.lat0)

    @classmethod
    def fit(cls, lon: np.ndarray, lat: np.ndarray, n: np.ndarray) -> PlaneGeoid:
        """Least-squares fit to control points with known undulation (GNSS h minus levelled H)."""
        lon, lat, n = (np.asarray(v, dtype="f8") for v in (lon, lat, n))
        if lon.size < 3:
            raise CRSError("a plane height-anomaly fit needs at least 3 control points")
        lon0, lat0 = float(lon.mean()), float(lat.mean())
        design = np.column_stack([np.ones_like(lon), lon - lon0, lat - lat0])
        coef, *_ = np.linalg.lstsq(design, n, rcond=None)
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), lon0, lat0)


EGM96_FILE = "egm96_15.gtx"


def find_grid(filename: str, explicit: Path | None = None) -> Path:
    """Locate a geoid grid: the explicit path, ``$PROJ_DATA``/``$PROJ_LIB``, ``/usr/share/proj``, pyproj's data."""
    if explicit is not None:
        if Path(explicit).is_file():
            return Path(explicit)
        raise CRSError(f"geoid grid {explicit} does not exist")
    dirs = [os.environ.get("PROJ_DATA"), os.environ.get("PROJ_LIB"), "/usr/share/proj", "/usr/local/share/proj"]
    try:
        import pyproj.datadir

        dirs.append(pyproj.datadir.get_data_dir())
    except Exception:  # noqa: BLE001 - pyproj without a data dir is fine here
        pass
    for d in dirs:
        if d and (Path(d) / filename).is_file():
            return Path(d) / filename
    raise CRSError(
        f"geoid grid {filename} not found (looked in $PROJ_DATA, /usr/share/proj and pyproj's data); "
        "install Debian's proj-data or set CIM_GEOID_PATH"
    )


def get_geoid(name: str = "egm96", path: Path | None = None) -> GeoidModel:
    """The geoid model named in settings: ``egm96``, ``gtx`` (with ``path``), ``none`` or ``constant:<m>``."""
    key = name.strip().lower()
    if key == "egm96":
        model = GtxGeoid(find_grid(EGM96_FILE, path))
        model.name = "egm96"
        return model
    if key == "gtx":
        if path is None:
            raise CRSError("geoid 'gtx' needs CIM_GEOID_PATH")
        return GtxGeoid(find_grid(Path(path).name, path))
    if key in ("none", "zero"):
        return ConstantGeoid(0.0, name="none")
    if key.startswith("constant:"):
        try:
            return ConstantGeoid(float(key.split(":", 1)[1]))
        except ValueError:
            raise CRSError(f"geoid {name!r}: the constant must be a number of metres") from None
    raise CRSError(f"unknown geoid model {name!r} (egm96, gtx, none, constant:<metres>)")
