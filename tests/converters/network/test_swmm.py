"""SWMM 5 reader on the real example models (PROVENANCE §6) and on small hand-written files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from cim.errors import InvalidInputError
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS
from converters.network.swmm import read_swmm

DATA = Path(__file__).parents[3].parent / "shared" / "data" / "sewer"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared model data not present at {DATA}")
FT = 0.3048
CRS = "EPSG:4548"


def rows(table: pa.Table, key: str) -> dict[str, dict]:
    return {r[key]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def ex1():
    return read_swmm(DATA / "swmm_Example1.inp", crs_in=CRS, offset=(500000.0, 4000000.0, 2.0), scale=FT)


@needs_data
def test_example1_counts_and_schema(ex1):
    assert ex1.points.num_rows == 14 and ex1.lines.num_rows == 13
    assert ex1.meta["counts"]["junctions"] == 13 and ex1.meta["counts"]["outfalls"] == 1
    assert ex1.meta["units"]["flow"] == "CFS" and ex1.meta["units"]["lengths_in"] == "ft"
    assert ex1.meta["title"] == "Example 1"
    for table, cols in ((ex1.points, RAW_POINT_COLUMNS), (ex1.lines, RAW_LINE_COLUMNS)):
        assert tuple(table.column_names) == cols
        for f in table.schema:
            assert f.type == (pa.int64() if f.name == "_row" else pa.string()), f.name
    assert set(ex1.points.column("category").to_pylist()) == {"PS"}
    assert set(ex1.lines.column("_category").to_pylist()) == {"YS"}
    appurt = ex1.points.column("appurtenance").to_pylist()
    assert appurt.count("检修井") == 13 and appurt.count("排放口") == 1
    assert set(ex1.points.column("feature").to_pylist()) == {None}


@needs_data
def test_site_drainage_counts():
    t = read_swmm(DATA / "swmm_site_drainage_model.inp", crs_in=CRS, subtype="WS")
    assert (t.points.num_rows, t.lines.num_rows) == (12, 11)
    assert set(t.points.column("_category").to_pylist()) == {"WS"}


@needs_data
def test_feet_to_metres_and_axes(ex1):
    pts = rows(ex1.points, "point_id")
    j9 = pts["9"]  # Elevation 1000 ft, MaxDepth 3 ft; COORDINATES 4042.110 9600.000
    assert float(j9["well_bottom_h"]) == pytest.approx(1000 * FT + 2.0, abs=1e-3)
    assert float(j9["ground_h"]) == pytest.approx(1003 * FT + 2.0, abs=1e-3)
    assert float(j9["well_depth"]) == pytest.approx(3 * FT, abs=1e-3)
    assert float(j9["x"]) == pytest.approx(4000000.0 + 9600.0 * FT, abs=1e-3)  # raw x = northing
    assert float(j9["y"]) == pytest.approx(500000.0 + 4042.11 * FT, abs=1e-3)  # raw y = easting
    assert (j9["_layer"], j9["_row"]) == ("JUNCTIONS", 1)
    assert (pts["18"]["_layer"], pts["18"]["_row"]) == ("OUTFALLS", 1)


@needs_data
def test_sizes_in_mm(ex1):
    lns = rows(ex1.lines, "line_id")
    assert lns["1"]["size"] == "457.2"  # 1.5 ft
    assert lns["4"]["size"] == "304.8"  # 1 ft = 12 in
    assert lns["7"]["size"] == "609.6"  # 2 ft
    assert json.loads(lns["1"]["_extra"])["length_m"] == pytest.approx(400 * FT)
    assert json.loads(lns["1"]["_extra"])["shape"] == "CIRCULAR"


@needs_data
def test_gravity_invert_convention_and_offsets(ex1):
    pts = rows(ex1.points, "point_id")
    lns = rows(ex1.lines, "line_id")
    c1 = lns["1"]  # 9 -> 10, no offsets: pipe inverts are the node inverts
    assert float(c1["start_h"]) == pytest.approx(1000 * FT + 2.0, abs=1e-3)
    assert float(c1["end_h"]) == pytest.approx(995 * FT + 2.0, abs=1e-3)
    c6 = lns["6"]  # 10 -> 21, OutOffset 1 ft above node 21 (990 ft)
    assert float(c6["end_h"]) == pytest.approx(991 * FT + 2.0, abs=1e-3)
    assert float(c6["end_depth"]) == pytest.approx(2 * FT, abs=1e-3)  # 3 ft deep well, 1 ft offset
    c7 = lns["7"]  # 21 -> 22, InOffset 1 ft
    assert float(c7["start_h"]) == pytest.approx(991 * FT + 2.0, abs=1e-3)
    for ln in ex1.lines.to_pylist():
        for end in ("start", "end"):
            node = pts[ln[f"{end}_id"]]
            h, depth = float(ln[f"{end}_h"]), float(ln[f"{end}_depth"])
            assert h + depth == pytest.approx(float(node["ground_h"]), abs=2e-3)
            if node["well_bottom_h"] is not None:
                assert h >= float(node["well_bottom_h"]) - 1e-6  # invert not below the well bottom
        assert ln["flow_dir"] == "start→end" and ln["burial"] == "ZM" and ln["material"] is None


@needs_data
def test_outfall_and_zero_max_depth_ground_estimates():
    t = read_swmm(DATA / "swmm_site_drainage_model.inp", crs_in=CRS)
    pts = rows(t.points, "point_id")
    # J11: 4963 ft; highest crown: C2 arrives 4 ft up with a 1 ft trapezoid -> 5 ft; + 1 m cover
    j11 = pts["J11"]
    assert float(j11["ground_h"]) == pytest.approx(4968 * FT + 1.0, abs=1e-3)
    assert "ground_estimated" in json.loads(j11["_extra"])
    # O1: 4962 ft, C11 (4.75 ft circular) ends there -> ground at its crown, no cover
    assert float(pts["O1"]["ground_h"]) == pytest.approx((4962 + 4.75) * FT, abs=1e-3)
    assert pts["O1"]["well_depth"] is None
    c2 = rows(t.lines, "line_id")["C2"]
    assert float(c2["end_h"]) == pytest.approx(4967 * FT, abs=1e-3)
    assert c2["size"] == "304.8" and json.loads(c2["_extra"])["shape"] == "TRAPEZOIDAL"


SI_MODEL = """[TITLE]
Synthetic SI model

