"""Point-cloud tile content: glTF 2.0 POINTS (.glb, 3D Tiles 1.1) and the legacy ``pnts`` (3D Tiles 1.0).

glTF content (:func:`points_glb`):

* one mesh, one primitive of mode 0 (POINTS); ``POSITION`` float32 relative to the tile centre, written
  y-up as glTF requires: ENU ``(e, n, u)`` becomes ``(e, u, −n)``, and the node's ``translation`` carries
  the centre, so a 3D Tiles client (which turns y-up to z-up) puts every point back at its ENU place;
* ``COLOR_0``: normalized UNSIGNED_BYTE VEC3 (sRGB values as the scanner gave them);
* ``_INTENSITY`` (UNSIGNED_SHORT) and ``_CLASSIFICATION`` (UNSIGNED_BYTE) as application attributes,
  declared through ``EXT_structural_metadata`` property attributes (class ``point``: ``intensity`` UINT16,
  ``classification`` UINT8) so a client can style by them;
* every vertex attribute starts on a 4-byte boundary with a 4-byte-multiple stride (glTF §3.6.2.4).

``pnts`` content (:func:`points_pnts`) keeps ``POSITION`` (z-up, relative to ``RTC_CENTER``), ``RGB`` and a
batch table with ``INTENSITY`` and ``CLASSIFICATION``, for clients that do not read glTF point clouds.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

GENERATOR = "cim-service point-cloud tiler"
EXT_STRUCTURAL_METADATA = "EXT_structural_metadata"

#: The metadata schema embedded in every point tile.
POINT_SCHEMA: dict[str, Any] = {
    "id": "cim_pointcloud",
    "classes": {
        "point": {
            "name": "Point",
            "description": "A lidar/photogrammetry point: return intensity and ASPRS classification (LAS 1.4 R15)",
            "properties": {
                "intensity": {"type": "SCALAR", "componentType": "UINT16",
                              "description": "Return intensity as recorded in the LAS file"},
                "classification": {"type": "SCALAR", "componentType": "UINT8",
                                   "description": "ASPRS class: 2 ground, 3-5 vegetation, 6 building, 9 water"},
            },
        }
    },
}

_FLOAT, _USHORT, _UBYTE = 5126, 5123, 5121
_ARRAY_BUFFER = 34962


def _pad(data: bytes, align: int = 4, fill: bytes = b"\0") -> bytes:
    return data + fill * (-len(data) % align)


def points_glb(positions: np.ndarray, centre: np.ndarray, rgb: np.ndarray | None, intensity: np.ndarray,
               classification: np.ndarray) -> bytes:
    """A .glb with the points at ENU ``positions`` (n, 3; metres, relative to ``centre``).

    ``rgb`` (n, 3) uint8 or ``None``; ``intensity`` uint16 and ``classification`` uint8 (n,).
    """
    n = len(positions)
    pos = np.empty((n, 3), dtype="<f4")
    pos[:, 0] = positions[:, 0]
    pos[:, 1] = positions[:, 2]
    pos[:, 2] = -positions[:, 1]
    # one interleaved view of 4-byte aligned attribute slots: [r g b -][int int - -][cls - - -]
    attrs = np.zeros((n, 12), dtype=np.uint8)
    if rgb is not None:
        attrs[:, 0:3] = rgb
    attrs[:, 4:6] = np.ascontiguousarray(intensity, dtype="<u2").view(np.uint8).reshape(n, 2)
    attrs[:, 8] = classification
    pos_bytes = pos.tobytes()
    attr_bytes = attrs.tobytes()
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    accessors: list[dict[str, Any]] = [
        {"bufferView": 0, "componentType": _FLOAT, "count": n, "type": "VEC3",
         "min": [float(v) for v in lo], "max": [float(v) for v in hi]},
        {"bufferView": 1, "byteOffset": 4, "componentType": _USHORT, "count": n, "type": "SCALAR"},
        {"bufferView": 1, "byteOffset": 8, "componentType": _UBYTE, "count": n, "type": "SCALAR"},
    ]
    attributes = {"POSITION": 0, "_INTENSITY": 1, "_CLASSIFICATION": 2}
    if rgb is not None:
        accessors.append({"bufferView": 1, "byteOffset": 0, "componentType": _UBYTE, "normalized": True,
                          "count": n, "type": "VEC3"})
        attributes["COLOR_0"] = 3
    c = np.asarray(centre, dtype="f8")
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "extensionsUsed": [EXT_STRUCTURAL_METADATA],
        "extensions": {EXT_STRUCTURAL_METADATA: {
            "schema": POINT_SCHEMA,
            "propertyAttributes": [{"class": "point", "properties": {
                "intensity": {"attribute": "_INTENSITY"}, "classification": {"attribute": "_CLASSIFICATION"}}}],
        }},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "translation": [float(c[0]), float(c[2]), float(-c[1])]}],
        "meshes": [{"primitives": [{"attributes": attributes, "mode": 0, "extensions": {
            EXT_STRUCTURAL_METADATA: {"propertyAttributes": [0]}}}]}],
        "buffers": [{"byteLength": len(pos_bytes) + len(attr_bytes)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "byteStride": 12,
             "target": _ARRAY_BUFFER},
            {"buffer": 0, "byteOffset": len(pos_bytes), "byteLength": len(attr_bytes), "byteStride": 12,
             "target": _ARRAY_BUFFER},
        ],
        "accessors": accessors,
    }
    return _glb(gltf, pos_bytes + attr_bytes)


def _glb(gltf: dict[str, Any], binary: bytes) -> bytes:
    js = _pad(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), 4, b" ")
    binary = _pad(binary, 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", len(binary), 0x004E4942), binary])


def points_pnts(positions: np.ndarray, centre: np.ndarray, rgb: np.ndarray | None, intensity: np.ndarray,
                classification: np.ndarray) -> bytes:
    """The same points as a 3D Tiles 1.0 ``pnts`` tile (z-up, ``RTC_CENTER`` = ``centre``)."""
    n = len(positions)
    pos = np.ascontiguousarray(positions, dtype="<f4").tobytes()
    ft: dict[str, Any] = {"POINTS_LENGTH": n, "POSITION": {"byteOffset": 0},
                          "RTC_CENTER": [float(v) for v in centre]}
    body = pos
    if rgb is not None:
        ft["RGB"] = {"byteOffset": len(body)}
        body += np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ft_json = _pad(json.dumps(ft, separators=(",", ":")).encode(), 8, b" ")
    ft_bin = _pad(body, 8)
    inten = _pad(np.ascontiguousarray(intensity, dtype="<u2").tobytes(), 8)
    bt = {"INTENSITY": {"byteOffset": 0, "componentType": "UNSIGNED_SHORT", "type": "SCALAR"},
          "CLASSIFICATION": {"byteOffset": len(inten), "componentType": "UNSIGNED_BYTE", "type": "SCALAR"}}
    bt_json = _pad(json.dumps(bt, separators=(",", ":")).encode(), 8, b" ")
    bt_bin = _pad(inten + np.ascontiguousarray(classification, dtype=np.uint8).tobytes(), 8)
    total = 28 + len(ft_json) + len(ft_bin) + len(bt_json) + len(bt_bin)
    header = struct.pack("<4sIIIIII", b"pnts", 1, total, len(ft_json), len(ft_bin), len(bt_json), len(bt_bin))
    return b"".join([header, ft_json, ft_bin, bt_json, bt_bin])


def read_points(data: bytes) -> dict[str, np.ndarray]:
    """Decode a tile written by :func:`points_glb` or :func:`points_pnts`: ``enu`` (n, 3) float64 in the
    tileset's frame (centre added back, glTF y-up undone), ``rgb``, ``intensity``, ``classification``."""
    if data[:4] == b"glTF":
        return _read_glb(data)
    if data[:4] == b"pnts":
        return _read_pnts(data)
    raise ValueError("not a glb or pnts tile")


