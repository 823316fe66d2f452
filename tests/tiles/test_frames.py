"""Tests for tiles.frames: store coordinates placed in the 3D Tiles ECEF frame and local ENU frames."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from cim.heights import ConstantGeoid, get_geoid
from tiles.frames import (
    Y_UP_TO_Z_UP,
    LocalFrame,
    ecef_to_enu,
    enu_matrix,
    enu_to_ecef,
    enu_to_gltf,
    geodetic_to_ecef,
    region_bounds,
    tile_transform,
    to_ecef,
)

EGM96_GRID = Path("/usr/share/proj/egm96_15.gtx")
needs_egm96 = pytest.mark.skipif(
    not EGM96_GRID.is_file(), reason="egm96_15.gtx missing: install Debian proj-data (scripts/setup.sh)"
)

# Domain brief §4.3: Jinan 117.0E 36.65N, ellipsoidal h 50 m
JINAN_LON, JINAN_LAT, JINAN_H = 117.0, 36.65, 50.0
JINAN_ECEF = (-2_325_935.6, 4_564_905.7, 3_786_332.0)
JINAN_4548 = (500_000.0, 4_057_669.9)
NO_GEOID = ConstantGeoid(0.0, name="none")


def _geodetic_up(lon_deg: float, lat_deg: float) -> np.ndarray:
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    return np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])


def test_jinan_geodetic_point_lands_on_the_published_ecef_coordinates() -> None:
    ecef = geodetic_to_ecef(JINAN_LON, JINAN_LAT, JINAN_H)
    assert ecef.shape == (1, 3) and ecef.dtype == np.float64
    np.testing.assert_allclose(ecef[0], JINAN_ECEF, atol=0.1)


def test_closed_form_ecef_agrees_with_pyproj_4979_to_4978_within_a_millimetre() -> None:
    rng = np.random.default_rng(1)
    lon, lat, h = rng.uniform(114, 123, 500), rng.uniform(34, 39, 500), rng.uniform(-50, 1500, 500)
    expected = np.column_stack(
        Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    )
    np.testing.assert_allclose(geodetic_to_ecef(lon, lat, h), expected, atol=1e-3, rtol=0)


def test_storage_coordinates_with_ellipsoidal_heights_reach_the_jinan_ecef_example() -> None:
    ecef = to_ecef([JINAN_4548[0]], [JINAN_4548[1]], [JINAN_H], storage_crs="EPSG:4548", geoid=NO_GEOID)
    np.testing.assert_allclose(ecef[0], JINAN_ECEF, atol=0.1)


def test_zone_prefixed_storage_crs_gives_the_same_ecef_as_the_unprefixed_one() -> None:
    a = to_ecef([39_500_000.0], [JINAN_4548[1]], [JINAN_H], storage_crs="EPSG:4527", geoid=NO_GEOID)
    b = to_ecef([JINAN_4548[0]], [JINAN_4548[1]], [JINAN_H], storage_crs="EPSG:4548", geoid=NO_GEOID)
    np.testing.assert_allclose(a, b, atol=1e-6)


@needs_egm96
def test_a_1985_height_near_jinan_ends_about_7_3_m_lower_with_the_egm96_geoid() -> None:
    egm96 = get_geoid("egm96")
    with_geoid = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", egm96)
    without = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", NO_GEOID)
    assert without.h == pytest.approx(50.0, abs=1e-9)
    assert with_geoid.h - without.h == pytest.approx(-7.3, abs=0.3)
    a = to_ecef([JINAN_4548[0]], [JINAN_4548[1]], [50.0], storage_crs="EPSG:4548", geoid=egm96)
    b = to_ecef([JINAN_4548[0]], [JINAN_4548[1]], [50.0], storage_crs="EPSG:4548", geoid=NO_GEOID)
    n = egm96.undulation(np.array([JINAN_LON]), np.array([JINAN_LAT]))[0]
    assert float(np.linalg.norm(a - b)) == pytest.approx(abs(n), abs=1e-3)
    # the shift is straight down the ellipsoid normal
    direction = (a - b)[0] / np.linalg.norm(a - b)
    np.testing.assert_allclose(direction, -_geodetic_up(JINAN_LON, JINAN_LAT), atol=1e-6)


def test_enu_matrix_columns_are_orthonormal_and_up_is_the_ellipsoid_normal() -> None:
    for lon, lat in [(117.0, 36.65), (120.38, 36.07), (-70.0, -45.0), (0.0, 0.0)]:
        m = enu_matrix(lon, lat, 30.0)
        r = m[:3, :3]
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)  # right-handed: east × north = up
        np.testing.assert_allclose(m[:3, 2], _geodetic_up(lon, lat), atol=1e-12)
        assert m[:3, 0][2] == 0.0  # east is horizontal
        assert m[:3, 1][2] > 0 or lat == 90.0  # north climbs toward the pole
        np.testing.assert_allclose(m[3], [0, 0, 0, 1])
        np.testing.assert_allclose(m[:3, 3], geodetic_to_ecef(lon, lat, 30.0)[0])


def test_points_within_2_km_survive_an_enu_ecef_round_trip_within_a_micrometre() -> None:
    m = enu_matrix(JINAN_LON, JINAN_LAT, JINAN_H)
    rng = np.random.default_rng(2)
    enu = rng.uniform(-2000, 2000, (1000, 3))
    ecef = enu_to_ecef(enu, m)
    np.testing.assert_allclose(ecef_to_enu(ecef, m), enu, atol=1e-6, rtol=0)
    # and ECEF -> ENU -> ECEF
    np.testing.assert_allclose(enu_to_ecef(ecef_to_enu(ecef, m), m), ecef, atol=1e-6, rtol=0)
    # the origin is ENU (0, 0, 0) and 10 m up is 10 m along the normal
    np.testing.assert_allclose(ecef_to_enu(m[:3, 3], m), [[0, 0, 0]], atol=1e-9)
    up10 = geodetic_to_ecef(JINAN_LON, JINAN_LAT, JINAN_H + 10.0)
    np.testing.assert_allclose(ecef_to_enu(up10, m), [[0, 0, 10]], atol=1e-6)


def test_tile_transform_is_the_matrix_flattened_column_major() -> None:
    m = enu_matrix(JINAN_LON, JINAN_LAT, JINAN_H)
    t = tile_transform(m)
    assert len(t) == 16 and all(isinstance(v, float) for v in t)
    assert t[12:15] == pytest.approx(list(m[:3, 3]))  # translation is the 4th column
    assert t[15] == 1.0 and t[3] == t[7] == t[11] == 0.0
    np.testing.assert_array_equal(np.array(t).reshape(4, 4).T, m)
    with pytest.raises(ValueError):
        tile_transform(np.eye(3))


def test_100_m_east_in_epsg_4548_is_100_m_east_in_the_local_frame() -> None:
    frame = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", NO_GEOID)
    local = frame.to_local([JINAN_4548[0] + 100.0], [JINAN_4548[1]], [50.0])
    assert local.shape == (1, 3) and local.dtype == np.float64
    np.testing.assert_allclose(local[0], [100.0, 0.0, 0.0], atol=0.05)
    north = frame.to_local([JINAN_4548[0]], [JINAN_4548[1] + 100.0], [50.0])
    np.testing.assert_allclose(north[0], [0.0, 100.0, 0.0], atol=0.05)
    up = frame.to_local([JINAN_4548[0]], [JINAN_4548[1]], [60.0])
    np.testing.assert_allclose(up[0], [0.0, 0.0, 10.0], atol=1e-6)


@needs_egm96
def test_local_frame_to_local_matches_the_explicit_ecef_chain() -> None:
    egm96 = get_geoid("egm96")
    frame = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", egm96)
    rng = np.random.default_rng(3)
    x = JINAN_4548[0] + rng.uniform(-1500, 1500, 200)
    y = JINAN_4548[1] + rng.uniform(-1500, 1500, 200)
    h = rng.uniform(0, 120, 200)
    expected = ecef_to_enu(to_ecef(x, y, h, storage_crs="EPSG:4548", geoid=egm96), frame.matrix)
    np.testing.assert_allclose(frame.to_local(x, y, h), expected, atol=1e-9, rtol=0)
    np.testing.assert_allclose(frame.to_local(*JINAN_4548, 50.0), [[0, 0, 0]], atol=1e-6)
    assert frame.transform() == tile_transform(frame.matrix)


def test_the_clients_y_up_to_z_up_rotation_turns_gltf_back_into_enu() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(-500, 500, (100, 3))
    g = enu_to_gltf(p)
    np.testing.assert_array_equal(g[:, 1], p[:, 2])  # glTF y is up
    np.testing.assert_allclose(g @ Y_UP_TO_Z_UP.T, p)
    # the client's matrix is a +90 degree rotation about x
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    np.testing.assert_allclose(Y_UP_TO_Z_UP, [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-15)
    assert enu_to_gltf(p.astype(np.float32)).dtype == np.float32


def test_float32_local_coordinates_within_1_km_keep_millimetre_precision() -> None:
    frame = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", NO_GEOID)
    rng = np.random.default_rng(5)
    x = JINAN_4548[0] + rng.uniform(-600, 600, 10_000)
    y = JINAN_4548[1] + rng.uniform(-600, 600, 10_000)
    h = rng.uniform(0, 300, 10_000)
    local = frame.to_local(x, y, h)
    assert np.linalg.norm(local, axis=1).max() < 1000.0
    truth = to_ecef(x, y, h, storage_crs="EPSG:4548", geoid=NO_GEOID)
    placed = enu_to_ecef(local.astype(np.float32).astype(np.float64), frame.matrix)
    assert np.abs(placed - truth).max() < 1e-3
    # whereas float32 ECEF would lose decimetres: the reason for the local frame
    assert np.abs(truth.astype(np.float32).astype(np.float64) - truth).max() > 0.05


def test_a_million_points_go_to_the_local_frame_in_about_a_second() -> None:
    frame = LocalFrame.at(*JINAN_4548, 50.0, "EPSG:4548", NO_GEOID)
    rng = np.random.default_rng(6)
    n = 1_000_000
    x = JINAN_4548[0] + rng.uniform(-1000, 1000, n)
    y = JINAN_4548[1] + rng.uniform(-1000, 1000, n)
    h = rng.uniform(0, 100, n)
    frame.to_local(x[:10], y[:10], h[:10])  # warm the cached transformer
    start = time.perf_counter()
    local = frame.to_local(x, y, h)
    elapsed = time.perf_counter() - start
    assert local.shape == (n, 3) and local.dtype == np.float64
    assert np.isfinite(local).all()
    assert elapsed < 3.0, f"{n} points took {elapsed:.2f} s"


def test_region_bounds_are_radians_and_metres_in_3d_tiles_order() -> None:
    r = region_bounds(116.8, 36.5, 117.2, 36.8, -10.0, 120.0)
    assert r == pytest.approx(
        [math.radians(116.8), math.radians(36.5), math.radians(117.2), math.radians(36.8), -10.0, 120.0]
    )
    assert all(isinstance(v, float) for v in r)
    # across the antimeridian west > east is allowed
    assert (
        region_bounds(179.0, 0.0, -179.0, 1.0, 0.0, 1.0)[0]
        > region_bounds(179.0, 0.0, -179.0, 1.0, 0.0, 1.0)[2]
    )


@pytest.mark.parametrize(
    "args",
    [
        (116.8, 36.8, 117.2, 36.5, 0.0, 1.0),
        (116.8, 36.5, 117.2, 36.8, 10.0, 1.0),
        (0.0, -91.0, 1.0, 0.0, 0.0, 1.0),
    ],
)
def test_region_bounds_reject_inverted_latitudes_heights_and_impossible_latitudes(args: tuple) -> None:
    with pytest.raises(ValueError):
        region_bounds(*args)
