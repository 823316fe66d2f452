"""Connectivity and up/downstream tracing on the sample district: drainage ends at the outfalls, upstream and
downstream agree, flow follows the stored inverts or the recorded 流向, pressure flow leaves the 水源."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.analysis.tracing import EXPECTED_ENDS, connectivity, pollution_sources, trace
from cim.errors import InvalidInputError, NotFoundError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")
DS = "jinan_district"
OUTFALLS = {"出水口", "排放口"}


def ps_segments(store: DuckDBStore) -> dict[str, tuple[str, str, float, float]]:
    return {
        r[0]: r[1:]
        for r in store.read()
        .execute(
            """SELECT feature_id, start_id, end_id, start_h, end_h FROM pipe_segments
           WHERE dataset_id = ? AND category = 'PS' AND version_to IS NULL""",
            [DS],
        )
        .fetchall()
    }


def point_types(store: DuckDBStore) -> dict[str, str | None]:
    return dict(
        store.read()
        .execute(
            """SELECT point_id, coalesce(appurtenance, feature) FROM pipe_points
                                        WHERE dataset_id = ? AND version_to IS NULL""",
            [DS],
        )
        .fetchall()
    )


@pytest.fixture(scope="module")
def outfalls_of(district, frame) -> dict[str, set[str]]:
    """The ends of a downstream trace from every drainage pipe."""
    return {
        fid: {
            e["point_id"]
            for e in trace(district, frame, start=fid, direction="downstream", dataset=DS).to_dict()["ends"]
        }
        for fid in ps_segments(district)
    }


def test_drainage_flows_downhill_to_the_outfalls_from_every_pipe(district, frame, outfalls_of) -> None:
    segments, types = ps_segments(district), point_types(district)
    for fid in list(segments)[::10]:
        d = trace(district, frame, start=fid, direction="downstream", dataset=DS).to_dict()
        assert not d["undetermined_segments"] and d["method"].startswith("recorded flow direction")
        for other in d["segments"]:  # every traced pipe runs from the higher to the lower invert
            assert segments[other][2] > segments[other][3]
    assert all(ends and {types[p] for p in ends} <= OUTFALLS for ends in outfalls_of.values())
    assert set().union(*outfalls_of.values()) == {p for p, t in types.items() if t in OUTFALLS}


def test_upstream_and_downstream_agree_and_reach_the_inlets(district, frame, outfalls_of) -> None:
    types = point_types(district)
    up = trace(district, frame, start="YS114", direction="upstream")
    d = up.to_dict()
    assert set(d["segments"]) == {fid for fid, ends in outfalls_of.items() if "YS114" in ends}
    polluters = pollution_sources(district, frame, at="YS114")
    inlets = {p for p in d["nodes"] if types[p] == "雨水箅"}
    assert inlets and inlets <= {s["point_id"] for s in polluters.to_dict()["sources"]}
    assert {f["properties"]["role"] for f in up.to_geojson()["features"]} == {"start", "traced", "end"}
    assert "inlet" in {f["properties"]["role"] for f in polluters.to_geojson()["features"]}


def test_pressure_flow_leaves_the_water_source(district, frame) -> None:
    types = point_types(district)
    (source,) = [p for p, t in types.items() if t == "水源"]
    down = trace(district, frame, start=source, direction="downstream").to_dict()
    n_js = (
        district.read()
        .execute(
            """SELECT count(*) FROM pipe_segments WHERE dataset_id = ? AND category = 'JS'
                                      AND version_to IS NULL""",
            [DS],
        )
        .fetchone()[0]
    )
    assert len(down["segments"]) == n_js and down["method"].startswith("away from the sources")
    hydrant = next(p for p, t in sorted(types.items()) if t == "消防栓")
    up = trace(district, frame, start=hydrant, direction="upstream").to_dict()
    assert source in {e["point_id"] for e in up["ends"]}
    assert hydrant in {e["point_id"] for e in down["ends"]}


def test_connectivity_finds_one_component_per_network_and_only_planned_ends(district, frame) -> None:
    result = connectivity(district, frame)
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    by_network = {c["network"]: c for c in d["components"]}
    assert len(d["components"]) == len(by_network) == 9  # YS, WS, JS, GD, RL, RQ, TX, GY, QT
    assert by_network["JS"]["has_source"] and not by_network["RQ"]["has_source"]
    assert (
        sum(c["edges"] for c in d["components"])
        == district.read()
        .execute("SELECT count(*) FROM network_edges WHERE dataset_id = ?", [DS])
        .fetchone()[0]
    )
    degree_one = (
        district.read()
        .execute("SELECT count(*) FROM network_nodes WHERE dataset_id = ? AND degree = 1", [DS])
        .fetchone()[0]
    )
    assert d["dangling_count"] == degree_one and d["unexpected_dangling"] == 0
    assert all(e["expected"] == ((e["appurtenance"] or e["feature"]) in EXPECTED_ENDS) for e in d["dangling"])
    ps = connectivity(district, frame, category="PS").to_dict()
    assert sorted(c["network"] for c in ps["components"]) == ["WS", "YS"]
    with pytest.raises(InvalidInputError, match="no XX segments"):
        connectivity(district, frame, category="XX")


def test_recorded_flow_direction_wins_and_flat_pipes_go_both_ways(drainage, frame) -> None:
    store, ds = drainage
    down = trace(store, frame, start="YS21", direction="downstream", dataset=ds).to_dict()
    assert "YS1-YS21" in down["segments"] and "YS1" in {e["point_id"] for e in down["ends"]}  # 流向 反向
    assert "YS21-YS22" in down["undetermined_segments"] and down["warnings"]  # flat inverts
    up = trace(store, frame, start="YS22", direction="upstream", dataset=ds).to_dict()
    assert "YS21-YS22" in up["segments"] and "YS1-YS21" not in up["segments"]


def test_unknown_ids_and_networks_without_flow_are_refused(district, frame) -> None:
    with pytest.raises(NotFoundError, match="NOPE"):
        trace(district, frame, start="NOPE", direction="downstream")
    with pytest.raises(InvalidInputError, match="direction"):
        trace(district, frame, start="YS1", direction="sideways")  # type: ignore[arg-type]
    telecom = (
        district.read().execute("SELECT min(point_id) FROM pipe_points WHERE category = 'TX'").fetchone()[0]
    )
    with pytest.raises(InvalidInputError, match="no flow"):
        trace(district, frame, start=telecom, direction="downstream")
    with pytest.raises(InvalidInputError, match="RQ.*no source"):
        trace(district, frame, start="RQ21", direction="downstream")
    with pytest.raises(InvalidInputError, match="drainage"):
        pollution_sources(district, frame, at="JS1")


@pytest.fixture(scope="module")
def drainage(tmp_path_factory) -> Iterator[tuple[DuckDBStore, str]]:
    """The sample's storm network with YS1-YS21 recorded as flowing against its inverts (流向 反向) and
    YS21-YS22 laid flat."""
    folder = tmp_path_factory.mktemp("ys")
    shutil.copy(SAMPLE / "YSPOINT.csv", folder / "YSPOINT.csv")
    lines = (SAMPLE / "YSLINE.csv").read_text(encoding="gb18030").splitlines()
    out = [lines[0] + ",流向"]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[:2] == ["YS1", "YS21"]:
            cells.append("反向")
        else:
            if cells[:2] == ["YS21", "YS22"]:
                cells[6] = cells[5]
            cells.append("")
        out.append(",".join(cells))
    (folder / "YSLINE.csv").write_text("\n".join(out) + "\n", encoding="gb18030")
    store = DuckDBStore(":memory:")
    ingest_survey(
        [folder], store, SurveyOptions(crs_in="EPSG:4548", dataset_id="ys", keep_errors=True), SETTINGS
    )
    yield store, "ys"
    store.close()
