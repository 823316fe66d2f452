"""Tests for cim.localcrs: city-independent systems (4-parameter Helmert, 7-parameter Bursa-Wolf)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cim.localcrs as localcrs
from cim.crs import get_crs, transform_xy
from cim.errors import CRSError
from cim.localcrs import BursaWolf, Helmert2D, find_local, load_file, register

# Jinan (117.0 E, 36.65 N) in EPSG:4548, domain brief §4.3
JINAN_E, JINAN_N = 500000.0, 4057669.9


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Leave cim.localcrs._SYSTEMS exactly as the test found it."""
    before = dict(localcrs._SYSTEMS)
    yield
    localcrs._SYSTEMS.clear()
    localcrs._SYSTEMS.update(before)


@pytest.fixture
def quiet_proj4() -> Iterator[None]:
    """BursaWolf builds its pipeline from CRS.to_dict(), which warns about PROJ strings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You will likely lose important projection information")
        yield


def test_helmert2d_with_zero_parameters_is_the_identity() -> None:
    h = Helmert2D("T_IDENTITY", "EPSG:4548", tx=0.0, ty=0.0)
    x, y = np.array([0.0, 123.4, -5000.0]), np.array([0.0, 567.8, 42.0])
    ex, ey = h.to_base(x, y)
    np.testing.assert_array_equal(ex, x)
    np.testing.assert_array_equal(ey, y)


def test_helmert2d_rotates_counter_clockwise_by_theta() -> None:
    h = Helmert2D("T_ROT90", "EPSG:4548", tx=1000.0, ty=2000.0, rotation_arcsec=90 * 3600.0)
    ex, ey = h.to_base(np.array([1.0, 0.0, 3.0]), np.array([0.0, 1.0, 4.0]))
    np.testing.assert_allclose(ex, [1000.0, 999.0, 996.0], atol=1e-9)
    np.testing.assert_allclose(ey, [2001.0, 2000.0, 2003.0], atol=1e-9)


def test_helmert2d_scales_by_parts_per_million() -> None:
    h = Helmert2D("T_SCALE", "EPSG:4548", tx=0.0, ty=0.0, scale_ppm=25.0)
    ex, ey = h.to_base(np.array([100_000.0]), np.array([-40_000.0]))
    assert ex[0] == pytest.approx(100_002.5, abs=1e-9)
    assert ey[0] == pytest.approx(-40_001.0, abs=1e-9)


def test_helmert2d_small_rotation_in_arcseconds() -> None:
    h = Helmert2D("T_SMALLROT", "EPSG:4548", tx=0.0, ty=0.0, rotation_arcsec=10.0)
    ex, ey = h.to_base(np.array([10_000.0]), np.array([0.0]))
    theta = np.radians(10.0 / 3600.0)
    assert ex[0] == pytest.approx(10_000.0 * np.cos(theta), abs=1e-9)
    assert ey[0] == pytest.approx(10_000.0 * np.sin(theta), abs=1e-9)  # about 0.485 m
    assert ey[0] == pytest.approx(0.4848, abs=1e-4)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "local_crs.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_file_registers_a_helmert_system_that_transform_xy_applies(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[systems.MY_CITY]
method = "helmert2d"
base = "EPSG:4548"
tx = 500000.0
ty = 4000000.0
""",
    )
    systems = load_file(path)
    assert [s.name for s in systems] == ["MY_CITY"]
    assert isinstance(systems[0], Helmert2D)
    assert find_local("my_city") is systems[0]
    x, y = transform_xy(np.array([0.0, 10.0]), np.array([57669.9, 57679.9]), "MY_CITY", "EPSG:4548")
    np.testing.assert_allclose(x, [JINAN_E, JINAN_E + 10.0], atol=1e-9)
    np.testing.assert_allclose(y, [JINAN_N, JINAN_N + 10.0], atol=1e-9)
    lon, lat = transform_xy(np.array([0.0]), np.array([57669.9]), "my_city", "EPSG:4490")
    assert lon[0] == pytest.approx(117.0, abs=1e-7)
    assert lat[0] == pytest.approx(36.65, abs=1e-6)


