"""Is a coordinate inside the deployment's region, and if not, what mistake put it outside?

Pipe surveys from Shandong arrive in CGCS2000 3-degree zones 38–41, with or without the zone
prefix on the easting, and with the northing labelled "X". The usual mistakes are swapped axes,
a missing or extra zone prefix, and the wrong zone; :func:`diagnose` names which one fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim.crs import CRSLike, get_crs, gk3_epsg, gk3_zone_of, is_projected_metres, to_lonlat

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Region:
    """A named lon/lat box (CGCS2000 degrees): west, south, east, north."""

    name: str
    bbox: BBox

    def contains_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside the box."""
        w, s, e, n = self.bbox
        lon, lat = np.asarray(lon), np.asarray(lat)
        with np.errstate(invalid="ignore"):
            return (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)

    def contains(self, x: np.ndarray, y: np.ndarray, crs: CRSLike) -> np.ndarray:
        """Boolean mask of (easting, northing) points in ``crs`` inside the region."""
        x = np.asarray(x, dtype="f8")
        y = np.asarray(y, dtype="f8")
        ok = np.isfinite(x) & np.isfinite(y)
        inside = np.zeros(x.shape, dtype=bool)
        if ok.any():
            lon, lat = to_lonlat(x[ok], y[ok], crs)
            inside[ok] = self.contains_lonlat(lon, lat)
        return inside


def _inside(region: Region, x: float, y: float, crs: CRSLike) -> bool:
    try:
        return bool(region.contains(np.array([x]), np.array([y]), crs)[0])
    except Exception:  # noqa: BLE001 - a candidate CRS that cannot take the point simply does not fit
        return False


def diagnose(x: float, y: float, crs: CRSLike, region: Region) -> str:
    """A human explanation of why easting ``x`` / northing ``y`` in ``crs`` falls outside ``region``.

    Example: ``diagnose(4057669.9, 500000.0, "EPSG:4548", shandong)`` says the axes look swapped.
    """
    c = get_crs(crs)
    label = f"EPSG:{c.to_epsg()}" if c.to_epsg() else c.name
    if not (np.isfinite(x) and np.isfinite(y)):
        return "coordinate is not a number"
    if _inside(region, y, x, crs):
        return (
            f"X and Y look swapped: in Chinese survey tables X is the northing and Y the easting "
            f"(read as easting={y:.3f}, northing={x:.3f} the point lies in {region.name})"
        )
    zone = gk3_zone_of(crs)
    if zone is not None:
        number, prefixed = zone
        if not prefixed and x > 1e7:
            fitting = gk3_epsg(int(x // 1e6), prefix=True) if 25 <= int(x // 1e6) <= 45 else None
            if fitting and _inside(region, x, y, f"EPSG:{fitting}"):
                return (
                    f"the easting {x:.3f} carries the zone prefix {int(x // 1e6)}, but {label} has none: "
                    f"use EPSG:{fitting}"
                )
        if prefixed and x < 1e6 and _inside(region, x + number * 1e6, y, crs):
            return (
                f"the zone prefix {number} is missing from the easting {x:.3f}: "
                f"use EPSG:{gk3_epsg(number, prefix=False)} or add {number}000000"
            )
        if prefixed and 25 <= int(x // 1e6) <= 45 and int(x // 1e6) != number:
            other = int(x // 1e6)  # the easting's own prefix names the zone
            code = gk3_epsg(other, prefix=True)
            if _inside(region, x, y, f"EPSG:{code}"):
                return f"wrong zone: the easting's prefix {other} fits EPSG:{code}, not {label}"
        for other in range(38, 42):
            if other == number:
                continue
            code = gk3_epsg(other, prefix=prefixed)
            ox = x - number * 1e6 + other * 1e6 if prefixed else x
            if _inside(region, ox, y, f"EPSG:{code}"):
                return f"wrong zone: the coordinates fit EPSG:{code} (zone {other}), not {label}"
    if is_projected_metres(c) and -180 <= x <= 180 and -90 <= y <= 90:
        return "the values look like degrees, not metres: give the geographic CRS (e.g. EPSG:4490)"
    try:
        lon, lat = to_lonlat(np.array([x]), np.array([y]), crs)
        where = f"lon {lon[0]:.4f}, lat {lat[0]:.4f}"
    except Exception:  # noqa: BLE001
        where = "a position PROJ cannot compute"
    return f"the point lies at {where}, outside {region.name} {region.bbox}; check the CRS ({label})"
