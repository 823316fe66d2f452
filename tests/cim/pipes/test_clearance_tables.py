"""GB 50289-2016 tables 4.1.9 and 4.1.14: the data files parse, carry provenance, and the right cell is picked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.errors import InvalidInputError
from cim.pipes.clearance import (
    BUILDING,
    CLEARANCE_CLASS_SQL,
    HORIZONTAL_TABLE,
    VERTICAL_TABLE,
    building_cell,
    gas_pressure_class,
    horizontal_cell,
    largest_building_clearance,
    largest_pipe_clearance,
    load_horizontal_table,
    load_table,
    segment_profile,
    vertical_cell,
    vertical_class,
)
from cim.store.spatial import connect


def water(d: float | None) -> object:
    return segment_profile("JS", "JP", "ZM", d, None, "0.3MPa")


DRAIN = segment_profile("PS", "YS", "ZM", 600, None, None)


def gas(pressure: str | None, d: float = 200) -> object:
    return segment_profile("RQ", "TR", "ZM", d, None, pressure)


def test_horizontal_file_parses_with_provenance_for_every_cell() -> None:
    cells = load_horizontal_table()
    assert len(cells) >= 50
    for c in cells:
        assert c.confidence in {"H", "M", "L"}, c
        assert c.source.strip(), c
        assert c.clearance_m > 0
    header = [ln for ln in HORIZONTAL_TABLE.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
    text = "\n".join(header)
    for needle in ("GB 50289-2016", "4.1.9", "version", "H =", "M =", "L ="):
        assert needle in text


def test_vertical_file_has_provenance_and_a_version() -> None:
    for c in load_table():
        assert c.confidence in {"H", "M", "L"} and c.source.strip(), c
    header = [ln for ln in VERTICAL_TABLE.read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
    assert "version" in "\n".join(header).lower() and "4.1.14" in header[0]


def test_water_cell_depends_on_diameter() -> None:
    small, large = horizontal_cell(water(150), DRAIN), horizontal_cell(DRAIN, water(300))
    assert (small.clearance_m, small.cell.condition_a, small.confidence) == (1.0, "d<=200", "H")
    assert (large.clearance_m, large.cell.condition_a, large.confidence) == (1.5, "d>200", "H")
    assert horizontal_cell(water(200), DRAIN).clearance_m == 1.0  # d ≤ 200 includes 200


@pytest.mark.parametrize(("pressure", "expected", "cls"), [
    ("低压", 1.0, "low"), ("中压B", 1.2, "medium_b"), ("中压A", 1.2, "medium_a"),
    ("次高压B", 1.5, "sub_high_b"), ("次高压A", 2.0, "sub_high_a"),
    ("0.005MPa", 1.0, "low"), ("0.2MPa", 1.2, "medium_b"), ("0.3MPa", 1.2, "medium_a"),
    ("0.8MPa", 1.5, "sub_high_b"), ("1.6MPa", 2.0, "sub_high_a"),
])
def test_gas_classes_against_drains(pressure: str, expected: float, cls: str) -> None:
    match = horizontal_cell(DRAIN, gas(pressure))
    assert match.clearance_m == expected and match.cell.condition_b == cls and match.confidence == "H"
    assert not match.notes


def test_building_rows() -> None:
    assert building_cell(DRAIN).clearance_m == 2.5 and building_cell(DRAIN).confidence == "H"
    assert building_cell(water(150)).clearance_m == 1.0
    assert building_cell(water(300)).clearance_m == 3.0
    assert [building_cell(gas(p)).clearance_m for p in ("低压", "中压B", "中压A", "次高压B", "次高压A")] == \
        [0.7, 1.0, 1.5, 5.0, 13.5]
    assert building_cell(segment_profile("TX", "DH", "GK", None, 400, None)).clearance_m == 1.5
    assert building_cell(segment_profile("TX", "DH", "ZM", None, 400, None)).clearance_m == 1.0
    assert building_cell(segment_profile("GY", "YQ", "ZM", 150, None, "0.8MPa")) is None
    assert largest_building_clearance() == 13.5 and largest_pipe_clearance() == 2.0


def test_gas_pressure_text() -> None:
    assert gas_pressure_class("中压") == {"medium_a", "medium_b"}
    assert gas_pressure_class("中压(A)") == {"medium_a"}
    assert gas_pressure_class("ＭＰａ") is None and gas_pressure_class("") is None and gas_pressure_class(None) is None
    assert gas_pressure_class("0.4MPa") == {"medium_a"} and gas_pressure_class("0.41MPa") == {"sub_high_b"}
    assert gas_pressure_class("200kPa") == {"medium_b"} and gas_pressure_class("2.0MPa") == {"high_b"}
    assert gas_pressure_class("25") is None  # a bare number ≥ 10 has no unit we can guess


def test_assumptions_are_noted_only_when_they_matter() -> None:
    assert building_cell(gas("中压")).clearance_m == 1.5 and building_cell(gas("中压")).notes
    assert horizontal_cell(DRAIN, gas("中压")).clearance_m == 1.2
    assert not horizontal_cell(DRAIN, gas("中压")).notes  # 1.2 for both 中压 classes
    unknown = horizontal_cell(water(None), DRAIN)
    assert unknown.clearance_m == 1.5 and "diameter unknown" in unknown.notes[0]
    assert building_cell(gas(None)).clearance_m == 13.5 and building_cell(gas(None)).notes


def test_pairs_without_a_cell() -> None:
    assert horizontal_cell(DRAIN, DRAIN) is None  # 4.1.9 gives no drain/drain value
    assert horizontal_cell(DRAIN, gas("2.0MPa")) is None  # not applicable above 1.6 MPa
    assert horizontal_cell(gas("中压", 200), gas("低压", 250)).clearance_m == 0.4
    assert horizontal_cell(gas("中压", 400), gas("低压", 250)).clearance_m == 0.5
    duct, direct = (segment_profile("DL", "GD", b, None, 600, None) for b in ("GK", "ZM"))
    assert horizontal_cell(duct, duct).clearance_m == 0.1 and horizontal_cell(duct, direct).clearance_m == 0.25
    assert vertical_cell(DRAIN, DRAIN).clearance_m == 0.15
    assert vertical_cell(DRAIN, water(300)).clearance_m == 0.40
    assert vertical_cell(DRAIN, segment_profile("GY", "YQ", "ZM", 150, None, None)) is None
    assert horizontal_cell(BUILDING, BUILDING) is None


def test_vertical_class_matches_the_sql_used_by_qc() -> None:
    combos = [(c, s, b) for c in ("JS", "PS", "RL", "RQ", "DL", "TX", "QT", "GY", None)
              for s in (None, "ZS", "ZH", "YS") for b in (None, "ZM", "GK")]
    con = connect()
    con.execute("CREATE TABLE s (category VARCHAR, subtype VARCHAR, burial VARCHAR)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", combos)
    rows = con.execute(f"SELECT category, subtype, burial, {CLEARANCE_CLASS_SQL.format(s='s')} FROM s").fetchall()
    assert len(rows) == len(combos)
    for c, s, b, sql_class in rows:
        assert vertical_class(c, s, b) == sql_class, (c, s, b)


def test_a_malformed_cell_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("# test\nclass_a,condition_a,class_b,condition_b,clearance_m,confidence,source\n"
                   "water,*,drain,*,1.0,H,S7\nwater,*,gas,medium,0.5,X,memo\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="row 4"):
        load_horizontal_table(bad)
