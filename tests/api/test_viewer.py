"""The viewer in a real browser: the service runs (uvicorn, loopback) on a store and tileset built from the
sample district; ``tests/viewer/viewer_test.mjs`` drives Debian's headless Chromium through playwright-core,
waits for the tileset, picks a known pipe at its window position and reports what it saw.

Skipped, with the reason, when Chromium, node or the npm packages are missing, unless ``CI`` is set: then
it fails instead. The screenshots stay in ``out/test-artifacts/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from api.app import CESIUM_DIR, create_app
from cim.crs import to_lonlat
from cim.heights import get_geoid
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.live_server import live_server
from tests.api.trusted import trusted
from tiles.buildings import build_buildings_tileset
from tiles.pipes import TilingOptions, build_pipe_tileset

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "viewer" / "viewer_test.mjs"
ARTIFACTS = REPO / "out" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
STORAGE = "EPSG:4548"
SETTINGS = Settings(store="duckdb:///:memory:")


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (CESIUM_DIR / "Cesium.js").is_file():
        missing.append("node_modules/cesium (npm ci --ignore-scripts)")
    if not (REPO / "node_modules" / "playwright-core").is_dir():
        missing.append("node_modules/playwright-core (npm ci --ignore-scripts)")
    if not Path("/usr/share/proj/egm96_15.gtx").is_file():
        missing.append("the EGM96 grid (apt-get install proj-data)")
    return missing


@pytest.fixture(scope="module", autouse=True)
def _browser_available() -> None:
    missing = _missing()
    if missing and os.environ.get("CI"):
        pytest.fail("the viewer test cannot run in CI without: " + ", ".join(missing))
    if missing:
        pytest.skip("real-browser viewer test needs: " + ", ".join(missing))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    """The sample district plus the sample office submitted at drawing review (it fails its checks)."""
    from converters.ifc.submit import submit_model

    s = DuckDBStore(":memory:")
    ingest_survey([REPO / "sample_data" / "jinan_district"], s, SurveyOptions(), SETTINGS)
    settings = SETTINGS.model_copy(update={"files_dir": tmp_path_factory.mktemp("files")})
    submit_model(REPO / "sample_data" / "jinan_building" / "office_v1.ifc", s, project="历下区综合办公楼",
                 stage="drawing_review", settings=settings)
    yield s
    s.close()


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "meshopt"])
def tiles(store: DuckDBStore, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The tileset, plain and with EXT_meshopt_compression: CesiumJS must load and pick both."""
    out = tmp_path_factory.mktemp("viewer") / "tiles"
    # small leaves: the browser has to refine a tree of tiles, as with a real city
    build_pipe_tileset(store, out, storage_crs=STORAGE, geoid=get_geoid("egm96"),
                       options=TilingOptions(leaf_capacity=300, compress=request.param))
    build_buildings_tileset(store, out.parent / "buildings", storage_crs=STORAGE, geoid=get_geoid("egm96"))
    return out


@pytest.fixture(scope="module")
def server(store: DuckDBStore, tiles: Path) -> Iterator[str]:
    app = create_app(SETTINGS, store=store, tiles_dir=tiles, buildings_tiles_dir=tiles.parent / "buildings",
                     security=trusted("reviewer"))
    with live_server(app) as url:
        yield url


def _target(store: DuckDBStore) -> dict[str, Any]:
    """A water main whose midpoint no other pipe or point comes near in plan (a clean pick from above),
    placed exactly as the tiler places it: 1985 centre-line height + EGM96."""
    con = store.read()
    rows = con.execute(
        """SELECT feature_id, category, material, ST_AsWKB(ST_Force2D(geom)) AS wkb, start_z, end_z
           FROM pipe_segments WHERE version_to IS NULL ORDER BY feature_id""").fetchall()
    points = con.execute("SELECT x, y FROM pipe_points WHERE version_to IS NULL").fetchnumpy()
    lines = shapely.from_wkb([bytes(r[3]) for r in rows])
    tree = shapely.STRtree(lines)
    marks = shapely.points(np.asarray(points["x"], dtype="f8"), np.asarray(points["y"], dtype="f8"))
    for i, (fid, category, material, _, z1, z2) in enumerate(rows):
        if category != "JS" or shapely.length(lines[i]) < 20:
            continue
        mid = shapely.line_interpolate_point(lines[i], 0.5, normalized=True)
        near = [j for j in tree.query(mid, predicate="dwithin", distance=3.0) if j != i]
        if near or shapely.dwithin(marks, mid, 6.0).any():
            continue
        lon, lat = to_lonlat(np.array([shapely.get_x(mid)]), np.array([shapely.get_y(mid)]), STORAGE)
        height = (z1 + z2) / 2 + float(get_geoid("egm96").undulation(lon, lat)[0])
        return {"id": fid, "category": category, "material": material, "lon": float(lon[0]), "lat": float(lat[0]),
                "height": height}
    raise AssertionError("the sample has no isolated water main to pick")


def _district(store: DuckDBStore) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = store.read().execute(
        "SELECT minx, miny, maxx, maxy FROM datasets WHERE id = 'jinan_district'").fetchone()
    lon, lat = to_lonlat(np.array([minx, maxx]), np.array([miny, maxy]), STORAGE)
    return float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1])


