"""The buildings tileset from BIM rows in the store: valid for third-party tools, placed to the centimetre
(checked against an independent pyproj chain and against the pipe tiler), one feature per element with its
IFC attributes, streamable (loose quadtree, ADD) and rebuilt incrementally."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from cim.errors import InvalidInputError, NotFoundError
from cim.heights import get_geoid
from cim.store import DatasetInfo, DuckDBStore
from tiles.buildings import (
    PALETTE,
    BuildingTilingOptions,
    build_buildings_tileset,
    common_properties,
    element_colour,
    parse_color,
)
from tiles.glb import feature_positions, read_accessor, read_glb, read_property_table, srgb_to_linear
from tiles.pipes import TilingOptions, build_pipe_tileset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import validators  # noqa: E402
from bim_rows import JINAN_ORIGIN, Element, box_mesh, city, house, insert_model  # noqa: E402

STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(),
                                reason="EGM96 grid not installed")

# the independent chain: pyproj for the map projection and the geocentric conversion, the geoid for N
TO_GEOGRAPHIC = Transformer.from_crs(STORAGE, "EPSG:4490", always_xy=True)
FROM_GEOGRAPHIC = Transformer.from_crs("EPSG:4490", STORAGE, always_xy=True)
# CGCS2000 geographic 3D ↔ geocentric
TO_ECEF = Transformer.from_crs("EPSG:4480", "EPSG:4479", always_xy=True)
FROM_ECEF = Transformer.from_crs("EPSG:4479", "EPSG:4480", always_xy=True)
ANNEX_SHIFT = (150.0, -80.0, 1.5)


@pytest.fixture(scope="module")
def geoid():
    return get_geoid("egm96")


def _annex(version: int) -> object:
    ox, oy, oh = JINAN_ORIGIN
    model = house("bim_annex", (ox + ANNEX_SHIFT[0], oy + ANNEX_SHIFT[1], oh + ANNEX_SHIFT[2]), storeys=1,
                  width=8.0, depth=6.0)
    if version == 1:  # the superseded model had an element the current one lacks
        model.elements.append(Element.box("OLDxxxxxxxxxxxxxxxxxxx", "IfcColumn", (1, 1, 0), (1.3, 1.3, 3)))
    return model


@pytest.fixture(scope="module")
def store() -> DuckDBStore:
    s = DuckDBStore(":memory:")
    insert_model(s, house())
    insert_model(s, _annex(1))
    insert_model(s, _annex(2))
    return s


@pytest.fixture(scope="module")
def tileset(store: DuckDBStore, geoid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("buildings")
    build_buildings_tileset(store, out, storage_crs=STORAGE, geoid=geoid,
                            options=BuildingTilingOptions(leaf_capacity=10))
    return out


def _tiles(node: dict, parent: np.ndarray | None = None):
    """(tile json, absolute transform, parent tile) for every tile, composing transforms parent × child."""
    m = np.array(node.get("transform", np.eye(4).reshape(-1)), dtype="f8").reshape(4, 4).T
    world = m if parent is None else parent @ m
    yield node, world
    for child in node.get("children", []):
        yield from _tiles(child, world)


def _doc(tileset: Path) -> dict:
    return json.loads((tileset / "tileset.json").read_text(encoding="utf-8"))


def _vertices(path: Path, world: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(material, ECEF vertices, feature ids) of each primitive of a tile."""
    gltf, binary = read_glb(path)
    out = []
    for prim in gltf["meshes"][0]["primitives"]:
        pos = read_accessor(gltf, binary, prim["attributes"]["POSITION"]).astype("f8")
        enu = np.column_stack([pos[:, 0], -pos[:, 2], pos[:, 1]])  # glTF y-up → ENU z-up
        ecef = (np.column_stack([enu, np.ones(len(enu))]) @ world.T)[:, :3]
        fid = np.rint(read_accessor(gltf, binary, prim["attributes"]["_FEATURE_ID_0"])).astype(int)
        out.append((prim["material"], ecef, fid))
    return out


