"""EPANET reader on the real example networks (PROVENANCE §5) and on small hand-written files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from cim.errors import InvalidInputError
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS
from converters.network.epanet import junction_feature, read_epanet

pytest.importorskip("wntr")

DATA = Path(__file__).parents[3].parent / "shared" / "data" / "water_network"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared model data not present at {DATA}")
FT = 0.3048
CRS = "EPSG:4548"


def rows(table: pa.Table, key: str) -> dict[str, dict]:
    return {r[key]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def net1():
    return read_epanet(
        DATA / "Net1.inp", crs_in=CRS, offset=(500000.0, 4000000.0, 10.0), scale=FT, cover_m=1.5
    )


@needs_data
@pytest.mark.parametrize(
    ("name", "junctions", "reservoirs", "tanks", "pipes", "pumps", "valves"),
    [
        ("Net1", 9, 1, 1, 12, 1, 0),
        ("Net2", 35, 0, 1, 40, 0, 0),
        ("Net3", 92, 2, 3, 117, 2, 0),
        ("ky4", 959, 1, 4, 1156, 2, 0),
        ("Net6", 3323, 1, 32, 3829, 61, 2),
    ],
)
def test_counts_match_provenance(name, junctions, reservoirs, tanks, pipes, pumps, valves):
    t = read_epanet(DATA / f"{name}.inp", crs_in=CRS)
    assert t.points.num_rows == junctions + reservoirs + tanks
    assert t.lines.num_rows == pipes + pumps + valves
    layers = t.points.column("_layer").to_pylist() + t.lines.column("_layer").to_pylist()
    assert [layers.count(s) for s in ("JUNCTIONS", "RESERVOIRS", "TANKS", "PIPES", "PUMPS", "VALVES")] == [
        junctions,
        reservoirs,
        tanks,
        pipes,
        pumps,
        valves,
    ]
    assert t.meta["counts"]["pipes"] == pipes
    # every line end is a delivered point, every point has coordinates
    ids = set(t.points.column("point_id").to_pylist())
    assert set(t.lines.column("start_id").to_pylist()) | set(t.lines.column("end_id").to_pylist()) <= ids
    assert None not in t.points.column("x").to_pylist()


@needs_data
def test_schema_is_the_staging_contract(net1):
    for table, cols in ((net1.points, RAW_POINT_COLUMNS), (net1.lines, RAW_LINE_COLUMNS)):
        assert tuple(table.column_names) == cols
        for f in table.schema:
            assert f.type == (pa.int64() if f.name == "_row" else pa.string()), f.name
    assert net1.source_kind == "model"
    assert net1.crs_in == CRS
    assert net1.meta["units"]["flow"] == "GPM" and net1.meta["units"]["system"] == "US"
    assert net1.meta["title"].startswith("EPANET Example Network 1")
    assert set(net1.points.column("_category").to_pylist()) == {"JP"}
    assert set(net1.lines.column("category").to_pylist()) == {"JS"}


@needs_data
def test_axes_scale_and_offset(net1):
    j10 = rows(net1.points, "point_id")["10"]  # COORDINATES: 10  20.00  70.00
    assert float(j10["x"]) == pytest.approx(4000000.0 + 70.0 * FT)  # raw x = northing from model y
    assert float(j10["y"]) == pytest.approx(500000.0 + 20.0 * FT)  # raw y = easting from model x


@needs_data
def test_heights_feet_to_metres_and_pressure_top_convention(net1):
    pts = rows(net1.points, "point_id")
    # junction 10: Elev 710 ft; + 10 m offset + 1.5 m cover
    assert float(pts["10"]["ground_h"]) == pytest.approx(710 * FT + 10.0 + 1.5, abs=1e-3)
    assert float(pts["9"]["ground_h"]) == pytest.approx(800 * FT + 10.0 + 1.5, abs=1e-3)  # reservoir head
    assert float(pts["2"]["ground_h"]) == pytest.approx(850 * FT + 10.0 + 1.5, abs=1e-3)  # tank bottom
    lns = rows(net1.lines, "line_id")
    pipe = lns["10"]  # 10 -> 11, 18 in
    assert (pipe["start_id"], pipe["end_id"]) == ("10", "11")
    assert float(pipe["start_h"]) == pytest.approx(710 * FT + 10.0, abs=1e-3)  # pipe top = ground - cover
    assert float(pipe["start_depth"]) == 1.5 and float(pipe["end_depth"]) == 1.5
    for ln in net1.lines.to_pylist():
        assert float(pts[ln["start_id"]]["ground_h"]) - float(ln["start_depth"]) == pytest.approx(
            float(ln["start_h"]), abs=2e-3
        )


@needs_data
def test_diameters_inches_to_mm_rounded_to_tenth(net1):
    lns = rows(net1.lines, "line_id")
    assert lns["22"]["size"] == "304.8"  # 12 in
    assert lns["10"]["size"] == "457.2"  # 18 in
    assert lns["31"]["size"] == "152.4"  # 6 in
    assert json.loads(lns["10"]["_extra"])["length_m"] == pytest.approx(10530 * FT, abs=1e-3)
    assert json.loads(lns["10"]["_extra"])["roughness"] == 100.0


@needs_data
def test_features_appurtenances_and_rows(net1):
    pts = rows(net1.points, "point_id")
    assert pts["10"]["feature"] == "直线点"  # pump 9 + pipe 10
    assert pts["11"]["feature"] == "三通"
    assert pts["12"]["feature"] == "四通"
    assert (pts["9"]["appurtenance"], pts["9"]["feature"]) == ("水源", None)
    assert (pts["2"]["appurtenance"], pts["2"]["feature"]) == ("水池", None)
    assert pts["10"]["code"] is None and pts["10"]["map_no"] == "10"
    assert (pts["10"]["_layer"], pts["10"]["_row"]) == ("JUNCTIONS", 1)
    assert (pts["32"]["_layer"], pts["32"]["_row"]) == ("JUNCTIONS", 9)
    assert (pts["2"]["_layer"], pts["2"]["_row"]) == ("TANKS", 1)


def test_junction_feature_by_degree():
    assert [junction_feature(d) for d in range(7)] == [
        None,
        "预留口",
        "直线点",
        "三通",
        "四通",
        "多通",
        "多通",
    ]


@needs_data
def test_pump_takes_connected_pipe_size(net1):
    pump = rows(net1.lines, "line_id")["9"]
    assert pump["_layer"] == "PUMPS" and pump["usage"] == "pump"
    assert pump["size"] == "457.2"  # pipe 10 at node 10
    assert json.loads(pump["_extra"])["pump_type"] == "HEAD"


@needs_data
def test_closed_pipe_keeps_status_in_extra():
    t = read_epanet(DATA / "Net3.inp", crs_in=CRS)
    lns = rows(t.lines, "line_id")
    assert json.loads(lns["330"]["_extra"])["initial_status"] == "Closed"
    assert lns["330"]["status"] == "0"
    assert json.loads(lns["101"]["_extra"])["initial_status"] == "Open"


@needs_data
def test_net6_valves_and_check_valve():
    t = read_epanet(DATA / "Net6.inp", crs_in=CRS, subtype="SS")
    usage = t.lines.column("usage").to_pylist()
    assert usage.count("valve:PRV") == 2 and usage.count("pump") == 61
    cv = [r["line_id"] for r in t.lines.to_pylist() if json.loads(r["_extra"]).get("check_valve")]
    assert cv == ["LINK-1828"]
    assert set(t.lines.column("_category").to_pylist()) == {"SS"}


SI_NET = """[TITLE]
Tiny SI net

