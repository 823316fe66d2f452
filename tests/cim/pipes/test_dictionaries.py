"""Tests for the CJJ 61-2017 dictionaries and their alias tables."""

from __future__ import annotations

import pytest

from cim.pipes.dictionaries import (
    APPURTENANCE,
    CATEGORIES,
    DICTIONARY_COLUMNS,
    DUCT,
    FEATURE,
    GRAVITY,
    NORM_SQL,
    POINT_TYPES,
    PRESSURE,
    SUBTYPES,
    dictionary_rows,
    norm,
    pipe_kind,
    point_sequence,
    resolve_burial,
    resolve_category,
    resolve_material,
    resolve_point_type,
    resolve_status,
)


def test_categories_carry_appendix_b_digits_and_colours() -> None:
    assert [c.code for c in sorted(CATEGORIES.values(), key=lambda c: c.digit)] == [
        "JS", "PS", "RQ", "RL", "DL", "TX", "GY", "QT"
    ]
    assert CATEGORIES["JS"].colour == (0, 255, 255)
    assert CATEGORIES["PS"].colour == (76, 57, 38)
    assert CATEGORIES["RL"].name_zh == "热力"


@pytest.mark.parametrize(
    ("code", "major", "digits", "name"),
    [("YS", "PS", "01", "雨水"), ("HS", "PS", "03", "雨污合流"), ("JP", "JS", "04", "配水"), ("JH", "JS", "08", "循环水"),
     ("TR", "RQ", "03", "天然气"), ("GG", "DL", "05", "广告"), ("GB", "TX", "04", "广播"), ("JB", "GY", "10", "甲苯"),
     ("BM", "QT", "02", "不明管线")],
)
def test_subtypes_carry_their_major_and_two_digit_code(code: str, major: str, digits: str, name: str) -> None:
    sub = SUBTYPES[code]
    assert (sub.major, sub.digits, sub.name_zh) == (major, digits, name)


def test_other_subtypes_have_their_own_colours_and_the_rest_inherit() -> None:
    assert SUBTYPES["ZH"].colour == (0, 0, 0)
    assert SUBTYPES["BM"].colour == (102, 0, 204)
    assert SUBTYPES["WS"].colour == CATEGORIES["PS"].colour


@pytest.mark.parametrize(
    ("major", "subtype", "kind"),
    [("PS", "YS", GRAVITY), ("PS", "WS", GRAVITY), ("PS", None, GRAVITY), ("js", None, PRESSURE), ("RQ", "TR", PRESSURE),
     ("RL", None, PRESSURE), ("GY", "YQ", PRESSURE), ("DL", "GD", DUCT), ("TX", None, DUCT), ("QT", "ZH", DUCT),
     ("QT", "BM", PRESSURE), ("PS", "GD", GRAVITY)],
)
def test_pipe_kind_follows_the_depth_convention(major: str, subtype: str | None, kind: str) -> None:
    assert pipe_kind(major, subtype) == kind


def test_pipe_kind_rejects_unknown_categories() -> None:
    with pytest.raises(ValueError, match="unknown pipe category"):
        pipe_kind("XX", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("JS", ("JS", None)), ("js", ("JS", None)), ("YS", ("PS", "YS")), ("ys", ("PS", "YS")),
        ("给水", ("JS", None)), ("给水管线", ("JS", None)), ("雨水", ("PS", "YS")), ("污水管", ("PS", "WS")),
        ("燃气", ("RQ", None)), ("天然气", ("RQ", "TR")), ("电力", ("DL", None)), ("路灯", ("DL", "LD")),
        ("通信", ("TX", None)), ("电信", ("TX", None)), ("DX", ("TX", None)), ("热力", ("RL", None)),
        ("工业", ("GY", None)), ("综合管沟", ("QT", "ZH")), ("不明管线", ("QT", "BM")), ("上水", ("JS", None)),
        ("下水", ("PS", None)), ("煤气", ("RQ", "MQ")), ("MQ", ("RQ", "MQ")), ("有线电视", ("TX", "DS")),
        ("供电", ("DL", "GD")), ("JSPOINT", ("JS", None)), ("JSLINE", ("JS", None)), ("YS_LINE", ("PS", "YS")),
        ("ys_point", ("PS", "YS")), ("GDLINE", ("DL", "GD")), ("WSPOINT", ("PS", "WS")), ("给水点", ("JS", None)),
        ("雨水线", ("PS", "YS")), ("RQ管线点", ("RQ", None)), ("污水管线段", ("PS", "WS")), ("JS_P", ("JS", None)),
        ("给水点表", ("JS", None)), (" Js Line ", ("JS", None)), ("water supply", ("JS", None)),
    ],
)
def test_resolve_category_accepts_codes_names_legacy_names_and_layer_names(
    text: str, expected: tuple[str, str | None]
) -> None:
    assert resolve_category(text) == expected