def _ecef(x: np.ndarray, y: np.ndarray, h_normal: np.ndarray, geoid) -> np.ndarray:
    lon, lat = TO_GEOGRAPHIC.transform(x, y)
    h = np.asarray(h_normal) + geoid.undulation(np.atleast_1d(lon), np.atleast_1d(lat))
    return np.column_stack(TO_ECEF.transform(lon, lat, h))


def _store_rows(store: DuckDBStore) -> dict[tuple[str, str], dict]:
    cur = store.read().execute(
        """SELECT e.*, m.origin_x, m.origin_y, m.origin_h FROM bim_elements e
           JOIN datasets d ON d.id = e.dataset_id AND d.current_version = e.version
           JOIN bim_models m USING (dataset_id, version)""")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {(r["dataset_id"], r["global_id"]): r for r in rows}


def _contents(tileset: Path):
    for tile, world in _tiles(_doc(tileset)["root"]):
        if "content" in tile:
            yield tile, world, tileset / tile["content"]["uri"]


def test_the_tileset_json_validates_and_refines_by_adding(tileset: Path) -> None:
    assert validators.validate_tileset_json(tileset / "tileset.json") == []
    doc = _doc(tileset)
    assert doc["asset"]["version"] == "1.1"
    assert doc["geometricError"] >= doc["root"]["geometricError"] > 0 and doc["root"]["children"]
    for tile, _ in _tiles(doc["root"]):
        assert tile["refine"] == "ADD" and "region" in tile["boundingVolume"]
        for child in tile.get("children", []):
            assert child["geometricError"] <= tile["geometricError"]
        if not tile.get("children"):
            assert tile["geometricError"] == 0 and "content" in tile


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
        assert gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["class"] == "bim_element"


def _check_placement(tileset: Path, store: DuckDBStore, geoid) -> int:
    """Assert every drawn feature sits where its store row says (< 1 cm); return how many were checked."""
    from scipy.spatial import cKDTree

    rows = _store_rows(store)
    checked = 0
    for _, world, path in _contents(tileset):
        table = read_property_table(path)
        centres = feature_positions(path)
        vertices = _vertices(path, world)
        for fid, local in centres.items():
            row = rows[(table["dataset"][fid], table["global_id"][fid])]
            origin = np.array([row["origin_x"], row["origin_y"], row["origin_h"]])
            pos = np.frombuffer(row["mesh_positions"], "<f4").reshape(-1, 3).astype("f8") + origin
            pos = pos[np.unique(np.frombuffer(row["mesh_indices"], "<u4"))]
            ecef = np.concatenate([v[f == fid] for _, v, f in vertices])
            # forward: the stored vertices, placed independently, are the drawn ones
            expected = _ecef(pos[:, 0], pos[:, 1], pos[:, 2], geoid)
            assert cKDTree(expected).query(ecef)[0].max() < 0.01, row["global_id"]
            assert cKDTree(ecef).query(expected)[0].max() < 0.01, row["global_id"]
            centre = (world @ np.append(local, 1.0))[:3]
            assert cKDTree(expected).query(centre)[0] < np.linalg.norm(np.ptp(expected, axis=0)) + 0.01
            # inverse: the decoded vertices, taken back to the storage CRS, span the element's stored bounds
            lon, lat, h = FROM_ECEF.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
            x, y = FROM_GEOGRAPHIC.transform(lon, lat)
            back = np.column_stack([x, y, h - geoid.undulation(lon, lat)])
            bounds = np.array([row[c] for c in ("minx", "miny", "minz", "maxx", "maxy", "maxz")])
            assert np.abs(np.concatenate([back.min(axis=0), back.max(axis=0)]) - bounds).max() < 0.01
            checked += 1
    return checked