[JUNCTIONS]
;ID  Elev  Demand
 A   12.5  1
 B   11.0  1
 C   10.0  1

[RESERVOIRS]
 R   30

[PIPES]
;ID  N1  N2  Length  Diam  Rough  MLoss  Status
 P1  R   A   100     300   100    0      Open
 P2  A   B   50      200   100    0      Open
 P3  B   C   50      150   100    0      Closed

[OPTIONS]
 Units  LPS

[COORDINATES]
 A  1.0  2.0
 B  3.0  4.0
 R  0.0  0.0

[END]
"""


def test_si_units_missing_coordinates_and_subtype(tmp_path):
    p = tmp_path / "tiny.inp"
    p.write_text(SI_NET)
    t = read_epanet(p, crs_in=CRS, cover_m=0.8)
    lns = rows(t.lines, "line_id")
    assert [lns[k]["size"] for k in ("P1", "P2", "P3")] == ["300", "200", "150"]
    pts = rows(t.points, "point_id")
    assert float(pts["A"]["ground_h"]) == pytest.approx(13.3)
    assert float(pts["R"]["ground_h"]) == pytest.approx(30.8)
    assert pts["C"]["x"] is None and pts["C"]["feature"] == "预留口"
    assert t.meta["nodes_without_coordinates"] == ["C"]
    assert t.meta["units"]["system"] == "SI"
    assert json.loads(lns["P3"]["_extra"])["initial_status"] == "Closed"
    with pytest.raises(InvalidInputError, match="subtype"):
        read_epanet(p, crs_in=CRS, subtype="YS")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (" B   11.0  1", " B   eleven  1", "JUNCTIONS.Elevation"),
        (" P2  A   B   50 ", " P2  A   X   50 ", "PIPES.Node2"),
        (" P3  B   C   50      150", " P3  B   C   50      wide", "PIPES.Diameter"),
        (" B  3.0  4.0", " Q  3.0  4.0", "COORDINATES.Node"),
        (" P1  R   A   100     300   100    0      Open", " P1  R   A   100", "PIPES.Diameter"),
    ],
)
def test_malformed_file_names_line_and_field(tmp_path, old, new, field):
    assert SI_NET.count(old) == 1
    text = SI_NET.replace(old, new)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if ln.startswith(new))
    p = tmp_path / "broken.inp"
    p.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        read_epanet(p, crs_in=CRS)
    err = info.value
    assert (err.file, err.row, err.field) == ("broken.inp", line, field)
    assert f"line {line}" in str(err)


def test_missing_section_and_file(tmp_path):
    p = tmp_path / "nopipes.inp"
    p.write_text(SI_NET.split("[PIPES]")[0])
    with pytest.raises(InvalidInputError, match=r"\[PIPES\] is missing"):
        read_epanet(p, crs_in=CRS)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_epanet(tmp_path / "absent.inp", crs_in=CRS)


def test_bad_parameters(tmp_path):
    p = tmp_path / "tiny.inp"
    p.write_text(SI_NET)
    with pytest.raises(InvalidInputError, match="scale"):
        read_epanet(p, crs_in=CRS, scale=0)
    with pytest.raises(InvalidInputError, match="cover_m"):
        read_epanet(p, crs_in=CRS, cover_m=-1)
    with pytest.raises(InvalidInputError):
        read_epanet(p, crs_in="EPSG:999999")
