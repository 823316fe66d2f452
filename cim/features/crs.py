"""CRSs of the features API (OGC API – Features Part 2): which are offered, how positions get there, bbox-crs.

Stored positions are (easting, northing, 1985 normal height) in the storage CRS (a CGCS2000 3-degree
Gauss-Krüger zone). Output rules:

* **Axis order is the CRS's own** (Part 2): ``CRS84``/``CRS84h`` are lon, lat; ``EPSG:4326``, ``4979``, ``4490``
  and ``4480`` are lat, lon; the CGCS2000 zones ``EPSG:4513``–``4554`` are northing ("X"), easting ("Y"), as
  Chinese survey tables; geocentric ``EPSG:4479`` (CGCS2000) and ``4978`` (WGS 84) are X, Y, Z. ``bbox`` with
  ``bbox-crs`` and geometries with ``filter-crs`` are read in the same axis order.
* **Heights**: geographic outputs (2D or 3D) carry ellipsoidal heights as the third coordinate (h = H + N,
  N from the configured geoid; RFC 7946 gives GeoJSON's third coordinate that meaning); geocentric outputs
  are computed from those ellipsoidal heights; projected outputs keep the stored 1985 heights (EPSG:5737).
* CGCS2000 and WGS 84 are treated as the same frame (PROJ's ballpark null transformation, centimetres).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from cim.crs import get_crs
from cim.crs import transformer as _transformer
from cim.errors import CRSError, InvalidInputError
from cim.heights import GeoidModel, to_ellipsoidal, to_normal

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/"
#: Geographic/geocentric codes offered besides the CGCS2000 zones: code -> (2D lon/lat CRS, 3D CRS for ECEF).
_GLOBAL: dict[str, tuple[str, str | None]] = {
    "OGC:CRS84": ("OGC:CRS84", None),
    "OGC:CRS84h": ("OGC:CRS84", None),
    "EPSG:4326": ("OGC:CRS84", None),
    "EPSG:4979": ("OGC:CRS84", None),
    "EPSG:4490": ("EPSG:4490", None),
    "EPSG:4480": ("EPSG:4490", None),
    "EPSG:4978": ("OGC:CRS84", "EPSG:4979"),
    "EPSG:4479": ("EPSG:4490", "EPSG:4480"),
}
#: CGCS2000 3-degree Gauss-Krüger zones, with (4513–4533) and without (4534–4554) the zone prefix.
ZONE_CODES: tuple[str, ...] = tuple(f"EPSG:{c}" for c in range(4513, 4555))


@dataclass(frozen=True)
class OutputCRS:
    """A CRS positions can be given in: its OGC URI, kind and axis order."""

    code: str  # "OGC:CRS84", "EPSG:4548"
    kind: str  # geographic | projected | geocentric
    north_first: bool  # first axis is latitude or northing
    three_d: bool  # the CRS itself has a third axis

    @property
    def uri(self) -> str:
        """The OGC URI (``http://www.opengis.net/def/crs/...``)."""
        if self.code == "OGC:CRS84":
            return CRS84
        if self.code == "OGC:CRS84h":
            return CRS84H
        return EPSG_URI + self.code.split(":", 1)[1]

    @property
    def heights(self) -> str:
        """What the third coordinate is: ``ellipsoidal`` or ``normal-1985``."""
        return "normal-1985" if self.kind == "projected" else "ellipsoidal"


def supported_codes(storage_crs: str) -> list[str]:
    """Every CRS code the API offers (CRS84 first, then the storage CRS)."""
    storage = _code(storage_crs)
    rest = [c for c in (*_GLOBAL, *ZONE_CODES) if c not in ("OGC:CRS84", storage)]
    return ["OGC:CRS84", storage, *rest]


def supported_uris(storage_crs: str) -> list[str]:
    """The URIs of :func:`supported_codes`, for a collection's ``crs`` list."""
    return [output_crs(c, storage_crs).uri for c in supported_codes(storage_crs)]


def _code(text: str) -> str:
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):  # safe CURIE: [EPSG:4326]
        t = t[1:-1]
    if t.startswith(EPSG_URI):
        return "EPSG:" + t[len(EPSG_URI):]
    if t in (CRS84, "CRS84", "OGC:CRS84", "urn:ogc:def:crs:OGC:1.3:CRS84"):
        return "OGC:CRS84"
    if t in (CRS84H, "CRS84h", "OGC:CRS84h", "urn:ogc:def:crs:OGC::CRS84h"):
        return "OGC:CRS84h"
    if t.lower().startswith("urn:ogc:def:crs:epsg:"):
        return "EPSG:" + t.rsplit(":", 1)[1]
    if t.upper().startswith("EPSG:"):
        return "EPSG:" + t[5:]
    return t