def test_load_file_reads_rotation_and_scale(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[systems.MY_CITY_ROTATED]
method = "helmert2d"
base = "EPSG:4548"
tx = 500012.3
ty = 4000021.7
rotation_arcsec = 12.5
scale_ppm = -3.2
""",
    )
    (system,) = load_file(path)
    assert system == Helmert2D("MY_CITY_ROTATED", "EPSG:4548", 500012.3, 4000021.7, 12.5, -3.2)
    x, y = transform_xy(np.array([1000.0]), np.array([2000.0]), "MY_CITY_ROTATED", "EPSG:4548")
    ex, ey = system.to_base(np.array([1000.0]), np.array([2000.0]))
    assert (x[0], y[0]) == (ex[0], ey[0])
    assert x[0] != pytest.approx(501012.3, abs=1e-3)  # the rotation moved the point


def test_get_crs_refuses_a_local_system_name() -> None:
    register(Helmert2D("MY_CITY_NO_PROJ", "EPSG:4548", tx=0.0, ty=0.0))
    with pytest.raises(CRSError, match="city-independent"):
        get_crs("MY_CITY_NO_PROJ")
    with pytest.raises(CRSError, match="city-independent"):
        get_crs("my_city_no_proj")


def test_a_name_is_not_local_until_registered() -> None:
    assert find_local("MY_CITY_UNREGISTERED") is None
    assert find_local(4548) is None
    with pytest.raises(CRSError, match="unknown CRS"):
        transform_xy(np.array([0.0]), np.array([0.0]), "MY_CITY_UNREGISTERED", "EPSG:4548")


@pytest.mark.usefixtures("quiet_proj4")
def test_bursa_wolf_with_zero_parameters_matches_pyproj() -> None:
    bw = BursaWolf("BW_ZERO", "EPSG:4548", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    x = np.array([JINAN_E, 420000.0, 580000.0])
    y = np.array([JINAN_N, 3900000.0, 4200000.0])
    lon, lat = bw.to_base(x, y)
    plon, plat = transform_xy(x, y, "EPSG:4548", "EPSG:4490")
    np.testing.assert_allclose(lon, plon, atol=1e-6)
    np.testing.assert_allclose(lat, plat, atol=1e-6)
    assert lon[0] == pytest.approx(117.0, abs=1e-6)


@pytest.mark.usefixtures("quiet_proj4")
def test_bursa_wolf_z_rotation_turns_longitude_by_the_angle() -> None:
    x, y = np.array([JINAN_E, 560000.0]), np.array([JINAN_N, 4100000.0])
    base_lon, base_lat = BursaWolf("BW0", "EPSG:4548", 0, 0, 0, 0, 0, 0, 0).to_base(x, y)
    pv_lon, pv_lat = BursaWolf("BW_PV", "EPSG:4548", 0, 0, 0, 0, 0, 5.0, 0, "position_vector").to_base(x, y)
    cf_lon, cf_lat = BursaWolf("BW_CF", "EPSG:4548", 0, 0, 0, 0, 0, -5.0, 0, "coordinate_frame").to_base(x, y)
    np.testing.assert_allclose(pv_lon - base_lon, 5.0 / 3600.0, atol=1e-9)
    np.testing.assert_allclose(pv_lat, base_lat, atol=1e-9)
    np.testing.assert_allclose(cf_lon, pv_lon, atol=1e-9)
    np.testing.assert_allclose(cf_lat, pv_lat, atol=1e-9)


@pytest.mark.usefixtures("quiet_proj4")
def test_load_file_registers_a_bursa_wolf_system(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[systems.MY_OLD_DATUM]
method = "bursa_wolf"
source = "EPSG:4548"
tx = 0.0
ty = 0.0
tz = 0.0
rx_arcsec = 0.0
ry_arcsec = 0.0
rz_arcsec = 0.0
scale_ppm = 0.0
""",
    )
    (system,) = load_file(path)
    assert isinstance(system, BursaWolf) and system.base == "EPSG:4490"
    lon, lat = transform_xy(np.array([JINAN_E]), np.array([JINAN_N]), "MY_OLD_DATUM", "EPSG:4490")
    assert lon[0] == pytest.approx(117.0, abs=1e-6)
    assert lat[0] == pytest.approx(36.65, abs=1e-6)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('method = "affine"\nbase = "EPSG:4548"\ntx = 0.0\nty = 0.0', "method must be"),
        ('base = "EPSG:4548"\ntx = 0.0\nty = 0.0', "method must be"),
        ('method = "helmert2d"\nbase = "EPSG:4548"\ntx = 0.0\nty = 0.0\nrotation = 1.0', "MY_CITY_BAD"),
        ('method = "helmert2d"\nbase = "EPSG:4548"\ntx = 0.0', "MY_CITY_BAD"),
        ('method = "bursa_wolf"\nsource = "EPSG:4548"\ntx = 0.0\nty = 0.0\ntz = 0.0', "MY_CITY_BAD"),
    ],
    ids=["unknown-method", "no-method", "unknown-key", "missing-key", "bursa-wolf-missing-keys"],
)
def test_load_file_refuses_bad_systems(tmp_path: Path, body: str, match: str) -> None:
    path = _write(tmp_path, f"[systems.MY_CITY_BAD]\n{body}\n")
    with pytest.raises(CRSError, match=match):
        load_file(path)
    assert find_local("MY_CITY_BAD") is None


def test_load_file_refuses_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(CRSError, match="not valid TOML"):
        load_file(_write(tmp_path, "[systems.MY_CITY_TOML\nmethod = "))


def test_load_file_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CRSError, match="does not exist"):
        load_file(tmp_path / "absent.toml")


def test_load_file_with_no_systems_registers_nothing(tmp_path: Path) -> None:
    before = dict(localcrs._SYSTEMS)
    assert load_file(_write(tmp_path, "# nothing configured\n")) == []
    assert localcrs._SYSTEMS == before
