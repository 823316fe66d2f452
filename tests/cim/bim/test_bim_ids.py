"""IDS checks with ifctester: the buildingSMART IDS 1.0 test cases, the default CN rule set, isolation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cim.bim.ids import (
    CN_REVIEW_LOD300,
    IdsReport,
    SpecificationResult,
    check_ids,
    check_ids_many,
    ids_equal,
    openable_ifc,
    schema_alias,
    validate_ids,
)
from cim.errors import CIMError, InvalidInputError, NotFoundError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CASES = SHARED / "ids_cases"
IFC = SHARED / "ifc"
DUPLEX = IFC / "ifc2x3_revit2011_duplex_architecture.ifc"
FZK = IFC / "ifc4_archicad20_fzk_haus.ifc"
CIVIL3D = IFC / "ifc4x3_civil3d_ps01_project_setup.ifc"
needs_shared = pytest.mark.skipif(
    not CASES.is_dir() or not IFC.is_dir(), reason=f"no shared data at {SHARED}"
)

#: IDS 1.0 cases whose IDS is "invalid" but that a checker may only flag by failing the model: the
#: IDS is sound as such (a class mismatch, an XSD pattern, an unknown predefined type) and ifctester
#: fails the model on them, as the upstream test suite expects.
FLAGGED_BY_FAILING = {
    "attribute/invalid-specifying_a_float_when_the_value_is_an_integer_is_invalid",  # attribute name is a pattern
    "entity/invalid-an_entity_not_matching_the_specified_class_should_fail",
    "entity/invalid-entities_can_be_specified_as_a_xsd_regex_pattern_1_2",
    "partof/invalid-a_group_predefined_type_must_match_exactly_2_2",
}

IDS_HEAD = (
    '<ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema">'
    "<info><title>t</title></info><specifications>"
)
IDS_TAIL = "</specifications></ids>"


def _spec(body: str, extra: str = 'ifcVersion="IFC4"') -> str:
    return f'{IDS_HEAD}<specification name="s" {extra}>{body}</specification>{IDS_TAIL}'


@needs_shared
def test_every_ids_case_gives_its_expected_verdict() -> None:
    cases = sorted(CASES.glob("*/*.ids"))
    assert len(cases) >= 200, "the IDS 1.0 case folder looks incomplete"
    outcomes = check_ids_many([(c.with_suffix(".ifc"), c) for c in cases], timeout_s=300)
    tally: dict[str, dict[str, int]] = {}
    wrong = []
    for case, outcome in zip(cases, outcomes, strict=True):
        expected = case.name.split("-", 1)[0]
        key = f"{case.parent.name}/{case.stem}"
        if isinstance(outcome, InvalidInputError):
            got = "rejected"
        elif isinstance(outcome, IdsReport):
            got = "pass" if outcome.passed else "fail"
        else:
            got = f"error: {outcome}"
        ok = {
            "pass": got == "pass",
            "fail": got == "fail",
            "invalid": got == "rejected" or (got == "fail" and key in FLAGGED_BY_FAILING),
        }[expected]
        tally.setdefault(expected, {}).setdefault(got, 0)
        tally[expected][got] += 1
        if not ok:
            wrong.append(f"{key}: expected {expected}, got {got}")
    print(f"\nIDS 1.0 cases ({len(cases)}): " + "; ".join(f"{e} -> {g}" for e, g in sorted(tally.items())))
    assert not wrong, "\n".join(wrong)
    assert tally["invalid"].get("rejected", 0) == sum(tally["invalid"].values()) - len(FLAGGED_BY_FAILING)


@needs_shared
def test_unsound_ids_non_strict_is_flagged_and_fails() -> None:
    case = CASES / "property" / "invalid-integer_values_cannot_be_stored_with_decimal_3_4.ids"
    report = check_ids(case.with_suffix(".ifc"), case, strict=False)
    # ifctester alone passes this model (42 == 42.0); the audit flags the IDS and the report fails
    assert report.ids_issues == [
        "specification 1 (Integer values cannot be stored with decimal 3/4): property Foo (IFCINTEGER): "
        "'42.0' is not an integer"
    ]
    assert not report.passed
    assert report.findings[0].rule_id == "IDS-AUDIT" and report.findings[0].severity == "error"


@needs_shared
def test_broken_ids_and_files_are_refused_per_job(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ifc"
    garbage.write_bytes(b"ISO-10303-21;\nHEADER;FILE_SCHEMA(('IFC4'));ENDSEC;\nDATA;\n#1=IFCWALL(;\n")
    ok_ids = _spec(
        "<applicability><entity><name><simpleValue>IFCWALLSTANDARDCASE</simpleValue></name></entity></applicability>"
    )
    outcomes = check_ids_many(
        [
            (FZK, "<ids><unclosed>"),
            (FZK, '<foo xmlns="urn:x"/>'),
            (FZK, _spec("<applicability/>", extra="")),  # no ifcVersion, empty applicability
            (FZK, _spec("<requirements/>")),  # applicability missing
            (garbage, ok_ids),
            (FZK, ok_ids.encode()),
        ]
    )
    messages = [str(o) for o in outcomes[:5]]
    assert all(isinstance(o, InvalidInputError) for o in outcomes[:5]), messages
    assert "not well-formed XML" in messages[0]
    assert "not an IDS 1.0 <ids> element" in messages[1]
    assert "not valid against the IDS 1.0 schema" in messages[2] and "ifcVersion" in messages[2]
    assert "not valid against the IDS 1.0 schema" in messages[3]
    assert messages[4].startswith("file garbage.ifc: cannot read the IFC file")
    assert isinstance(outcomes[5], IdsReport) and outcomes[5].passed
    assert outcomes[5].specifications[0].applicable == 13  # XML given as bytes works too
    with pytest.raises(NotFoundError, match="IDS file"):
        check_ids(FZK, tmp_path / "missing.ids")
    with pytest.raises(NotFoundError, match="IFC file"):
        check_ids(tmp_path / "missing.ifc", CN_REVIEW_LOD300)


@needs_shared
def test_a_check_past_its_budget_is_stopped() -> None:
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match=r"did not finish within 0.05 s and was stopped"):
        check_ids(DUPLEX, CN_REVIEW_LOD300, timeout_s=0.05)
    assert time.monotonic() - start < 5


@needs_shared
def test_a_check_past_its_memory_limit_is_refused() -> None:
    with pytest.raises(CIMError):  # the worker dies or reports MemoryError; the service lives on
        check_ids(DUPLEX, CN_REVIEW_LOD300, memory_limit_bytes=100 * 2**20)


def test_default_rule_set_is_valid_ids() -> None:
    assert CN_REVIEW_LOD300.is_file()
    assert validate_ids(CN_REVIEW_LOD300) == []  # XSD-valid (else it raises) and semantically sound
    issues = validate_ids(
        _spec(
            "<applicability><entity><name><simpleValue>IfcWall</simpleValue></name></entity></applicability>"
        )
    )
    assert issues == ["specification 1 (s): IFC class 'IfcWall' must be written in upper case (IFCWALL)"]
    with pytest.raises(InvalidInputError, match="IDS 1.0 schema"):
        validate_ids(_spec("<applicability/>", extra=""))


@pytest.fixture(scope="module")
def reviews() -> dict[str, IdsReport]:
    """The default rule set run over the Duplex (IFC2X3), FZK-Haus (IFC4) and a IFC4X3_ADD1 file."""
    if not IFC.is_dir():
        pytest.skip("shared IFC data not present")
    files = {"duplex": DUPLEX, "fzk": FZK, "civil3d": CIVIL3D}
    outcomes = check_ids_many([(f, CN_REVIEW_LOD300) for f in files.values()], timeout_s=120)
    for outcome in outcomes:
        assert isinstance(outcome, IdsReport), outcome
    return dict(zip(files, outcomes, strict=True))  # type: ignore[arg-type]


def _spec_result(report: IdsReport, rule_id: str) -> SpecificationResult:
    return next(s for s in report.specifications if s.rule_id == rule_id)


def _found(report: IdsReport, rule_id: str) -> set[str | None]:
    return {f.found for f in report.findings if f.rule_id == rule_id}


def test_cn_rules_on_the_duplex(reviews: dict[str, IdsReport]) -> None:
    r = reviews["duplex"]
    assert r.ifc_schema == "IFC2X3" and not r.passed
    # the 14 doors carry the Revit placeholder "Fire Rating" instead of a rating
    doors = _spec_result(r, "CN300-FR-02")
    assert (doors.passed, doors.applicable, doors.failed) == (False, 14, 14)
    assert _found(r, "CN300-FR-02") == {'The property value "Fire Rating" does not match the requirements'}
    # walls (IfcWallStandardCase through the IFCWALLSTANDARDCASE enumeration) lack FireRating
    walls = _spec_result(r, "CN300-FR-01")
    assert (walls.applicable, walls.failed) == (57, 57)
    # but they carry IsExternal and LoadBearing, and every element lies in a storey (furniture via spaces)
    assert _spec_result(r, "CN300-PR-01").passed and _spec_result(r, "CN300-PR-01").applicable == 57
    contained = _spec_result(r, "CN300-SP-04")
    assert contained.passed and contained.applicable > 200
    assert _spec_result(r, "CN300-SP-03").applicable == 4 and _spec_result(r, "CN300-SP-03").passed
    assert _found(r, "CN300-SP-02") == {'The attribute value "None" is empty'}  # the building has no name
    assert not _spec_result(r, "CN300-CL-01").passed  # no GB/T 51269 codes
    assert _spec_result(r, "CN300-GEO-01").passed  # RefLatitude/RefLongitude are present
    for f in r.findings:
        assert f.check_kind == "ids" and f.severity in ("error", "warning", "info")
        assert f.rule_id.startswith("CN300-") and f.expected and f.found and f.message
        assert f.global_id is None or len(f.global_id) == 22


def test_cn_rules_on_fzk_haus(reviews: dict[str, IdsReport]) -> None:
    r = reviews["fzk"]
    assert r.ifc_schema == "IFC4"
    doors = _spec_result(r, "CN300-FR-02")
    assert (doors.applicable, doors.failed) == (5, 5)  # 3 doors without FireRating, 2 with an empty one
    assert _found(r, "CN300-FR-02") == {"The property set does not contain the required property"}
    door = next(f for f in r.findings if f.rule_id == "CN300-FR-02")
    assert door.ifc_class == "IfcDoor" and "matching '.*[0-9甲乙丙].*'" in (door.expected or "")
    walls = _spec_result(r, "CN300-PR-01")
    assert (walls.applicable, walls.failed) == (13, 13)  # ArchiCAD exported no IsExternal/LoadBearing
    assert sum(f.rule_id == "CN300-PR-01" for f in r.findings) == 26
    assert _spec_result(r, "CN300-SP-03").passed  # Erdgeschoss 0.0, Dachgeschoss 2.7
    assert _spec_result(r, "CN300-MA-01").passed
    summary = r.summary()
    assert summary["errors"] == sum(f.severity == "error" for f in r.findings) > 100
    assert summary["specifications"] == 18


def test_ifc4x3_add1_header_is_read_as_add2(reviews: dict[str, IdsReport]) -> None:
    r = reviews["civil3d"]
    assert (r.ifc_schema, r.ifc_schema_declared) == ("IFC4X3_ADD2", "IFC4X3_ADD1")
    assert _spec_result(r, "CN300-GEO-02").passed  # IfcProjectedCRS named EPSG:2056
    geo = [f for f in r.findings if f.rule_id == "CN300-GEO-01"]
    assert geo and all(f.severity == "warning" for f in geo)  # severity from the [warning] instructions


@needs_shared
def test_openable_ifc_rewrites_only_a_copy() -> None:
    original = CIVIL3D.read_bytes()
    with openable_ifc(CIVIL3D) as (path, declared, used):
        assert (declared, used) == ("IFC4X3_ADD1", "IFC4X3_ADD2")
        assert path != CIVIL3D
        copy = path.read_bytes()
        assert b"FILE_SCHEMA (('IFC4X3_ADD2'))" in copy
        assert copy.replace(b"IFC4X3_ADD2", b"IFC4X3_ADD1", 1) == original
    assert not path.exists() and CIVIL3D.read_bytes() == original
    with openable_ifc(FZK) as (path, declared, used):
        assert (path, declared, used) == (FZK, "IFC4", "IFC4")


@pytest.mark.parametrize(
    ("name", "used"),
    [
        ("IFC4X3_ADD1", "IFC4X3_ADD2"),
        ("IFC4X3", "IFC4X3_ADD2"),
        ("ifc2x3_tc1", "IFC2X3"),
        ("IFC4_ADD2_TC1", "IFC4"),
        ("IFC4", "IFC4"),
        ("IFC2X2_FINAL", None),
        ("IFC4X1", None),
    ],
)
def test_schema_alias(name: str, used: str | None) -> None:
    assert schema_alias(name) == used


def test_ids_real_tolerance() -> None:
    assert ids_equal(0.999998, 1.0) and not ids_equal(0.9999979, 1.0)
    assert ids_equal(-1000001.000001, -1000000.0) and not ids_equal(-1000001.0000011, -1000000.0)
    assert ids_equal(-0.000001, 0.0) and not ids_equal(-0.0000011, 0.0)
