"""Clearance of a BIM model's below-ground part to the pipes of the sample district (GB 50289 Table 4.1.9):
the real IFC house over a street finds the pipes under its footing, the same house away from the streets
or outside the survey finds nothing; the below-ground rule on hand-made element rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from cim.analysis.common import Frame
from cim.analysis.ground import SurveyedGround
from cim.bim.clearance import below_ground_mask, bim_pipe_clearance, clearance_findings
from cim.errors import InvalidInputError, NotFoundError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import IfcOptions, ingest_ifc
from converters.pipes.ingest import SurveyOptions, ingest_survey

ROOT = Path(__file__).resolve().parents[3]
HOUSE = ROOT.parent / "shared" / "data" / "ifc" / "ifc4_ifcopenshell_ifcopenhouse.ifc"
FOOTING = "2W4bl$KK1Brv_UEOkAThqU"
STAIR = "2Ab2jpYsXCGu4_o2TnJmpB"  # the outdoor steps, 0.4 m down to the yard
SETTINGS = Settings(store="duckdb:///:memory:")
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def district() -> Iterator[tuple[DuckDBStore, Frame]]:
    store = DuckDBStore(":memory:")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(), SETTINGS)
    for name, (e, n) in {"over_street": (501990.0, 4058050.0), "in_block": (502060.0, 4058060.0),
                         "outside": (530000.0, 4070000.0)}.items():
        ingest_ifc(HOUSE, store, IfcOptions(dataset_id=name, placement=UserPlacement("EPSG:4548", e, n, 75.3)),
                   SETTINGS)
    yield store, Frame.from_settings(SETTINGS)
    store.close()


def test_the_house_over_a_street_has_pipes_under_its_footing(district: tuple[DuckDBStore, Frame]) -> None:
    store, frame = district
    res = bim_pipe_clearance(store, frame, dataset="over_street")
    assert res.dataset == "jinan_district" and res.summary["basis"] == "below_ground"
    (st,) = res.structures
    assert st.bottom_h == pytest.approx(73.3, abs=0.005) and st.top_h is None  # footing 2 m below ±0.000 at 75.3
    assert 50 < st.footprint.area < 60
    by_pipe = {f.feature_id: f for f in res.findings}
    clash = by_pipe["DH21-DH22"]  # the telecom duct bank runs through the footing's height range
    assert clash.check == "clash" and clash.severity == "warn" and clash.details["vertical_overlap_m"] > 0.3
    assert clash.details["global_ids"][0] == FOOTING and clash.details["ifc_classes"][0] == "IfcFooting"
    assert by_pipe["JS21-JS22"].check == "under" and by_pipe["JS21-JS22"].required_m == 3.0
    assert res.findings[0].check == "clash"  # clashes first
    rules = {(f.rule_id, f.severity, f.global_id) for f in clearance_findings(res)}
    assert ("GB50289-4.1.9-CLASH", "error", FOOTING) in rules and ("GB50289-4.1.9-UNDER", "error", FOOTING) in rules


def test_the_house_inside_a_block_or_outside_the_survey_finds_nothing(district: tuple[DuckDBStore, Frame]) -> None:
    store, frame = district
    in_block = bim_pipe_clearance(store, frame, dataset="in_block")
    assert in_block.dataset == "jinan_district" and in_block.findings == []
    assert in_block.summary["structures"][0]["pipes_checked"] == 0
    assert clearance_findings(in_block) == []
    outside = bim_pipe_clearance(store, frame, dataset="outside")
    assert outside.dataset == "" and outside.findings == [] and outside.summary["pipe_datasets"] == []
    (note,) = clearance_findings(outside)
    assert note.rule_id == "GB50289-NO-PIPES" and note.severity == "info"
    named = bim_pipe_clearance(store, frame, dataset="outside", pipes_dataset="jinan_district")
    assert named.dataset == "jinan_district" and named.findings == []


def test_the_below_ground_part_is_the_footing_and_the_outdoor_steps(district: tuple[DuckDBStore, Frame]) -> None:
    store, _ = district
    gids, below = below_ground_mask(store, "over_street", 1)
    assert sorted(np.array(gids)[below]) == sorted([FOOTING, STAIR])  # walls stand on ±0.000, above the street


def test_errors_name_the_dataset(district: tuple[DuckDBStore, Frame]) -> None:
    store, frame = district
    with pytest.raises(InvalidInputError, match="not a BIM model"):
        bim_pipe_clearance(store, frame, dataset="jinan_district")
    with pytest.raises(NotFoundError, match="nope"):
        bim_pipe_clearance(store, frame, dataset="nope")
    with pytest.raises(NotFoundError, match="version 9"):
        bim_pipe_clearance(store, frame, dataset="over_street", version=9)


def _square(x: float, y: float, size: float = 4.0) -> str:
    return f"POLYGON(({x} {y}, {x + size} {y}, {x + size} {y + size}, {x} {y + size}, {x} {y}))"


def test_the_below_ground_rule_on_element_rows(district: tuple[DuckDBStore, Frame], add_model: Callable[..., None],
                                              add_elements: Callable[..., None],
                                              add_spatial: Callable[..., None]) -> None:
    store, frame = district
    x, y = 502050.0, 4058040.0  # inside the survey's hull: the surveyed ground is known here
    ground = SurveyedGround.from_store(store).heights(np.array([x, x + 4]), np.array([y, y + 4]))
    assert np.isfinite(ground).all() and ground.min() > 74.0  # about 74.3 m
    add_model(store, "rows", 1, origin_x=x, origin_y=y, origin_h=73.0)
    add_spatial(store, "rows", 1, [
        {"global_id": "B", "ifc_class": "IfcBuilding"},
        {"global_id": "F-1", "ifc_class": "IfcBuildingStorey", "parent_global_id": "B", "elevation": 70.0},
        {"global_id": "F1", "ifc_class": "IfcBuildingStorey", "parent_global_id": "B", "elevation": 73.0},
        {"global_id": "F2", "ifc_class": "IfcBuildingStorey", "parent_global_id": "B", "elevation": 76.0}])
    rows = [("basement-wall", "IfcWall", 70.0), ("ground-wall", "IfcWall", 73.0),  # on F1, more than 1 m below the street
            ("upper-wall", "IfcWall", 76.0), ("pile", "IfcPile", 76.5), ("cellar", "IfcSpace", 70.0)]
    add_elements(store, "rows", 1, [
        {"global_id": gid, "ifc_class": cls, "building_global_id": "B", "minx": x, "miny": y, "minz": z,
         "maxx": x + 4, "maxy": y + 4, "maxz": z + 3, "footprint": _square(x, y)} for gid, cls, z in rows])
    gids, below = below_ground_mask(store, "rows", 1)
    assert dict(zip(gids, below.tolist(), strict=True)) == {
        "basement-wall": True,  # below the ground floor F1 (lowest storey at or above ±0.000)
        "ground-wall": True,  # on F1, but 1.3 m under the surveyed street ground
        "upper-wall": False, "pile": True}  # foundations always count; spaces never
    with store.transaction() as con:
        con.execute("INSERT INTO datasets (id, title, kind, storage_crs, grade, current_version, created_at, "
                    "updated_at) VALUES ('rows', 'rows', 'bim', 'EPSG:4548', '重要', 1, now(), now())")
    res = bim_pipe_clearance(store, frame, dataset="rows")
    assert res.structures[0].bottom_h == 70.0 and res.summary["below_ground_elements"] == 3
