"""Cross-sections over the sample district: which pipes a line cuts, where, how deep; charts; input errors."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from cim.analysis.common import Frame
from cim.analysis.sections import MAX_LINE_M, CrossSection, cross_section, size_text
from cim.crs import transform_xy
from cim.errors import InvalidInputError, OutOfRegionError
from cim.store import DuckDBStore

#: Across 历山路 (a north–south street, pipes 501984–502016 E), between manholes; EPSG:4548.
STREET = LineString([(501970.0, 4058070.0), (502030.0, 4058070.0)])


def stored(district: DuckDBStore) -> dict[str, dict[str, Any]]:
    """Current segments read straight from the store (not through the analysis)."""
    cur = district.read()
    rows = cur.execute(
        """SELECT feature_id, kind, start_depth, end_depth, coalesce(height_mm, diameter_mm) / 1000 AS h,
                  ST_AsText(ST_Force2D(geom)) AS wkt
           FROM pipe_segments WHERE version_to IS NULL""").fetchall()
    return {r[0]: {"kind": r[1], "start_depth": r[2], "end_depth": r[3], "h": r[4], "geom": shapely.from_wkt(r[5])}
            for r in rows}


def expected_ids(segments: dict[str, dict[str, Any]], line: LineString) -> set[str]:
    return {fid for fid, s in segments.items() if s["geom"].intersects(line)}


@pytest.fixture(scope="module")
def street(district: DuckDBStore, frame: Frame) -> CrossSection:
    return cross_section(district, frame, line=STREET.wkt, crs="EPSG:4548")


def test_section_cuts_exactly_the_pipes_along_the_street(district: DuckDBStore, street: CrossSection) -> None:
    segments = stored(district)
    want = expected_ids(segments, STREET)
    assert len(want) >= 6  # every utility of the street
    assert {c.feature_id for c in street.crossings} == want
    assert {c.category for c in street.crossings} >= {"JS", "PS", "RQ", "RL", "DL", "TX"}
    for c in street.crossings:
        hit = segments[c.feature_id]["geom"].intersection(STREET)
        assert c.station == pytest.approx(STREET.project(hit), abs=1e-6)
        assert c.angle_deg == pytest.approx(90.0, abs=1.0)  # pipes run north–south, the line east–west
        assert c.bottom < c.z < c.top and c.top - c.bottom == pytest.approx(c.height_m)


def test_stations_increase_along_the_line(street: CrossSection) -> None:
    stations = [c.station for c in street.crossings]
    assert stations == sorted(stations) and stations[0] > 0 and stations[-1] < STREET.length
    assert [s.a for s in street.spacings] == [c.feature_id for c in street.crossings[:-1]]
    a, b = street.crossings[0], street.crossings[1]
    assert street.spacings[0].horizontal_m == pytest.approx(b.station - a.station - a.width_m / 2 - b.width_m / 2,
                                                            abs=1e-3)
    np.testing.assert_allclose(np.diff(street.stations), 1.0, atol=0.02)  # ground every metre
    assert np.isfinite(street.ground_h).sum() > 50


def test_depths_agree_with_recorded_depths_at_the_ends(district: DuckDBStore, frame: Frame) -> None:
    segments = stored(district)
    for fid in ("JS21-JS22", "YS21-YS22", "WS21-WS22", "RQ21-RQ22", "RL21-RL22", "GD21-GD22", "DH21-DH22"):
        s = segments[fid]
        (x1, y1), (x2, y2) = s["geom"].coords
        ux, uy = (x2 - x1) / s["geom"].length, (y2 - y1) / s["geom"].length
        for end, at in (("start_depth", 0.3), ("end_depth", s["geom"].length - 0.3)):
            cx, cy = x1 + ux * at, y1 + uy * at  # a 2 m line across the pipe, 0.3 m from its end
            line = LineString([(cx - uy, cy + ux), (cx + uy, cy - ux)])
            sec = cross_section(district, frame, line=line.wkt, crs="EPSG:4548")
            assert {c.feature_id for c in sec.crossings} == expected_ids(segments, line)
            c = next(c for c in sec.crossings if c.feature_id == fid)
            assert c.station == pytest.approx(1.0, abs=1e-6)
            # recorded depth: to the invert for gravity pipes, to the top otherwise (domain brief §2.6)
            want = s[end] - (s["h"] if s["kind"] == "gravity" else 0.0)
            assert c.depth_top == pytest.approx(want, abs=0.03), (fid, end)


def test_line_in_lonlat_gives_the_same_section(district: DuckDBStore, frame: Frame,
                                               street: CrossSection) -> None:
    lon, lat = transform_xy(*np.array(STREET.coords).T, "EPSG:4548", "EPSG:4490")
    geojson = {"type": "LineString", "coordinates": [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]}
    sec = cross_section(district, frame, line=geojson)
    assert [c.feature_id for c in sec.crossings] == [c.feature_id for c in street.crossings]
    np.testing.assert_allclose([c.station for c in sec.crossings], [c.station for c in street.crossings], atol=0.01)


def test_wrong_crs_and_bad_lines_are_refused(district: DuckDBStore, frame: Frame) -> None:
    metres = {"type": "LineString", "coordinates": list(STREET.coords)}
    with pytest.raises(OutOfRegionError):
        cross_section(district, frame, line=metres)  # metres given as CRS84 lon/lat
    with pytest.raises(OutOfRegionError):
        cross_section(district, frame, line=STREET.wkt, crs="EPSG:4527")  # zone-prefixed CRS, no prefix
    with pytest.raises(InvalidInputError, match="at least 2"):
        cross_section(district, frame, line={"type": "LineString", "coordinates": [[501970.0, 4058070.0]]},
                      crs="EPSG:4548")
    long = LineString([(501000.0, 4058070.0), (501000.0 + MAX_LINE_M + 10, 4058070.0)])
    with pytest.raises(InvalidInputError, match="limited"):
        cross_section(district, frame, line=long.wkt, crs="EPSG:4548")
    with pytest.raises(InvalidInputError, match="LineString"):
        cross_section(district, frame, line=STREET.buffer(1).wkt, crs="EPSG:4548")


def test_section_outputs(street: CrossSection) -> None:
    d = street.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["summary"]["crossings"] == len(street.crossings)
    assert d["crossings"][0]["size"] in ("DN300", "DN150", "DN400", "400×300", "600×400", "DN200")
    gj = street.to_geojson()
    json.dumps(gj, allow_nan=False)
    roles = [f["properties"]["role"] for f in gj["features"]]
    assert roles.count("crossing") == len(street.crossings) and "section_line" in roles and "ground_profile" in roles
    crossing = next(f for f in gj["features"] if f["properties"]["role"] == "crossing")
    assert crossing["properties"]["dataset"] == "jinan_district" and crossing["properties"]["category"]
    lon, lat, h = crossing["geometry"]["coordinates"]
    assert 116.5 < lon < 117.5 and 36 < lat < 37 and h < 80  # lon/lat, ellipsoidal height of a buried pipe

    svg = street.svg()
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter()}
    assert {f"pipe-{c.feature_id}" for c in street.crossings} <= ids
    assert "<!DOCTYPE" not in svg and "<image" not in svg
    assert street.png().startswith(b"\x89PNG\r\n\x1a\n")


def test_size_text() -> None:
    assert size_text("circular", 300.0, None, None) == "DN300"
    assert size_text("rect", None, 800.0, 600.0) == "800×600"
    assert size_text(None, math.nan, None, None) is None
