"""Tests for cim.heights: geoid models and normal/ellipsoidal height conversion."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from cim.errors import CRSError
from cim.heights import (
    ConstantGeoid,
    GtxGeoid,
    PlaneGeoid,
    find_grid,
    get_geoid,
    to_ellipsoidal,
    to_normal,
)

EGM96_GRID = Path("/usr/share/proj/egm96_15.gtx")
needs_egm96 = pytest.mark.skipif(
    not EGM96_GRID.is_file(), reason="egm96_15.gtx missing: install Debian proj-data (scripts/setup.sh)"
)

# Domain brief §4.3, EGM96 undulation N (m)
EGM96_PLACES = [
    ("Heze", 115.48, 35.25, -13.6),
    ("Jinan", 117.0, 36.65, -7.3),
    ("Qingdao", 120.38, 36.07, 5.7),
    ("Yantai", 121.45, 37.46, 8.5),
    ("Beijing", 116.39, 39.91, -9.9),
    ("Shanghai", 121.47, 31.23, 11.1),
]


@needs_egm96
@pytest.mark.parametrize(("place", "lon", "lat", "n"), EGM96_PLACES, ids=[p[0] for p in EGM96_PLACES])
def test_egm96_undulation_matches_the_domain_brief(place: str, lon: float, lat: float, n: float) -> None:
    model = get_geoid("egm96")
    assert model.name == "egm96"
    assert model.undulation(np.array([lon]), np.array([lat]))[0] == pytest.approx(n, abs=0.2)


@needs_egm96
def test_egm96_undulates_vectorised_and_wraps_the_antimeridian() -> None:
    model = get_geoid("EGM96")
    lons = np.array([p[1] for p in EGM96_PLACES])
    lats = np.array([p[2] for p in EGM96_PLACES])
    np.testing.assert_allclose(model.undulation(lons, lats), [p[3] for p in EGM96_PLACES], atol=0.2)
    east, west = model.undulation(np.array([179.99, -180.0]), np.array([10.0, 10.0]))
    assert abs(east - west) < 0.5


@needs_egm96
def test_to_ellipsoidal_and_to_normal_round_trip_with_egm96() -> None:
    model = get_geoid("egm96")
    lon, lat, h_normal = np.array([117.0, 120.38]), np.array([36.65, 36.07]), np.array([50.0, 12.5])
    h = to_ellipsoidal(model, lon, lat, h_normal)
    np.testing.assert_allclose(h - h_normal, [-7.3, 5.7], atol=0.2)
    np.testing.assert_allclose(to_normal(model, lon, lat, h), h_normal, atol=1e-9)


def test_to_ellipsoidal_adds_the_undulation_and_to_normal_removes_it() -> None:
    model = ConstantGeoid(-7.25)
    lon, lat = np.array([117.0, 118.0, 119.0]), np.array([36.0, 36.5, 37.0])
    h = to_ellipsoidal(model, lon, lat, np.array([10.0, 20.0, 30.0]))
    np.testing.assert_allclose(h, [2.75, 12.75, 22.75])
    np.testing.assert_allclose(to_normal(model, lon, lat, h), [10.0, 20.0, 30.0])


@pytest.mark.parametrize(("name", "value"), [("none", 0.0), ("zero", 0.0), ("constant:-3.5", -3.5)])
def test_get_geoid_builds_constant_models(name: str, value: float) -> None:
    model = get_geoid(name)
    assert isinstance(model, ConstantGeoid)
    np.testing.assert_array_equal(
        model.undulation(np.array([117.0, 120.0]), np.array([36.0, 37.0])), [value] * 2
    )


def test_constant_geoid_accepts_scalars() -> None:
    assert ConstantGeoid(2.0).undulation(117.0, 36.0).tolist() == [2.0]


def test_plane_geoid_fit_recovers_a_known_plane() -> None:
    def truth(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        return -7.0 + 1.8 * (lon - 117.0) - 0.6 * (lat - 36.6)

    lon = np.array([116.9, 117.2, 117.1, 116.95])
    lat = np.array([36.5, 36.55, 36.75, 36.7])
    model = PlaneGeoid.fit(lon, lat, truth(lon, lat))
    assert model.b == pytest.approx(1.8, abs=1e-9)
    assert model.c == pytest.approx(-0.6, abs=1e-9)
    probe_lon, probe_lat = np.array([117.05, 116.5, 118.0]), np.array([36.62, 36.9, 36.0])
    np.testing.assert_allclose(model.undulation(probe_lon, probe_lat), truth(probe_lon, probe_lat), atol=1e-9)


def test_plane_geoid_fit_refuses_two_points() -> None:
    with pytest.raises(CRSError, match="at least 3"):
        PlaneGeoid.fit(np.array([117.0, 117.1]), np.array([36.6, 36.7]), np.array([-7.0, -7.1]))


def _write_gtx(path: Path, lat0: float, lon0: float, dlat: float, dlon: float, grid: np.ndarray) -> Path:
    rows, cols = grid.shape
    path.write_bytes(struct.pack(">4d2i", lat0, lon0, dlat, dlon, rows, cols) + grid.astype(">f4").tobytes())
    return path


# Rows run south to north: row r is latitude 36 + 0.5 r, column c is longitude 116 + 0.5 c.
TINY_GRID = np.array(
    [
        [1.0, 2.0, 4.0, 8.0],  # 36.0 N
        [10.0, 20.0, 40.0, 80.0],  # 36.5 N
        [100.0, 200.0, 400.0, 800.0],  # 37.0 N
    ]
)


@pytest.fixture
def tiny_gtx(tmp_path: Path) -> Path:
    return _write_gtx(tmp_path / "tiny.gtx", 36.0, 116.0, 0.5, 0.5, TINY_GRID)


def test_gtx_geoid_returns_grid_values_at_the_nodes_south_row_first(tiny_gtx: Path) -> None:
    model = GtxGeoid(tiny_gtx)
    lon = np.array([116.0, 117.5, 116.5, 117.0, 117.5])
    lat = np.array([36.0, 36.0, 36.5, 37.0, 37.0])
    np.testing.assert_allclose(model.undulation(lon, lat), [1.0, 8.0, 20.0, 400.0, 800.0], atol=1e-12)


def test_gtx_geoid_interpolates_bilinearly(tiny_gtx: Path) -> None:
    model = GtxGeoid(tiny_gtx)
    # Cell rows 0..1, columns 1..2 with fractions tr = 0.4 (lat 36.2), tc = 0.3 (lon 116.65)
    tc, tr = 0.3, 0.4
    south = 2.0 * (1 - tc) + 4.0 * tc
    north = 20.0 * (1 - tc) + 40.0 * tc
    expected = south * (1 - tr) + north * tr
    assert model.undulation(np.array([116.65]), np.array([36.2]))[0] == pytest.approx(expected, abs=1e-9)
    # Centre of the north-east cell: the mean of its four corners
    centre = model.undulation(np.array([117.25]), np.array([36.75]))[0]
    assert centre == pytest.approx((40.0 + 80.0 + 400.0 + 800.0) / 4, abs=1e-9)


def test_get_geoid_gtx_reads_an_explicit_grid(tiny_gtx: Path) -> None:
    model = get_geoid("gtx", path=tiny_gtx)
    assert model.undulation(np.array([116.5]), np.array([36.5]))[0] == pytest.approx(20.0)


def test_gtx_geoid_refuses_a_file_too_short_for_a_header(tmp_path: Path) -> None:
    path = tmp_path / "short.gtx"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(CRSError, match="not a .gtx"):
        GtxGeoid(path)


def test_gtx_geoid_refuses_a_truncated_grid(tmp_path: Path) -> None:
    path = _write_gtx(tmp_path / "cut.gtx", 36.0, 116.0, 0.5, 0.5, TINY_GRID)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CRSError, match="truncated"):
        GtxGeoid(path)


@pytest.mark.parametrize("name", ["egm2008", "cqg2000", "constant", ""])
def test_get_geoid_raises_crs_error_for_an_unknown_model(name: str) -> None:
    with pytest.raises(CRSError, match="unknown geoid model"):
        get_geoid(name)


def test_get_geoid_raises_crs_error_for_a_constant_that_is_not_a_number() -> None:
    with pytest.raises(CRSError):
        get_geoid("constant:abc")


def test_get_geoid_raises_crs_error_for_a_missing_explicit_grid(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "egm96_15.gtx"
    with pytest.raises(CRSError, match="does not exist"):
        get_geoid("egm96", path=missing)
    with pytest.raises(CRSError, match="does not exist"):
        get_geoid("gtx", path=missing)


def test_get_geoid_gtx_without_a_path_raises_crs_error() -> None:
    with pytest.raises(CRSError, match="CIM_GEOID_PATH"):
        get_geoid("gtx")


def test_find_grid_looks_in_proj_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = _write_gtx(tmp_path / "local_anomaly.gtx", 36.0, 116.0, 0.5, 0.5, TINY_GRID)
    monkeypatch.setenv("PROJ_DATA", str(tmp_path))
    assert find_grid("local_anomaly.gtx") == grid
    with pytest.raises(CRSError, match="not found"):
        find_grid("no_such_grid_anywhere.gtx")
