"""Tests for CJJ 61-2017 Appendix F feature codes."""

from __future__ import annotations

import pytest

from cim.pipes.codes import FeatureCode, build_code, check_code, parse_code

# (code, major, subtype, element, point kind, point type) from the domain brief §2.2
BRIEF_EXAMPLES = [
    ("52011000", "PS", "YS", "line", None, None),
    ("52012202", "PS", "YS", "point", "appurtenance", "检修井"),
    ("52012204", "PS", "YS", "point", "appurtenance", "雨水箅"),
    ("52022205", "PS", "WS", "point", "appurtenance", "污水井"),
    ("51041000", "JS", "JP", "line", None, None),
    ("51042204", "JS", "JP", "point", "appurtenance", "阀门"),
    ("51042202", "JS", "JP", "point", "appurtenance", "消防栓"),
    ("51022204", "JS", "SS", "point", "appurtenance", "阀门井"),
]


def test_parse_code_splits_the_six_parts() -> None:
    fc = parse_code("52012202")
    assert fc == FeatureCode("5", 2, "01", 2, 2, "02")
    assert fc is not None and fc.major == "PS" and str(fc) == "52012202"


@pytest.mark.parametrize("text", ["52011000.0", " 52011000 ", 52011000])
def test_parse_code_accepts_spreadsheet_spellings(text: str | int) -> None:
    assert str(parse_code(text)) == "52011000"


@pytest.mark.parametrize("text", [None, "", "5201100", "520110000", "5201100A", "5201-1000", "52011000.5"])
def test_parse_code_returns_none_for_malformed_codes(text: str | None) -> None:
    assert parse_code(text) is None


def test_a_category_digit_outside_one_to_eight_has_no_major() -> None:
    fc = parse_code("59011000")
    assert fc is not None and fc.major is None


@pytest.mark.parametrize(("code", "major", "subtype", "element", "kind", "ptype"), BRIEF_EXAMPLES)
def test_the_brief_examples_pass_the_check(
    code: str, major: str, subtype: str, element: str, kind: str | None, ptype: str | None
) -> None:
    assert check_code(code, major=major, subtype=subtype, element=element, point_kind=kind, point_type_name=ptype) == []


@pytest.mark.parametrize(("code", "major", "subtype", "element", "kind", "ptype"), BRIEF_EXAMPLES)
def test_build_code_reproduces_the_brief_examples(
    code: str, major: str, subtype: str, element: str, kind: str | None, ptype: str | None
) -> None:
    assert build_code(major, subtype, element, kind, code[-2:]) == code


def test_build_code_writes_an_unknown_subtype_as_zeros() -> None:
    assert build_code("ps", None, 1) == "52001000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("XX", "YS", "line"), "unknown pipe category"),
        (("JS", "YS", "line"), "not a sub-type of JS"),
        (("PS", "YS", "volume"), "element must be"),
        (("PS", "YS", 4), "element type must be"),
        (("PS", "YS", "point"), "needs point_kind"),
        (("PS", "YS", "point", "feature", 100), "sequence must be"),
    ],
)
def test_build_code_rejects_bad_inputs(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_code(*args)


def _problems(code: str | None, **kw: str | None) -> list[str]:
    base: dict = {"major": "PS", "subtype": "YS", "element": "point", "point_kind": "appurtenance"}
    return check_code(code, **(base | kw))


@pytest.mark.parametrize(
    ("code", "overrides", "fragment"),
    [
        (None, {}, "missing"),
        ("  ", {}, "missing"),
        ("5201", {}, "not an 8-digit"),
        ("42012202", {}, "national digit is 4"),
        ("51012202", {}, "category digit 1 (JS) does not match category PS"),
        ("52022202", {}, "sub-type digits 02 do not match sub-type YS (01)"),
        ("52092202", {"subtype": None}, "sub-type digits 09 are not defined for category PS"),
        ("52011200", {}, "element digit 1 does not match element type 2"),
        ("52012102", {}, "point-type digit 1 does not match appurtenance (2)"),
        ("52012202", {"point_kind": "feature"}, "point-type digit 2 does not match feature (1)"),
        ("52012302", {"point_kind": None}, "point-type digit 3 is not 1"),
        ("52011200", {"element": "line"}, "should be 0 for a non-point element"),
        ("52012203", {"point_type_name": "窨井"}, "sequence 03 does not match 窨井 (02)"),
    ],
)
def test_check_code_reports_each_kind_of_inconsistency(code: str | None, overrides: dict, fragment: str) -> None:
    problems = _problems(code, **overrides)
    assert len(problems) == 1
    assert fragment in problems[0]


def test_point_kind_is_derived_from_the_point_type_name() -> None:
    assert _problems("52012102", point_kind=None, point_type_name="检查井") != []
    assert _problems("52012101", point_kind=None, point_type_name="三通") == []


def test_sequence_is_only_checked_where_the_dictionary_knows_it() -> None:
    # 污水检修井 is 05, 雨水检修井 02: the sequence is per sub-type, and unknown pairs are skipped
    assert _problems("52022205", subtype="WS", point_type_name="检修井") == []
    assert _problems("52022202", subtype="WS", point_type_name="检修井") != []
    assert _problems("52012299", point_type_name="化粪池") == []
    assert _problems("52022299", subtype="HS", point_type_name="检修井") == [
        "sub-type digits 02 do not match sub-type HS (03)"
    ]


def test_unknown_category_skips_category_checks_but_not_the_rest() -> None:
    assert _problems("59992202", major="ZZ", subtype=None) == []
    assert _problems("49992202", major=None, subtype=None) == ["national digit is 4, expected 5 (pipelines)"]


def test_several_problems_are_all_reported() -> None:
    assert len(_problems("41011102")) == 4  # national, category digit, element, point type
