"""The pipe analyses over HTTP on the sample district: every route answers JSON, GeoJSON for the viewer and its
printable forms, and bad input is a 4xx naming the problem. The analyses themselves are tested in
``tests/cim/analysis``; here the API must pass inputs through and render results faithfully."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from cim.analysis.common import Frame
from cim.analysis.excavation import excavate
from cim.analysis.isolation import isolate
from cim.crs import to_lonlat
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.trusted import trusted

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")
STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], s, SurveyOptions(), SETTINGS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(store: DuckDBStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, store=store, tiles_dir=tmp_path_factory.mktemp("no-tiles"), security=trusted())) as c:
        yield c


@pytest.fixture(scope="module")
def frame() -> Frame:
    return Frame.from_settings(SETTINGS)


def _lonlat_box(x: float, y: float, half: float) -> dict:
    xs = np.array([x - half, x + half, x + half, x - half, x - half])
    ys = np.array([y - half, y - half, y + half, y + half, y - half])
    lon, lat = to_lonlat(xs, ys, STORAGE)
    return {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]]}


@pytest.fixture(scope="module")
def water_point(store: DuckDBStore) -> tuple[float, float]:
    """A water tee: several networks cross the street there."""
    return store.read().execute(
        "SELECT x, y FROM pipe_points WHERE version_to IS NULL AND category = 'JS' AND feature = '三通' "
        "ORDER BY point_id LIMIT 1").fetchone()


# -- excavation ----------------------------------------------------------------------------------------------
def test_excavation_answers_what_the_analysis_computes(client: TestClient, store: DuckDBStore, frame: Frame,
                                                       water_point: tuple[float, float]) -> None:
    area = _lonlat_box(*water_point, 8.0)
    r = client.post("/api/analysis/excavation", json={"area": area, "depth_m": 3.0})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    direct = excavate(store, frame, area=area, depth_m=3.0).to_dict()
    assert [h["feature_id"] for h in body["hits"]] == [h["feature_id"] for h in direct["hits"]]
    assert body["summary"]["hits"] >= 2  # the water main and at least one pipe crossing it


def test_excavation_geojson_html_and_download(client: TestClient, water_point: tuple[float, float]) -> None:
    body = {"area": _lonlat_box(*water_point, 8.0), "depth_m": 3.0}
    gj = client.post("/api/analysis/excavation?f=geojson", json=body)
    assert gj.headers["content-type"] == "application/geo+json"
    roles = {f["properties"]["role"] for f in gj.json()["features"]}
    assert {"excavation", "hit"} <= roles
    lon, lat = to_lonlat(np.array([water_point[0]]), np.array([water_point[1]]), STORAGE)
    pit = next(f for f in gj.json()["features"] if f["properties"]["role"] == "excavation")
    assert shapely.geometry.shape(pit["geometry"]).buffer(1e-6).contains(shapely.Point(lon[0], lat[0]))
    html = client.post("/api/analysis/excavation?f=html&download=true", json=body)
    assert html.headers["content-type"].startswith("text/html")
    assert 'filename="excavation.html"' in html.headers["content-disposition"]
    assert "济南水务集团" in html.text  # the water owner is in the printed report


def test_excavation_bad_inputs_are_400_naming_the_problem(client: TestClient, water_point: tuple[float, float]) -> None:
    x, y = water_point
    metres = {"type": "Polygon", "coordinates": [[[x, y], [x + 10, y], [x + 10, y + 10], [x, y]]]}
    r = client.post("/api/analysis/excavation", json={"area": metres, "depth_m": 3})
    assert r.status_code == 400 and "metres, not degrees" in r.json()["detail"]
    r = client.post("/api/analysis/excavation", json={"area": metres, "crs": "EPSG:4548", "depth_m": 3,
                                                       "bottom_h": 10})
    assert r.status_code == 400 and "depth" in r.json()["detail"]
    r = client.post("/api/analysis/excavation", json={"area": metres, "crs": "EPSG:99999", "depth_m": 3})
    assert r.status_code == 400 and "EPSG:99999" in r.json()["detail"]
    r = client.post("/api/analysis/excavation", json={"area": {"type": "Polygon"}, "depth_m": 3})
    assert r.status_code == 400
    r = client.post("/api/analysis/excavation", json={"area": metres, "depth": 3})  # misspelt field
    assert r.status_code == 422
    r = client.post("/api/analysis/excavation?f=svg", json={"area": metres, "crs": STORAGE, "depth_m": 3})
    assert r.status_code == 400 and "available: json, geojson, html" in r.json()["detail"]


# -- sections and profiles -----------------------------------------------------------------------------------
def test_cross_section_json_svg_and_png(client: TestClient, water_point: tuple[float, float]) -> None:
    x, y = water_point
    lon, lat = to_lonlat(np.array([x - 40, x + 40]), np.array([y - 3, y + 3]), STORAGE)
    body = {"line": {"type": "LineString", "coordinates": [[lon[0], lat[0]], [lon[1], lat[1]]]}}
    data = client.post("/api/analysis/cross-section", json=body).json()
    assert data["summary"]["crossings"] >= 2
    stations = [c["station"] for c in data["crossings"]]
    assert stations == sorted(stations)
    svg = client.post("/api/analysis/cross-section?f=svg", json=body)
    assert svg.headers["content-type"] == "image/svg+xml"
    text = ET.tostring(ET.fromstring(svg.content), encoding="unicode")
    assert all(c["feature_id"] in text for c in data["crossings"])
    png = client.post("/api/analysis/cross-section?f=png", json=body)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_long_profile_of_a_drain_run(client: TestClient, store: DuckDBStore) -> None:
    start, end = store.read().execute(
        """SELECT s.start_id, s.end_id FROM pipe_segments s WHERE s.version_to IS NULL AND s.category = 'PS'
           AND s.kind = 'gravity' ORDER BY s.length_3d DESC LIMIT 1""").fetchone()
    r = client.get("/api/analysis/long-profile", params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    segs = r.json()["segments"]
    assert len(segs) >= 1 and not any(s.get("reversed_slope") for s in segs)
    assert client.get("/api/analysis/long-profile", params={"start": start, "end": end, "f": "svg"}
                      ).headers["content-type"] == "image/svg+xml"
    r = client.get("/api/analysis/long-profile", params={"start": start, "end": "NO-SUCH-POINT"})
    assert r.status_code in (400, 404) and "NO-SUCH-POINT" in r.json()["detail"]


# -- clearance and cover -------------------------------------------------------------------------------------
def test_clearance_and_structure_clearance(client: TestClient, water_point: tuple[float, float]) -> None:
    r = client.post("/api/analysis/clearance", json={})
    assert r.status_code == 200 and r.json()["summary"]["segments"] > 0
    assert r.json()["findings"] == []  # the clean sample is laid to GB 50289
    footprint = _lonlat_box(*water_point, 12.0)
    r = client.post("/api/analysis/structure-clearance",
                    json={"footprint": footprint, "bottom_h": 0.0, "name": "地下车库"})
    assert r.status_code == 200
    checks = {f["check"] for f in r.json()["findings"]}
    assert "clash" in checks  # a basement down to 0 m under a street cuts through its pipes
    assert r.json()["summary"]["structures"][0]["name"] == "地下车库"


def test_cover_check_reports_by_road_type(client: TestClient) -> None:
    carriage = client.post("/api/analysis/cover", json={}).json()["summary"]
    footway = client.post("/api/analysis/cover", json={"road_type": "footway"}).json()["summary"]
    assert footway["below_minimum"] <= carriage["below_minimum"]
    r = client.post("/api/analysis/cover", json={"road_type": "runway"})
    assert r.status_code == 400 and "runway" in r.json()["detail"]


# -- gas-adjacent chambers -----------------------------------------------------------------------------------
def test_gas_adjacent_chambers_are_ranked(client: TestClient) -> None:
    data = client.get("/api/analysis/gas-risk", params={"distance_m": 15}).json()
    ranks = [c["rank"] for c in data["chambers"]]
    assert ranks == list(range(1, len(ranks) + 1)) and ranks
    assert all(c["category"] != "RQ" for c in data["chambers"])
    assert client.get("/api/analysis/gas-risk", params={"distance_m": -1}).status_code == 422


# -- network analyses ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def water_segment(store: DuckDBStore) -> str:
    """A water segment with a valve at one end."""
    return store.read().execute(
        """SELECT s.feature_id FROM pipe_segments s JOIN pipe_points p ON p.dataset_id = s.dataset_id
           AND p.version_to IS NULL AND p.point_id IN (s.start_id, s.end_id)
           WHERE s.version_to IS NULL AND s.category = 'JS' AND p.appurtenance IN ('阀门', '阀门井')
           ORDER BY s.feature_id LIMIT 1""").fetchone()[0]


def test_isolation_and_a_valve_that_fails_to_close(client: TestClient, store: DuckDBStore, frame: Frame,
                                                   water_segment: str) -> None:
    r = client.get("/api/analysis/isolation", params={"segment": water_segment})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = isolate(store, frame, segment=water_segment).to_dict()
    assert [v["valve_id"] for v in body["valves"]] == [v["valve_id"] for v in direct["valves"]]
    assert body["valves"]
    failed = body["valves"][0]["valve_id"]
    again = client.get("/api/analysis/isolation", params={"segment": water_segment, "failed_valve": failed}).json()
    assert failed not in [v["valve_id"] for v in again["valves"] if v.get("state") != "failed"]
    gj = client.get("/api/analysis/isolation", params={"segment": water_segment, "f": "geojson"}).json()
    roles = {f["properties"]["role"] for f in gj["features"]}
    assert {"failed", "valve"} <= roles


def test_isolation_bad_inputs(client: TestClient, store: DuckDBStore) -> None:
    r = client.get("/api/analysis/isolation", params={"segment": "NO-SUCH-SEGMENT"})
    assert r.status_code == 404 and "NO-SUCH-SEGMENT" in r.json()["detail"]
    drain = store.read().execute("SELECT feature_id FROM pipe_segments WHERE category = 'PS' LIMIT 1").fetchone()[0]
    r = client.get("/api/analysis/isolation", params={"segment": drain})
    assert r.status_code == 400 and drain in r.json()["detail"]


def test_connectivity_trace_and_pollution_sources(client: TestClient, store: DuckDBStore) -> None:
    conn = client.get("/api/analysis/connectivity", params={"category": "PS"})
    assert conn.status_code == 200 and conn.json()["summary"]["components"] >= 1
    outfall = store.read().execute(
        "SELECT point_id FROM pipe_points WHERE version_to IS NULL AND category = 'PS' AND "
        "(feature = '出水口' OR appurtenance = '排放口') ORDER BY point_id LIMIT 1").fetchone()[0]
    up = client.get("/api/analysis/trace", params={"start": outfall, "direction": "upstream"})
    assert up.status_code == 200, up.text
    assert up.json()["summary"]["segments"] >= 1
    src = client.get("/api/analysis/pollution-sources", params={"at": outfall, "f": "geojson"})
    assert src.status_code == 200 and src.json()["features"]
    bad = client.get("/api/analysis/trace", params={"start": outfall, "direction": "sideways"})
    assert bad.status_code == 422


def test_analyses_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("excavation", "cross-section", "long-profile", "clearance", "structure-clearance", "cover",
                  "isolation", "connectivity", "trace", "pollution-sources", "gas-risk"):
        assert f"/api/analysis/{route}" in paths, route
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"area", "crs", "depth_m", "bottom_h", "safety_m"} <= set(schemas["ExcavationRequest"]["properties"])
    assert "$ref" in json.dumps(paths["/api/analysis/excavation"]["post"]["requestBody"])