@lru_cache(maxsize=128)
def output_crs(text: str, storage_crs: str) -> OutputCRS:
    """The offered CRS named by ``text`` (URI, ``EPSG:4548``, ``[EPSG:4548]``, ``CRS84``).

    Raises:
        CRSError: not one of :func:`supported_codes` (the message lists them).
    """
    code = _code(text)
    if code not in supported_codes(storage_crs):
        raise CRSError(
            f"unsupported CRS {text!r}: use one of CRS84, CRS84h, EPSG:4326, 4979, 4490, 4480, 4479, 4978 or a "
            f"CGCS2000 3-degree zone EPSG:4513-4554 (storage: {storage_crs}), as an OGC URI like {EPSG_URI}4490",
            field="crs", value=text,
        )
    crs = get_crs(code)
    first = crs.axis_info[0].direction.lower() if crs.axis_info else "east"
    kind = "geocentric" if crs.is_geocentric else "projected" if crs.is_projected else "geographic"
    return OutputCRS(code, kind, first == "north", len(crs.axis_info) == 3)


@lru_cache(maxsize=256)
def transformer(crs_in: str, crs_out: str) -> Any:
    """A cached always-xy transformer between two CRS codes (per request this saves pyproj's WKT export)."""
    return _transformer(crs_in, crs_out)


@lru_cache(maxsize=256)
def same_crs(a: str, b: str) -> bool:
    """Whether two CRS codes name the same CRS."""
    return bool(get_crs(a) == get_crs(b))


def _geographic_of(target: OutputCRS) -> str:
    return _GLOBAL[target.code][0] if target.code in _GLOBAL else "EPSG:4490"


def from_storage(
    xyz: np.ndarray, storage_crs: str, target: OutputCRS, geoid: GeoidModel
) -> np.ndarray:
    """Storage (E, N[, H]) rows to ``target`` coordinates in its axis order (same shape; NaN H stays NaN)."""
    xyz = np.asarray(xyz, dtype="f8")
    if not len(xyz):
        return xyz
    x, y = xyz[:, 0], xyz[:, 1]
    h = xyz[:, 2] if xyz.shape[1] > 2 else None
    if target.kind == "projected":
        if same_crs(target.code, storage_crs):
            a, b = x, y
        else:
            a, b = transformer(storage_crs, target.code).transform(x, y)
        out = [b, a] if target.north_first else [a, b]
        return np.column_stack([*out, h] if h is not None else out)
    lon, lat = transformer(storage_crs, _geographic_of(target)).transform(x, y)
    lon, lat = np.asarray(lon), np.asarray(lat)
    if target.kind == "geographic":
        out = [lat, lon] if target.north_first else [lon, lat]
        if h is None:
            return np.column_stack(out)
        return np.column_stack([*out, to_ellipsoidal(geoid, lon, lat, h)])
    eh = to_ellipsoidal(geoid, lon, lat, h if h is not None else np.zeros_like(lon))
    geo3d = _GLOBAL[target.code][1] or "EPSG:4979"
    gx, gy, gz = transformer(geo3d, target.code).transform(lon, lat, eh)
    return np.column_stack([gx, gy, gz])


