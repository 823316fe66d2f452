"""CRSs offered by the features API: names and URIs accepted, axis order, heights, bbox-crs checks."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from cim.errors import CRSError, InvalidInputError
from cim.features.crs import (
    CRS84,
    bbox_to_storage,
    from_storage,
    output_crs,
    parse_bbox,
    supported_codes,
    to_storage_xy,
)
from cim.heights import ConstantGeoid

STORAGE = "EPSG:4548"
N = ConstantGeoid(-7.0)  # a constant undulation makes the expected heights obvious


@pytest.mark.parametrize(("text", "code", "kind", "north_first"), [
    (CRS84, "OGC:CRS84", "geographic", False),
    ("CRS84", "OGC:CRS84", "geographic", False),
    ("http://www.opengis.net/def/crs/OGC/0/CRS84h", "OGC:CRS84h", "geographic", False),
    ("http://www.opengis.net/def/crs/EPSG/0/4326", "EPSG:4326", "geographic", True),
    ("[EPSG:4490]", "EPSG:4490", "geographic", True),
    ("EPSG:4479", "EPSG:4479", "geocentric", False),
    ("urn:ogc:def:crs:EPSG::4978", "EPSG:4978", "geocentric", False),
    ("http://www.opengis.net/def/crs/EPSG/0/4548", "EPSG:4548", "projected", True),
    ("EPSG:4527", "EPSG:4527", "projected", True),
])
def test_offered_crs_names_and_axis_order(text: str, code: str, kind: str, north_first: bool) -> None:
    crs = output_crs(text, STORAGE)
    assert (crs.code, crs.kind, crs.north_first) == (code, kind, north_first)
    assert crs.uri.startswith("http://www.opengis.net/def/crs/")


def test_the_offer_is_crs84_storage_geographic_geocentric_and_the_cgcs2000_zones() -> None:
    codes = supported_codes(STORAGE)
    assert codes[:2] == ["OGC:CRS84", STORAGE] and len(codes) == len(set(codes))
    assert {"EPSG:4479", "EPSG:4978", "EPSG:4490", "EPSG:4979", "EPSG:4513", "EPSG:4554"} <= set(codes)
    for bad in ("EPSG:3857", "EPSG:4555", "nonsense", ""):
        with pytest.raises(CRSError, match="unsupported CRS"):
            output_crs(bad, STORAGE)


def test_positions_heights_and_axis_order() -> None:
    xyz = np.array([[500000.0, 4057669.9, 57.3]])
    proj = output_crs("EPSG:4548", STORAGE)
    np.testing.assert_allclose(from_storage(xyz, STORAGE, proj, N), [[4057669.9, 500000.0, 57.3]])  # N, E, H 1985
    lon, lat = Transformer.from_crs(STORAGE, "EPSG:4490", always_xy=True).transform(500000.0, 4057669.9)
    got = from_storage(xyz, STORAGE, output_crs("EPSG:4490", STORAGE), N)
    np.testing.assert_allclose(got, [[lat, lon, 50.3]], atol=1e-9)  # lat, lon, ellipsoidal = H + N
    got = from_storage(xyz, STORAGE, output_crs(CRS84, STORAGE), N)
    np.testing.assert_allclose(got, [[lon, lat, 50.3]], atol=1e-9)
    ecef = from_storage(xyz, STORAGE, output_crs("EPSG:4479", STORAGE), N)
    np.testing.assert_allclose(ecef, [Transformer.from_crs("EPSG:4480", "EPSG:4479", always_xy=True)
                                      .transform(lon, lat, 50.3)], atol=1e-3)
    assert abs(ecef[0, 0] + 2_325_935) < 100  # the domain brief's Jinan example: X ≈ -2 325 935.6
    zone = from_storage(xyz, STORAGE, output_crs("EPSG:4527", STORAGE), N)
    np.testing.assert_allclose(zone, [[4057669.9, 39_500_000.0, 57.3]], atol=1e-3)


def test_bbox_parsing_and_storage_conversion() -> None:
    assert parse_bbox("1,2,3,4") == (1, 2, 3, 4) and len(parse_bbox("1,2,0,3,4,9")) == 6
    for bad, words in (("1,2,3", "4 or 6"), ("1,2,x,4", "number"), ("3,2,1,4", "lower bound"), ("1,2,nan,4", "finite")):
        with pytest.raises(InvalidInputError, match=words):
            parse_bbox(bad)
    lonlat = bbox_to_storage((117.0, 36.6, 117.01, 36.61), output_crs(CRS84, STORAGE), STORAGE, N)
    latlon = bbox_to_storage((36.6, 117.0, 36.61, 117.01), output_crs("EPSG:4326", STORAGE), STORAGE, N)
    assert lonlat.area.symmetric_difference(latlon.area).area < 1e-3
    assert abs(lonlat.area.bounds[0] - 500_000) < 1e-6 and lonlat.area.bounds[2] > 500_800
    with pytest.raises(InvalidInputError, match="axis order"):
        bbox_to_storage((117.0, 36.6, 117.01, 36.61), output_crs("EPSG:4326", STORAGE), STORAGE, N)
    z = bbox_to_storage((117.0, 36.6, 40.0, 117.01, 36.61, 60.0), output_crs(CRS84, STORAGE), STORAGE, N)
    assert (z.zmin, z.zmax) == (47.0, 67.0)  # ellipsoidal bounds → 1985 heights
    with pytest.raises(CRSError, match="geocentric"):
        to_storage_xy(np.array([[1.0, 2.0]]), output_crs("EPSG:4978", STORAGE), STORAGE)
