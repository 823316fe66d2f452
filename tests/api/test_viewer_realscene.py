"""The real-scene layers in a real browser: the sample district's pipes and submitted building on its DEM
terrain under its orthophoto, with its point cloud (3D Tiles points), plus the real oblique-photogrammetry sample (Guangdong) — all
served by this service to CesiumJS in headless Chromium (``tests/viewer/realscene_test.mjs``).

Checked: every layer loads with no request leaving the service and no console error; the globe is the DEM
terrain (its heights equal the elevation service's 1985 heights + the geoid, within the terrain mesh error);
imagery tiles are drawn; a pick in the middle of each 3D layer lands inside that layer's catalogued extent.
The screenshot stays in ``out/test-artifacts/viewer-realscene.png``. Skips/fails like ``test_viewer.py``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.app import create_app
from cim.heights import get_geoid
from cim.realscene.elevation import open_dem
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.mesh.ingest import MeshOptions, ingest_mesh
from converters.pipes.ingest import SurveyOptions, ingest_survey
from converters.pointcloud.ingest import PointCloudOptions, ingest_pointcloud
from converters.raster.ingest import RasterOptions, ingest_raster
from tests.api.live_server import live_server
from tests.api.test_viewer import _browser_available  # noqa: F401 - the same skip/fail rule
from tests.api.trusted import trusted
from tiles.buildings import build_buildings_tileset
from tiles.pipes import build_pipe_tileset

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
SCRIPT = REPO / "tests" / "viewer" / "realscene_test.mjs"
ARTIFACTS = REPO / "out" / "test-artifacts"
REALSCENE = REPO / "sample_data" / "jinan_realscene"
OBLIQUE = SHARED / "oblique" / "osgb_cgcs2000_gk113_production5"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("realscene-viewer")
    # the world as region: the oblique sample lies in Guangdong
    return Settings(store="duckdb:///:memory:", region_name="test", region_bbox=(-180, -90, 180, 90),
                    assets_dir=root / "assets", files_dir=root / "files")


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[DuckDBStore]:
    from converters.ifc.submit import submit_model

    if not OBLIQUE.is_dir():
        pytest.fail(f"the oblique sample is missing: {OBLIQUE}")
    s = DuckDBStore(":memory:")
    ingest_survey([REPO / "sample_data" / "jinan_district"], s, SurveyOptions(), settings)
    submit_model(REPO / "sample_data" / "jinan_building" / "office_v2.ifc", s, project="历下区综合办公楼",
                 stage="handover", settings=settings)
    ingest_raster(REALSCENE / "district_dem.tif", s, settings, RasterOptions(dataset_id="jinan_dem", role="dem"))
    ingest_raster(REALSCENE / "district_dom.tif", s, settings, RasterOptions(dataset_id="jinan_dom", role="dom"))
    ingest_pointcloud(REALSCENE / "district_points.laz", s, settings, PointCloudOptions(dataset_id="jinan_points"))
    ingest_mesh(OBLIQUE, s, settings, MeshOptions(dataset_id="oblique", title="倾斜摄影 Production_5"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(store: DuckDBStore, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("realscene-tiles")
    geoid = get_geoid("egm96")
    build_pipe_tileset(store, out / "pipes", storage_crs=settings.storage_crs, geoid=geoid)
    build_buildings_tileset(store, out / "buildings", storage_crs=settings.storage_crs, geoid=geoid)
    app = create_app(settings, store=store, tiles_dir=out / "pipes", buildings_tiles_dir=out / "buildings",
                     security=trusted("planner"))
    with live_server(app) as url:
        yield url


def _samples(store: DuckDBStore) -> list[list[float]]:
    west, south, east, north = json.loads(store.get_dataset("jinan_dem")["metadata"])["bbox_lonlat"]
    return [[west + (east - west) * fx, south + (north - south) * fy] for fx, fy in ((0.3, 0.3), (0.5, 0.6),
                                                                                    (0.7, 0.4))]


@pytest.fixture(scope="module")
def run(server: str, store: DuckDBStore) -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["node", str(SCRIPT), "--url", server, "--out", str(ARTIFACTS), "--samples", json.dumps(_samples(store))],
        cwd=REPO, capture_output=True, text=True, timeout=480, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"realscene_test.mjs printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def test_every_layer_loads_from_the_service_alone(run: dict[str, Any]) -> None:
    scene = run["scene"]
    assert run["external"] == [] and run["consoleErrors"] == []
    assert {(x["id"], x["role"]) for x in scene["layers"]} >= {("jinan_dem", "dem"), ("jinan_dom", "dom"),
                                                               ("jinan_points", "pointcloud"), ("oblique", "mesh")}
    assert scene["pipesLoaded"] is True and scene["pipesVisible"] >= 1 and scene["buildings"] is True
    assert all(t["loaded"] for t in scene["tilesets"]) and scene["classStyle"]["styled"] >= 1
    assert {t["id"] for t in scene["tilesets"]} >= {"oblique", "jinan_points"}


def test_the_globe_is_the_dem_under_the_orthophoto(run: dict[str, Any], store: DuckDBStore,
                                                   settings: Settings) -> None:
    scene = run["scene"]
    assert scene["terrainIsDem"] is True
    assert scene["imageryLayers"] == 1 and scene["imageryTiles"] > 0
    points = np.array(_samples(store))
    dem = open_dem(store, settings, "jinan_dem")
    normal = dem.sample(points[:, 0], points[:, 1], crs="EPSG:4490")
    expected = normal + get_geoid("egm96").undulation(points[:, 0], points[:, 1])
    assert np.allclose(run["heights"], expected, atol=0.5), (run["heights"], expected.tolist())


def test_a_pick_on_each_3d_layer_lands_inside_its_extent(run: dict[str, Any]) -> None:
    assert {p["id"] for p in run["picks"]} >= {"oblique", "jinan_points"}
    for p in run["picks"]:
        assert p["pick"] is not None, f"nothing picked in the middle of {p['id']}"
        west, south, east, north = p["bbox"]
        margin = 1e-5
        assert west - margin <= p["pick"]["lon"] <= east + margin, p
        assert south - margin <= p["pick"]["lat"] <= north + margin, p


def test_the_screenshot_is_kept(run: dict[str, Any]) -> None:
    data = (ARTIFACTS / "viewer-realscene.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
