"""City-independent coordinate systems (城市独立坐标系) tied to CGCS2000 by configured parameters.

Parameters are classified in China (domain brief §1.9), so they live in a protected TOML file named
by ``CIM_LOCAL_CRS_FILE``, never in the repository. Two methods:

* ``helmert2d`` (4-parameter): local plane grid → a CGCS2000 grid ``base`` (e.g. EPSG:4548)::

      E = tx + m·(x·cosθ − y·sinθ),  N = ty + m·(x·sinθ + y·cosθ),  m = 1 + scale_ppm·1e-6

* ``bursa_wolf`` (7-parameter): a projected CRS on an old datum (``source``, e.g. EPSG:2383 Xi'an 80)
  → CGCS2000 longitude/latitude via geocentric Helmert (``convention`` position_vector or
  coordinate_frame; rotations in arc-seconds, scale in ppm).

Example file::

    [systems.JINAN_CITY]
    method = "helmert2d"
    base = "EPSG:4548"
    tx = 500012.3
    ty = 4000021.7
    rotation_arcsec = 12.5
    scale_ppm = -3.2
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pyproj import CRS, Transformer

from cim.errors import CRSError


class LocalSystem(Protocol):
    """A configured system: converts its own coordinates to a CGCS2000 ``base`` CRS."""

    name: str
    base: str

    def to_base(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local easting/northing to ``base`` x/y (always east, north or lon, lat)."""
        ...


@dataclass(frozen=True)
class Helmert2D:
    """4-parameter similarity transform from a local grid to a CGCS2000 grid."""

    name: str
    base: str
    tx: float
    ty: float
    rotation_arcsec: float = 0.0
    scale_ppm: float = 0.0

    def to_base(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the similarity transform."""
        theta = math.radians(self.rotation_arcsec / 3600.0)
        m = 1.0 + self.scale_ppm * 1e-6
        x, y = np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")
        c, s = math.cos(theta), math.sin(theta)
        return self.tx + m * (x * c - y * s), self.ty + m * (x * s + y * c)


@dataclass(frozen=True)
class BursaWolf:
    """7-parameter datum shift from a projected CRS on an old datum to CGCS2000 lon/lat (EPSG:4490)."""

    name: str
    source: str
    tx: float
    ty: float
    tz: float
    rx_arcsec: float
    ry_arcsec: float
    rz_arcsec: float
    scale_ppm: float
    convention: str = "position_vector"
    base: str = "EPSG:4490"

    def pipeline(self) -> str:
        """The PROJ pipeline: inverse projection, geocentric, Helmert, back to geodetic degrees."""
        src = CRS.from_user_input(self.source)
        params = {k: v for k, v in src.to_dict().items() if k not in ("towgs84", "no_defs", "type", "units", "nadgrids")}
        proj = " ".join(f"+{k}={v}" if v is not True else f"+{k}" for k, v in params.items())
        ellps = f"+a={src.ellipsoid.semi_major_metre} +rf={src.ellipsoid.inverse_flattening}"
        return (
            f"+proj=pipeline +step +inv {proj} +step +proj=cart {ellps} "
            f"+step +proj=helmert +x={self.tx} +y={self.ty} +z={self.tz} +rx={self.rx_arcsec} "
            f"+ry={self.ry_arcsec} +rz={self.rz_arcsec} +s={self.scale_ppm} +convention={self.convention} "
            "+step +inv +proj=cart +ellps=GRS80 +step +proj=unitconvert +xy_in=rad +xy_out=deg"
        )

    def to_base(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Old-datum grid easting/northing to CGCS2000 longitude/latitude."""
        t = Transformer.from_pipeline(self.pipeline())
        lon, lat = t.transform(np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8"))
        return np.asarray(lon), np.asarray(lat)


_SYSTEMS: dict[str, LocalSystem] = {}


def register(system: LocalSystem) -> None:
    """Make a configured system usable as ``crs_in`` by its name."""
    _SYSTEMS[system.name.upper()] = system


def find_local(name: object) -> LocalSystem | None:
    """The configured system called ``name``, if any."""
    return _SYSTEMS.get(str(name).strip().upper()) if isinstance(name, str) else None


def load_file(path: Path) -> list[LocalSystem]:
    """Read and register every system in a TOML file (see module docstring)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CRSError(f"local CRS file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise CRSError(f"local CRS file {path} is not valid TOML: {exc}") from None
    out: list[LocalSystem] = []
    for name, spec in (data.get("systems") or {}).items():
        spec = dict(spec)
        method = spec.pop("method", None)
        try:
            if method == "helmert2d":
                system: LocalSystem = Helmert2D(name=name, **spec)
            elif method == "bursa_wolf":
                system = BursaWolf(name=name, **spec)
            else:
                raise CRSError(f"local system {name}: method must be helmert2d or bursa_wolf, not {method!r}")
        except TypeError as exc:
            raise CRSError(f"local system {name} in {path}: {exc}") from None
        register(system)
        out.append(system)
    return out
