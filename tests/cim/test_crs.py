"""Tests for cim.crs: CRS lookup, x=east/y=north transforms and CGCS2000 3-degree zones."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS

from cim.crs import (
    SHANDONG_ZONES,
    crs_code,
    get_crs,
    gk3_epsg,
    gk3_zone,
    gk3_zone_of,
    is_projected_metres,
    to_lonlat,
    transform_xy,
)
from cim.errors import CRSError, InvalidInputError

# Domain brief §4.3: Jinan (117.0 E, 36.65 N)
JINAN_LON, JINAN_LAT = 117.0, 36.65
JINAN_4548 = (500000.0, 4057669.9)
JINAN_4527 = (39500000.0, 4057669.9)


@pytest.mark.parametrize(
    "given",
    [4548, "EPSG:4548", "epsg:4548", " EPSG:4548 ", "http://www.opengis.net/def/crs/EPSG/0/4548"],
)
def test_get_crs_reads_codes_strings_and_ogc_uris(given: int | str) -> None:
    assert get_crs(given).to_epsg() == 4548


@pytest.mark.parametrize("given", ["http://www.opengis.net/def/crs/OGC/1.3/CRS84", "CRS84", "OGC:CRS84"])
def test_get_crs_reads_crs84_with_longitude_first(given: str) -> None:
    crs = get_crs(given)
    assert crs == CRS.from_user_input("OGC:CRS84")
    assert [a.direction for a in crs.axis_info[:2]] == ["east", "north"]


def test_get_crs_returns_a_crs_object_unchanged() -> None:
    crs = CRS.from_epsg(4490)
    assert get_crs(crs) is crs


@pytest.mark.parametrize(
    "given", ["EPSG:999999", 999999, "not a crs", "http://www.opengis.net/def/crs/EPSG/0/999999"]
)
def test_get_crs_raises_crs_error_for_unknown_crs(given: int | str) -> None:
    with pytest.raises(CRSError):
        get_crs(given)


def test_crs_error_is_an_invalid_input_error() -> None:
    with pytest.raises(InvalidInputError):
        get_crs("EPSG:999999")


def test_crs_code_names_the_epsg_code() -> None:
    assert crs_code(4548) == "EPSG:4548"
    assert crs_code("http://www.opengis.net/def/crs/EPSG/0/4527") == "EPSG:4527"


def test_gk_crs_is_northing_first_in_epsg_but_transform_gives_easting_first() -> None:
    assert get_crs(4548).axis_info[0].direction == "north"
    x, y = transform_xy(np.array([JINAN_LON]), np.array([JINAN_LAT]), "EPSG:4490", "EPSG:4548")
    assert x[0] == pytest.approx(JINAN_4548[0], abs=0.1)
    assert y[0] == pytest.approx(JINAN_4548[1], abs=0.1)


@pytest.mark.parametrize(
    ("crs_out", "expected"), [("EPSG:4548", JINAN_4548), ("EPSG:4527", JINAN_4527), (4527, JINAN_4527)]
)
@pytest.mark.parametrize("crs_in", ["EPSG:4490", "OGC:CRS84"])
def test_transform_xy_puts_jinan_where_the_domain_brief_says(
    crs_in: str, crs_out: str | int, expected: tuple[float, float]
) -> None:
    x, y = transform_xy(np.array([JINAN_LON]), np.array([JINAN_LAT]), crs_in, crs_out)
    assert x[0] == pytest.approx(expected[0], abs=0.1)
    assert y[0] == pytest.approx(expected[1], abs=0.1)


def test_transform_xy_between_prefix_forms_adds_the_zone_prefix_only() -> None:
    x = np.array([480000.0, 500000.0, 532123.45])
    y = np.array([3900000.0, 4057669.9, 4200000.0])
    px, py = transform_xy(x, y, "EPSG:4548", "EPSG:4527")
    np.testing.assert_allclose(px, x + 39_000_000.0, atol=1e-6)
    np.testing.assert_allclose(py, y, atol=1e-6)


def test_transform_xy_round_trips_through_lonlat() -> None:
    x = np.array([430000.0, 500000.0, 571234.567])
    y = np.array([3850000.0, 4057669.9, 4250000.0])
    lon, lat = to_lonlat(x, y, "EPSG:4548")
    assert np.all((lon > 116.0) & (lon < 118.0)) and np.all((lat > 34.0) & (lat < 39.0))
    bx, by = transform_xy(lon, lat, "EPSG:4490", "EPSG:4548")
    np.testing.assert_allclose(bx, x, atol=1e-4)
    np.testing.assert_allclose(by, y, atol=1e-4)


def test_transform_xy_is_a_float_no_op_when_the_crs_is_the_same() -> None:
    x, y = transform_xy(np.array([1, 2]), np.array([3, 4]), 4548, "EPSG:4548")
    assert x.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(y, [3.0, 4.0])


@pytest.mark.parametrize(
    ("lon", "zone"),
    [
        (114.0, 38),
        (115.49, 38),
        (115.5, 39),
        (117.0, 39),
        (118.49, 39),
        (120.0, 40),
        (121.45, 40),
        (123.0, 41),
    ],
)
def test_gk3_zone_has_its_central_meridian_at_three_times_the_zone(lon: float, zone: int) -> None:
    assert gk3_zone(lon) == zone


@pytest.mark.parametrize("zone", [38, 39, 40, 41])
def test_gk3_epsg_gives_the_shandong_codes_in_both_prefix_forms(zone: int) -> None:
    assert (gk3_epsg(zone, prefix=True), gk3_epsg(zone, prefix=False)) == SHANDONG_ZONES[zone]
    assert gk3_epsg(zone, prefix=True) == 4526 + zone - 38
    assert gk3_epsg(zone, prefix=False) == 4547 + zone - 38


@pytest.mark.parametrize("zone", [38, 39, 40, 41])
def test_gk3_epsg_codes_name_the_right_zone_in_the_epsg_database(zone: int) -> None:
    with_prefix = get_crs(gk3_epsg(zone, prefix=True))
    without_prefix = get_crs(gk3_epsg(zone, prefix=False))
    assert f"zone {zone}" in with_prefix.name
    assert f"CM {3 * zone}E" in without_prefix.name
    assert "CGCS2000" in with_prefix.name and "CGCS2000" in without_prefix.name


@pytest.mark.parametrize("zone", [38, 39, 40, 41])
@pytest.mark.parametrize("prefix", [True, False])
def test_gk3_zone_of_inverts_gk3_epsg(zone: int, prefix: bool) -> None:
    code = gk3_epsg(zone, prefix=prefix)
    assert gk3_zone_of(code) == (zone, prefix)
    assert gk3_zone_of(f"EPSG:{code}") == (zone, prefix)


@pytest.mark.parametrize("crs", ["EPSG:4490", "EPSG:4326", "EPSG:4978", "EPSG:4509"])
def test_gk3_zone_of_is_none_for_other_crs(crs: str) -> None:
    assert gk3_zone_of(crs) is None


@pytest.mark.parametrize("zone", [50, 24, 46, 0])
def test_gk3_epsg_raises_for_a_zone_that_does_not_exist(zone: int) -> None:
    with pytest.raises(CRSError):
        gk3_epsg(zone, prefix=True)
    with pytest.raises(CRSError):
        gk3_epsg(zone, prefix=False)


def test_is_projected_metres_tells_grids_from_degrees() -> None:
    assert is_projected_metres("EPSG:4548")
    assert is_projected_metres(4527)
    assert not is_projected_metres("EPSG:4490")
    assert not is_projected_metres("OGC:CRS84")
