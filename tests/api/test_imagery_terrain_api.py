"""Orthophotos and terrain over HTTP: XYZ tiles equal rio-tiler's own read of the source, WMTS capabilities
read by a real client (GDAL's WMTS driver against uvicorn on loopback), Cesium terrain (layer.json and
quantized-mesh tiles), the elevation service (points and profiles), and authorisation per dataset."""

from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rio_tiler.io import Reader

from api.app import create_app
from cim.heights import get_geoid
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.raster.ingest import RasterOptions, ingest_raster
from tests.api.live_server import live_server
from tests.api.trusted import trusted
from tests.tiles.test_terrain import decode

ROOT = Path(__file__).resolve().parents[2]
RASTERS = ROOT / "../shared/data/raster"
DISTRICT = ROOT / "sample_data" / "jinan_realscene"
ORTHOS = ["ortho_rgb_epsg3857_0p6m_cog.tif", "ortho_hro_colorado_epsg26913_0p15m.tif", "landsat_rgb_epsg32618.tif"]
WMTS_NS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}

pytestmark = [pytest.mark.skipif(not (RASTERS / ORTHOS[0]).is_file(), reason="the shared raster samples are missing"),
              pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid missing")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, Settings]]:
    tmp = tmp_path_factory.mktemp("imagery")
    settings = Settings(region_name="test", region_bbox=(-180, -90, 180, 90), store=f"duckdb:///{tmp}/s.duckdb",
                        assets_dir=tmp / "assets")
    store = DuckDBStore(tmp / "s.duckdb")
    for name in ORTHOS:
        ingest_raster(RASTERS / name, store, settings, RasterOptions(dataset_id=Path(name).stem))
    ingest_raster(RASTERS / "dem_epsg2056_2p5m.tif", store, settings, RasterOptions(dataset_id="swiss_dem"))
    ingest_raster(DISTRICT / "district_dem.tif", store, settings, RasterOptions(dataset_id="district_dem"))
    ingest_raster(DISTRICT / "district_dom.tif", store, settings, RasterOptions(dataset_id="district_dom"))
    ingest_raster(DISTRICT / "district_dom.tif", store, settings, RasterOptions(dataset_id="core_dom", grade="核心"))
    yield store, settings
    store.close()


@pytest.fixture(scope="module")
def client(world: tuple[DuckDBStore, Settings]) -> Iterator[TestClient]:
    store, settings = world
    with TestClient(create_app(settings, store=store, security=trusted())) as c:
        yield c


def _rgba(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.mark.parametrize("name", ORTHOS)
def test_xyz_tiles_equal_rio_tilers_read_of_the_source(client: TestClient, name: str) -> None:
    with Reader(str(RASTERS / name)) as reader:
        w, s, e, n = reader.get_geographic_bounds("EPSG:4326")
        z = reader.maxzoom
        edge = reader.tms.tile(w, n, z)  # the north-west corner tile: part image, part transparent
        inner = reader.tms.tile((w + e) / 2, (s + n) / 2, z)
        for tile in (edge, inner):
            expected = reader.tile(tile.x, tile.y, tile.z)
            r = client.get(f"/api/imagery/{Path(name).stem}/tiles/{tile.z}/{tile.x}/{tile.y}.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            got = _rgba(r.content)
            assert got.shape == (256, 256, 4)
            np.testing.assert_array_equal(got[..., 3], expected.mask)
            visible = expected.mask > 0
            assert visible.any() or tile is edge
            np.testing.assert_array_equal(got[..., :3][visible], expected.data[:3].transpose(1, 2, 0)[visible])
        far = reader.tms.tile(-w if abs(w) > 1 else w + 90, 0.0, 10)  # far away: fully transparent
    r = client.get(f"/api/imagery/{Path(name).stem}/tiles/{far.z}/{far.x}/{far.y}.png")
    assert r.status_code == 200 and (_rgba(r.content)[..., 3] == 0).all()


def test_tilejson_and_wmts_capabilities(client: TestClient) -> None:
    tj = client.get("/api/imagery/district_dom/tilejson.json").json()
    assert tj["tiles"] == ["http://testserver/api/imagery/district_dom/tiles/{z}/{x}/{y}.png"]
    w, s, e, n = tj["bounds"]
    assert 117.0 < w < e < 117.04 and 36.64 < s < n < 36.67 and tj["maxzoom"] == 18
    r = client.get("/api/imagery/district_dom/WMTSCapabilities.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.opengis.net/wmts/1.0}Capabilities" and root.get("version") == "1.0.0"
    layer = root.find("w:Contents/w:Layer", WMTS_NS)
    assert layer.find("ows:Identifier", WMTS_NS).text == "district_dom"
    url = layer.find("w:ResourceURL", WMTS_NS)
    assert url.get("template").endswith("/api/imagery/district_dom/tiles/{TileMatrix}/{TileCol}/{TileRow}.png")
    matrices = root.findall("w:Contents/w:TileMatrixSet/w:TileMatrix", WMTS_NS)
    assert len(matrices) == 19 and matrices[0].find("w:MatrixWidth", WMTS_NS).text == "1"
    assert float(matrices[18].find("w:ScaleDenominator", WMTS_NS).text) == pytest.approx(2132.729, rel=1e-5)


def test_terrain_layer_and_tiles(client: TestClient) -> None:
    layer = client.get("/api/terrain/district_dem/layer.json").json()
    assert layer["format"] == "quantized-mesh-1.0" and layer["tiles"] == ["{z}/{x}/{y}.terrain?v=1"]
    z = layer["maxzoom"]
    rng = layer["available"][z][0]
    x, y = (rng["startX"] + rng["endX"]) // 2, (rng["startY"] + rng["endY"]) // 2
    r = client.get(f"/api/terrain/district_dem/{z}/{x}/{y}.terrain",
                   headers={"Accept": "application/vnd.quantized-mesh;extensions=octvertexnormals,*/*;q=0.01"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.quantized-mesh"
    mesh = decode(r.content)
    assert 1 in mesh.extensions and len(mesh.u) > 3
    n = float(get_geoid("egm96").undulation(np.array([117.025]), np.array([36.655]))[0])
    assert -9 < n < -5  # Jinan: EGM96 about −7 m, so ellipsoidal = 1985 height − 7 m
    assert 60 + n < mesh.header["minimumHeight"] < mesh.header["maximumHeight"] < 80 + n
    assert 1 not in decode(client.get(f"/api/terrain/district_dem/{z}/{x}/{y}.terrain").content).extensions
    flat = decode(client.get("/api/terrain/district_dem/0/0/0.terrain").content)  # off the DEM: the ellipsoid
    assert flat.header["maximumHeight"] == 0.0
    assert client.get("/api/terrain/district_dem/0/2/0.terrain").status_code == 404
    assert client.get("/api/terrain/district_dom/layer.json").status_code == 404  # an orthophoto is no terrain
    assert client.get("/api/imagery/district_dem/tiles/0/0/0.png").status_code == 404


def test_elevation_at_points_and_along_a_line(client: TestClient) -> None:
    r = client.get("/api/terrain/district_dem/elevation", params={"points": "502100,4058100;502300.5,4058222;1,1",
                                                                  "crs": "EPSG:4548", "method": "nearest"})
    assert r.status_code == 200, r.text
    body = r.json()
    with rasterio.open(DISTRICT / "district_dem.tif") as src:
        expected = [float(v[0]) for v in src.sample([(502100, 4058100), (502300.5, 4058222)])]
    assert [p["h"] for p in body["points"][:2]] == pytest.approx(expected, abs=1e-3)
    assert body["points"][2]["h"] is None and body["height_system"] == "EPSG:5737"
    line = {"type": "LineString", "coordinates": [[502000, 4058000], [502000, 4058450]]}
    prof = client.post("/api/terrain/district_dem/elevation", json={"line": line, "crs": "EPSG:4548",
                                                                    "spacing": 50}).json()
    assert prof["summary"]["stations"] == 10 and prof["summary"]["known"] == 10
    hs = [s["h"] for s in prof["stations"]]
    assert all(a > b for a, b in zip(hs, hs[1:], strict=False))  # the ground falls 1.5 % northwards
    assert hs[0] - hs[-1] == pytest.approx(0.015 * 450, abs=0.4)
    bad = client.get("/api/terrain/district_dem/elevation", params={"points": "117.02"})
    assert bad.status_code == 400 and "is not 'x,y'" in bad.json()["detail"]
    bad = client.post("/api/terrain/district_dem/elevation", json={"line": {"type": "Point", "coordinates": [1, 2]}})
    assert bad.status_code == 400 and "LineString" in bad.json()["detail"]


def test_imagery_and_terrain_follow_dataset_access(world: tuple[DuckDBStore, Settings]) -> None:
    store, settings = world
    with TestClient(create_app(settings, store=store, security=trusted("planner"))) as c:
        assert c.get("/api/imagery/core_dom/tilejson.json").status_code == 404  # 核心 data: admins only
        assert c.get("/api/imagery/core_dom/tiles/18/0/0.png").status_code == 404
        assert c.get("/api/terrain/district_dem/layer.json").status_code == 200
    assert store.get_dataset("core_dom")["grade"] == "核心"  # it exists: the 404 is the grade's
    with TestClient(create_app(settings, store=store, security=trusted("public"))) as c:
        assert c.get("/api/terrain/district_dem/layer.json").status_code == 404
        assert c.get("/api/terrain/district_dem/elevation", params={"points": "117.02,36.65"}).status_code == 404


def test_cover_analysis_api_takes_a_catalogued_dem(world: tuple[DuckDBStore, Settings]) -> None:
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    store, settings = world
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(), settings)
    with TestClient(create_app(settings, store=store, security=trusted())) as c:
        r = c.post("/api/analysis/cover", json={"dem": "district_dem", "ground_tolerance_m": 0.002,
                                                "dataset": "jinan_district"})
        assert r.status_code == 200, r.text
        summary = r.json()["summary"]
        assert summary["ground_model"] == "DEM district_dem" and summary["ground_mismatches"] > 100
        assert c.post("/api/analysis/cover", json={"dem": "district_dom", "dataset": "jinan_district"}) \
            .status_code == 404
    with TestClient(create_app(settings, store=store, security=trusted("public"))) as c:
        r = c.post("/api/analysis/cover", json={"dem": "district_dem", "dataset": "jinan_district"})
        assert r.status_code in (403, 404)


# -- a real WMTS client ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(world: tuple[DuckDBStore, Settings]) -> Iterator[str]:
    store, settings = world
    with live_server(create_app(settings, store=store, security=trusted())) as url:
        yield url


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="GDAL command-line tools not installed")
def test_gdal_reads_the_wmts_service(served: str, tmp_path: Path) -> None:
    import os

    url = f"WMTS:{served}/api/imagery/ortho_rgb_epsg3857_0p6m_cog/WMTSCapabilities.xml"
    env = {**os.environ, "GDAL_DEFAULT_WMS_CACHE_PATH": str(tmp_path / "cache")}  # not ./gdalwmscache
    info = subprocess.run(["gdalinfo", url], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert info.returncode == 0, info.stderr
    assert "Driver: WMTS" in info.stdout and 'ID["EPSG",3857]' in info.stdout.replace("AUTHORITY", "ID").replace(
        '"EPSG","3857"', '"EPSG",3857')
    with Reader(str(RASTERS / ORTHOS[0])) as reader:
        w, s, e, n = reader.get_geographic_bounds("EPSG:4326")
        tile = reader.tms.tile((w + e) / 2, (s + n) / 2, reader.maxzoom)
        expected = reader.tile(tile.x, tile.y, tile.z)
        left, bottom, right, top = reader.tms.xy_bounds(tile)
    out = tmp_path / "window.tif"
    done = subprocess.run(["gdal_translate", "-q", "-projwin", repr(left), repr(top), repr(right), repr(bottom),
                           "-outsize", "256", "256", url, str(out)], capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert done.returncode == 0, done.stderr
    with rasterio.open(out) as got:  # GDAL fetched our tiles: the same pixels rio-tiler reads from the source
        data = got.read()
    np.testing.assert_array_equal(data[:3], expected.data[:3])


CESIUM_PROBE = """
import { CesiumTerrainProvider, Cartographic } from "@cesium/engine";
const [url, points] = [process.argv[1], JSON.parse(process.argv[2])];
const provider = await CesiumTerrainProvider.fromUrl(url, { requestVertexNormals: true });
const out = [];
for (const [lon, lat] of points) {
  const pos = Cartographic.fromDegrees(lon, lat);
  const level = provider.availability.computeMaximumLevelAtPosition(pos);
  const xy = provider.tilingScheme.positionToTileXY(pos, level);
  const data = await provider.requestTileGeometry(xy.x, xy.y, level);
  const rect = provider.tilingScheme.tileXYToRectangle(xy.x, xy.y, level);
  out.push({ level, h: data.interpolateHeight(rect, pos.longitude, pos.latitude) });
}
console.log(JSON.stringify({ normals: provider.hasVertexNormals, out }));
"""


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules/@cesium/engine").is_dir(),
                    reason="node or CesiumJS (npm ci) not installed")
def test_cesium_reads_the_terrain_and_puts_the_ground_where_the_dem_says(served: str) -> None:
    import json

    from cim.realscene.elevation import DEM
    from tiles.terrain import max_error

    points = [[117.0255, 36.655], [117.0231, 36.6531], [117.0288, 36.6572]]
    done = subprocess.run(["node", "--input-type=module", "-e", CESIUM_PROBE, f"{served}/api/terrain/district_dem/",
                           json.dumps(points)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    lon, lat = np.array(points).T
    geoid = get_geoid("egm96")
    expected = DEM(DISTRICT / "district_dem.tif", "d", "EPSG:5737", None).sample(lon, lat, "EPSG:4326") \
        + geoid.undulation(lon, lat)
    assert result["normals"] is True
    for got, want in zip(result["out"], expected, strict=True):
        assert got["level"] == 17 and abs(got["h"] - want) <= max_error(17) + 0.02