def test_every_element_sits_where_the_store_says_within_a_centimetre(
    tileset: Path, store: DuckDBStore, geoid
) -> None:
    checked = _check_placement(tileset, store, geoid)
    assert checked == sum(1 for r in _store_rows(store).values() if r["ifc_class"] != "IfcSpace")
    for _, world, path in _contents(tileset):  # boxes: the drawn corners' mean is the box centre
        table = read_property_table(path)
        for fid, local in feature_positions(path).items():
            row = _store_rows(store)[(table["dataset"][fid], table["global_id"][fid])]
            mid = [(row[f"min{c}"] + row[f"max{c}"]) / 2 for c in "xyz"]
            expected = _ecef(np.array(mid[:1]), np.array(mid[1:2]), np.array(mid[2:]), geoid)[0]
            assert np.linalg.norm((world @ np.append(local, 1.0))[:3] - expected) < 0.01


def test_each_element_is_one_feature_carrying_its_ifc_attributes(tileset: Path, store: DuckDBStore) -> None:
    rows = _store_rows(store)
    seen: list[tuple[str, str]] = []
    for _, _, path in _contents(tileset):
        table = read_property_table(path)
        for i, gid in enumerate(table["global_id"]):
            key = (table["dataset"][i], gid)
            seen.append(key)
            row = rows[key]
            assert table["ifc_class"][i] == row["ifc_class"]
            assert table["predefined_type"][i] == row["predefined_type"]
            assert table["name"][i] == row["name"]
            assert table["storey"][i] == row["storey_name"]
            assert table["version"][i] == row["version"]
            assert table["materials"][i] == ("; ".join(row["materials"]) if row["materials"] else None)
            flags = (table["is_external"][i], table["load_bearing"][i], table["fire_rating"][i])
            if row["ifc_class"] == "IfcWall":
                assert flags == (1, 1, "REI90")
            if row["ifc_class"] == "IfcSlab" and row["predefined_type"] == "FLOOR":
                assert flags == (0, 1, None)
            if row["ifc_class"] == "IfcWindow":  # "TRUE" text and an empty fire rating
                assert flags == (1, None, None)
    # ADD refinement: every element exactly once; spaces and superseded versions nowhere
    assert sorted(seen) == sorted(k for k, r in rows.items() if r["ifc_class"] != "IfcSpace")
    assert ("bim_annex", "OLDxxxxxxxxxxxxxxxxxxx") not in seen
    assert {rows[k]["version"] for k in seen if k[0] == "bim_annex"} == {2}


def test_every_bounding_volume_contains_its_content_and_its_children(tileset: Path) -> None:
    doc = _doc(tileset)
    for tile, world in _tiles(doc["root"]):
        west, south, east, north, low, high = tile["boundingVolume"]["region"]
        for child in tile.get("children", []):
            w, s, e, n, lo, hi = child["boundingVolume"]["region"]
            assert west <= w and s >= south and e <= east and n <= north and lo >= low and hi <= high
        if "content" not in tile:
            continue
        ecef = np.concatenate([v for _, v, _ in _vertices(tileset / tile["content"]["uri"], world)])
        lon, lat, h = FROM_ECEF.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        lon, lat = np.radians(lon), np.radians(lat)
        assert west <= lon.min() and lon.max() <= east and south <= lat.min() and lat.max() <= north
        assert low <= h.min() and h.max() <= high
        # and tight: the placed vertices plus a few centimetres, not a guess
        assert high - low < h.max() - h.min() + 0.11 and (north - lat.max()) * 6.4e6 < 0.06


