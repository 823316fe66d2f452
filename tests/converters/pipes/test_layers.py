"""Tests for converters.pipes.layers: point/line detection and category hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.errors import InvalidInputError
from cim.pipes.fields import default_mapping, load_mapping
from converters.pipes.layers import category_hint, detect_kind


@pytest.mark.parametrize(
    ("layer", "kind", "hint"),
    [
        ("JSPOINT", "point", "JS"),
        ("JSLINE", "line", "JS"),
        ("YS_LINE", "line", "YS"),
        ("ws_point", "point", "ws"),
        ("GD_P", "point", "GD"),
        ("RQ-L", "line", "RQ"),
        ("points", "point", None),
        ("LINES", "line", None),
        ("PIPE_POINT", "point", None),
        ("给水点", "point", "给水"),
        ("给水线", "line", "给水"),
        ("点表", "point", None),
        ("线表", "line", None),
        ("管线点", "point", None),
        ("管线段", "line", None),
        ("雨水管段", "line", "雨水"),
        ("污水管线点成果表", "point", "污水"),
        ("燃气管线", "line", "燃气"),
        ("JSPOINT_TABLE", "point", "JS"),
    ],
)
def test_kind_and_hint_from_layer_name(layer: str, kind: str, hint: str | None) -> None:
    assert detect_kind(layer, [], default_mapping()) == kind
    assert category_hint(layer) == hint


def test_layer_name_wins_over_columns() -> None:
    assert detect_kind("JSPOINT", ["起点点号", "终点点号"], default_mapping()) == "point"


@pytest.mark.parametrize("name", ["Sheet1", "survey", "MAP", "数据", "XSECTIONS"])
def test_names_without_kind_give_no_hint(name: str) -> None:
    assert category_hint(name) is None


def test_kind_from_columns() -> None:
    mapping = default_mapping()
    assert detect_kind("Sheet1", ["S_POINT", "E_POINT", "D_S"], mapping) == "line"
    assert detect_kind("Sheet1", ["起点点号", "终点点号", "X", "Y"], mapping) == "line"
    assert detect_kind("Sheet1", ["EXP_NO", "X", "Y", "SURF_H"], mapping) == "point"
    assert detect_kind("Sheet1", ["物探点号", "地面高程"], mapping) == "point"


def test_kind_from_columns_named_by_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "city.toml"
    path.write_text('[lines]\n"起点号码" = "start_id"\n"终点号码" = "end_id"\n', encoding="utf-8")
    columns = ["起点号码", "终点号码", "口径"]
    with pytest.raises(InvalidInputError):
        detect_kind("Sheet1", columns, default_mapping())
    assert detect_kind("Sheet1", columns, load_mapping(path)) == "line"


def test_undecidable_layer_raises_with_file() -> None:
    with pytest.raises(InvalidInputError, match="Sheet1") as err:
        detect_kind("Sheet1", ["foo", "bar"], default_mapping(), file="a.xlsx")
    assert err.value.file == "a.xlsx"
    assert "a.xlsx" in str(err.value)