@pytest.mark.parametrize("text", [None, "", "管线", "POINT", "水管", "JSX", "xyz", "点"])
def test_resolve_category_returns_none_for_unknown_values(text: str | None) -> None:
    assert resolve_category(text) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [("G", "G"), ("钢", "G"), ("钢管", "G"), ("镀锌钢管", "G"), ("T", "T"), ("钢筋混凝土", "T"), ("砼", "T"),
     ("混凝土管", "T"), ("HDPE", "PE"), ("PE管", "PE"), ("聚乙烯管", "PE"), ("pe", "PE"), ("UPVC", "PVC"),
     ("PVC-U", "PVC"), ("DIP", "QM"), ("球墨", "QM"), ("球墨铸铁管", "QM"), ("铸铁管", "ZT"), ("光缆", "GX"),
     ("铜芯", "TZ"), ("铜", "TZ"), ("玻璃钢夹砂管", "BLG"), ("砖", "Z"), ("砖石", "ZS"), ("陶瓷管", "TC"),
     ("石棉水泥管", "SM"), ("钢芯铝绞线", "VL")],
)
def test_resolve_material_maps_names_and_variants_to_appendix_c_codes(text: str, code: str) -> None:
    assert resolve_material(text) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [("直埋", "ZM"), ("zm", "ZM"), ("管块", "GK"), ("GK", "GK"), ("管沟", "GG"), ("架空", "JK"), ("上架", "SJ"),
     ("顶管", "DG"), ("非开挖", "DG"), ("定向钻", "DG"), ("管埋", "GM"), ("地面", "DM"), ("小通道", "XTD"),
     ("综合管廊", "ZH"), ("人防", "RF"), ("井内连线", "JN"), ("水下", "SX"), ("直埋式", "ZM"), ("架空敷设", "JK")],
)
def test_resolve_burial_maps_names_and_variants_to_appendix_c_codes(text: str, code: str) -> None:
    assert resolve_burial(text) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [("0", 0), ("在用", 0), ("使用", 0), ("1", 1), ("废弃", 1), ("2", 2), ("空管", 2), ("3", 3), ("其他", 3), ("1.0", 1)],
)
def test_resolve_status_maps_codes_and_names(text: str, code: int) -> None:
    assert resolve_status(text) == code


@pytest.mark.parametrize("resolver", [resolve_material, resolve_burial, resolve_status])
@pytest.mark.parametrize("text", [None, "", "未知材料", "4"])
def test_dictionary_resolvers_return_none_for_unknown_values(resolver, text: str | None) -> None:
    assert resolver(text) is None


@pytest.mark.parametrize(
    ("text", "name"),
    [("窨井", "检修井"), ("检查井", "检修井"), ("井", "检修井"), ("检修井", "检修井"), ("阀", "阀门"), ("消火栓", "消防栓"),
     ("三通点", "三通"), ("雨篦", "雨水箅"), ("交接箱", "接线箱"), ("变径点", "变径")],
)
def test_resolve_point_type_follows_aliases_to_the_canonical_name(text: str, name: str) -> None:
    p = resolve_point_type(text)
    assert p is not None and p.name == name


@pytest.mark.parametrize("text", [None, "", "飞碟", "三通阀门"])
def test_resolve_point_type_returns_none_for_unknown_values(text: str | None) -> None:
    assert resolve_point_type(text) is None


@pytest.mark.parametrize(
    ("name", "valence"),
    [("三通", (3, 3)), ("四通", (4, 4)), ("多通", (5, None)), ("弯头", (2, 2)), ("直线点", (2, 2)), ("转折点", (2, 2)),
     ("变径", (2, 2)), ("变材", (2, 2)), ("变深", (2, 2)), ("预留口", (1, 1)), ("盖堵", (1, 1)), ("出地", (1, 1)),
     ("进水口", (1, 1)), ("出水口", (1, 1)), ("入户", (1, 1)), ("起点", (1, 1)), ("终点", (1, 1)),
     ("检修井", None), ("阀门", None), ("消防栓", None)],
)
def test_point_types_carry_their_expected_valence(name: str, valence: tuple[int, int | None] | None) -> None:
    assert POINT_TYPES[name].valence == valence


def test_features_and_appurtenances_are_told_apart() -> None:
    assert POINT_TYPES["三通"].kind == FEATURE
    assert POINT_TYPES["阀门"].kind == APPURTENANCE
    assert all(p.valence is None for p in POINT_TYPES.values() if p.kind == APPURTENANCE)


