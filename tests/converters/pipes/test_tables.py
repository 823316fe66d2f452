"""Tests for converters.pipes.tables: reading delivered point/line tables as text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cim.errors import EncodingError, InvalidInputError, UnsupportedError
from converters.pipes.tables import SourceTable, read_tables

POINTS_CN = (
    "物探点号,X,Y,地面高程,特征,备注\nJS1,3379503.125,501548.25,12.5,三通,北门\nJS2,3379510,501560,12.75,,\n"
)


def _one(path: Path, **kwargs) -> SourceTable:
    tables = read_tables(path, **kwargs)
    assert len(tables) == 1
    return tables[0]


def _all_text(src: SourceTable) -> None:
    assert src.table.column_names == src.columns
    assert all(t == pa.string() for t in src.table.schema.types)
    assert src.rows.type == pa.int64()
    assert len(src.rows) == src.table.num_rows


def test_csv_utf8_chinese_headers(tmp_path: Path) -> None:
    path = tmp_path / "JSPOINT.csv"
    path.write_text(POINTS_CN, encoding="utf-8")
    src = _one(path)
    _all_text(src)
    assert src.file == str(path)
    assert src.layer == "JSPOINT"
    assert src.encoding == "utf-8"
    assert src.columns == ["物探点号", "X", "Y", "地面高程", "特征", "备注"]
    assert src.rows.to_pylist() == [2, 3]
    assert src.table.column("X").to_pylist() == ["3379503.125", "3379510"]
    assert src.table.column("特征").to_pylist() == ["三通", None]
    assert src.header_problems == []
    assert src.point_xy is None


def test_csv_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xef\xbb\xbf" + POINTS_CN.encode("utf-8"))
    src = _one(path)
    assert src.encoding == "utf-8-sig"
    assert src.columns[0] == "物探点号"
    assert src.table.column("物探点号").to_pylist() == ["JS1", "JS2"]


def test_csv_gbk_is_read_as_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "给水点.csv"
    path.write_bytes(POINTS_CN.encode("gbk"))
    src = _one(path)
    assert src.encoding == "gb18030"
    assert src.columns[3] == "地面高程"
    assert src.table.column("备注").to_pylist() == ["北门", None]


def test_csv_english_column_codes(tmp_path: Path) -> None:
    path = tmp_path / "YSLINE.csv"
    path.write_text("S_POINT,E_POINT,S_DEEP,E_DEEP,D_S,MATERIAL\nY1,Y2,1.2,1.35,600,砼\n", encoding="utf-8")
    src = _one(path)
    assert src.columns == ["S_POINT", "E_POINT", "S_DEEP", "E_DEEP", "D_S", "MATERIAL"]
    assert src.table.to_pylist() == [
        {"S_POINT": "Y1", "E_POINT": "Y2", "S_DEEP": "1.2", "E_DEEP": "1.35", "D_S": "600", "MATERIAL": "砼"}
    ]


def test_explicit_encoding_reads_utf16(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(POINTS_CN, encoding="utf-16")
    src = _one(path, encoding="utf-16")
    assert src.encoding == "utf-16"
    assert src.table.column("物探点号").to_pylist() == ["JS1", "JS2"]


def test_utf16_without_encoding_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(POINTS_CN, encoding="utf-16")
    with pytest.raises(EncodingError) as err:
        read_tables(path)
    assert str(path) in str(err.value)
    assert "--encoding" in str(err.value)


def test_binary_junk_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(b"a,b\n" + bytes(range(0x80, 0x100)) * 4)
    with pytest.raises(EncodingError, match="junk.csv"):
        read_tables(path)


def test_wrong_explicit_encoding_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(POINTS_CN.encode("gbk"))
    with pytest.raises(EncodingError, match="utf-8"):
        read_tables(path, encoding="utf-8")


def test_broken_row_names_line_and_field_counts(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("物探点号,X,Y\nJ1,1,2\nJ2,3,4\nJ3,5\nJ4,6,7\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as err:
        read_tables(path)
    assert err.value.row == 4
    assert err.value.file == str(path)
    assert "expected 3" in str(err.value) and "found 2" in str(err.value)


def test_broken_row_after_blank_lines_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,b,c\n1,2,3\n\n   \n4,5,6,7\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as err:
        read_tables(path)
    assert err.value.row == 5
    assert "found 4" in str(err.value)


def test_text_in_numeric_column_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("物探点号,X,地面高程\n007,abc,1.50\nJ2,3379503.1,12\n", encoding="utf-8")
    src = _one(path)
    assert src.table.column("物探点号").to_pylist() == ["007", "J2"]
    assert src.table.column("X").to_pylist() == ["abc", "3379503.1"]
    assert src.table.column("地面高程").to_pylist() == ["1.50", "12"]


def test_empty_and_whitespace_cells_are_null(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('a,b,c\n1,  ,""\n2, x ,\t\n', encoding="utf-8")
    src = _one(path)
    assert src.table.column("b").to_pylist() == [None, " x "]
    assert src.table.column("c").to_pylist() == [None, None]


def test_blank_and_empty_rows_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    text = 'a,b,c\n1,2,3\n\n,,\n4,"x\ny",6\n  \n7,8,9\n\n'
    path.write_text(text, encoding="utf-8")
    src = _one(path)
    assert src.table.column("a").to_pylist() == ["1", "4", "7"]
    assert src.table.column("b").to_pylist() == ["2", "x\ny", "8"]
    assert src.rows.to_pylist() == [2, 5, 7]


@pytest.mark.parametrize("content", [b"", b"\n\n", "物探点号,X,Y\n".encode(), "物探点号,X,Y\n,,\n".encode()])
def test_no_data_rows(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match="no data rows") as err:
        read_tables(path)
    assert err.value.file == str(path)


def test_duplicate_and_empty_headers_are_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("物探点号,备注,,备注,备注\nJ1,a,b,c,d\n", encoding="utf-8")
    src = _one(path)
    assert src.columns == ["物探点号", "备注", "column_3", "备注.1", "备注.2"]
    assert src.table.column("备注.1").to_pylist() == ["c"]
    assert len(src.header_problems) == 3
    assert any("column 3" in p for p in src.header_problems)
    assert any("'备注'" in p and "'备注.1'" in p for p in src.header_problems)


def test_tab_delimited_txt(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("物探点号\tX\tY\nJ1\t1,5\t2\n", encoding="utf-8")
    src = _one(path)
    assert src.columns == ["物探点号", "X", "Y"]
    assert src.table.column("X").to_pylist() == ["1,5"]


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(POINTS_CN, encoding="utf-8")
    size = path.stat().st_size
    with pytest.raises(InvalidInputError, match=f"{size:,} bytes.*limit of 10 bytes"):
        read_tables(path, max_bytes=10)
    assert _one(path, max_bytes=size).table.num_rows == 2


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_tables(tmp_path / "nope.csv")
    other = tmp_path / "p.dwg"
    other.write_bytes(b"x")
    with pytest.raises(UnsupportedError, match="dwg"):
        read_tables(other)


def test_xlsx_sheets_numbers_and_rows(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    points = book.active
    points.title = "JSPOINT"
    points.append(["物探点号", "X", "Y", "地面高程", "井深", "探测日期", "备注"])
    points.append(["J1", 3379503.125, 501548.0, 12.5, 300.0, dt.date(2023, 5, 1), None])
    points.append([None] * 7)
    points.append(["J2", 3379510, 501560.75, "abc", 2, dt.datetime(2023, 5, 2, 8, 30), "  "])
    lines = book.create_sheet("JSLINE")
    lines.append([])
    lines.append([])
    lines.append(["起点点号", "终点点号", "管径"])
    lines.append(["J1", "J2", 300])
    book.create_sheet("说明")
    path = tmp_path / "survey.xlsx"
    book.save(path)

    pts, lns = read_tables(path)
    _all_text(pts)
    assert (pts.layer, lns.layer) == ("JSPOINT", "JSLINE")
    assert pts.file == str(path)
    assert pts.rows.to_pylist() == [2, 4]
    assert pts.table.column("X").to_pylist() == ["3379503.125", "3379510"]
    assert pts.table.column("Y").to_pylist() == ["501548", "501560.75"]
    assert pts.table.column("井深").to_pylist() == ["300", "2"]
    assert pts.table.column("地面高程").to_pylist() == ["12.5", "abc"]
    assert pts.table.column("探测日期").to_pylist() == ["2023-05-01", "2023-05-02 08:30:00"]
    assert pts.table.column("备注").to_pylist() == [None, None]
    assert lns.columns == ["起点点号", "终点点号", "管径"]
    assert lns.rows.to_pylist() == [4]
    assert lns.table.column("管径").to_pylist() == ["300"]


def test_xlsx_without_data(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["物探点号", "X", "Y"])
    path = tmp_path / "empty.xlsx"
    book.save(path)
    with pytest.raises(InvalidInputError, match="no data rows"):
        read_tables(path)


def _points_wkb(xs: list[float], ys: list[float]) -> pa.Array:
    shapely = pytest.importorskip("shapely")
    return pa.array(shapely.to_wkb(shapely.points(xs, ys)), pa.binary())


def test_shapefile_gbk_without_cpg(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    table = pa.table(
        {
            "EXP_NO": ["J1", "J2"],
            "备注": ["北门", None],
            "SURF_H": [12.5, 300.0],
            "geometry": _points_wkb([501548.25, 501560.5], [3379503.125, 3379510.0]),
        }
    )
    path = tmp_path / "JSPOINT.shp"
    pyogrio.write_arrow(
        table, path, geometry_name="geometry", geometry_type="Point", crs="EPSG:4547", encoding="GB18030"
    )
    path.with_suffix(".cpg").unlink()
    src = _one(path)
    _all_text(src)
    assert src.layer == "JSPOINT"
    assert src.encoding == "GB18030"
    assert src.columns == ["EXP_NO", "备注", "SURF_H"]
    assert src.table.column("备注").to_pylist() == ["北门", None]
    assert src.table.column("SURF_H").to_pylist() == ["12.5", "300"]
    assert src.rows.to_pylist() == [1, 2]
    assert src.point_xy is not None
    np.testing.assert_array_equal(src.point_xy[0], [501548.25, 501560.5])
    np.testing.assert_array_equal(src.point_xy[1], [3379503.125, 3379510.0])


def test_geopackage_every_layer(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    path = tmp_path / "survey.gpkg"
    points = pa.table({"geometry": _points_wkb([501548.123456789, 501560.0], [3379503.987654321, 3379510.0])})
    pyogrio.write_arrow(
        points, path, layer="JSPOINT", geometry_name="geometry", geometry_type="Point", crs="EPSG:4547"
    )
    lines = pa.table({"S_POINT": ["J1"], "E_POINT": ["J2"], "E_DEEP": [1.25]})
    pyogrio.write_arrow(lines, path, layer="JSLINE", append=True)
    tables = {t.layer: t for t in read_tables(path)}
    assert set(tables) == {"JSPOINT", "JSLINE"}
    pts, lns = tables["JSPOINT"], tables["JSLINE"]
    assert pts.columns == []
    assert pts.rows.to_pylist() == [1, 2]
    assert pts.point_xy is not None
    assert pts.point_xy[1][0] == 3379503.987654321
    assert lns.point_xy is None
    assert lns.table.to_pylist() == [{"S_POINT": "J1", "E_POINT": "J2", "E_DEEP": "1.25"}]


def test_200k_row_csv_reads(tmp_path: Path) -> None:
    n = 200_000
    ids = np.char.add("JS", np.arange(n).astype(str))
    body = "\n".join(np.char.add(ids, ",3379503.5,501548.25,12.5,阀门井").tolist())
    path = tmp_path / "big.csv"
    path.write_text("物探点号,X,Y,地面高程,附属物\n" + body + "\n", encoding="utf-8")
    src = _one(path)
    assert src.table.num_rows == n
    assert src.rows[-1].as_py() == n + 1
    assert src.table.column("物探点号")[-1].as_py() == f"JS{n - 1}"