def _metres(a: dict[str, float], b: dict[str, float]) -> float:
    dx = (a["lon"] - b["lon"]) * 111_320 * math.cos(math.radians(b["lat"]))
    dy = (a["lat"] - b["lat"]) * 110_540
    return math.hypot(dx, dy)


@pytest.fixture(scope="module")
def run(server: str, store: DuckDBStore) -> dict[str, Any]:
    target = _target(store)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        ["node", str(SCRIPT), "--url", server, "--lon", repr(target["lon"]), "--lat", repr(target["lat"]),
         "--height", repr(target["height"]), "--id", target["id"], "--category", target["category"],
         "--out", str(ARTIFACTS)],
        cwd=REPO, capture_output=True, text=True, timeout=420, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"viewer_test.mjs printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert "error" not in result, result["error"] + "\n" + proc.stderr
    result["target"], result["seconds"] = target, time.monotonic() - started
    return result


def test_the_viewer_loads_only_from_the_service_and_renders_the_tileset(run: dict[str, Any]) -> None:
    assert run["external"] == []  # no Cesium ion, no internet
    assert run["consoleErrors"] == []
    assert run["opened"]["tilesetLoaded"] is True
    stats = run["opened"]["stats"]
    assert stats["tilesLoaded"] >= 2  # a tree of tiles was refined, not just the root
    assert stats["tilesVisible"] >= 2  # and drawn from the opening view


def test_a_click_on_a_known_pipe_returns_its_id_and_stored_attributes(run: dict[str, Any]) -> None:
    target, picked = run["target"], run["picked"]["result"]
    assert picked is not None, "nothing picked at the pipe's window position"
    assert picked["source"] == "tiles" and picked["id"] == target["id"]
    props = picked["properties"]
    assert (props["kind"], props["category"], props["material"], props["dataset"]) == (
        "segment", target["category"], target["material"], "jinan_district")
    assert props["size"].startswith("DN")


def test_the_attribute_panel_reads_the_stored_record_from_the_ogc_api(run: dict[str, Any]) -> None:
    record = run["picked"]["record"]
    assert record is not None and record["feature_id"] == run["target"]["id"]
    assert record["owner"] and record["link"] is True


def test_the_picked_position_is_on_the_pipe_inside_the_district(run: dict[str, Any], store: DuckDBStore) -> None:
    west, south, east, north = _district(store)
    pos, target = run["picked"]["result"]["position"], run["target"]
    assert pos is not None, "scene.pickPosition gave nothing"
    assert west <= pos["lon"] <= east and south <= pos["lat"] <= north
    assert _metres(pos, target) < 1.0 and abs(pos["height"] - target["height"]) < 1.0


def test_switching_the_category_off_and_on_hides_and_shows_the_pipe(run: dict[str, Any]) -> None:
    hidden, again = run["hidden"], run["shownAgain"]
    assert hidden is None or hidden["id"] != run["target"]["id"]
    assert again is not None and again["id"] == run["target"]["id"]


def test_search_flies_to_the_pipe(run: dict[str, Any]) -> None:
    first, camera = run["searched"]["results"][0], run["searched"]["camera"]
    assert first["id"] == run["target"]["id"]
    assert _metres(camera, run["target"]) < 100 and camera["height"] > run["target"]["height"]


def test_the_under_ground_view_puts_the_camera_below_the_surveyed_ground(run: dict[str, Any]) -> None:
    under = run["underground"]
    assert under["camera"]["height"] < under["groundBelowCamera"] - 5


def test_screenshots_are_kept_as_artifacts(run: dict[str, Any]) -> None:
    for name in ("viewer.png", "viewer-overview.png", "viewer-underground.png", "viewer-analysis.png"):
        data = (ARTIFACTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def test_burst_isolation_in_the_viewer_draws_what_the_api_answers(run: dict[str, Any], server: str) -> None:
    from urllib.parse import urlencode
    from urllib.request import urlopen

    iso = run["analyses"]["isolation"]
    query = urlencode({"segment": run["target"]["id"]})
    with urlopen(f"{server}/api/analysis/isolation?{query}", timeout=30) as r:
        api = json.loads(r.read())
    assert iso["valves"] == [v["valve_id"] for v in api["valves"]] and iso["valves"]
    assert iso["roles"]["failed"] == 1 and iso["roles"]["valve"] == len(iso["valves"])
    assert iso["drawn"] == iso["features"] == iso["entities"]
    assert iso["download"] == "isolation.geojson"
    second = run["analyses"]["second"]  # the first valve fails to close: the next ring of valves
    assert second is not None and iso["valves"][0] not in second["valves"]
    assert second["roles"].get("valve_failed") == 1


def test_excavation_and_cross_section_in_the_viewer(run: dict[str, Any]) -> None:
    pit, section = run["analyses"]["excavation"], run["analyses"]["section"]
    assert run["target"]["id"] in pit["hits"]  # a 3 m pit over a water main at ~2 m cover hits it
    assert pit["roles"]["excavation"] == 1 and pit["drawn"] >= 2
    assert section["roles"] and section["chartShown"] is True


def test_the_submitted_model_is_shown_coloured_by_its_check_result(run: dict[str, Any]) -> None:
    bim = run["bim"]
    assert bim["tilesetLoaded"] is True and bim["submissions"] >= 1
    shown = bim["shown"]
    assert shown["failed"] >= 1 and shown["coloured"] >= shown["failed"]  # the planted defects in red
    assert shown["passed"] >= 1