def test_wells_and_chambers_are_chambers_and_valves_are_not() -> None:
    chambers = {n for n, p in POINT_TYPES.items() if p.is_chamber}
    assert {"检修井", "阀门井", "水表井", "人孔", "手孔", "化粪池", "泵站"} <= chambers
    assert not {"阀门", "消防栓", "三通", "雨水箅"} & chambers


def test_only_poles_boxes_and_markers_are_standalone() -> None:
    standalone = {n for n, p in POINT_TYPES.items() if p.standalone}
    assert {"路灯杆", "电线杆", "通信杆", "标志桩", "阴极保护测试桩", "变压器", "接线箱"} <= standalone
    assert "消防栓" not in standalone and "检修井" not in standalone


@pytest.mark.parametrize(
    ("subtype", "ptype", "seq"),
    [("YS", "检修井", "02"), ("ys", "窨井", "02"), ("YS", "雨水箅", "04"), ("WS", "检修井", "05"), ("JP", "阀门", "04"),
     ("JP", "消防栓", "02"), ("SS", "阀门井", "04"), ("HS", "检修井", None), ("RS", "阀门", None), (None, "阀门", None),
     ("JP", "飞碟", None)],
)
def test_point_sequence_is_known_only_for_the_brief_examples(subtype: str | None, ptype: str, seq: str | None) -> None:
    assert point_sequence(subtype, ptype) == seq


@pytest.mark.parametrize(
    ("text", "key"), [(" JS ", "js"), ("YS LINE", "ysline"), ("\u3000给水\u3000", "给水"), ("Φ", "φ"), ("a\tb", "a\tb")]
)
def test_norm_removes_spaces_and_lower_cases(text: str, key: str) -> None:
    assert norm(text) == key


def test_norm_equals_the_sql_expression_in_duckdb() -> None:
    duckdb = pytest.importorskip("duckdb")
    samples = [" JS ", "YS LINE", "\u3000给水\u3000", "\u00a0PE管\u00a0", "Φ300", "\tJs\n", "B×H", "ÄØ"]
    con = duckdb.connect()
    for s in samples:
        assert con.execute(f"select {NORM_SQL.format(x='$1')}", [s]).fetchone()[0] == norm(s), s


def test_dictionary_rows_match_their_declared_columns_and_have_unique_alias_keys() -> None:
    rows = dictionary_rows()
    assert set(rows) == set(DICTIONARY_COLUMNS)
    for table, table_rows in rows.items():
        assert table_rows, table
        assert all(len(r) == len(DICTIONARY_COLUMNS[table]) for r in table_rows), table
        if table.endswith("_alias") or table == "point_type":
            keys = [r[0] for r in table_rows]
            assert len(keys) == len(set(keys)), table
            assert all(k == norm(k) for k in keys), table


def test_dictionary_rows_agree_with_the_python_resolvers() -> None:
    rows = dictionary_rows()
    for alias, major, sub in rows["category_alias"]:
        assert resolve_category(alias) == (major, sub)
    for alias, code in rows["material_alias"]:
        assert resolve_material(alias) == code
    for alias, code in rows["burial_alias"]:
        assert resolve_burial(alias) == code
    for alias, code in rows["status_alias"]:
        assert resolve_status(alias) == code
    for alias, name, kind, vmin, vmax, chamber, standalone in rows["point_type"]:
        p = POINT_TYPES[name]
        assert resolve_point_type(alias) == p
        assert (kind, (vmin, vmax) if p.valence else None, chamber, standalone) == (
            p.kind, p.valence, p.is_chamber, p.standalone
        )


def test_category_alias_table_joins_layer_names_in_duckdb() -> None:
    duckdb = pytest.importorskip("duckdb")
    pa = pytest.importorskip("pyarrow")
    con = duckdb.connect()
    columns = zip(*dictionary_rows()["category_alias"], strict=True)
    aliases = pa.table(dict(zip(DICTIONARY_COLUMNS["category_alias"], map(list, columns), strict=True)))
    con.register("category_alias", aliases)
    con.execute("create table layers(name varchar)")
    con.executemany("insert into layers values (?)", [["YS_LINE"], ["给水 管线点"], ["电信"], ["unknown"]])
    got = con.execute(
        f"select l.name, a.major, a.subtype from layers l left join category_alias a on a.alias = {NORM_SQL.format(x='l.name')} "
        "order by l.name"
    ).fetchall()
    assert sorted(got, key=lambda r: r[0]) == sorted(
        [("YS_LINE", "PS", "YS"), ("给水 管线点", "JS", None), ("电信", "TX", None), ("unknown", None, None)],
        key=lambda r: r[0],
    )


def test_point_sequence_rows_name_the_major() -> None:
    assert ("PS", "YS", "检修井", "02") in dictionary_rows()["point_sequence"]
