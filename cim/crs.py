"""The single door to CRS handling: CRS lookup, transformers (always x/y), CGCS2000 zones.

Chinese survey tables label the northing "X" and the easting "Y"; inside the service every
coordinate pair is (easting, northing) and every transformer is built with ``always_xy=True``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as ProjCRSError

from cim.errors import CRSError

CRSLike = CRS | str | int

#: CGCS2000 3-degree Gauss-Krüger zones covering Shandong: zone -> (with prefix, without prefix).
SHANDONG_ZONES: dict[int, tuple[int, int]] = {38: (4526, 4547), 39: (4527, 4548), 40: (4528, 4549), 41: (4529, 4550)}
CGCS2000_GEOGRAPHIC = "EPSG:4490"
CGCS2000_GEOGRAPHIC_3D = "EPSG:4480"
HEIGHTS_1985 = "EPSG:5737"
ECEF = "EPSG:4978"


@lru_cache(maxsize=256)
def _crs_from_string(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except ProjCRSError as exc:
        raise CRSError(f"unknown CRS {text!r}: {exc}") from None


def get_crs(crs: CRSLike) -> CRS:
    """A pyproj CRS from an EPSG code, ``"EPSG:4548"``, a URI, WKT or PROJ string.

    Raises:
        CRSError: the text names no CRS PROJ knows.
    """
    if isinstance(crs, CRS):
        return crs
    if isinstance(crs, int):
        crs = f"EPSG:{crs}"
    from cim.localcrs import find_local

    local = find_local(crs)
    if local is not None:
        raise CRSError(f"{crs} is a city-independent system: transform it with transform_xy, it has no PROJ CRS")
    text = str(crs).strip()
    if text.startswith("http://www.opengis.net/def/crs/EPSG/0/"):
        text = "EPSG:" + text.rsplit("/", 1)[1]
    elif text in ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "CRS84", "OGC:CRS84"):
        text = "OGC:CRS84"
    return _crs_from_string(text)


def crs_code(crs: CRSLike) -> str:
    """``"EPSG:4548"`` when the CRS has an EPSG code, else its WKT."""
    c = get_crs(crs)
    auth = c.to_authority(min_confidence=90)
    return f"{auth[0]}:{auth[1]}" if auth else c.to_wkt()


@lru_cache(maxsize=128)
def _transformer(crs_in: str, crs_out: str) -> Transformer:
    return Transformer.from_crs(get_crs(crs_in), get_crs(crs_out), always_xy=True)


def transformer(crs_in: CRSLike, crs_out: CRSLike) -> Transformer:
    """A cached transformer from ``crs_in`` to ``crs_out`` taking and giving (x=east, y=north)."""
    return _transformer(get_crs(crs_in).to_wkt(), get_crs(crs_out).to_wkt())


def transform_xy(
    x: np.ndarray, y: np.ndarray, crs_in: CRSLike, crs_out: CRSLike
) -> tuple[np.ndarray, np.ndarray]:
    """Transform easting/northing (or lon/lat) arrays; no-op when both CRSs are equal.

    ``crs_in`` may name a configured city-independent system (:mod:`cim.localcrs`).
    """
    from cim.localcrs import find_local

    local = find_local(crs_in)
    if local is not None:
        x, y = local.to_base(x, y)
        crs_in = local.base
    if get_crs(crs_in) == get_crs(crs_out):
        return np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")
    ox, oy = transformer(crs_in, crs_out).transform(np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8"))
    return np.asarray(ox), np.asarray(oy)


def to_lonlat(x: np.ndarray, y: np.ndarray, crs_in: CRSLike) -> tuple[np.ndarray, np.ndarray]:
    """Easting/northing in ``crs_in`` to CGCS2000 longitude/latitude in degrees."""
    return transform_xy(x, y, crs_in, CGCS2000_GEOGRAPHIC)


def gk3_zone(lon: float) -> int:
    """The CGCS2000 3-degree Gauss-Krüger zone number for a longitude (CM = 3 × zone)."""
    return int(np.floor((lon + 1.5) / 3.0))


def gk3_epsg(zone: int, *, prefix: bool) -> int:
    """EPSG code of CGCS2000 3-degree zone ``zone`` (25..45), with or without the zone prefix."""
    if not 25 <= zone <= 45:
        raise CRSError(f"CGCS2000 3-degree zone {zone} does not exist (25..45)")
    return 4513 + (zone - 25) if prefix else 4534 + (zone - 25)


def gk3_zone_of(crs: CRSLike) -> tuple[int, bool] | None:
    """(zone, has_prefix) when ``crs`` is a CGCS2000 3-degree GK zone, else ``None``."""
    code = get_crs(crs).to_epsg()
    if code is None:
        return None
    if 4513 <= code <= 4533:
        return code - 4513 + 25, True
    if 4534 <= code <= 4554:
        return code - 4534 + 25, False
    return None


def is_projected_metres(crs: CRSLike) -> bool:
    """True for a projected CRS whose axes are in metres."""
    c = get_crs(crs)
    return bool(c.is_projected and all(a.unit_name in ("metre", "meter") for a in c.axis_info[:2]))