def test_windows_are_translucent_in_their_own_blend_material_and_classes_get_palette_colours(
    tileset: Path, store: DuckDBStore
) -> None:
    seen = set()
    for _, world, path in _contents(tileset):
        gltf, _ = read_glb(path)
        table = read_property_table(path)
        for material, _, fid in _vertices(path, world):
            mat = gltf["materials"][material]
            classes = {table["ifc_class"][f] for f in np.unique(fid)}
            assert mat["doubleSided"] is True
            factor = mat["pbrMetallicRoughness"]["baseColorFactor"]
            if "IfcWindow" in classes:
                assert classes == {"IfcWindow"} and mat["alphaMode"] == "BLEND"
                assert factor == pytest.approx([*srgb_to_linear((0x88, 0xBB, 0xEE))[:3], 0x66 / 255])
                seen.add("window")
            else:
                assert mat.get("alphaMode", "OPAQUE") == "OPAQUE" and factor[3] == 1.0
            if classes == {"IfcWall"}:
                assert factor[:3] == pytest.approx(srgb_to_linear(PALETTE["IfcWall"][:3])[:3])
                seen.add("wall")
            if "IfcDoor" in classes:
                assert factor[:3] == pytest.approx(srgb_to_linear(PALETTE["IfcDoor"][:3])[:3])
                seen.add("door")
    assert seen == {"window", "wall", "door"}


def test_faces_are_flat_shaded_and_coplanar_corners_shared(tileset: Path) -> None:
    for _, _, path in _contents(tileset):
        gltf, binary = read_glb(path)
        for prim in gltf["meshes"][0]["primitives"]:
            pos = read_accessor(gltf, binary, prim["attributes"]["POSITION"]).astype("f8")
            nor = read_accessor(gltf, binary, prim["attributes"]["NORMAL"]).astype("f8")
            tri = read_accessor(gltf, binary, prim["indices"]).astype(int).reshape(-1, 3)
            face = np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]])
            face /= np.linalg.norm(face, axis=1, keepdims=True)
            for corner in range(3):  # every corner carries its face's normal, facing the winding's way
                assert (np.einsum("ij,ij->i", face, nor[tri[:, corner]]) > 0.999).all()
            fid = read_accessor(gltf, binary, prim["attributes"]["_FEATURE_ID_0"])
            assert len(pos) == 24 * len(np.unique(fid))  # boxes: 4 corners per face, not 6


def test_meshopt_compression_is_lossless_and_clean_for_the_validator(
    tileset: Path, store: DuckDBStore, geoid, tmp_path: Path
) -> None:
    build_buildings_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid,
                            options=BuildingTilingOptions(leaf_capacity=10, compress=True))
    packed = sorted((tmp_path / "tiles").glob("*.glb"))
    assert [p.name for p in packed] == sorted(p.name for p in (tileset / "tiles").glob("*.glb"))
    for path in packed:
        gltf, _ = read_glb(path)
        assert gltf["extensionsRequired"] == ["EXT_meshopt_compression"]
        plain = tileset / "tiles" / path.name
        a, b = feature_positions(plain), feature_positions(path)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        assert read_property_table(path) == read_property_table(plain)
        assert [m.get("alphaMode") for m in gltf["materials"]] == [
            m.get("alphaMode") for m in read_glb(plain)[0]["materials"]]
    if validators.gltf_validator_available():
        for path, report in validators.gltf_validate(packed).items():
            assert report["numErrors"] == 0, (path, report["messages"][:5])


def test_colour_and_property_helpers() -> None:
    assert parse_color("#88BBEE66") == (0x88, 0xBB, 0xEE, 0x66)
    assert parse_color("#102030") == (16, 32, 48, 255)
    assert parse_color("#12") is None and parse_color("#GG0000FF") is None and parse_color(None) is None
    assert element_colour(None, "IfcSlab", "ROOF") == PALETTE["IfcRoof"]
    assert element_colour(None, "IfcWallStandardCase") == PALETTE["IfcWall"]
    assert element_colour("#01020304", "IfcWall") == (1, 2, 3, 4)
    assert element_colour(None, "IfcWindow")[3] < 255
    psets = {"Pset_BeamCommon": {"LoadBearing": ".T.", "FireRating": "R60"},
             "Pset_WallCommon": {"IsExternal": False}}
    assert common_properties(json.dumps(psets), "IfcBeam") == (0, 1, "R60")
    assert common_properties({"Pset_WallCommon": {"IsExternal": {"value": True, "type": "IfcBoolean"}}},
                             "IfcWallStandardCase") == (1, None, None)
    assert common_properties("not json", "IfcWall") == (None, None, None)
    assert common_properties(None, "IfcWall") == (None, None, None)


