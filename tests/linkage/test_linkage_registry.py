"""The service registry (collections, tilesets, analyses with health and call counts) and the upstream-facing
routes of ``/api/linkage`` as a platform key sees them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cim.linkage.config import parse_linkage_config
from cim.linkage.registry import ANALYSES
from cim.settings import Settings
from cim.store import DuckDBStore
from cim.store.duckdb_ import DatasetInfo
from tests.linkage.linkage_support import ADMIN_KEY, PLATFORM_KEY, ingest_district, security_config

PLATFORM = {"X-API-Key": PLATFORM_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("registry")
    store = DuckDBStore(":memory:")
    ingest_district(tmp / "d", store, "lixia")
    store.write_asset(DatasetInfo("secret-core", "核心数据", "mesh", "EPSG:4548", grade="核心"), extent=(None,) * 6)
    tiles = tmp / "tiles" / "pipes"
    tiles.mkdir(parents=True)
    (tiles / "tileset.json").write_text('{"asset": {"version": "1.1"}}', encoding="utf-8")
    app = create_app(Settings(store="duckdb:///:memory:"), store=store, tiles_dir=tiles,
                     buildings_tiles_dir=tmp / "no-buildings", security=security_config())
    app.state.linkage_config = parse_linkage_config({"platform": {"id": "370100", "level": "city",
                                                                  "name": "济南市 CIM 平台"}})
    with TestClient(app) as c:
        yield app, c


def test_the_analysis_table_matches_the_service_routes(app_client: tuple) -> None:
    app, _ = app_client
    routes = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() if path.startswith("/api/analysis/")
              for m in ops}
    assert {(a.method, a.path) for a in ANALYSES} == routes


def test_the_registry_lists_collections_tilesets_and_analyses_with_health_and_calls(app_client: tuple) -> None:
    app, c = app_client
    for _ in range(3):
        assert c.get("/ogc/collections/pipe-segments/items", params={"limit": 2}, headers=PLATFORM).status_code == 200
    c.get("/api/analysis/connectivity", params={"from": "nosuch"}, headers=ADMIN)  # any answer is a call
    app.state.security.audit.flush()
    doc = c.get("/api/linkage/services", headers=PLATFORM).json()
    by_id = {s["id"]: s for s in doc["services"]}
    assert doc["platform"] == "370100" and doc["schema"] == "cim-linkage/services/1"
    seg = by_id["collection:pipe-segments"]
    assert seg["type"] == "ogc-api-features" and seg["health"]["status"] == "up" and seg["datasets"] == ["lixia"]
    assert seg["href"].endswith("/ogc/collections/pipe-segments") and seg["calls"]["total"] >= 3
    assert by_id["collection:bim-elements"]["health"]["status"] == "empty"
    assert by_id["tileset:pipes"]["health"]["status"] == "up"
    assert by_id["tileset:buildings"]["health"]["status"] == "missing"
    analyses = [s for s in doc["services"] if s["type"] == "analysis"]
    assert len(analyses) == len(ANALYSES) and all(s["health"]["status"] == "up" for s in analyses)
    assert by_id["analysis:analyseConnectivity"]["calls"]["total"] >= 1
    assert "tileset:realscene:secret-core" in by_id  # a registered real-scene asset is a service too


def test_upstream_routes_need_a_platform_or_admin_key(app_client: tuple) -> None:
    _, c = app_client
    for path in ("/api/linkage/status", "/api/linkage/indicators", "/api/linkage/changes", "/api/linkage/services"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=PLATFORM).status_code == 200, path
    assert c.get("/api/linkage/outbox", headers=PLATFORM).status_code == 403
    assert c.get("/admin/linkage", headers=PLATFORM).status_code == 403
    status = c.get("/api/linkage/status", headers=PLATFORM).json()
    assert status["platform"] == "370100" and status["store"] == "ok" and status["datasets"] == 2


def test_the_change_feed_hides_datasets_the_platform_role_may_not_read(app_client: tuple) -> None:
    _, c = app_client

    def datasets(headers: dict) -> set[str]:
        seen, cursor = set(), None
        while True:
            page = c.get("/api/linkage/changes", params={"limit": 1000, "f": "ids", **({"cursor": cursor} if cursor
                                                                                         else {})},
                         headers=headers).json()
            if page["dataset"]:
                seen.add(page["dataset"])
            cursor = page["next_cursor"]
            if page["complete"]:
                return seen

    assert datasets(PLATFORM) == {"lixia"}
    assert datasets(ADMIN) == {"lixia", "secret-core"}
    bad = c.get("/api/linkage/changes", params={"cursor": "garbage"}, headers=PLATFORM)
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


def test_crosswalk_over_http(app_client: tuple) -> None:
    _, c = app_client
    body = {"links": [{"platform": "370000", "scheme": "sd", "external_id": "X1", "dataset_id": "lixia",
                       "feature_id": "JS1-JS5", "collection": "pipe-segments"}]}
    assert c.post("/api/linkage/crosswalk", json=body, headers=PLATFORM).status_code == 403
    assert c.post("/api/linkage/crosswalk", json=body, headers=ADMIN).json() == {"written": 1}
    got = c.get("/api/linkage/crosswalk", params={"platform": "370000", "external_id": "X1"}, headers=PLATFORM).json()
    assert got["links"][0]["feature_id"] == "JS1-JS5" and got["links"][0]["current"]
    back = c.get("/api/linkage/crosswalk", params={"dataset": "lixia", "feature_id": "JS1-JS5"}, headers=PLATFORM)
    assert back.json()["links"][0]["external_id"] == "X1"
    bad = c.post("/api/linkage/crosswalk", json={"links": [{"platform": "p", "scheme": "s"}]}, headers=ADMIN)
    assert bad.status_code == 400 and "missing" in bad.json()["detail"]
    assert c.get("/api/linkage/crosswalk", headers=PLATFORM).status_code == 400


def test_the_openapi_document_describes_the_linkage_routes(app_client: tuple) -> None:
    _, c = app_client
    paths = c.get("/openapi.json").json()["paths"]
    for p in ("/api/linkage/indicators", "/api/linkage/changes", "/api/linkage/services", "/api/linkage/notices",
              "/api/linkage/crosswalk", "/api/linkage/status"):
        assert p in paths
    assert Path(__file__).name  # (the contract itself is checked in test_linkage_contract.py)
