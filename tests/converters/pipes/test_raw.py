"""Tests for converters.pipes.raw: delivered tables to the raw staging contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cim.errors import InvalidInputError, MissingColumnsError
from cim.pipes.fields import default_mapping, load_mapping
from cim.pipes.staging import RAW_LINE_COLUMNS, RAW_POINT_COLUMNS
from converters.pipes.raw import to_raw
from converters.pipes.tables import SourceTable, read_tables


def _csv(tmp_path: Path, name: str, text: str) -> SourceTable:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    (src,) = read_tables(path)
    return src


def _source(columns: dict[str, list[str | None]], *, layer: str = "JSPOINT", point_xy=None) -> SourceTable:
    n = len(next(iter(columns.values()))) if columns else len(point_xy[0])
    return SourceTable(
        file="f.csv",
        layer=layer,
        columns=list(columns),
        table=pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
        if columns
        else pa.table({}),
        rows=pa.array(np.arange(2, n + 2), pa.int64()),
        point_xy=point_xy,
    )


def _check_contract(raw: pa.Table, names: tuple[str, ...]) -> None:
    assert tuple(raw.column_names) == names
    for f in raw.schema:
        assert f.type == (pa.int64() if f.name == "_row" else pa.string()), f.name


def test_chinese_point_table(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "JSPOINT.csv",
        "物探点号,图上点号,X,Y,地面高程,井深,自定义\nJS1,1,3379503.125,501548.25,12.5,abc,\nJS2,2,3379510,501560,12.75,1.2,\n",
    )
    raw = to_raw(src, "point", default_mapping())
    _check_contract(raw, RAW_POINT_COLUMNS)
    first = raw.to_pylist()[0]
    assert first["_file"] == str(tmp_path / "JSPOINT.csv")
    assert first["_layer"] == "JSPOINT"
    assert first["_category"] == "JS"
    assert raw.column("_row").to_pylist() == [2, 3]
    assert raw.column("point_id").to_pylist() == ["JS1", "JS2"]
    assert raw.column("map_no").to_pylist() == ["1", "2"]
    assert raw.column("x").to_pylist() == ["3379503.125", "3379510"]
    assert raw.column("y").to_pylist() == ["501548.25", "501560"]
    assert raw.column("well_depth").to_pylist() == ["abc", "1.2"]
    assert raw.column("road").null_count == 2
    assert raw.column("_extra").to_pylist() == [None, None]


def test_english_line_codes(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "YS_LINE.csv",
        "S_POINT,E_POINT,S_DEEP,E_DEEP,D_S,MATERIAL,OWNER\nY1,Y2,1.2,1.35,600,砼,市排水公司\n",
    )
    raw = to_raw(src, "line", default_mapping())
    _check_contract(raw, RAW_LINE_COLUMNS)
    row = raw.to_pylist()[0]
    assert row["_category"] == "YS"
    assert (row["start_id"], row["end_id"], row["start_depth"], row["end_depth"]) == (
        "Y1",
        "Y2",
        "1.2",
        "1.35",
    )
    assert (row["size"], row["material"], row["owner"]) == ("600", "砼", "市排水公司")
    assert row["_extra"] is None


def test_mapping_file_adds_city_names(tmp_path: Path) -> None:
    mapping_path = tmp_path / "city.toml"
    mapping_path.write_text(
        '[points]\n"探查点号" = "point_id"\n"北坐标值" = "x"\n"东坐标值" = "y"\n', encoding="utf-8"
    )
    src = _csv(tmp_path, "点表.csv", "探查点号,北坐标值,东坐标值\nP1,3379503,501548\n")
    with pytest.raises(MissingColumnsError):
        to_raw(src, "point", default_mapping())
    raw = to_raw(src, "point", load_mapping(mapping_path))
    assert raw.select(["point_id", "x", "y"]).to_pylist() == [
        {"point_id": "P1", "x": "3379503", "y": "501548"}
    ]


def test_unmapped_columns_go_to_extra_as_json() -> None:
    src = _source(
        {
            "物探点号": ["J1", "J2", "J3"],
            "X": ["1", "2", "3"],
            "Y": ["4", "5", "6"],
            "监理": ['说"好"', None, None],
            "路径": ["C:\\a\nb\tc\x01", "x", None],
            "空列": [None, None, None],
            "备注.1": [None, "y", None],
        }
    )
    raw = to_raw(src, "point", default_mapping())
    extra = raw.column("_extra").to_pylist()
    assert json.loads(extra[0]) == {"监理": '说"好"', "路径": "C:\\a\nb\tc\x01"}
    assert list(json.loads(extra[1])) == ["路径", "备注.1"]
    assert json.loads(extra[1]) == {"路径": "x", "备注.1": "y"}
    assert extra[2] is None
    assert "空列" not in extra[0]


def test_missing_canonical_columns_are_null() -> None:
    raw = to_raw(_source({"物探点号": ["J1"], "X": ["1"], "Y": ["2"]}), "point", default_mapping())
    absent = [
        c
        for c in RAW_POINT_COLUMNS
        if c not in ("_file", "_layer", "_row", "_category", "point_id", "x", "y")
    ]
    assert all(raw.column(c).null_count == 1 for c in absent)


def test_axis_order_en_swaps_x_and_y() -> None:
    src = _source({"物探点号": ["J1"], "X": ["501548.25"], "Y": ["3379503.125"]})
    ne = to_raw(src, "point", default_mapping())
    en = to_raw(src, "point", default_mapping(), axis_order="en")
    assert (ne.column("x")[0].as_py(), ne.column("y")[0].as_py()) == ("501548.25", "3379503.125")
    assert (en.column("x")[0].as_py(), en.column("y")[0].as_py()) == ("3379503.125", "501548.25")


def test_bad_kind_or_axis_order() -> None:
    src = _source({"物探点号": ["J1"], "X": ["1"], "Y": ["2"]})
    with pytest.raises(InvalidInputError, match="axis order"):
        to_raw(src, "point", default_mapping(), axis_order="xy")
    with pytest.raises(InvalidInputError, match="kind"):
        to_raw(src, "polygon", default_mapping())


def test_point_geometry_fills_x_northing_and_y_easting(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    shapely = pytest.importorskip("shapely")
    path = tmp_path / "survey.gpkg"
    geoms = shapely.to_wkb(shapely.points([501548.123456789, 501560.0], [3379503.987654321, np.nan]))
    table = pa.table({"EXP_NO": ["J1", "J2"], "geometry": pa.array(geoms, pa.binary())})
    pyogrio.write_arrow(
        table, path, layer="GDPOINT", geometry_name="geometry", geometry_type="Point", crs="EPSG:4547"
    )
    (src,) = read_tables(path)
    raw = to_raw(src, "point", default_mapping(), axis_order="en")
    assert raw.column("_category").to_pylist() == ["GD", "GD"]
    assert raw.column("x").to_pylist() == ["3379503.987654321", None]
    assert raw.column("y").to_pylist() == ["501548.123456789", "501560"]
    assert raw.column("_row").to_pylist() == [1, 2]


def test_geometry_used_when_xy_columns_are_empty() -> None:
    src = _source(
        {"物探点号": ["J1"], "X": [None], "Y": [None]},
        point_xy=(np.array([501548.5]), np.array([3379503.25])),
    )
    raw = to_raw(src, "point", default_mapping())
    assert (raw.column("x")[0].as_py(), raw.column("y")[0].as_py()) == ("3379503.25", "501548.5")


def test_xy_columns_win_over_geometry() -> None:
    src = _source(
        {"物探点号": ["J1"], "X": ["1"], "Y": ["2"]},
        point_xy=(np.array([501548.5]), np.array([3379503.25])),
    )
    raw = to_raw(src, "point", default_mapping())
    assert (raw.column("x")[0].as_py(), raw.column("y")[0].as_py()) == ("1", "2")


def test_missing_point_columns_name_labels_and_found_columns() -> None:
    src = _source({"点名": ["J1"], "X": ["1"]})
    with pytest.raises(MissingColumnsError) as err:
        to_raw(src, "point", default_mapping())
    message = str(err.value)
    assert err.value.file == "f.csv"
    assert "JSPOINT" in message
    assert "物探点号 (point_id)" in message and "(y)" in message
    assert "(x)" not in message
    assert "点名, X" in message


def test_missing_line_columns() -> None:
    src = _source({"起点点号": ["J1"], "管径": ["300"]}, layer="JSLINE")
    with pytest.raises(MissingColumnsError, match=r"终点点号 \(end_id\)") as err:
        to_raw(src, "line", default_mapping())
    assert "起点点号 (start_id)" not in str(err.value)


def test_row_numbers_follow_source(tmp_path: Path) -> None:
    src = _csv(tmp_path, "JSLINE.csv", "起点点号,终点点号\nJ1,J2\n\n,\nJ2,J3\n")
    raw = to_raw(src, "line", default_mapping())
    assert raw.column("_row").to_pylist() == [2, 5]
    assert raw.column("end_id").to_pylist() == ["J2", "J3"]
