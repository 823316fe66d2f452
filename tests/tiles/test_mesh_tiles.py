"""Textured glTF tiles and the mesh tileset writer: a small real-textured package placed through the SRS
chain (GK zone, geoid), ENU productions, y-up axes and precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from cim.heights import ConstantGeoid
from tests.tools.validators import gltf_validate, gltf_validator_available, validate_tileset_json
from tiles.glb import read_accessor, read_glb
from tiles.mesh import TexturedPart, write_mesh_tileset, write_textured_glb

JPEG = sorted((Path(__file__).resolve().parents[2] / "../shared/data/citymodel").rglob("*.jpg"))


def square(size: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.array([[0, 0, 0], [size, 0, 0], [size, size, 0], [0, size, 0]], dtype="f8")
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype="f4")
    return pos, np.array([0, 1, 2, 0, 2, 3], dtype="<u4"), uv


@pytest.mark.skipif(not JPEG, reason="no sample JPEG")
def test_textured_glb_is_valid_y_up_and_embeds_the_image(tmp_path):
    pos, idx, uv = square()
    image = JPEG[0].read_bytes()
    path = tmp_path / "t.glb"
    write_textured_glb(path, [TexturedPart(pos, idx, uv=uv, image=image, clamp=True)],
                       translation=np.array([1.0, 2.0, 3.0]))
    gltf, binary = read_glb(path)
    assert gltf["nodes"][0]["translation"] == [1.0, 3.0, -2.0]  # ENU (1, 2, 3) → glTF (x, z, −y)
    p = read_accessor(gltf, binary, gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    assert np.allclose(p[2], [10.0, 0.0, -10.0])
    view = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
    assert binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]] == image
    assert gltf["samplers"][0]["wrapS"] == 33071 and gltf["extensionsUsed"] == ["KHR_materials_unlit"]
    if gltf_validator_available():
        report = gltf_validate([path])[path]
        assert report["numErrors"] == 0 and report["numWarnings"] == 0, report["messages"]


def test_colour_only_part_and_bad_image(tmp_path):
    pos, idx, _ = square()
    colours = np.tile(np.array([200, 100, 50, 255], dtype="u1"), (4, 1))
    path = tmp_path / "c.glb"
    write_textured_glb(path, [TexturedPart(pos, idx, colors=colours)])
    gltf, _ = read_glb(path)
    assert "COLOR_0" in gltf["meshes"][0]["primitives"][0]["attributes"] and "images" not in gltf
    if gltf_validator_available():
        assert gltf_validate([path])[path]["numErrors"] == 0
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        write_textured_glb(path, [TexturedPart(pos, idx, uv=square()[2], image=b"GIF89a....")])


def package(tmp: Path, georef: dict, *, children: bool = True) -> Path:
    """A two-level package: a coarse square with one finer child, in GK coordinates from an origin."""
    (tmp / "parts").mkdir(parents=True)
    pos, idx, _ = square(100.0)
    np.savez(tmp / "parts/a.npz", positions=pos, indices=idx)
    np.savez(tmp / "parts/b.npz", positions=pos[:3] * 0.5 + [10, 10, 5], indices=idx[:3])
    child = {"name": "fine", "geometric_error": 0.0, "parts": [{"file": "parts/b.npz"}], "children": []}
    root = {"name": "coarse", "geometric_error": 0.0, "parts": [{"file": "parts/a.npz"}],
            "children": [child] if children else []}
    georef = {"origin": [500000.0, 4057669.9, 50.0], "bbox_local": [0, 0, 0, 100, 100, 5], **georef}
    (tmp / "mesh.json").write_text(json.dumps({"version": 1, "georef": georef, "roots": [root]}))
    return tmp


def test_tileset_placed_through_the_srs_and_geoid(tmp_path):
    from pyproj import CRS

    wkt = CRS.from_epsg(4548).to_wkt()
    out = tmp_path / "out"
    summary = write_mesh_tileset(package(tmp_path / "pkg", {"crs": wkt}), out, geoid=ConstantGeoid(-7.3))
    assert validate_tileset_json(out / "tileset.json") == []
    tileset = json.loads((out / "tileset.json").read_text())
    root = tileset["root"]
    assert summary["depth"] == 2 and root["children"][0]["geometricError"] == 0
    assert root["geometricError"] > 0 and tileset["geometricError"] >= root["geometricError"]
    m = np.array(root["transform"]).reshape(4, 4).T
    # the frame origin is the model centre: GK (500050, 4057719.9), H 52.5 m + N −7.3 m
    lon, lat, h = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(
        *map(float, m[:3, 3]))
    lon_ref, lat_ref = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True).transform(500050.0,
                                                                                                4057719.9)
    assert lon == pytest.approx(lon_ref, abs=1e-7) and lat == pytest.approx(lat_ref, abs=1e-7)
    assert h == pytest.approx(52.5 - 7.3, abs=1e-3)
    box = root["boundingVolume"]["box"]
    assert box[3] == pytest.approx(50.0, abs=0.05) and box[7] == pytest.approx(50.0, abs=0.05)
    if gltf_validator_available():
        reports = gltf_validate(sorted(out.glob("tiles/*.glb")))
        assert all(r["numErrors"] == 0 for r in reports.values())


def test_enu_production_is_placed_at_its_origin(tmp_path):
    out = tmp_path / "out"
    write_mesh_tileset(package(tmp_path / "pkg", {"crs": None, "enu": [36.65, 117.0], "origin": [10.0, 20.0, 0.0]},
                               children=False), out,
                       geoid=ConstantGeoid(0.0))
    root = json.loads((out / "tileset.json").read_text())["root"]
    m = np.array(root["transform"]).reshape(4, 4).T
    lon, lat, h = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(
        *map(float, m[:3, 3]))
    assert (lon, lat) == pytest.approx((117.0, 36.65), abs=1e-7) and h == pytest.approx(0.0, abs=1e-3)
    # vertices are ENU metres + SRSOrigin: the box centre is origin + half the square
    assert root["boundingVolume"]["box"][:3] == pytest.approx([60.0, 70.0, 0.0], abs=1e-6)
