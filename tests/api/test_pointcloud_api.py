"""``/api/pointclouds``: a cloud's facts, points in a box / polygon / around a manhole in every output format,
checked against brute force on the source file; access as for every real-scene asset."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import laspy
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from cim.settings import Settings
from cim.store import DatasetInfo, DuckDBStore
from converters.pointcloud.ingest import PointCloudOptions, ingest_pointcloud
from converters.samples.district_points import generate_district_points
from tests.api.trusted import trusted

MANHOLE = ("YS0042", 502150.0, 4058004.0)  # on the first E–W street, near a street tree


@pytest.fixture
def cloud(tmp_path: Path, point_table: Callable, segment_table: Callable
          ) -> Iterator[tuple[DuckDBStore, Settings, Path]]:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets")
    store = DuckDBStore(tmp_path / "s.duckdb")
    laz = generate_district_points(tmp_path / "district_points.laz", points=40_000).path
    ingest_pointcloud(laz, store, settings, PointCloudOptions(dataset_id="scan", title="扫描", grade="重要"))
    ingest_pointcloud(laz, store, settings, PointCloudOptions(dataset_id="secret_scan", secret=True))
    pid, x, y = MANHOLE
    store.write_pipe_network(DatasetInfo("pipes", "pipes", "pipe_survey", "EPSG:4548"),
                             point_table([{"feature_id": "P1", "point_id": pid, "category": "YS", "x": x, "y": y,
                                           "ground_h": 75.0}]), segment_table([]))
    yield store, settings, laz
    store.close()


def _client(store: DuckDBStore, settings: Settings, role: str = "planner") -> TestClient:
    return TestClient(create_app(settings, store=store, security=trusted(role)))


def _source(laz: Path) -> dict[str, np.ndarray]:
    las = laspy.read(str(laz))
    return {"x": np.asarray(las.x), "y": np.asarray(las.y), "z": np.asarray(las.z),
            "c": np.asarray(las.classification)}


def test_facts(cloud: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, _ = cloud
    with _client(store, settings) as c:
        r = c.get("/api/pointclouds/scan")
        assert r.status_code == 200
        f = r.json()
    assert f["point_count"] == 40_000 and f["las_version"] == "1.4" and f["point_format"] == 7
    assert f["heights"]["vertical_crs"] == "Yellow Sea 1985 height"
    assert f["acquisition_date"] == "2025-04-18" and f["acquisition_date_source"].startswith("adjusted standard GPS")
    assert set(f["classification"]) == {"2", "5", "6"} and f["density_per_m2"] > 0
    assert f["links"]["tileset"] == "/tiles/realscene/scan/tileset.json"
    west, south, east, north = f["bbox_lonlat"]
    assert 117.0 < west < east < 117.05 and 36.6 < south < north < 36.7


def test_box_in_every_format_agrees_with_brute_force(cloud: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, laz = cloud
    s = _source(laz)
    box = (502100.0, 4058020.0, 502300.0, 4058120.0)
    inside = (s["x"] >= box[0]) & (s["x"] <= box[2]) & (s["y"] >= box[1]) & (s["y"] <= box[3])
    q = f"/api/pointclouds/scan/points?bbox={','.join(map(str, box))}&crs=EPSG:4548"
    with _client(store, settings) as c:
        assert c.get(q + "&count_only=true").json()["count"] == int(inside.sum())
        assert c.get(q + "&count_only=true&classes=6").json()["count"] == int((inside & (s["c"] == 6)).sum())
        js = c.get(q + "&limit=500").json()
        assert js["matched"] == int(inside.sum()) and js["returned"] == 500 and js["truncated"]
        assert min(js["x"]) >= box[0] and max(js["x"]) <= box[2]  # x/y in the query's CRS
        gj = c.get(q + "&f=geojson&limit=10&classes=5")
        assert gj.headers["content-type"] == "application/geo+json"
        feat = gj.json()["features"][0]
        lon, lat, h_ell = feat["geometry"]["coordinates"]
        assert 117.0 < lon < 117.05 and feat["properties"]["classification"] == 5
        assert h_ell == pytest.approx(feat["properties"]["h"] + (-7.4), abs=1.0)  # + EGM96 in Jinan
        csv = c.get(q + "&f=csv&limit=20")
        assert csv.text.splitlines()[0] == "x,y,h,intensity,classification,red,green,blue"
        assert len(csv.text.splitlines()) == 21
        las = c.get(q + "&f=las&limit=1000000")
        assert las.headers["content-disposition"].startswith("attachment")
        back = laspy.read(io.BytesIO(las.content))
        assert len(back.points) == int(inside.sum()) and back.header.parse_crs().to_epsg() == 4548
        # a 3D box: heights in metres (1985)
        box6 = f"{box[0]},{box[1]},90,{box[2]},{box[3]},200"
        high = inside & (s["z"] >= 90) & (s["z"] <= 200)
        r = c.get(f"/api/pointclouds/scan/points?bbox={box6}&crs=EPSG:4548&count_only=true")
        assert r.json()["count"] == int(high.sum()) > 0


def test_polygon_in_lon_lat(cloud: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, laz = cloud
    s = _source(laz)
    from pyproj import Transformer

    poly = shapely.Polygon([(502050, 4058050), (502400, 4058030), (502300, 4058300), (502080, 4058250)])
    brute = int(shapely.intersects_xy(poly, s["x"], s["y"]).sum())
    t = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)
    ll = shapely.transform(shapely.segmentize(poly, 2), lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))
    with _client(store, settings) as c:
        r = c.post("/api/pointclouds/scan/points", json={"polygon": ll.__geo_interface__, "count_only": True})
        assert r.status_code == 200 and abs(r.json()["count"] - brute) <= 3
        r = c.post("/api/pointclouds/scan/points", json={"polygon": json.loads(shapely.to_geojson(poly)),
                                                         "crs": "EPSG:4548", "count_only": True, "classes": [2]})
        assert r.json()["count"] == int((shapely.intersects_xy(poly, s["x"], s["y"]) & (s["c"] == 2)).sum())
        bad = c.post("/api/pointclouds/scan/points", json={"polygon": {"type": "Point", "coordinates": [1, 2]}})
        assert bad.status_code == 400 and "Polygon" in bad.json()["detail"]


def test_points_around_a_manhole(cloud: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, laz = cloud
    s = _source(laz)
    pid, x, y = MANHOLE
    near = np.hypot(s["x"] - x, s["y"] - y) <= 8.0
    with _client(store, settings) as c:
        r = c.get(f"/api/pointclouds/scan/points?near={pid}&radius=8&count_only=true")
        assert r.status_code == 200
        body = r.json()
        # the disc is a 256-gon: a point within a millimetre of the circle may fall either way
        assert abs(body["count"] - int(near.sum())) <= 1 and body["near"]["dataset"] == "pipes"
        trees = c.get(f"/api/pointclouds/scan/points?near={pid}&radius=8&classes=5").json()
        assert trees["matched"] == pytest.approx(int((near & (s["c"] == 5)).sum()), abs=1)
        assert c.get("/api/pointclouds/scan/points?near=NOPE&radius=5").status_code == 404
        assert c.get("/api/pointclouds/scan/points").status_code == 400


def test_access_and_bad_parameters(cloud: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, _ = cloud
    with _client(store, settings, "platform") as c:  # other platforms do not read secret data
        assert c.get("/api/pointclouds/secret_scan").status_code == 404
        assert c.get("/api/pointclouds/secret_scan/points?bbox=117,36,118,37&count_only=true").status_code == 404
    with _client(store, settings, "public") as c:
        assert c.get("/api/pointclouds/scan").status_code == 404
    with _client(store, settings) as c:
        assert c.get("/api/pointclouds/secret_scan").status_code == 200
        assert c.get("/api/pointclouds/pipes").status_code == 404  # not a point cloud
        assert c.get("/api/pointclouds/scan/points?bbox=1,2,3").status_code == 400
        assert c.get("/api/pointclouds/scan/points?bbox=117,36,118,37&crs=EPSG:99999").status_code == 400
        assert c.get("/api/pointclouds/scan/points?bbox=117,36,118,37&limit=-1").status_code == 422
