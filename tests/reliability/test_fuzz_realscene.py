"""Fuzzing the real-scene readers (written alongside this suite): OBJ, PLY, OSG text, external 3D Tiles
tilesets and GeoTIFF headers. The answer to any input is a result or a CIMError, never another exception.

Each block skips when its reader is not there yet. ``CIM_FUZZ_EXAMPLES`` scales the examples.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability.fuzzing import SHARED, examples, expect_clean, mutated, scratch

OBJ = b"""mtllib m.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
usemtl a
f 1/1/1 2/2/1 3/3/1
f 1 3 4
f -1 -2 -3
"""
OBJ_TOKENS = (b"nan", b"inf", b"1e400", b"-99999999999", b"0", b"/", b"//", b"f ", b"v ", b"usemtl ", b"mtllib ../../",
              b"\n", b"\x00", b"\xff")


@given(st.data())
@examples(150)
def test_obj(data: st.DataObject) -> None:
    import converters.mesh.obj as obj
    raw = data.draw(st.one_of(mutated(OBJ, OBJ_TOKENS), st.binary(max_size=300)))
    with tempfile.TemporaryDirectory(prefix="cim-fuzz-") as tmp:
        (Path(tmp) / "m.mtl").write_bytes(data.draw(st.one_of(
            st.just(b"newmtl a\nKd 1 0 0\nmap_Kd ../../../etc/passwd\n"), st.binary(max_size=100))))
        (Path(tmp) / "m.obj").write_bytes(raw)
        expect_clean(obj.read_obj, Path(tmp) / "m.obj", convert_dir=Path(tmp) / "conv")


def _ply(n_vertices: int, n_faces: int, body: bytes, fmt: str = "binary_little_endian") -> bytes:
    head = (f"ply\nformat {fmt} 1.0\nelement vertex {n_vertices}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n")
    return head.encode() + body


PLY_OK = _ply(3, 1, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0) + struct.pack("<B3i", 3, 0, 1, 2))


@given(verts=st.integers(0, 2**40), faces=st.integers(0, 2**40), data=st.data())
@examples(100)
def test_ply_with_lying_counts(verts: int, faces: int, data: st.DataObject) -> None:
    import plyfile  # noqa: F401 - installed by scripts/setup.sh

    import converters.mesh.ply as ply
    raw = data.draw(st.one_of(st.just(_ply(verts, faces, PLY_OK.split(b"end_header\n")[1])), mutated(PLY_OK),
                              st.just(_ply(3, 1, b"0 0 0\n1 0 0\n0 1 0\n3 0 1 99\n", "ascii"))))
    for path in scratch("m.ply", raw):
        expect_clean(ply.read_ply, path)


@given(text=st.one_of(st.text(max_size=400), st.just("Geode {\n  UniqueID 1\n  Drawables 1 {\n")))
@examples(150)
def test_osgt_text(text: str) -> None:
    import converters.mesh.osgb as osgb
    expect_clean(osgb.parse_osgt, text, file="x.osgt")


def _tileset_sources() -> list[Path]:
    return sorted(p.parent for p in (SHARED / "3dtiles").glob("*/tileset.json"))


@pytest.mark.skipif(not (SHARED / "3dtiles").is_dir(), reason="../shared/data is absent")
@given(st.data())
@examples(80)
def test_external_tileset_mutations(data: st.DataObject) -> None:
    import converters.mesh.external_tileset as ext
    source = data.draw(st.sampled_from(_tileset_sources()))
    with tempfile.TemporaryDirectory(prefix="cim-fuzz-") as tmp:
        folder = Path(tmp) / "ts"
        shutil.copytree(source, folder)
        doc = json.loads((folder / "tileset.json").read_text(encoding="utf-8"))
        edit = data.draw(st.sampled_from(["json", "uri", "bytes", "content"]))
        if edit == "uri":
            doc["root"].setdefault("content", {})["uri"] = data.draw(st.sampled_from(
                ["../../../etc/passwd", "/etc/passwd", "http://x/y.b3dm", "missing.glb", "tileset.json", ""]))
            (folder / "tileset.json").write_text(json.dumps(doc))
        elif edit == "json":
            text = (folder / "tileset.json").read_bytes()
            (folder / "tileset.json").write_bytes(data.draw(mutated(text, (b"{", b"}", b"null", b"1e999", b'"'))))
        elif edit == "content":
            victim = data.draw(st.sampled_from(sorted(p for p in folder.rglob("*") if p.is_file()
                                                      and p.name != "tileset.json")))
            victim.write_bytes(data.draw(mutated(victim.read_bytes()[:4096])))
        else:
            doc["root"]["boundingVolume"] = data.draw(st.one_of(
                st.just({"region": [1e9] * 6}), st.just({"box": [float("nan")] * 12}), st.just({}),
                st.just({"sphere": [0, 0, 0, -1]})))
            (folder / "tileset.json").write_text(json.dumps(doc))
        expect_clean(ext.validate_tileset, folder)


TIFF_TOKENS = (b"II*\x00", b"MM\x00*", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x10\x00")


@pytest.mark.skipif(not (SHARED / "raster").is_dir(), reason="../shared/data is absent")
@given(st.data())
@examples(60)
def test_geotiff_header_mutations(data: st.DataObject) -> None:
    import rasterio  # noqa: F401 - installed by scripts/setup.sh

    import converters.raster.geotiff as geotiff
    source = data.draw(st.sampled_from(sorted((SHARED / "raster").glob("*.tif"))))
    with source.open("rb") as f:
        head = f.read(64 * 1024)  # the header and IFDs, as a truncated upload would have them
    raw = data.draw(st.one_of(mutated(head, TIFF_TOKENS), st.just(head[:8]), st.just(b"II*\x00" + b"\xff" * 12)))
    for path in scratch("x.tif", raw):
        expect_clean(geotiff.read_facts, path, "EPSG:4548")
