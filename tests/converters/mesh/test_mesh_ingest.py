"""Photogrammetry meshes into 3D Tiles: the real ContextCapture OSGB sample, OBJ and PLY derived from it,
and bad input (each refused with one clear error, nothing stored)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

from cim.errors import CRSError, CRSMissingError, InvalidInputError, OutOfRegionError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.mesh.ingest import MeshOptions, ingest_mesh
from converters.mesh.obj import read_obj
from tests.tools.validators import gltf_validate, gltf_validator_available, validate_tileset_json

SHARED = Path(__file__).resolve().parents[3] / "../shared/data"
PRODUCTION = SHARED / "oblique" / "osgb_cgcs2000_gk113_production5"
TILE_DIR = PRODUCTION / "Data" / "Tile_+000_+013"
#: the WKT's own parameters (its AUTHORITY says EPSG:4547, CM 114E: wrong by ≈65 km)
SRS_PARAMETERS = "+proj=tmerc +lat_0=0 +lon_0=113.37 +k=1 +x_0=500000 +y_0=90 +ellps=GRS80 +units=m +no_defs"

pytestmark = pytest.mark.skipif(shutil.which("osgconv") is None or not PRODUCTION.is_dir(),
                                reason="osgconv (Debian openscenegraph) or the OSGB sample is missing")


def world(tmp: Path) -> tuple[DuckDBStore, Settings]:
    settings = Settings(region_name="test", region_bbox=(-180, -90, 180, 90), store=f"duckdb:///{tmp}/s.duckdb",
                        assets_dir=tmp / "assets")
    return DuckDBStore(tmp / "s.duckdb"), settings


def tiles_of(tileset: dict) -> list[tuple[int, dict]]:
    out, stack = [], [(0, tileset["root"])]
    while stack:
        depth, tile = stack.pop()
        out.append((depth, tile))
        stack.extend((depth + 1, c) for c in tile.get("children", []))
    return out


def centre_lonlat(build: Path) -> tuple[float, float]:
    tileset = json.loads((build / "tileset.json").read_text())
    m = np.array(tileset["root"]["transform"]).reshape(4, 4).T
    c = m @ np.array([*tileset["root"]["boundingVolume"]["box"][:3], 1.0])
    lon, lat, _ = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(*c[:3])
    return lon, lat


def assert_nothing_stored(store: DuckDBStore, settings: Settings) -> None:
    assert store.datasets() == []
    root = Path(settings.assets_dir)
    assert not root.exists() or not any(p.is_dir() and any(p.iterdir()) for p in root.iterdir())


@pytest.fixture(scope="module")
def osgb(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("osgb")
    store, settings = world(tmp)
    result = ingest_mesh(PRODUCTION, store, settings, MeshOptions(dataset_id="oblique", title="倾斜摄影"))
    return store, settings, result


def osgt_paged_lods(tmp: Path) -> tuple[int, dict[str, list[str]]]:
    """LOD node count (PagedLODs; 1 for a file without) and each file's child files, read from osgconv's text form of every file."""
    total, children = 0, {}
    for f in sorted(TILE_DIR.glob("*.osgb")):
        out = tmp / f"{f.stem}.osgt"
        subprocess.run(["osgconv", str(f), str(out)], capture_output=True, check=True)
        text = out.read_text(errors="replace")
        total += max(text.count("osg::PagedLOD {"), 1)  # a file of plain geometry is one node
        children[f.name] = re.findall(r'"(Tile_[^"]+\.osgb)"', text)
    return total, children


def test_osgb_tree_mirrors_the_paged_lod_pyramid(osgb, tmp_path):
    store, settings, result = osgb
    build = result.build_dir
    tileset = json.loads((build / "tileset.json").read_text())
    tiles = tiles_of(tileset)
    total, children = osgt_paged_lods(tmp_path)
    assert len(tiles) == total == result.counts["lod_nodes"] == 40
    assert max(d for d, _ in tiles) + 1 == 6 == result.counts["tileset_depth"]
    # depth d holds the nodes of the L(14+d) files: root (L14 geometry) → L15 → … → L19
    for depth, tile in tiles:
        uri = tile["content"]["uri"]
        assert (depth == 0 and uri == "tiles/Tile_p000_p013.glb") or f"_L{14 + depth}_" in uri
    present = {f.name for f in TILE_DIR.glob("*.osgb")}
    assert children["Tile_+000_+013.osgb"] == ["Tile_+000_+013_L15_0u.osgb"]
    missing = [c for kids in children.values() for c in kids if c not in present]
    assert result.counts["missing_child_files"] == len(missing) == 27
    for _, tile in tiles:
        assert tile["refine"] == "REPLACE"
        kids = tile.get("children", [])
        assert all(k["geometricError"] <= tile["geometricError"] for k in kids)
        assert (tile["geometricError"] == 0) == (not kids)
    assert tileset["root"]["geometricError"] == pytest.approx(16 * 2 * 75.2621 / 37.6311, rel=1e-4)


def test_osgb_content_is_valid_and_textured(osgb):
    store, settings, result = osgb
    build = result.build_dir
    assert validate_tileset_json(build / "tileset.json") == []
    glbs = sorted(build.glob("tiles/*.glb"))
    assert len(glbs) == 40
    if not gltf_validator_available():
        if os.environ.get("CI"):
            pytest.fail("the glTF validator must run in CI (npm ci --ignore-scripts)")
        pytest.skip("node gltf-validator missing")
    reports = gltf_validate(glbs)
    assert {p.name: r["numErrors"] for p, r in reports.items() if r["numErrors"]} == {}
    from tiles.glb import read_glb

    gltf, binary = read_glb(glbs[0])
    image = gltf["images"][0]
    view = gltf["bufferViews"][image["bufferView"]]
    assert image["mimeType"] == "image/jpeg"
    assert binary[view["byteOffset"]:view["byteOffset"] + 3] == b"\xff\xd8\xff"
    assert "KHR_materials_unlit" in gltf["materials"][0]["extensions"]
    assert "TEXCOORD_0" in gltf["meshes"][0]["primitives"][0]["attributes"]


def assert_placed_by_the_wkt_parameters(store: DuckDBStore, dataset_id: str, build: Path) -> tuple[float, float]:
    """The tileset's centre is within 3 m of pyproj's transform of the data centre with the WKT's parameters."""
    row = store.get_dataset(dataset_id)
    meta = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
    assert meta["tileset"] == "tileset.json" and meta["build"] == build.name
    native = meta["bbox_native"]
    x, y = (native[0] + native[3]) / 2, (native[1] + native[4]) / 2
    lon_ref, lat_ref = Transformer.from_crs(CRS.from_proj4(SRS_PARAMETERS), "EPSG:4490",
                                            always_xy=True).transform(x, y)
    lon, lat = centre_lonlat(build)
    dx = (lon - lon_ref) * 111_320 * np.cos(np.radians(lat))
    dy = (lat - lat_ref) * 110_570
    assert np.hypot(dx, dy) < 3.0
    assert abs(lon - 113.380) < 0.01 and abs(lat - 22.50) < 0.015  # not 114.01°E (EPSG:4547)
    return lon, lat


