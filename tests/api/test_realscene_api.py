"""Real-scene assets on the web: the layer list and the files of an asset's published build, authorised per
dataset grade; unpublished builds and paths outside the build are never served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cim.realscene.catalogue import locate, new_build_dir, register
from cim.settings import Settings
from cim.store import DatasetInfo, DuckDBStore
from tests.api.trusted import trusted

TILESET = {"asset": {"version": "1.1"}, "geometricError": 10,
           "root": {"boundingVolume": {"box": [0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 5]}, "geometricError": 0,
                    "content": {"uri": "c.glb"}}}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[DuckDBStore, Settings]]:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets")
    store = DuckDBStore(tmp_path / "s.duckdb")
    for did, grade, secret in (("scan", "重要", False), ("public_dom", "一般", False), ("secret_scan", "重要", True)):
        build = new_build_dir(settings, did, store.path)
        (build / "tileset.json").write_text(json.dumps(TILESET))
        (build / "c.glb").write_bytes(b"glTF" + bytes(16))
        (build / "notes.txt").write_text("not a tile file")
        extent = locate((500000, 4050000, 10, 500100, 4050100, 40), "EPSG:4548", settings)
        kind, meta = ("raster", {"role": "dom"}) if did == "public_dom" else ("pointcloud", {"tileset": "tileset.json"})
        register(store, DatasetInfo(did, did, kind, "EPSG:4548", grade=grade, secret=secret, metadata=meta),
                 extent, build)
    yield store, settings
    store.close()


def _client(store: DuckDBStore, settings: Settings, role: str) -> TestClient:
    return TestClient(create_app(settings, store=store, security=trusted(role)))


def test_layers_list_what_the_caller_may_read_with_their_service_links(setup: tuple[DuckDBStore, Settings]) -> None:
    store, settings = setup
    with _client(store, settings, "platform") as c:
        layers = {x["id"]: x for x in c.get("/api/realscene/layers").json()["layers"]}
    assert set(layers) == {"scan", "public_dom"}  # other platforms read 重要 and 一般, not secret data
    assert layers["scan"]["links"] == {"tileset": "/tiles/realscene/scan/tileset.json",
                                       "points": "/api/pointclouds/scan/points"}
    assert layers["public_dom"]["links"]["xyz"] == "/api/imagery/public_dom/tiles/{z}/{x}/{y}.png"
    west, south, east, north = layers["scan"]["bbox"]
    assert 116.99 < west < east < 117.01 and 36.58 < south < north < 36.60
    with _client(store, settings, "reviewer") as c:  # reviewers read secret 重要 data too
        assert {x["id"] for x in c.get("/api/realscene/layers").json()["layers"]} == {"scan", "public_dom",
                                                                                     "secret_scan"}


def test_build_files_are_served_only_inside_the_build_and_to_callers_with_full_access(
        setup: tuple[DuckDBStore, Settings]) -> None:
    store, settings = setup
    with _client(store, settings, "planner") as c:
        r = c.get("/tiles/realscene/scan/tileset.json")
        assert r.status_code == 200 and r.json()["asset"]["version"] == "1.1"
        r2 = c.get("/tiles/realscene/scan/tileset.json", headers={"If-None-Match": r.headers["etag"]})
        assert r2.status_code == 304
        assert c.get("/tiles/realscene/scan/c.glb").headers["content-type"] == "model/gltf-binary"
        assert c.get("/tiles/realscene/scan/notes.txt").status_code == 404  # not a tile file type
        assert c.get("/tiles/realscene/scan/..%2F..%2Fs.duckdb").status_code in (400, 404)
        assert c.get("/tiles/realscene/secret_scan/tileset.json").status_code == 200  # planners read secret 重要
        assert c.get("/tiles/realscene/nothing/tileset.json").status_code == 404
    with _client(store, settings, "platform") as c:
        assert c.get("/tiles/realscene/secret_scan/tileset.json").status_code == 404  # secret: as if absent
    with _client(store, settings, "public") as c:  # the public reads 一般 data only coarsely: no real-scene files
        assert c.get("/tiles/realscene/public_dom/tileset.json").status_code == 404
        assert c.get("/api/realscene/layers").json()["layers"] == []


def test_a_failed_publication_leaves_no_row_and_no_folder(tmp_path: Path) -> None:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets")
    store = DuckDBStore(tmp_path / "s.duckdb")
    build = new_build_dir(settings, "bad", store.path)
    (build / "tileset.json").write_text("{}")
    extent = locate((500000, 4050000, 10, 500100, 4050100, 40), "EPSG:4548", settings)
    with pytest.raises(Exception, match="grade"):
        register(store, DatasetInfo("bad", "bad", "pointcloud", "EPSG:4548", grade="机密"), extent, build)
    assert not build.exists() and store.datasets() == []
    store.close()