def test_spaces_are_drawn_only_when_asked(store: DuckDBStore, geoid, tmp_path: Path) -> None:
    build_buildings_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid, datasets=["bim_house"],
                            options=BuildingTilingOptions(include_spaces=True))
    classes: dict[str, float] = {}
    for _, world, path in _contents(tmp_path):
        gltf, _ = read_glb(path)
        table = read_property_table(path)
        for material, _, fid in _vertices(path, world):
            alpha = gltf["materials"][material]["pbrMetallicRoughness"]["baseColorFactor"][3]
            classes |= {table["ifc_class"][f]: alpha for f in np.unique(fid)}
        assert set(table["dataset"]) == {"bim_house"}
    assert classes["IfcSpace"] < 0.5 and classes["IfcWall"] == 1.0


def test_a_city_streams_large_elements_first(geoid, tmp_path: Path) -> None:
    s = DuckDBStore(":memory:")
    models = city(4, 4)
    for model in models:
        insert_model(s, model)
    result = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid,
                                     options=BuildingTilingOptions(leaf_capacity=40))
    assert result.features == sum(len([e for e in m.elements if e.ifc_class != "IfcSpace"]) for m in models)
    doc = _doc(tmp_path)
    assert validators.validate_tileset_json(tmp_path / "tileset.json") == []
    rows = _store_rows(s)

    def size(key: tuple[str, str]) -> float:
        r = rows[key]
        return float(np.linalg.norm([r["maxx"] - r["minx"], r["maxy"] - r["miny"], r["maxz"] - r["minz"]]))

    def keys(tile: dict) -> list[tuple[str, str]]:
        if "content" not in tile:
            return []
        table = read_property_table(tmp_path / tile["content"]["uri"])
        return list(zip(table["dataset"], table["global_id"], strict=True))

    inner_with_content = 0
    total = 0
    for tile, _ in _tiles(doc["root"]):
        mine = keys(tile)
        total += len(mine)
        below = [k for child in tile.get("children", []) for t, _ in _tiles(child) for k in keys(t)]
        # not drawing the children leaves out nothing larger than the tile's geometric error
        assert max((size(k) for k in below), default=0.0) <= tile["geometricError"] + 1e-9
        if tile.get("children") and mine:
            inner_with_content += 1
            # what an inner tile draws is larger than anything its children add
            assert min(size(k) for k in mine) >= max(size(k) for k in below) * 0.5
    assert inner_with_content >= 1 and total == result.features and result.tiles >= 5