def _read_glb(data: bytes) -> dict[str, np.ndarray]:
    jlen = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + jlen])
    binary = data[20 + jlen + 8:]

    def accessor(i: int, dtype: str, width: int) -> np.ndarray:
        acc = gltf["accessors"][i]
        view = gltf["bufferViews"][acc["bufferView"]]
        size = np.dtype(dtype).itemsize * width
        stride = view.get("byteStride", size)
        raw = np.frombuffer(binary, dtype=np.uint8, count=stride * acc["count"], offset=view.get("byteOffset", 0))
        off = acc.get("byteOffset", 0)
        rows = raw.reshape(acc["count"], stride)[:, off:off + size]
        return np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], width)

    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    pos = accessor(attrs["POSITION"], "<f4", 3).astype("f8")
    t = gltf["nodes"][0].get("translation", [0, 0, 0])
    pos += t
    enu = np.column_stack([pos[:, 0], -pos[:, 2], pos[:, 1]])
    out = {"enu": enu, "intensity": accessor(attrs["_INTENSITY"], "<u2", 1)[:, 0],
           "classification": accessor(attrs["_CLASSIFICATION"], "u1", 1)[:, 0]}
    if "COLOR_0" in attrs:
        out["rgb"] = accessor(attrs["COLOR_0"], "u1", 3)
    return out


def _read_pnts(data: bytes) -> dict[str, np.ndarray]:
    _, _, _, ftj, ftb, btj, btb = struct.unpack_from("<4sIIIIII", data, 0)
    ft = json.loads(data[28:28 + ftj])
    body = data[28 + ftj:28 + ftj + ftb]
    n = ft["POINTS_LENGTH"]
    pos = np.frombuffer(body, "<f4", n * 3, ft["POSITION"]["byteOffset"]).reshape(n, 3).astype("f8")
    pos += ft.get("RTC_CENTER", [0, 0, 0])
    bt = json.loads(data[28 + ftj + ftb:28 + ftj + ftb + btj])
    bbody = data[28 + ftj + ftb + btj:28 + ftj + ftb + btj + btb]
    out = {"enu": pos,
           "intensity": np.frombuffer(bbody, "<u2", n, bt["INTENSITY"]["byteOffset"]),
           "classification": np.frombuffer(bbody, "u1", n, bt["CLASSIFICATION"]["byteOffset"])}
    if "RGB" in ft:
        out["rgb"] = np.frombuffer(body, "u1", n * 3, ft["RGB"]["byteOffset"]).reshape(n, 3)
    return out
