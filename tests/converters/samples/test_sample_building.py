"""The sample office building: the committed IFC files are the generator's, they ingest where the map
conversion says, the default IDS rules find exactly the planted defects, v2 differs from v1 as documented,
and the basement lies next to the pipes of the sample district (GB 50289 clearance found in v1 only)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import ifcopenshell
import numpy as np
import pytest
import shapely

from cim.analysis.common import Frame
from cim.analysis.ground import SurveyedGround
from cim.bim.clearance import bim_pipe_clearance, clearance_findings
from cim.bim.compare import compare_versions
from cim.bim.ids import check_ids
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.ingest import IfcOptions, ingest_ifc
from converters.pipes.ingest import SurveyOptions, ingest_survey
from converters.samples import building as sample
from converters.samples.building import generate_building, global_id

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "sample_data" / "jinan_building"
DISTRICT = REPO / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")  # defaults: EPSG:4548 storage, the Shandong region
MM = 1e-3


def data_section(path: Path) -> str:
    """The DATA section of an IFC-SPF file (the header carries the writer's version and time stamp)."""
    text = path.read_text(encoding="ascii")
    match = re.search(r"^DATA;\n(.*?)^ENDSEC;", text, re.S | re.M)
    assert match, f"{path} has no DATA section"
    return match.group(1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("building")
    return {v: generate_building(out / f"office_{v}.ifc", variant=v).path for v in sample.VARIANTS}


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    """The pipe district, the v1 model (dataset office, version 1) and v2 (version 2) and v1 alone."""
    s = DuckDBStore(":memory:")
    ingest_survey([DISTRICT], s, SurveyOptions(), SETTINGS)
    for v in sample.VARIANTS:
        ingest_ifc(COMMITTED / f"office_{v}.ifc", s, IfcOptions(dataset_id="office"), SETTINGS)
    ingest_ifc(COMMITTED / "office_v1.ifc", s, IfcOptions(dataset_id="office_v1"), SETTINGS)
    yield s
    s.close()


def _georef_findings(georef: str) -> list[dict]:
    return json.loads(georef)["findings"]


def _rows(store: DuckDBStore, sql: str, params: list) -> list[tuple]:
    cur = store.read()
    try:
        return cur.execute(sql, params).fetchall()
    finally:
        cur.close()


def test_committed_files_are_the_generators(generated: dict[str, Path]) -> None:
    for path in generated.values():
        committed = COMMITTED / path.name
        assert committed.is_file(), (
            f"missing {committed}: run python -m converters.samples.building {COMMITTED}"
        )
        assert data_section(path) == data_section(committed), f"{path.name} drifted from the generator"
    assert data_section(generated["v1"]) != data_section(generated["v2"])
    with pytest.raises(ValueError, match="variant"):
        generate_building(generated["v1"].with_name("x.ifc"), variant="v3")


def test_the_files_open_as_ifc4_with_stable_global_ids() -> None:
    models = {v: ifcopenshell.open(str(COMMITTED / f"office_{v}.ifc")) for v in sample.VARIANTS}
    ids = {}
    for v, m in models.items():
        assert m.schema == "IFC4"
        (conv,) = m.by_type("IfcMapConversion")
        assert (conv.Eastings, conv.Northings, conv.OrthogonalHeight) == (
            sample.EASTINGS,
            sample.NORTHINGS,
            72.3,
        )
        assert conv.TargetCRS.Name == "EPSG:4548" and conv.TargetCRS.VerticalDatum == "EPSG:5737"
        assert {s.Name: s.Elevation for s in m.by_type("IfcBuildingStorey")} == {
            "B1": -4.2,
            "F1": 0.0,
            "F2": 3.6,
        }
        roots = [e.GlobalId for e in m.by_type("IfcRoot")]
        assert len(roots) == len(set(roots))
        ids[v] = {e.GlobalId for e in m.by_type("IfcElement") if not e.is_a("IfcFeatureElement")}
    assert ids["v2"] - ids["v1"] == {global_id("door/F1/exit-6")}
    assert ids["v1"] - ids["v2"] == {global_id("window/F2/A5")}


def test_ingest_lands_where_the_map_conversion_says(store: DuckDBStore) -> None:
    ((ox, oy, oh, georef),) = _rows(
        store,
        "SELECT origin_x, origin_y, origin_h, georef FROM bim_models WHERE dataset_id = 'office_v1'",
        [],
    )
    assert (ox, oy, oh) == pytest.approx((502_189.5, 4_058_206.0, 72.3), abs=MM)
    assert '"method": "map_conversion"' in georef and '"source_crs": "EPSG:4548"' in georef
    assert not [f for f in _georef_findings(georef) if f["severity"] != "info"]
    centres = {
        name.rsplit(" ", 1)[1]: shapely.from_wkb(bytes(fp)).centroid
        for name, fp in _rows(
            store,
            """SELECT name, ST_AsWKB(footprint) FROM bim_elements WHERE dataset_id = 'office_v1'
               AND ifc_class = 'IfcColumn' AND storey_name = 'F1'""",
            [],
        )
    }
    # grid A/1 is the origin; X runs to grid north along the street, +Y to grid west
    for axis, (x, y) in {"A1": (0.0, 0.0), "A6": (36.0, 0.0), "D1": (0.0, 16.8), "C4": (21.6, 9.6)}.items():
        e, n, _ = sample.to_map(x, y)
        assert (centres[axis].x, centres[axis].y) == pytest.approx((e, n), abs=MM), axis
    assert centres["D1"].x == pytest.approx(502_172.7, abs=MM)
    storeys = dict(
        _rows(
            store,
            """SELECT name, elevation FROM bim_spatial WHERE dataset_id = 'office_v1'
               AND ifc_class = 'IfcBuildingStorey'""",
            [],
        )
    )
    assert storeys == pytest.approx({"B1": 68.1, "F1": 72.3, "F2": 75.9}, abs=MM)


def test_ground_floor_stands_above_the_surveyed_ground(store: DuckDBStore) -> None:
    outline = np.array(sample.basement_outline())
    e, n, _ = sample.to_map(outline[:, 0], outline[:, 1])
    ground = SurveyedGround.from_store(store, bbox=(e.min() - 50, n.min() - 50, e.max() + 50, n.max() + 50))
    heights = ground.heights(np.asarray(e), np.asarray(n))
    assert np.isfinite(heights).all()
    assert heights.max() == pytest.approx(sample.GROUND_H, abs=0.01)
    assert sample.ZERO_H - heights.max() == pytest.approx(0.48, abs=0.01)


def test_default_ids_rules_find_exactly_the_planted_defects() -> None:
    v1 = check_ids(COMMITTED / "office_v1.ifc", timeout_s=120)
    assert not v1.ids_issues
    assert {(f.rule_id, f.severity, f.global_id, f.ifc_class) for f in v1.findings} == {
        ("CN300-FR-02", "error", global_id("door/F2/stair"), "IfcDoor"),
        ("CN300-CL-01", "error", global_id("wall/F1/4-CD"), "IfcWall"),
    }
    assert sum(not s.passed for s in v1.specifications) == 2
    v2 = check_ids(COMMITTED / "office_v2.ifc", timeout_s=120)
    assert v2.passed and v2.findings == [] and all(s.passed for s in v2.specifications)


def test_v2_changes_what_the_readme_says(store: DuckDBStore) -> None:
    cmp = compare_versions(store, "office", 1, 2)
    assert [a.global_id for a in cmp.added] == [global_id("door/F1/exit-6")]
    assert [r.global_id for r in cmp.removed] == [global_id("window/F2/A5")]
    changed = {c.global_id: c for c in cmp.changed}
    assert set(changed) == {
        global_id(k)
        for k in (
            "wall/F2/4-CD",  # moved
            "space/202",
            "space/203",
            "wall/F1/ext-6",  # hosts the new door
            "wall/F2/ext-A",  # lost the window
            "door/F2/stair",  # FireRating filled in
            "wall/F1/4-CD",  # classification added
            "footing/strip-E",  # eccentric footing
        )
    }
    moved = changed[global_id("wall/F2/4-CD")]
    assert moved.geometry_changed and not moved.properties_changed
    door = changed[global_id("door/F2/stair")]
    assert not door.geometry_changed and door.changed_properties == ("Pset_DoorCommon.FireRating",)
    assert changed[global_id("wall/F1/4-CD")].changed_attributes == ("classifications",)
    assert cmp.unchanged == 203


def test_the_basement_lies_next_to_the_pipes_of_the_street(store: DuckDBStore) -> None:
    below = _rows(
        store,
        """SELECT ST_AsWKB(footprint) FROM bim_elements WHERE dataset_id = 'office_v1'
           AND (storey_name = 'B1' OR ifc_class = 'IfcFooting') AND ifc_class <> 'IfcSpace'""",
        [],
    )
    basement = shapely.union_all([shapely.from_wkb(bytes(r[0])) for r in below])
    pipes = _rows(
        store,
        """SELECT feature_id, category, ST_AsWKB(geom) FROM pipe_segments
           WHERE dataset_id = 'jinan_district' AND version_to IS NULL""",
        [],
    )
    dist = {fid: basement.distance(shapely.from_wkb(bytes(g))) for fid, _, g in pipes}
    nearest = min(dist, key=dist.get)
    assert 0 < dist[nearest] <= 10.0
    assert nearest.startswith("YS") and dist[nearest] == pytest.approx(
        2.5, abs=0.01
    )  # storm sewer centre line
    assert sum(d <= 10.0 for d in dist.values()) >= 5  # storm, sewer, heat, power mains and storm inlets


@pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")
def test_gb50289_clearance_fails_v1_and_passes_v2(store: DuckDBStore) -> None:
    frame = Frame.from_settings(SETTINGS)
    v1 = clearance_findings(bim_pipe_clearance(store, frame, dataset="office", version=1))
    assert {(f.rule_id, f.severity, f.global_id) for f in v1} == {
        ("GB50289-4.1.9", "error", global_id("footing/strip-E"))
    }
    assert len(v1) == 2  # two storm sewer segments along the footing
    v2 = bim_pipe_clearance(store, frame, dataset="office", version=2)
    assert v2.findings == [] and clearance_findings(v2) == []