def test_osgb_lands_where_the_wkt_parameters_put_it(osgb):
    store, settings, result = osgb
    assert_placed_by_the_wkt_parameters(store, "oblique", result.build_dir)
    assert any("4547" in n for n in result.notes)


def test_osgb_outside_the_configured_region_is_refused(tmp_path):
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets")  # Shandong
    store = DuckDBStore(tmp_path / "s.duckdb")
    with pytest.raises(OutOfRegionError, match=r"outside Shandong"):
        ingest_mesh(PRODUCTION, store, settings, MeshOptions(dataset_id="gd"))
    assert_nothing_stored(store, settings)


@pytest.fixture(scope="module")
def leaf_obj(tmp_path_factory) -> Path:
    """One L19 leaf file exported by osgconv to OBJ + MTL + JPEG, with the production's metadata.xml."""
    tmp = tmp_path_factory.mktemp("obj")
    subprocess.run(["osgconv", "-O", "OutputTextureFiles", str(TILE_DIR / "Tile_+000_+013_L19_0uuuu1.osgb"),
                    "leaf.obj"], cwd=tmp, capture_output=True, check=True, env={**os.environ, "OSG_OPTIMIZER": "OFF"})
    shutil.copy(PRODUCTION / "metadata.xml", tmp / "metadata.xml")
    return tmp / "leaf.obj"


def test_obj_with_mtl_and_textures_converts(leaf_obj, tmp_path):
    store, settings = world(tmp_path)
    result = ingest_mesh(leaf_obj, store, settings, MeshOptions(dataset_id="leaf_obj"))
    assert result.counts["textures"] == 4 and result.counts["tiles"] == 1
    glbs = list(result.build_dir.glob("tiles/*.glb"))
    assert validate_tileset_json(result.build_dir / "tileset.json") == []
    if gltf_validator_available():
        assert all(r["numErrors"] == 0 for r in gltf_validate(glbs).values())
    assert_placed_by_the_wkt_parameters(store, "leaf_obj", result.build_dir)
    assert store.get_dataset("leaf_obj")["kind"] == "mesh"


