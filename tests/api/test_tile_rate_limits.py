"""A 3D view fetches hundreds of tiles at once: tiles, imagery, terrain and the viewer's scripts have their own
per-address budget, so a planner's viewer is never throttled by the API's limits (and the API stays limited)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.security import is_tile_request
from cim.security.config import parse_security_config
from cim.settings import Settings
from cim.store import DuckDBStore


def test_tile_paths_are_recognised() -> None:
    assert is_tile_request("/tiles/pipes/tiles/0.glb") and is_tile_request("/cesium/Cesium.js")
    assert is_tile_request("/api/imagery/dom/tiles/18/1/2.png") and is_tile_request("/api/terrain/dem/15/1/2.terrain")
    assert is_tile_request("/api/terrain/dem/layer.json")
    assert not is_tile_request("/api/terrain/dem/elevation") and not is_tile_request("/api/pipes/search")
    assert not is_tile_request("/ogc/collections")


def test_a_viewer_full_of_tiles_is_not_throttled_but_the_api_still_is(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "tileset.json").write_text('{"asset": {"version": "1.1"}}', encoding="utf-8")
    security = parse_security_config({"auth": {"anonymous_role": "planner"},
                                      "limits": {"anonymous_requests_per_minute": 60, "ip_requests_per_minute": 120}})
    store = DuckDBStore(":memory:")
    app = create_app(Settings(store="duckdb:///:memory:"), store=store, tiles_dir=tiles, security=security)
    with TestClient(app) as c:
        codes = [c.get("/tiles/pipes/tileset.json").status_code for _ in range(400)]
        assert codes.count(200) == 400  # twice the API's per-minute allowance
        api = [c.get("/api/health").status_code for _ in range(40)]
        assert 429 in api and api[0] == 200
    store.close()