[OPTIONS]
FLOW_UNITS           LPS
LINK_OFFSETS         ELEVATION

[JUNCTIONS]
;;Name  Elev  MaxDepth  InitDepth  SurDepth  Aponded
M1      10.0  2.5       0          0         0
M2      9.5   0         0          0         0

[OUTFALLS]
OUT1    8.0   FREE      NO

[STORAGE]
T1      9.0   3.0       0   FUNCTIONAL  1000  0  0  0  0

[DIVIDERS]
D1      9.2   C3        CUTOFF   0.5   2.0   0   0   0

[CONDUITS]
;;Name  From  To    Length  Rough  InOff  OutOff
C1      M1    M2    50      0.013  10.2   *
C2      M2    OUT1  30      0.013  9.5    8.1
C3      D1    T1    20      0.013  *      *
C4      M1    D1    20      0.013  10.0   9.2

[XSECTIONS]
C1      RECT_CLOSED  0.8   1.2   0   0   1
C2      CIRCULAR     1.0   0     0   0   1
C3      EGG          0.9   0     0   0   1
C4      CIRCULAR     0.4   0     0   0   2

[COORDINATES]
M1      100.0   200.0
M2      150.0   200.0
OUT1    180.0   200.0
T1      100.0   250.0
D1      100.0   225.0
"""


def test_si_units_elevation_offsets_and_shapes(tmp_path):
    p = tmp_path / "si.inp"
    p.write_text(SI_MODEL)
    t = read_swmm(p, crs_in=CRS, offset=(500000.0, 4000000.0, 0.0))
    assert t.meta["units"]["lengths_in"] == "m" and t.meta["units"]["link_offsets"] == "ELEVATION"
    lns = rows(t.lines, "line_id")
    assert lns["C1"]["size"] == "1200×800"  # width × height
    assert (lns["C1"]["start_h"], lns["C1"]["end_h"]) == ("10.2", "9.5")  # '*' = node invert
    assert (lns["C2"]["start_h"], lns["C2"]["end_h"]) == ("9.5", "8.1")
    assert lns["C2"]["size"] == "1000"
    assert lns["C3"]["size"] == "900" and json.loads(lns["C3"]["_extra"])["shape"] == "EGG"
    assert json.loads(lns["C4"]["_extra"])["barrels"] == 2
    pts = rows(t.points, "point_id")
    assert pts["M1"]["ground_h"] == "12.5" and pts["M1"]["well_depth"] == "2.5"
    assert pts["M2"]["ground_h"] == "11.5"  # crown 1.0 m (C2) + 1.0 m cover
    assert pts["OUT1"]["ground_h"] == "9.1"  # C2 invert 8.1 + 1.0 m
    assert (pts["T1"]["appurtenance"], pts["T1"]["ground_h"]) == ("调蓄池", "12")
    assert (pts["D1"]["appurtenance"], pts["D1"]["ground_h"]) == ("检修井", "11.2")
    assert (pts["D1"]["x"], pts["D1"]["y"]) == ("4000225", "500100")
    assert lns["C1"]["start_depth"] == "2.3"  # 12.5 - 10.2


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("M2      9.5   0 ", "M2      9,5   0 ", "JUNCTIONS.Elevation"),
        ("C2      M2    OUT1", "C2      M2    OUT9", "CONDUITS.ToNode"),
        ("C4      M1    D1    20 ", "C4      M1    D1    long ", "CONDUITS.Length"),
        ("C3      EGG          0.9", "C3      EGG          big", "XSECTIONS.Geom1"),
        ("D1      100.0   225.0", "D1      100.0   north", "COORDINATES.Y"),
        (
            "C2      CIRCULAR     1.0   0     0   0   1",
            "C9      CIRCULAR     1.0   0     0   0   1",
            "XSECTIONS.Link",
        ),
    ],
)
def test_malformed_file_names_line_and_field(tmp_path, old, new, field):
    assert SI_MODEL.count(old) == 1
    text = SI_MODEL.replace(old, new)
    p = tmp_path / "broken.inp"
    p.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        read_swmm(p, crs_in=CRS)
    err = info.value
    # a conduit without cross-section is reported at the conduit's line
    marker = "C2      M2" if field == "XSECTIONS.Link" else new
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if ln.startswith(marker))
    assert (err.file, err.row, err.field) == ("broken.inp", line, field)
    assert f"line {line}" in str(err)


@pytest.mark.parametrize("section", ["CONDUITS", "XSECTIONS", "COORDINATES"])
def test_missing_section(tmp_path, section):
    p = tmp_path / "cut.inp"
    p.write_text(SI_MODEL.replace(f"[{section}]", "[IGNORED]"))
    with pytest.raises(InvalidInputError, match=rf"\[{section}\] is missing"):
        read_swmm(p, crs_in=CRS)


def test_bad_options_and_subtype(tmp_path):
    p = tmp_path / "opts.inp"
    p.write_text(SI_MODEL.replace("LPS", "BARRELS"))
    with pytest.raises(InvalidInputError, match="FLOW_UNITS"):
        read_swmm(p, crs_in=CRS)
    p.write_text(SI_MODEL)
    with pytest.raises(InvalidInputError, match="subtype"):
        read_swmm(p, crs_in=CRS, subtype="JP")