def to_storage_xy(
    xy: np.ndarray, source: OutputCRS, storage_crs: str
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal positions given in ``source`` (its axis order) to storage easting/northing."""
    xy = np.asarray(xy, dtype="f8")
    a, b = xy[:, 0], xy[:, 1]
    if source.north_first:
        a, b = b, a
    if source.kind == "geocentric":
        raise CRSError(f"{source.code} is geocentric: give bbox and filter geometries in a geographic or projected CRS",
                       field="bbox-crs")
    src = _geographic_of(source) if source.kind == "geographic" else source.code
    if same_crs(src, storage_crs):
        return a, b
    e, n = transformer(src, storage_crs).transform(a, b)
    e, n = np.asarray(e), np.asarray(n)
    if not (np.isfinite(e).all() and np.isfinite(n).all()):
        raise InvalidInputError(f"positions outside the domain of {source.code}: check the axis order "
                                f"({'north' if source.north_first else 'east'} first)")
    return e, n


def geometry_to_storage(geom: BaseGeometry, source: OutputCRS, storage_crs: str) -> BaseGeometry:
    """A 2D geometry given in ``source`` to the storage CRS, densified so straight edges stay close."""
    geom = shapely.force_2d(geom)
    step = 0.0005 if source.kind == "geographic" else 50.0
    if geom.geom_type not in ("Point", "MultiPoint"):
        geom = shapely.segmentize(geom, step)

    def move(coords: np.ndarray) -> np.ndarray:
        e, n = to_storage_xy(coords, source, storage_crs)
        return np.column_stack([e, n])

    return shapely.transform(geom, move)


def parse_bbox(text: str) -> tuple[float, ...]:
    """``minx,miny,maxx,maxy`` or ``minx,miny,minz,maxx,maxy,maxz`` (axis order of the bbox CRS)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(f"bbox {text!r}: every value must be a number (4 or 6 comma-separated)",
                                field="bbox") from None
    if len(values) not in (4, 6) or not all(np.isfinite(values)):
        raise InvalidInputError(f"bbox {text!r}: give 4 or 6 finite numbers (minx,miny,maxx,maxy)", field="bbox")
    lo, hi = (values[:2], values[2:]) if len(values) == 4 else (values[:3], values[3:])
    if any(a > b for a, b in zip(lo, hi, strict=True)):
        raise InvalidInputError(f"bbox {text!r}: a lower bound exceeds its upper bound", field="bbox")
    return values


@dataclass(frozen=True)
class StorageBox:
    """A bbox in storage terms: the (densified) area polygon and an optional 1985-height range."""

    area: BaseGeometry
    zmin: float | None = None
    zmax: float | None = None


def bbox_to_storage(
    bbox: tuple[float, ...], source: OutputCRS, storage_crs: str, geoid: GeoidModel
) -> StorageBox:
    """The bbox (in ``source`` axis order) as a storage-CRS polygon; a 6-value bbox adds a height range
    (ellipsoidal for geographic CRSs, converted to 1985 heights with the geoid at the box centre)."""
    if len(bbox) == 6:
        x0, y0, z0, x1, y1, z1 = bbox
    else:
        (x0, y0, x1, y1), z0, z1 = bbox, None, None
    if source.kind == "geographic":
        lat_range = (x0, x1) if source.north_first else (y0, y1)
        if lat_range[0] < -90 or lat_range[1] > 90:
            raise InvalidInputError(f"bbox latitudes {lat_range} are outside -90..90: check the axis order of "
                                    f"{source.code} ({'lat, lon' if source.north_first else 'lon, lat'})",
                                    field="bbox")
    area = geometry_to_storage(shapely.box(x0, y0, x1, y1), source, storage_crs)
    if z0 is None:
        return StorageBox(area)
    if source.kind == "geographic":
        c = np.array([[(x0 + x1) / 2, (y0 + y1) / 2]])
        lon, lat = (c[:, 1], c[:, 0]) if source.north_first else (c[:, 0], c[:, 1])
        z0 = float(to_normal(geoid, lon, lat, np.array([z0]))[0])
        z1 = float(to_normal(geoid, lon, lat, np.array([z1]))[0])
    return StorageBox(area, z0, z1)
