"""Tests for pipe cross-section parsing (管径 / 断面尺寸 text)."""

from __future__ import annotations

import pytest

from cim.pipes.sections import CIRCULAR, RECT, Section, parse_size, section_height_mm, section_width_mm


@pytest.mark.parametrize(
    "text",
    ["300", "300.0", "DN300", "dn300", "Φ300", "φ300", "ϕ300", "Ø300", "∅300", "D300", "d=300", "DN 300",
     " 300 ", "300mm", "ＤＮ３００", "0.3", "0.3m", "30cm", "Φ300×8"],
)
def test_circular_sizes_in_every_delivered_spelling_give_a_300_mm_diameter(text: str) -> None:
    assert parse_size(text) == Section(CIRCULAR, diameter_mm=300.0)


def test_de_prefix_is_read_as_an_outer_diameter() -> None:
    assert parse_size("De110") == Section(CIRCULAR, diameter_mm=110.0)


@pytest.mark.parametrize(
    "text",
    ["800X600", "800x600", "800×600", "800*600", "800＊600", "800 × 600", "B×H=800×600", "b*h=800*600",
     "BXH:800X600", "0.8×0.6", "0.8X0.6m", "800x600mm", "80×60cm"],
)
def test_rectangular_sizes_are_width_times_height_in_millimetres(text: str) -> None:
    assert parse_size(text) == Section(RECT, width_mm=800.0, height_mm=600.0)


def test_large_box_culverts_stay_in_millimetres() -> None:
    assert parse_size("2000X1500") == Section(RECT, width_mm=2000.0, height_mm=1500.0)


def test_small_values_in_both_dimensions_are_metres() -> None:
    assert parse_size("2×1.5") == Section(RECT, width_mm=2000.0, height_mm=1500.0)


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "0", "-300", "abc", "4孔", "3×Φ100", "2×300", "DN300-DN200", "300/400", "800×600×400", "Φ300×300"],
)
def test_empty_duct_bank_or_unreadable_sizes_give_none(text: str | None) -> None:
    assert parse_size(text) is None


def test_parse_size_is_cached() -> None:
    parse_size.cache_clear()
    parse_size("DN500")
    parse_size("DN500")
    assert parse_size.cache_info().hits == 1


@pytest.mark.parametrize(
    ("text", "height", "width"),
    [("DN300", 300.0, 300.0), ("800×600", 600.0, 800.0), (None, None, None)],
)
def test_height_and_width_come_from_the_diameter_or_the_rectangle(
    text: str | None, height: float | None, width: float | None
) -> None:
    section = parse_size(text)
    assert section_height_mm(section) == height
    assert section_width_mm(section) == width
