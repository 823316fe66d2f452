"""Opening LAS/LAZ files: header facts, CRS and height resolution, and a clear refusal for every bad file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pc_samples import sample

from cim.errors import CRSError, CRSMissingError, InvalidInputError
from converters.pointcloud.las import gps_date, open_las, resolve_crs


def test_las_and_laz_of_the_same_points_give_the_same_facts() -> None:
    las, laz = open_las(sample("autzen_trim.las")), open_las(sample("autzen_trim.laz"))
    assert not las.compressed and laz.compressed
    for f in ("version", "point_format", "point_count", "scales", "offsets", "mins", "maxs", "dimensions",
              "creation_date"):
        assert getattr(las, f) == getattr(laz, f), f
    assert las.point_count == 110_000 and las.version == "1.2" and las.point_format == 3 and las.has_rgb


def test_international_foot_lcc_takes_z_in_feet() -> None:
    crs = resolve_crs(open_las(sample("autzen_trim.laz")))
    assert crs.horizontal.axis_info[0].unit_name == "foot"
    assert crs.z_to_metres == pytest.approx(0.3048) and not crs.ellipsoidal
    assert crs.units_per_metre == pytest.approx(1 / 0.3048)
    assert "horizontal unit" in crs.notes[0]


def test_compound_crs_with_us_survey_feet_heights() -> None:
    facts = open_las(sample("simple.copc.laz"))
    assert facts.copc and facts.version == "1.4" and facts.point_format == 7
    crs = resolve_crs(facts)
    assert crs.crs.is_compound and crs.horizontal.name == "NAD83 / Oregon LCC (m)"
    assert crs.vertical_name == "NAVD88 height (ftUS)"
    assert crs.z_to_metres == pytest.approx(1200 / 3937)  # the US survey foot
    assert crs.units_per_metre == 1.0


def test_geographic_and_epsg_crs() -> None:
    dd = resolve_crs(open_las(sample("autzen-dd_epsg4326.las")))
    assert dd.horizontal.to_epsg() == 4326 and dd.z_to_metres == 1.0 and dd.units_per_metre < 1e-4
    utm = resolve_crs(open_las(sample("autzen-utm_epsg26910.las")))
    assert utm.horizontal.to_epsg() == 26910


def test_las14_extra_bytes_are_listed() -> None:
    facts = open_las(sample("benchmark/lambert93_epsg2154_extra_bytes_697k.laz"))
    assert facts.point_format == 8 and facts.point_count == 697_721
    assert facts.extra_dimensions == ("Deviation", "ExtraBytes")
    assert resolve_crs(facts).horizontal.to_epsg() == 2154


def test_a_file_without_crs_is_refused_unless_one_is_given() -> None:
    facts = open_las(sample("ripple_no_crs.las"))
    with pytest.raises(CRSMissingError, match="ripple_no_crs.las carries no CRS.*--crs"):
        resolve_crs(facts)
    given = resolve_crs(facts, "EPSG:4548+5737")
    assert given.source == "given" and given.vertical_name == "Yellow Sea 1985 height"
    with pytest.raises(CRSError, match="unknown CRS"):
        resolve_crs(facts, "EPSG:999999")
    with pytest.raises(CRSError, match="not a geographic or projected"):
        resolve_crs(facts, "EPSG:4978")


def test_a_given_crs_overrides_the_file_and_says_so() -> None:
    crs = resolve_crs(open_las(sample("autzen-utm_epsg26910.las")), "EPSG:32610")
    assert crs.source == "given" and "the file says" in crs.notes[0]


def test_gps_dates() -> None:
    assert gps_date(1e9 * 0 + 4.3e8, True) is not None
    assert gps_date(245379.4, False) is None  # GPS week time has no date


def _copy(src: Path, dst: Path, patch: dict[int, bytes] | None = None, size: int | None = None) -> Path:
    data = bytearray(src.read_bytes())
    for off, b in (patch or {}).items():
        data[off:off + len(b)] = b
    dst.write_bytes(bytes(data[:size] if size is not None else data))
    return dst


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.las", lambda s, d: _copy(s, d, size=0), "empty"),
        ("magic.las", lambda s, d: _copy(s, d, {0: b"LASX"}), "not a LAS/LAZ file"),
        ("short.las", lambda s, d: _copy(s, d, size=100), "shorter than a LAS header"),
        ("version.las", lambda s, d: _copy(s, d, {24: bytes([2, 0])}), "version 2.0 is not supported"),
        ("format.las", lambda s, d: _copy(s, d, {104: bytes([12])}), "format 12 does not exist"),
        ("format14.las", lambda s, d: _copy(s, d, {104: bytes([6])}), "needs LAS 1.4"),
        ("reclen.las", lambda s, d: _copy(s, d, {105: struct.pack("<H", 20)}), "shorter than format 3 needs"),
        ("truncated.las", lambda s, d: _copy(s, d, size=s.stat().st_size // 2), "truncated"),
        ("scale.las", lambda s, d: _copy(s, d, {131: struct.pack("<d", 0.0)}), "scale factors"),
        ("nopoints.las", lambda s, d: _copy(s, d, {107: struct.pack("<I", 0)}), "no points"),
        ("bounds.las", lambda s, d: _copy(s, d, {179: struct.pack("<d", -1e9)}), "bounds are inverted"),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(tmp_path: Path, name: str, make, message: str) -> None:
    bad = make(sample("autzen-utm_epsg26910.las"), tmp_path / name)
    with pytest.raises(InvalidInputError, match=message) as err:
        open_las(bad)
    assert name in str(err.value)


def test_a_truncated_laz_is_refused(tmp_path: Path) -> None:
    src = sample("autzen_trim.laz")
    bad = _copy(src, tmp_path / "cut.laz", size=src.stat().st_size * 2 // 3)
    with pytest.raises(InvalidInputError, match="cut.laz.*truncated"):
        open_las(bad)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        open_las(tmp_path / "nothing.las")
