"""The pipe tileset built from the sample district: valid for third-party tools, placed to the centimetre,
attributes readable per feature, and rebuilt incrementally."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cim.crs import to_lonlat
from cim.heights import get_geoid, to_ellipsoidal
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tiles.frames import geodetic_to_ecef
from tiles.glb import feature_positions, read_glb, read_property_table
from tiles.pipes import TilingOptions, build_pipe_tileset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import validators  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "jinan_district"
STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def geoid():
    return get_geoid("egm96")


@pytest.fixture(scope="module")
def store() -> DuckDBStore:
    s = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], s, SurveyOptions(), Settings(store="duckdb:///:memory:"))
    return s


@pytest.fixture(scope="module")
def tileset(store: DuckDBStore, geoid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiles")
    build_pipe_tileset(store, out, storage_crs=STORAGE, geoid=geoid, options=TilingOptions(leaf_capacity=300))
    return out


def _tiles(node: dict, parent: np.ndarray | None = None):
    """(tile json, absolute transform) for every tile, composing transforms parent × child."""
    m = np.array(node.get("transform", np.eye(4).T.reshape(-1)), dtype="f8").reshape(4, 4).T
    world = m if parent is None else parent @ m
    yield node, world
    for child in node.get("children", []):
        yield from _tiles(child, world)


def test_the_tileset_json_validates_against_the_official_schema(tileset: Path) -> None:
    assert validators.validate_tileset_json(tileset / "tileset.json") == []
    doc = json.loads((tileset / "tileset.json").read_text(encoding="utf-8"))
    assert doc["asset"]["version"] == "1.1"


def test_the_hierarchy_refines_with_decreasing_geometric_error(tileset: Path) -> None:
    doc = json.loads((tileset / "tileset.json").read_text(encoding="utf-8"))
    tiles = list(_tiles(doc["root"]))
    assert len(tiles) > 4 and doc["root"]["children"]
    for tile, _ in tiles:
        for child in tile.get("children", []):
            assert child["geometricError"] < tile["geometricError"]
        if not tile.get("children"):
            assert tile["geometricError"] == 0


@pytest.mark.skipif(not validators.gltf_validator_available(), reason="run npm ci --ignore-scripts first")
def test_every_content_file_has_zero_gltf_validator_errors_and_valid_extensions(tileset: Path) -> None:
    files = sorted((tileset / "tiles").glob("*.glb"))
    assert files
    for path, report in validators.gltf_validate(files).items():
        assert report["numErrors"] == 0, (path, report["messages"][:5])
        assert report["numWarnings"] == 0, (path, report["messages"][:5])
    for path in files:
        gltf, _ = read_glb(path)
        assert validators.validate_gltf_extensions(gltf) == []
        assert set(gltf["extensionsUsed"]) == {"EXT_mesh_features", "EXT_structural_metadata"}


def test_every_feature_sits_where_the_store_says_within_two_centimetres(tileset: Path, store: DuckDBStore, geoid) -> None:
    doc = json.loads((tileset / "tileset.json").read_text(encoding="utf-8"))
    rows = {
        fid: (x, y, z)
        for fid, x, y, z in store.read().execute(
            """SELECT feature_id, (ST_X(ST_StartPoint(geom)) + ST_X(ST_EndPoint(geom))) / 2,
                      (ST_Y(ST_StartPoint(geom)) + ST_Y(ST_EndPoint(geom))) / 2, (start_z + end_z) / 2
               FROM pipe_segments WHERE version_to IS NULL"""
        ).fetchall()
    }
    checked = 0
    for tile, world in _tiles(doc["root"]):
        if "content" not in tile or tile.get("children"):
            continue  # leaves carry full solids whose vertex mean is the axis midpoint
        path = tileset / tile["content"]["uri"]
        ids = read_property_table(path)["id"]
        for fid, enu in feature_positions(path).items():
            if ids[fid] not in rows:
                continue  # points (manholes, symbols)
            x, y, z = rows[ids[fid]]
            lon, lat = to_lonlat(np.array([x]), np.array([y]), STORAGE)
            h = to_ellipsoidal(geoid, lon, lat, np.array([z]))
            expected = geodetic_to_ecef(lon, lat, h)[0]
            got = (world @ np.append(enu, 1.0))[:3]
            assert np.linalg.norm(got - expected) < 0.02, ids[fid]
            checked += 1
    assert checked == len(rows)


def test_a_picked_feature_carries_its_store_attributes(tileset: Path, store: DuckDBStore) -> None:
    leaf = next(p for p in sorted((tileset / "tiles").glob("*.glb")) if "RQ" in "".join(
        v or "" for v in read_property_table(p)["category"]))
    table = read_property_table(leaf)
    i = table["category"].index("RQ")
    material, burial, start_h, owner = store.read().execute(
        "SELECT material, burial, start_h, owner FROM pipe_segments WHERE feature_id = ? AND version_to IS NULL",
        [table["id"][i]],
    ).fetchone()
    assert (table["material"][i], table["burial"][i], table["owner"][i]) == (material, burial, owner)
    assert table["start_elevation"][i] == pytest.approx(start_h)
    assert table["kind"][i] == "segment"


def test_a_rebuild_after_one_change_rewrites_only_the_tiles_holding_it(store: DuckDBStore, geoid, tmp_path: Path) -> None:
    opts = TilingOptions(leaf_capacity=300)
    first = build_pipe_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    again = build_pipe_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    assert again.written == 0 and again.skipped == first.written
    fid = store.read().execute(
        "SELECT feature_id FROM pipe_segments WHERE category = 'TX' AND version_to IS NULL ORDER BY 1 LIMIT 1"
    ).fetchone()[0]
    with store.transaction() as con:
        con.execute("UPDATE pipe_segments SET material = 'PVC', row_hash = 'changed' WHERE feature_id = ? "
                    "AND version_to IS NULL", [fid])
    changed = build_pipe_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert 1 <= changed.written < first.written
    for key in changed.keys_written:
        assert fid in read_property_table(tmp_path / "tiles" / f"{key}.glb")["id"]
    assert set(manifest["tiles"]) == {p.stem for p in (tmp_path / "tiles").glob("*.glb")}


def test_solids_have_the_size_of_the_pipes_and_wells_they_draw(tileset: Path, store: DuckDBStore) -> None:
    from tiles.glb import read_accessor

    sizes = dict(store.read().execute(
        "SELECT feature_id, coalesce(height_mm, diameter_mm) / 1000.0 FROM pipe_segments WHERE version_to IS NULL"
    ).fetchall())
    from cim.pipes.dictionaries import POINT_TYPES

    chambers = [p.name for p in POINT_TYPES.values() if p.is_chamber]
    depths = dict(store.read().execute(
        """SELECT feature_id, well_depth FROM pipe_points WHERE version_to IS NULL AND well_depth IS NOT NULL
           AND list_contains(?, appurtenance)""", [chambers]
    ).fetchall())
    seen_pipe = seen_well = 0
    for path in sorted((tileset / "tiles").glob("*.glb")):
        gltf, binary = read_glb(path)
        ids = read_property_table(path)["id"]
        for prim in gltf["meshes"][0]["primitives"]:
            pos = read_accessor(gltf, binary, prim["attributes"]["POSITION"])
            fid = read_accessor(gltf, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(int).reshape(-1)
            for f in np.unique(fid)[:50]:
                verts = pos[fid == f]
                name = ids[f]
                if name in sizes and sizes[name]:
                    # vertical (glTF y) extent of a pipe solid is about its section height, never a tall pole
                    extent = verts[:, 1].max() - verts[:, 1].min()
                    assert extent < sizes[name] + 3.0, (name, extent)
                    assert max(np.ptp(verts, axis=0)) >= sizes[name] * 0.9, (name, np.ptp(verts, axis=0))
                    seen_pipe += 1
                elif name in depths:
                    assert np.ptp(verts[:, 1]) == pytest.approx(depths[name], abs=0.05), name
                    seen_well += 1
    assert seen_pipe and seen_well


def test_meshopt_compression_is_lossless_smaller_and_clean_for_the_validator(
    store: DuckDBStore, geoid, tmp_path: Path
) -> None:
    for name, compress in (("plain", False), ("packed", True)):
        build_pipe_tileset(store, tmp_path / name, storage_crs=STORAGE, geoid=geoid,
                           options=TilingOptions(leaf_capacity=300, compress=compress))
    plain = {p.name: p for p in (tmp_path / "plain" / "tiles").glob("*.glb")}
    packed = sorted((tmp_path / "packed" / "tiles").glob("*.glb"))
    assert packed and {p.name for p in packed} <= set(plain)
    assert sum(p.stat().st_size for p in packed) < 0.8 * sum(plain[p.name].stat().st_size for p in packed)
    for path in packed:
        gltf, _ = read_glb(path)
        assert gltf["extensionsRequired"] == ["EXT_meshopt_compression"]
        assert validators.validate_gltf_extensions(gltf) == []
        a, b = feature_positions(plain[path.name]), feature_positions(path)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        assert read_property_table(path) == read_property_table(plain[path.name])
    if validators.gltf_validator_available():
        for path, report in validators.gltf_validate(packed).items():
            assert report["numErrors"] == 0, (path, report["messages"][:5])