def test_a_rebuild_rewrites_only_the_tiles_whose_elements_changed(geoid, tmp_path: Path) -> None:
    s = DuckDBStore(":memory:")
    insert_model(s, house())
    insert_model(s, _annex(2))
    opts = BuildingTilingOptions(leaf_capacity=12)
    first = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    assert first.written >= 3
    again = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    assert again.written == 0 and again.skipped == first.written
    assert _doc(tmp_path) == json.loads((tmp_path / "tileset.json").read_text(encoding="utf-8"))
    with s.transaction() as con:
        con.execute("UPDATE bim_elements SET color = '#FF000080' "
                    "WHERE dataset_id = 'bim_annex' AND ifc_class = 'IfcDoor'")
    changed = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    assert changed.written == 1
    table = read_property_table(tmp_path / "tiles" / f"{changed.keys_written[0]}.glb")
    assert "IfcDoor" in table["ifc_class"] and set(table["dataset"]) == {"bim_annex"}
    # a new version of the house rewrites the house's tiles only
    annex_tiles = {k for k, t in json.loads((tmp_path / "manifest.json").read_text())["tiles"].items()
                   if t["datasets"] == ["bim_annex"]}
    insert_model(s, house(storeys=3))
    moved = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts)
    assert moved.written >= 1 and not set(moved.keys_written) & annex_tiles
    assert moved.skipped >= len(annex_tiles)
    # tiling one dataset removes the other's tiles
    build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, options=opts,
                            datasets=["bim_annex"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {p.stem for p in (tmp_path / "tiles").glob("*.glb")} == set(manifest["tiles"])
    assert {d for t in manifest["tiles"].values() for d in t["datasets"]} == {"bim_annex"}


def test_a_building_and_the_pipe_under_it_line_up_to_the_centimetre(
    geoid, tmp_path: Path, point_table, segment_table
) -> None:
    s = DuckDBStore(":memory:")
    ox, oy, oh = JINAN_ORIGIN
    x1, x2, y, z = ox + 5.0, ox + 45.0, oy - 8.0, oh - 2.0
    s.write_pipe_network(
        DatasetInfo("pipes", "pipes", "pipe_survey", STORAGE), point_table([]),
        segment_table([{"feature_id": "P1", "category": "JS", "shape": "circular", "diameter_mm": 300.0,
                        "start_z": z, "end_z": z, "x1": x1, "y1": y, "x2": x2, "y2": y}]),
    )
    # a BIM pipe element with the same axis, in a model whose origin is elsewhere
    model = house("bim_street", (ox - 3.25, oy + 1.75, oh - 0.4), storeys=1)
    lo = (x1 - (ox - 3.25), y - (oy + 1.75) - 0.15, z - (oh - 0.4) - 0.15)
    hi = (x2 - (ox - 3.25), y - (oy + 1.75) + 0.15, z - (oh - 0.4) + 0.15)
    model.elements.append(Element.box("PIPExxxxxxxxxxxxxxxxxx", "IfcPipeSegment", lo, hi))
    insert_model(s, model)
    build_pipe_tileset(s, tmp_path / "pipes", storage_crs=STORAGE, geoid=geoid, options=TilingOptions())
    build_buildings_tileset(s, tmp_path / "bim", storage_crs=STORAGE, geoid=geoid)

    def centre(folder: Path, key: str, id_column: str) -> np.ndarray:
        for _, world, path in _contents(folder):
            ids = read_property_table(path)[id_column]
            if key in ids:
                return (world @ np.append(feature_positions(path)[ids.index(key)], 1.0))[:3]
        raise AssertionError(key)

    pipe = centre(tmp_path / "pipes", "P1", "id")
    bim = centre(tmp_path / "bim", "PIPExxxxxxxxxxxxxxxxxx", "global_id")
    assert np.linalg.norm(pipe - bim) < 0.01


def test_bad_requests_and_bad_rows_fail_clearly(store: DuckDBStore, geoid, tmp_path: Path, point_table,
                                               segment_table) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        build_buildings_tileset(store, tmp_path, storage_crs=STORAGE, geoid=geoid, datasets=["nope"])
    s = DuckDBStore(":memory:")
    s.write_pipe_network(DatasetInfo("pipes", "pipes", "pipe_survey", STORAGE), point_table([]),
                         segment_table([]))
    with pytest.raises(InvalidInputError, match="not a BIM model"):
        build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, datasets=["pipes"])
    with pytest.raises(NotFoundError, match="no BIM elements"):
        build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid)
    positions, indices = box_mesh((0, 0, 0), (1, 1, 1))
    indices[0, 0] = 99
    model = house("bim_bad")
    model.elements = [Element("BADxxxxxxxxxxxxxxxxxxx", "IfcWall", positions, indices)]
    insert_model(s, model)
    with pytest.raises(InvalidInputError, match="BADx.*triangle index 99"):
        build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid)
    flat = house("bim_flat")
    flat.elements = [Element("FLATxxxxxxxxxxxxxxxxxx", "IfcWall", np.zeros((8, 3), np.float32), indices % 8)]
    insert_model(s, flat)
    with pytest.raises(NotFoundError, match="no.*drawable triangle"):
        build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, datasets=["bim_flat"])
    with s.transaction() as con:
        con.execute("UPDATE bim_models SET origin_x = NULL WHERE dataset_id = 'bim_bad'")
    with pytest.raises(InvalidInputError, match="without an origin.*bim_bad"):
        build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid, datasets=["bim_bad"])


