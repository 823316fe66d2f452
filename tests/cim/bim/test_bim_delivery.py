"""Delivery completeness on real IFC files and on stored rows; georeference plausibility."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from cim import localcrs
from cim.bim.delivery import REQUIREMENTS, check_delivery, delivery_findings, georef_plausibility
from cim.errors import InvalidInputError, NotFoundError
from cim.region import Region
from cim.settings import SHANDONG_BBOX
from cim.store import DuckDBStore

IFC = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ifc"
needs_shared = pytest.mark.skipif(not IFC.is_dir(), reason="shared IFC data not present")
SHANDONG = Region("Shandong", SHANDONG_BBOX)


@cache
def counts(name: str) -> tuple[dict[str, int], str]:
    """IFC class counts of a real file (products), and its schema."""
    import ifcopenshell

    f = ifcopenshell.open(str(IFC / name))
    return dict(Counter(p.is_a() for p in f.by_type("IfcProduct"))), f.schema


def _run(name: str, discipline: str, stage: str) -> dict[str, str]:
    c, schema = counts(name)
    return {
        f.rule_id: f.severity for f in check_delivery(c, discipline=discipline, stage=stage, schema=schema)
    }


@needs_shared
def test_duplex_architecture_is_complete() -> None:
    # 56 IfcWallStandardCase count as walls (subtype of IfcWall), IfcSpace, IfcStair and IfcRoof present
    assert _run("ifc2x3_revit2011_duplex_architecture.ifc", "architecture", "drawing_review") == {}
    assert _run("ifc2x3_revit2011_duplex_architecture.ifc", "architecture", "handover") == {}
    # as a structural model the walls carry it and IfcFooting is the foundation
    assert _run("ifc2x3_revit2011_duplex_architecture.ifc", "structure", "drawing_review") == {}


@needs_shared
def test_missing_classes_are_reported_per_discipline_and_stage() -> None:
    # the electrical Duplex has terminals, controllers and equipment but no cable/pipe segments or fittings
    assert _run("ifc2x3_revit2013_duplex_electrical.ifc", "mep", "drawing_review") == {
        "DLV-MEP-SEGMENT": "error",
        "DLV-MEP-FITTING": "warning",
    }
    # the sewer has segments, fittings, terminals: controllers and equipment are warnings at review ...
    sewer = "ifc2x3_arkey_riolering_sewer.ifc"
    assert _run(sewer, "mep", "drawing_review") == {
        "DLV-MEP-CONTROL": "warning",
        "DLV-MEP-EQUIPMENT": "warning",
    }
    # ... and errors at handover; IFC4 FZK-Haus has no foundation, no columns (walls suffice)
    assert _run(sewer, "mep", "handover") == {"DLV-MEP-CONTROL": "error", "DLV-MEP-EQUIPMENT": "error"}
    assert _run("ifc4_archicad20_fzk_haus.ifc", "structure", "drawing_review") == {
        "DLV-STR-FOUNDATION": "error"
    }
    fzk = _run("ifc4_archicad20_fzk_haus.ifc", "architecture", "handover")
    assert fzk == {"DLV-ARC-ROOF": "warning"}  # FZK models its roof as slabs


@needs_shared
def test_proxies_and_empty_models() -> None:
    found = _run("ifc4x3_bsi_georef_utm_epsg25832.ifc", "architecture", "drawing_review")
    assert found["DLV-PROXY"] == "warning"  # its only element is an IfcBuildingElementProxy
    assert found["DLV-ARC-WALL"] == "error"
    empty = check_delivery(
        {"IfcSite": 1, "IfcBuilding": 1, "IfcOpeningElement": 3}, discipline="mep", stage="handover"
    )
    assert [f.rule_id for f in empty][0] == "DLV-EMPTY"
    assert {f.rule_id for f in empty} >= {"DLV-MEP-SEGMENT", "DLV-MEP-TERMINAL"}


def test_requirement_table_and_arguments() -> None:
    assert {r.discipline for r in REQUIREMENTS} == {"architecture", "structure", "mep"}
    assert len({r.id for r in REQUIREMENTS}) == len(REQUIREMENTS)
    for r in REQUIREMENTS:
        assert set(r.severity) <= {"drawing_review", "handover"} and set(r.severity.values()) <= {
            "error",
            "warning",
        }
    with pytest.raises(InvalidInputError, match="discipline 'hvac'"):
        check_delivery({}, discipline="hvac", stage="handover")
    with pytest.raises(InvalidInputError, match="stage 'design'"):
        check_delivery({}, discipline="mep", stage="design")


def test_delivery_findings_from_stored_rows(
    store: DuckDBStore,
    add_model: Callable[..., None],
    add_elements: Callable[..., None],
    add_spatial: Callable[..., None],
) -> None:
    add_model(store, "duplex", 1, ifc_schema="IFC2X3")
    add_elements(
        store,
        "duplex",
        1,
        [{"global_id": f"W{i:021d}", "ifc_class": "IfcWallStandardCase"} for i in range(3)]
        + [{"global_id": "S" * 22, "ifc_class": "IfcSlab"}, {"global_id": "D" * 22, "ifc_class": "IfcDoor"}],
    )
    add_spatial(store, "duplex", 1, [{"global_id": "R" * 22, "ifc_class": "IfcSpace", "name": "A101"}])
    found = {
        f.rule_id
        for f in delivery_findings(store, "duplex", 1, discipline="architecture", stage="drawing_review")
    }
    assert found == {
        "DLV-ARC-WINDOW",
        "DLV-ARC-STAIR",
        "DLV-ARC-ROOF",
    }  # walls via subtype, space via bim_spatial
    with pytest.raises(NotFoundError, match="version 2"):
        delivery_findings(store, "duplex", 2, discipline="architecture", stage="handover")


# -- georeferencing -----------------------------------------------------------------------------
def _geo(model: object, **kw: object) -> dict[str, str]:
    return {
        f.rule_id: f.severity
        for f in georef_plausibility(model, storage_crs="EPSG:4548", region=SHANDONG, **kw)
    }


def test_georef_good_model_has_no_findings() -> None:
    row = {
        "georef": {"method": "map_conversion", "crs": "EPSG:4548", "vertical_datum": "EPSG:5737"},
        "origin_x": 500000.0,
        "origin_y": 4057000.0,
    }  # near Jinan
    assert _geo(row) == {}
    assert (
        _geo({**row, "georef": '{"method": "map_conversion", "crs": "EPSG:4527"}'}) == {}
    )  # JSON text, zone 39


def test_georef_missing_or_approximate() -> None:
    assert _geo({"method": "none"}) == {"GEO-NONE": "error"}
    assert _geo(None) == {"GEO-NONE": "error"}
    assert _geo({"georef": None, "origin_x": None, "origin_y": None}) == {"GEO-NONE": "error"}
    assert _geo({"method": "ref_latlon"}) == {"GEO-LATLON-ONLY": "warning"}
    assert _geo({"method": "map_conversion", "crs": ""}) == {
        "GEO-CRS-MISSING": "error"
    }  # Bonsai's empty name


def test_georef_wrong_crs_region_and_double_offset() -> None:
    # the Civil 3D / ACCA project setup: Swiss CRS written as a comma list, Swiss heights, a double offset
    row = {
        "georef": {
            "method": "map_conversion",
            "crs": "EPSG:2056,EPSG:5728",
            "findings": [
                {
                    "code": "double_offset",
                    "severity": "warning",
                    "message": "IfcSite placement repeats the map offset 2689000",
                },
                "site elevation 450 differs from OrthogonalHeight 0",
            ],
        },
        "origin_x": 2689000.0,
        "origin_y": 1253000.0,
    }
    found = georef_plausibility(row, storage_crs="EPSG:2056", region=SHANDONG)
    by_rule = {f.rule_id: f for f in found}
    assert set(by_rule) == {"GEO-CRS", "GEO-VDATUM", "GEO-REGION", "GEO-DOUBLE-OFFSET", "GEO-CONVERTER"}
    assert by_rule["GEO-CRS"].severity == "error" and "CH1903+" in by_rule["GEO-CRS"].message
    assert by_rule["GEO-DOUBLE-OFFSET"].severity == "error"  # a double offset is always an error
    assert by_rule["GEO-CONVERTER"].severity == "warning"
    assert "outside Shandong" in by_rule["GEO-REGION"].message
    assert _geo({"method": "epset", "crs": "EPSG:3857"}) == {"GEO-CRS": "error"}
    assert _geo({"method": "epset", "crs": "NOT A CRS"}) == {"GEO-CRS-UNKNOWN": "error"}
    # swapped survey axes are diagnosed
    swapped = georef_plausibility(
        {"georef": {"method": "user", "crs": "EPSG:4548"}, "origin_x": 4057000.0, "origin_y": 500000.0},
        storage_crs="EPSG:4548",
        region=SHANDONG,
    )
    assert [f.rule_id for f in swapped] == ["GEO-USER", "GEO-REGION"] and "swapped" in swapped[1].message


def test_georef_city_system_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    system = localcrs.Helmert2D(name="JINAN_CITY", base="EPSG:4548", tx=500000.0, ty=4000000.0)
    monkeypatch.setitem(localcrs._SYSTEMS, "JINAN_CITY", system)
    assert _geo({"method": "map_conversion", "crs": "JINAN_CITY"}) == {}
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        georef_plausibility("{broken")
