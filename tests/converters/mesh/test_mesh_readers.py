"""OBJ and PLY reader details the real sample does not exercise: ASCII PLY with vertex colours and quads,
per-corner texture coordinates, OBJ negative indices, polygons, Kd colours and broken references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cim.errors import InvalidInputError
from converters.mesh.obj import read_obj
from converters.mesh.ply import read_ply

ASCII_PLY = """ply
format ascii 1.0
element vertex 5
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
element face 2
property list uchar int vertex_indices
end_header
0 0 0 255 0 0
1 0 0 0 255 0
1 1 0 0 0 255
0 1 0 10 20 30
2 2 1 40 50 60
4 0 1 2 3
3 2 4 3
"""


def test_ascii_ply_with_colours_and_quads(tmp_path):
    path = tmp_path / "c.ply"
    path.write_text(ASCII_PLY)
    (part,) = read_ply(path)
    assert part.indices.reshape(-1, 3).tolist() == [[0, 1, 2], [0, 2, 3], [2, 4, 3]]
    assert part.colors[4].tolist() == [40, 50, 60, 255] and part.texture is None and part.uv is None


def test_ply_per_corner_texcoords(tmp_path):
    jpg = next((Path(__file__).resolve().parents[3] / "../shared/data/citymodel").rglob("*.jpg"))
    (tmp_path / "t.jpg").write_bytes(jpg.read_bytes())
    text = ("ply\nformat ascii 1.0\ncomment TextureFile t.jpg\nelement vertex 3\nproperty float x\n"
            "property float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            "property list uchar float texcoord\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 6 0 0 1 0 0 1\n")
    (tmp_path / "t.ply").write_text(text)
    (part,) = read_ply(tmp_path / "t.ply")
    assert part.texture == tmp_path / "t.jpg"
    assert np.allclose(part.uv, [[0, 1], [1, 1], [0, 0]])  # v flipped to glTF's top-left origin
    (tmp_path / "t.jpg").unlink()
    with pytest.raises(InvalidInputError, match="texture t.jpg is missing"):
        read_ply(tmp_path / "t.ply")


def test_obj_negative_indices_polygons_and_colours(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl red\nKd 1 0 0\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 2\n"
                                    "usemtl red\nf -4//-1 -3//-1 -2//-1 -1//-1\n")
    (part,) = read_obj(tmp_path / "m.obj")
    assert len(part.indices) == 6 and part.colors[0].tolist() == [255, 0, 0, 255]
    assert np.allclose(part.normals, [0, 0, 1])
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(InvalidInputError, match="missing element"):
        read_obj(tmp_path / "m.obj")
    (tmp_path / "n.obj").write_text("mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InvalidInputError, match="gone.mtl is missing"):
        read_obj(tmp_path / "n.obj")
