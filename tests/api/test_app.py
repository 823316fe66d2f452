"""The web service in-process (TestClient): the viewer page, tileset files (media types, ETag/304, no
traversal), feature search for fly-to, QC findings as GeoJSON, the ground surface and the error table."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import CESIUM_DIR, create_app
from api.errors import status_for
from cim.crs import to_lonlat
from cim.errors import CRSError, NotFoundError, StoreError
from cim.heights import get_geoid
from cim.qc.catalogue import RULES_BY_ID
from cim.settings import SHANDONG_BBOX, Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.trusted import trusted
from tiles.pipes import TilingOptions, build_pipe_tileset

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
STORAGE = "EPSG:4548"
SETTINGS = Settings(store="duckdb:///:memory:")
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    ingest_survey([SAMPLES / "jinan_district"], s, SurveyOptions(), SETTINGS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiles(store: DuckDBStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "tiles"
    build_pipe_tileset(store, out, storage_crs=STORAGE, geoid=get_geoid("egm96"),
                       options=TilingOptions(leaf_capacity=300))
    (out.parent / "secret.json").write_text('{"secret": "outside the tileset"}', encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def client(store: DuckDBStore, tiles: Path) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, store=store, tiles_dir=tiles, security=trusted())) as c:
        yield c


def _in_shandong(lon: float, lat: float) -> bool:
    west, south, east, north = SHANDONG_BBOX
    return west <= lon <= east and south <= lat <= north


# -- viewer and static files --------------------------------------------------------------------------------
def test_the_viewer_page_loads_cesium_locally_and_its_own_scripts(client: TestClient) -> None:
    r = client.get("/viewer")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "window.CESIUM_BASE_URL = '/cesium/'" in r.text and 'src="/cesium/Cesium.js"' in r.text
    assert "http://" not in r.text and "https://" not in r.text
    js = client.get("/viewer/static/viewer.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "TILESET_URL = '/tiles/pipes/tileset.json'" in js.text and "Cesium3DTileset.fromUrl(TILESET_URL)" in js.text
    assert "Cesium.Ion.defaultAccessToken = undefined" in js.text and "baseLayer: false" in js.text
    assert client.get("/viewer/static/viewer.css").status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/viewer"


def test_cesium_missing_is_a_clear_503(store: DuckDBStore, tiles: Path, tmp_path: Path) -> None:
    with TestClient(create_app(SETTINGS, store=store, tiles_dir=tiles, cesium_dir=tmp_path / "nothing", security=trusted())) as c:
        r = c.get("/cesium/Cesium.js")
    assert r.status_code == 503
    assert r.json()["error"] == "AssetsMissingError" and "npm ci" in r.json()["detail"]


@pytest.mark.skipif(not (CESIUM_DIR / "Cesium.js").is_file(), reason="npm cesium not installed (npm ci)")
def test_cesium_is_served_from_node_modules(client: TestClient) -> None:
    r = client.get("/cesium/Cesium.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert client.get("/cesium/Widgets/widgets.css").status_code == 200


# -- tiles ---------------------------------------------------------------------------------------------------
def _content_uris(node: dict) -> Iterator[str]:
    if "content" in node:
        yield node["content"]["uri"]
    for child in node.get("children", []):
        yield from _content_uris(child)


def test_tileset_json_and_glb_have_their_media_types(client: TestClient) -> None:
    r = client.get("/tiles/pipes/tileset.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    uris = list(_content_uris(r.json()["root"]))
    assert len(uris) > 1
    glb = client.get(f"/tiles/pipes/{uris[-1]}")
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content[:4] == b"glTF" and len(glb.content) == int(glb.headers["content-length"])


def test_a_strong_etag_answers_if_none_match_with_304(tiles: Path, store: DuckDBStore, tmp_path: Path) -> None:
    copy = tmp_path / "tiles"
    shutil.copytree(tiles, copy)
    with TestClient(create_app(SETTINGS, store=store, tiles_dir=copy, security=trusted())) as c:
        first = c.get("/tiles/pipes/tileset.json")
        etag = first.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert "no-cache" in first.headers["cache-control"]
        again = c.get("/tiles/pipes/tileset.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert c.get("/tiles/pipes/tileset.json", headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
        assert c.get("/tiles/pipes/tileset.json", headers={"If-None-Match": '"other"'}).status_code == 200
        doc = json.loads((copy / "tileset.json").read_text(encoding="utf-8"))
        doc["asset"]["extras"]["rebuilt"] = True  # a rebuild changes the file: the old tag no longer matches
        (copy / "tileset.json").write_text(json.dumps(doc), encoding="utf-8")
        changed = c.get("/tiles/pipes/tileset.json", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert changed.json()["asset"]["extras"]["rebuilt"] is True


@pytest.mark.parametrize("path", ["..%2Fsecret.json", "tiles%2F..%2F..%2Fsecret.json", "%2E%2E%2Fsecret.json",
                                  "..\\secret.json", "%2Fetc%2Fpasswd"])
def test_paths_leaving_the_tileset_folder_are_refused(client: TestClient, path: str) -> None:
    r = client.get(f"/tiles/pipes/{path}")
    assert r.status_code in (400, 404), r.text
    assert "outside the tileset" not in r.text and "root:" not in r.text


def test_a_link_out_of_the_tileset_folder_is_not_followed(tiles: Path, store: DuckDBStore, tmp_path: Path) -> None:
    copy = tmp_path / "tiles"
    shutil.copytree(tiles, copy)
    (copy / "leak.json").symlink_to(tiles.parent / "secret.json")
    with TestClient(create_app(SETTINGS, store=store, tiles_dir=copy, security=trusted())) as c:
        r = c.get("/tiles/pipes/leak.json")
    assert r.status_code == 404 and "outside the tileset" not in r.text


def test_a_missing_tile_is_a_json_404(client: TestClient) -> None:
    r = client.get("/tiles/pipes/tiles/nope.glb")
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"


# -- search ----------------------------------------------------------------------------------------------------
def test_search_finds_a_segment_by_id_at_its_midpoint_inside_shandong(client: TestClient, store: DuckDBStore) -> None:
    r = client.get("/api/pipes/search", params={"q": "JS1-JS21"})
    assert r.status_code == 200
    hit = r.json()[0]
    assert (hit["id"], hit["kind"], hit["category"], hit["dataset"]) == ("JS1-JS21", "segment", "JS", "jinan_district")
    assert _in_shandong(hit["lon"], hit["lat"])
    x1, y1, x2, y2, z1, z2 = store.read().execute(
        """SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)), ST_X(ST_EndPoint(geom)),
                  ST_Y(ST_EndPoint(geom)), start_z, end_z
           FROM pipe_segments WHERE feature_id = 'JS1-JS21' AND version_to IS NULL""").fetchone()
    lon, lat = to_lonlat(np.array([(x1 + x2) / 2]), np.array([(y1 + y2) / 2]), STORAGE)
    n = get_geoid("egm96").undulation(lon, lat)[0]
    assert hit["lon"] == pytest.approx(lon[0], abs=1e-8) and hit["lat"] == pytest.approx(lat[0], abs=1e-8)
    assert hit["height"] == pytest.approx((z1 + z2) / 2 + n, abs=1e-3)
    assert -10 < n < -5  # EGM96 in Jinan: the ellipsoid lies above the geoid


def test_search_by_prefix_is_case_insensitive_and_puts_the_exact_id_first(client: TestClient) -> None:
    hits = client.get("/api/pipes/search", params={"q": "ys1", "limit": 50}).json()
    assert hits[0]["id"] == "YS1" and hits[0]["kind"] == "point" and hits[0]["category"] == "PS"
    assert len(hits) > 5 and all(h["id"].upper().startswith("YS1") for h in hits)
    assert all(_in_shandong(h["lon"], h["lat"]) for h in hits)
    assert client.get("/api/pipes/search", params={"q": "NO-SUCH-ID"}).json() == []


def test_search_without_an_id_is_a_json_400(client: TestClient) -> None:
    r = client.get("/api/pipes/search", params={"q": "   "})
    assert r.status_code == 400 and r.json()["error"] == "InvalidInputError"
    assert client.get("/api/pipes/search").status_code == 422


# -- QC findings and ground --------------------------------------------------------------------------------
def test_the_clean_sample_has_no_findings(client: TestClient) -> None:
    r = client.get("/api/qc/findings")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    assert r.json() == {"type": "FeatureCollection", "features": []}


@pytest.fixture(scope="module")
def dirty_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, dict]]:
    dirty = tmp_path_factory.mktemp("dirty") / "jinan_district_dirty"
    shutil.copytree(SAMPLES / "jinan_district_dirty", dirty)
    defects = json.loads((dirty / "defects.json").read_text(encoding="utf-8"))
    swapped = defects["crs_region"][0]  # always refused: put its X and Y back where they belong
    path = dirty / swapped["file"]
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    ix, iy = rows[0].index("X坐标"), rows[0].index("Y坐标")
    row = rows[swapped["row"] - 1]
    row[ix], row[iy] = row[iy], row[ix]
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    s = DuckDBStore(":memory:")
    ingest_survey([dirty], s, SurveyOptions(keep_errors=True), SETTINGS)
    yield s, defects
    s.close()


def test_findings_of_the_dirty_sample_are_geojson_at_their_features(dirty_store: tuple[DuckDBStore, dict]) -> None:
    store, defects = dirty_store
    with TestClient(create_app(SETTINGS, store=store, security=trusted())) as c:
        fc = c.get("/api/qc/findings").json()
        only = c.get("/api/qc/findings", params={"dataset": "other"}).json()
    assert fc["type"] == "FeatureCollection" and only["features"] == []
    features = fc["features"]
    stored = store.read().execute(
        """SELECT count(*) FROM qc_findings f WHERE feature_id IN (
             SELECT feature_id FROM pipe_points WHERE version_to IS NULL
             UNION ALL SELECT feature_id FROM pipe_segments WHERE version_to IS NULL)""").fetchone()[0]
    assert 0 < len(features) == stored
    for f in features:
        assert f["geometry"]["type"] == "Point" and _in_shandong(*f["geometry"]["coordinates"][:2])
        assert {"rule_id", "severity", "message"} <= set(f["properties"])
        assert f["properties"]["severity"] in ("error", "warning", "info")
    rules = {f["properties"]["rule_id"] for f in features}
    assert "reversed_slope" in rules and rules <= set(RULES_BY_ID)
    reversed_ = next(f for f in features if f["properties"]["rule_id"] == "reversed_slope")
    x, y = store.read().execute(
        """SELECT (ST_X(ST_StartPoint(geom)) + ST_X(ST_EndPoint(geom))) / 2,
                  (ST_Y(ST_StartPoint(geom)) + ST_Y(ST_EndPoint(geom))) / 2
           FROM pipe_segments WHERE feature_id = ? AND version_to IS NULL""",
        [reversed_["properties"]["feature_id"]]).fetchone()
    lon, lat = to_lonlat(np.array([x]), np.array([y]), STORAGE)
    assert reversed_["geometry"]["coordinates"][:2] == pytest.approx([lon[0], lat[0]], abs=1e-8)


def test_the_ground_grid_spans_the_survey_in_ellipsoidal_heights(client: TestClient, store: DuckDBStore) -> None:
    g = client.get("/api/pipes/ground", params={"size": 9}).json()
    assert len(g["heights"]) == 81 and g["width"] == g["height"] == 9
    lo, hi = store.read().execute("SELECT min(ground_h), max(ground_h) FROM pipe_points").fetchone()
    n = get_geoid("egm96").undulation(np.array([(g["west"] + g["east"]) / 2]), np.array([(g["south"] + g["north"]) / 2]))
    assert lo + n[0] - 0.5 <= min(g["heights"]) <= max(g["heights"]) <= hi + n[0] + 0.5
    assert _in_shandong(g["west"], g["south"]) and _in_shandong(g["east"], g["north"])


def test_health(client: TestClient) -> None:
    assert client.get("/api/health").json()["status"] == "ok"


def test_errors_map_to_http_codes_through_one_table() -> None:
    assert status_for(NotFoundError("x")) == 404
    assert status_for(CRSError("x")) == 400  # an InvalidInputError
    assert status_for(StoreError("x")) == 500
    assert status_for(RuntimeError("x")) == 500


def test_without_a_store_the_app_opens_the_configured_one_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "cim.duckdb"
    s = DuckDBStore(path)
    ingest_survey([SAMPLES / "jinan_district"], s, SurveyOptions(), SETTINGS)
    s.close()
    app = create_app(Settings(store=f"duckdb:///{path}"), tiles_dir=tmp_path / "none", security=trusted())
    with TestClient(app) as c:
        assert c.get("/api/pipes/search", params={"q": "RQ1"}).json()[0]["id"] == "RQ1"
        missing = c.get("/tiles/pipes/tileset.json")
        assert missing.status_code == 503 and "cim demo" in missing.json()["detail"]
        assert app.state.services._opened
    assert not app.state.services._opened  # closed at shutdown
