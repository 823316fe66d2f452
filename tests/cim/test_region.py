"""Tests for cim.region: region membership and the diagnosis of misplaced coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from cim.crs import transform_xy
from cim.region import Region, diagnose
from cim.settings import SHANDONG_BBOX

SHANDONG = Region("Shandong", SHANDONG_BBOX)

# Jinan (117.0 E, 36.65 N) in EPSG:4548, domain brief §4.3
JINAN_E, JINAN_N = 500000.0, 4057669.9


def _grid(lon: float, lat: float, crs: str) -> tuple[float, float]:
    x, y = transform_xy(np.array([lon]), np.array([lat]), "EPSG:4490", crs)
    return float(x[0]), float(y[0])


def test_contains_accepts_jinan_in_every_form() -> None:
    assert SHANDONG.contains(np.array([JINAN_E]), np.array([JINAN_N]), "EPSG:4548").tolist() == [True]
    assert SHANDONG.contains(np.array([39_500_000.0]), np.array([JINAN_N]), "EPSG:4527").tolist() == [True]
    assert SHANDONG.contains(np.array([117.0]), np.array([36.65]), "EPSG:4490").tolist() == [True]


def test_contains_gives_a_mask_that_is_false_for_swapped_and_nan_points() -> None:
    x = np.array([JINAN_E, JINAN_N, np.nan, JINAN_E])
    y = np.array([JINAN_N, JINAN_E, JINAN_N, np.inf])
    mask = SHANDONG.contains(x, y, "EPSG:4548")
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, False, False]


def test_contains_rejects_places_outside_the_box() -> None:
    beijing = _grid(116.39, 39.91, "EPSG:4548")
    shanghai = _grid(121.47, 31.23, "EPSG:4549")
    assert not SHANDONG.contains(np.array([beijing[0]]), np.array([beijing[1]]), "EPSG:4548")[0]
    assert not SHANDONG.contains(np.array([shanghai[0]]), np.array([shanghai[1]]), "EPSG:4549")[0]


def test_contains_lonlat_includes_the_box_edges() -> None:
    w, s, e, n = SHANDONG_BBOX
    mask = SHANDONG.contains_lonlat(np.array([w, e, w - 0.01, e + 0.01]), np.array([s, n, s, n]))
    assert mask.tolist() == [True, True, False, False]


def test_diagnose_spots_swapped_axes() -> None:
    message = diagnose(JINAN_N, JINAN_E, "EPSG:4548", SHANDONG)
    assert "swapped" in message
    assert "Shandong" in message


def test_diagnose_spots_a_zone_prefix_given_to_a_crs_without_one() -> None:
    message = diagnose(39_500_000.0, JINAN_N, "EPSG:4548", SHANDONG)
    assert "prefix" in message
    assert "EPSG:4527" in message


def test_diagnose_spots_a_missing_zone_prefix_for_a_prefixed_crs() -> None:
    message = diagnose(JINAN_E, JINAN_N, "EPSG:4527", SHANDONG)
    assert "prefix 39 is missing" in message
    assert "EPSG:4548" in message


def test_diagnose_names_the_zone_the_coordinates_fit() -> None:
    # 117.1 E: valid in EPSG:4548, and outside Shandong read as EPSG:4550 (123.1 E) or EPSG:4547 (114.1 E)
    x, y = _grid(117.1, 36.65, "EPSG:4548")
    assert not SHANDONG.contains(np.array([x]), np.array([y]), "EPSG:4550")[0]
    message = diagnose(x, y, "EPSG:4550", SHANDONG)
    assert "wrong zone" in message
    assert "EPSG:4548" in message
    assert "EPSG:4550" in message


def test_diagnose_names_the_zone_the_easting_prefix_says_when_a_prefixed_crs_disagrees() -> None:
    # Jinan with prefix 39 (EPSG:4527 coordinates) declared as EPSG:4528 (zone 40)
    message = diagnose(39_500_000.0, JINAN_N, "EPSG:4528", SHANDONG)
    assert "EPSG:4527" in message


def test_diagnose_spots_degrees_given_to_a_projected_crs() -> None:
    message = diagnose(117.0, 36.65, "EPSG:4548", SHANDONG)
    assert "degrees" in message
    assert "EPSG:4490" in message


@pytest.mark.parametrize(("x", "y"), [(np.nan, JINAN_N), (JINAN_E, np.nan), (np.inf, JINAN_N)])
def test_diagnose_says_a_nan_is_not_a_number(x: float, y: float) -> None:
    assert diagnose(x, y, "EPSG:4548", SHANDONG) == "coordinate is not a number"


def test_diagnose_falls_back_to_the_position_when_no_mistake_fits() -> None:
    x, y = _grid(116.39, 39.91, "EPSG:4548")  # Beijing: outside, and no simple mistake puts it inside
    message = diagnose(x, y, "EPSG:4548", SHANDONG)
    assert "outside Shandong" in message
    assert "lon 116.3900" in message and "lat 39.9100" in message
