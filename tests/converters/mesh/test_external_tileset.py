"""Existing 3D Tiles tilesets registered as they are: the CesiumGS and py3dtiles samples, and the
3d-tiles-validator's invalid cases (each refused naming its rule, nothing stored)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cim.errors import OutOfRegionError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.mesh.external_tileset import TilesetRuleError, register_tileset, validate_tileset
from tests.tools.validators import validate_tileset_json

TILES = Path(__file__).resolve().parents[3] / "../shared/data/3dtiles"
LOCAL = ["cesium_1.1_SparseImplicitQuadtree", "cesium_1.1_MultipleContents", "py3dtiles_pnts_tiles"]


def world(tmp: Path, **region) -> tuple[DuckDBStore, Settings]:
    region = region or {"region_name": "test", "region_bbox": (-180, -90, 180, 90)}
    settings = Settings(store=f"duckdb:///{tmp}/s.duckdb", assets_dir=tmp / "assets", **region)
    return DuckDBStore(tmp / "s.duckdb"), settings


def test_region_tileset_registers_as_it_is(tmp_path):
    store, settings = world(tmp_path)
    result = register_tileset(TILES / "cesium_1.0_TilesetWithRequestVolume", store, settings, dataset_id="req")
    assert result.counts["external_tilesets"] == 1 and result.counts["contents"] == 7 and not result.wrapped
    west, south, east, north = result.lonlat
    assert -75.62 < west < east < -75.60 and 40.03 < south < north < 40.05  # Philadelphia, from the region
    row = store.get_dataset("req")
    meta = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
    build = settings.assets_dir / "req" / meta["build"]
    assert meta["tileset"] == "tileset.json" and row["kind"] == "tileset"
    assert (build / "tileset.json").read_bytes() == (TILES / "cesium_1.0_TilesetWithRequestVolume/tileset.json"
                                                     ).read_bytes()
    assert (build / "city" / "tileset.json").is_file()


@pytest.mark.parametrize("name", LOCAL)
def test_local_tilesets_need_an_origin(name, tmp_path):
    store, settings = world(tmp_path)
    with pytest.raises(TilesetRuleError, match="notOnEarth.*--origin"):
        register_tileset(TILES / name, store, settings, dataset_id="x")
    assert store.datasets() == []
    result = register_tileset(TILES / name, store, settings, dataset_id="x", origin=(117.0, 36.65, 50.0))
    assert result.wrapped
    west, south, east, north = result.lonlat
    assert west <= 117.0 <= east and south <= 36.65 <= north and east - west < 0.01
    build = next((settings.assets_dir / "x").iterdir())
    assert validate_tileset_json(build / "tileset.json") == []
    wrapper = json.loads((build / "tileset.json").read_text())
    assert wrapper["root"]["content"]["uri"] == "source/tileset.json"
    assert (build / "source" / "tileset.json").read_bytes() == (TILES / name / "tileset.json").read_bytes()


def test_implicit_tiling_subtrees_are_checked(tmp_path):
    check = validate_tileset(TILES / "cesium_1.1_SparseImplicitQuadtree")
    assert check.subtrees == 9 and check.contents == 32
    folder = tmp_path / "implicit"
    shutil.copytree(TILES / "cesium_1.1_SparseImplicitQuadtree", folder)
    victim = sorted((folder / "subtrees").glob("*.subtree"))[-1]
    victim.write_bytes(victim.read_bytes()[:30])
    with pytest.raises(TilesetRuleError, match="implicitTilingInvalid"):
        validate_tileset(folder)


def test_missing_and_wrong_content_are_refused(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(TILES / "cesium_1.1_MultipleContents", folder)
    (folder / "planePoints.glb").write_bytes(b"pnts" + bytes(40))
    with pytest.raises(TilesetRuleError, match="contentMagicInvalid.*planePoints.glb"):
        validate_tileset(folder)
    (folder / "planePoints.glb").unlink()
    with pytest.raises(TilesetRuleError, match="contentMissing.*planePoints.glb"):
        validate_tileset(folder)
    doc = json.loads((folder / "tileset.json").read_text())
    doc["root"]["contents"] = [{"uri": "../outside.glb"}]
    (folder / "tileset.json").write_text(json.dumps(doc))
    with pytest.raises(TilesetRuleError, match="contentOutsideFolder"):
        validate_tileset(folder)


@pytest.mark.parametrize("path", sorted((TILES / "validator_invalid_tilesets").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_tilesets_are_refused_naming_their_rule(path, tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    shutil.copy(path, folder / "tileset.json")
    store, settings = world(tmp_path)
    with pytest.raises(TilesetRuleError) as info:
        register_tileset(folder, store, settings, dataset_id="bad", origin=(117.0, 36.65, 0.0))
    assert info.value.rule == path.stem
    assert f"rule {path.stem}" in str(info.value)
    assert store.datasets() == [] and not (settings.assets_dir / "bad").exists()


def test_outside_the_region_nothing_is_copied(tmp_path):
    store, settings = world(tmp_path, region_name="Shandong", region_bbox=(114.2, 34.3, 123.0, 38.5))
    with pytest.raises(OutOfRegionError):
        register_tileset(TILES / "cesium_1.0_TilesetWithRequestVolume", store, settings, dataset_id="philly")
    assert store.datasets() == [] and not (settings.assets_dir / "philly").exists()