def test_elements_without_stored_bounds_are_placed_from_their_meshes(geoid, tmp_path: Path) -> None:
    s = DuckDBStore(":memory:")
    insert_model(s, house())
    with s.transaction() as con:
        con.execute("UPDATE bim_elements SET minx = NULL, maxz = NULL WHERE predefined_type = 'ROOF'")
    build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid,
                            options=BuildingTilingOptions(leaf_capacity=4))
    doc = _doc(tmp_path)
    roof = [(tile, world) for tile, world, path in _contents(tmp_path)
            if "Roof" in read_property_table(path)["name"]]
    assert len(roof) == 1
    tile, world = roof[0]
    ecef = np.concatenate([v for _, v, _ in _vertices(tmp_path / tile["content"]["uri"], world)])
    _, _, h = FROM_ECEF.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    assert h.max() <= tile["boundingVolume"]["region"][5]
    # the 20 × 12 m roof is the largest element: drawn at the top, sized from its mesh
    assert tile == doc["root"] and doc["root"]["geometricError"] < np.hypot(20, 12)


def test_the_cli_builds_the_tileset_from_a_store_file(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from tiles.buildings_cli import register

    s = DuckDBStore(tmp_path / "cim.duckdb")
    insert_model(s, house())
    s.close()
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into tile-bim
        pass

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["tile-bim", "--store", f"duckdb:///{tmp_path / 'cim.duckdb'}", "--out",
                                      str(out), "--leaf-capacity", "5"])
    assert result.exit_code == 0, result.output
    assert validators.validate_tileset_json(out / "tileset.json") == []
    assert len(list((out / "tiles").glob("*.glb"))) >= 2


IFC_HOUSE = validators.SHARED / "data" / "ifc" / "ifc4_ifcopenshell_ifcopenhouse.ifc"


@pytest.mark.skipif(not IFC_HOUSE.is_file(), reason="shared IFC samples not present")
def test_an_ingested_ifc_model_placed_in_jinan_tiles_cleanly(geoid, tmp_path: Path) -> None:
    pytest.importorskip("ifcopenshell")
    ingest = pytest.importorskip("converters.ifc.ingest")
    from cim.settings import Settings
    from converters.ifc.georef import UserPlacement

    s = DuckDBStore(":memory:")
    ox, oy, oh = JINAN_ORIGIN
    placement = UserPlacement(crs=STORAGE, easting=ox, northing=oy, height=oh, rotation_deg=30.0)
    done = ingest.ingest_ifc(IFC_HOUSE, s, ingest.IfcOptions(dataset_id="ifc_house", placement=placement),
                             Settings())
    result = build_buildings_tileset(s, tmp_path, storage_crs=STORAGE, geoid=geoid)
    stored = {r[0] for r in s.read().execute(
        "SELECT global_id FROM bim_elements WHERE mesh_positions IS NOT NULL AND ifc_class <> 'IfcSpace'"
    ).fetchall()}
    assert result.features == len(stored) >= 20 and done.version == 1
    assert validators.validate_tileset_json(tmp_path / "tileset.json") == []
    files = sorted((tmp_path / "tiles").glob("*.glb"))
    if validators.gltf_validator_available():
        for path, report in validators.gltf_validate(files).items():
            assert report["numErrors"] == report["numWarnings"] == 0, (path, report["messages"][:5])
    tiled = [g for path in files for g in read_property_table(path)["global_id"]]
    assert sorted(tiled) == sorted(stored)
    assert _check_placement(tmp_path, s, geoid) == len(stored)



def test_the_quadtree_refuses_non_finite_positions() -> None:
    import numpy as np

    from tiles.quadtree import root_cell

    with pytest.raises(ValueError, match="finite"):
        root_cell(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