def test_ply_written_from_the_same_mesh_converts(leaf_obj, tmp_path):
    from plyfile import PlyData, PlyElement

    part = read_obj(leaf_obj)[0]
    shutil.copy(part.texture, tmp_path / "leaf.jpg")
    shutil.copy(leaf_obj.parent / "metadata.xml", tmp_path / "metadata.xml")
    n = len(part.positions)
    vertex = np.empty(n, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("s", "f4"), ("t", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = part.positions.T
    vertex["s"], vertex["t"] = part.uv[:, 0], 1.0 - part.uv[:, 1]
    faces = np.empty(len(part.indices) // 3, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = part.indices.reshape(-1, 3)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(faces, "face")],
            comments=["TextureFile leaf.jpg"]).write(str(tmp_path / "leaf.ply"))
    store, settings = world(tmp_path / "db")
    result = ingest_mesh(tmp_path / "leaf.ply", store, settings, MeshOptions(dataset_id="leaf_ply"))
    assert result.counts["triangles"] == len(faces) and result.counts["textures"] == 1
    if gltf_validator_available():
        assert all(r["numErrors"] == 0 for r in gltf_validate(result.build_dir.glob("tiles/*.glb")).values())
    assert_placed_by_the_wkt_parameters(store, "leaf_ply", result.build_dir)


def test_missing_texture_is_refused(leaf_obj, tmp_path):
    for f in leaf_obj.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    texture = sorted(tmp_path.glob("*.jpg"))[0]
    texture.unlink()
    store, settings = world(tmp_path / "db")
    with pytest.raises(InvalidInputError, match=re.escape(texture.name) + ".*missing"):
        ingest_mesh(tmp_path / "leaf.obj", store, settings, MeshOptions(dataset_id="x"))
    assert_nothing_stored(store, settings)


def test_missing_georeference_is_refused(leaf_obj, tmp_path):
    for f in leaf_obj.parent.iterdir():
        if f.name != "metadata.xml":
            shutil.copy(f, tmp_path / f.name)
    store, settings = world(tmp_path / "db")
    with pytest.raises(CRSMissingError, match="no georeference"):
        ingest_mesh(tmp_path / "leaf.obj", store, settings, MeshOptions(dataset_id="x"))
    assert_nothing_stored(store, settings)


def _production_copy(tmp: Path) -> Path:
    prod = tmp / "prod"
    shutil.copytree(PRODUCTION, prod)
    return prod


def test_truncated_osgb_is_refused(tmp_path):
    prod = _production_copy(tmp_path)
    victim = prod / "Data" / "Tile_+000_+013" / "Tile_+000_+013_L18_0uuuu.osgb"
    victim.write_bytes(victim.read_bytes()[:500_000])
    store, settings = world(tmp_path / "db")
    with pytest.raises(InvalidInputError, match="not a readable OSGB file") as info:
        ingest_mesh(prod, store, settings, MeshOptions(dataset_id="x"))
    assert info.value.file == str(victim)
    assert_nothing_stored(store, settings)


def test_broken_srs_is_refused(tmp_path):
    prod = _production_copy(tmp_path)
    xml = prod / "metadata.xml"
    xml.write_text(re.sub(r"<SRS>.*</SRS>", "<SRS>PROJCS[\"broken\",GEOGCS[</SRS>", xml.read_text(), flags=re.S))
    store, settings = world(tmp_path / "db")
    with pytest.raises(CRSError, match="SRS") as info:
        ingest_mesh(prod, store, settings, MeshOptions(dataset_id="x"))
    assert info.value.field == "SRS"
    assert_nothing_stored(store, settings)


def test_osgb_tileset_is_served_as_a_scene_layer(osgb):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.trusted import trusted

    store, settings, result = osgb
    with TestClient(create_app(settings, store=store, security=trusted("platform"))) as c:
        layers = {x["id"]: x for x in c.get("/api/realscene/layers").json()["layers"]}
        link = layers["oblique"]["links"]["tileset"]
        assert link == "/tiles/realscene/oblique/tileset.json" and layers["oblique"]["kind"] == "mesh"
        tileset = c.get(link).json()
        glb = c.get(f"/tiles/realscene/oblique/{tileset['root']['content']['uri']}")
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
