"""Textured photogrammetry meshes as 3D Tiles 1.1: one glTF 2.0 tile per level-of-detail node.

Input is a mesh package (``mesh.json`` + parts + textures, written by ``converters.mesh``): a tree of
nodes, each with its own textured parts in source coordinates (metres from the SRS origin) and a
geometric error. Output, in ``out``: ``tileset.json`` and ``tiles/<node>.glb``.

* Placement: vertices + SRS origin are taken through the same chain as the pipes (SRS → CGCS2000
  lon/lat, normal height + geoid undulation → ellipsoidal height → ECEF, :mod:`tiles.frames`) into the
  east-north-up frame at the model's centre; the root tile's ``transform`` is that frame. An ``ENU:lat,lon``
  production is already in the ENU frame at (lat, lon, h = 0).
* Content: glTF 2.0 (y-up), ``POSITION`` float32 relative to the tile centre (the node's ``translation``
  carries the centre, for float32 precision), ``TEXCOORD_0``, optional ``NORMAL``/``COLOR_0``, triangle
  indices, the JPEG/PNG texture embedded as ``baseColorTexture`` with ``KHR_materials_unlit``
  (photogrammetry textures are pre-lit).
* Tree: every node is a tile with ``refine: REPLACE`` and its children as children; bounding boxes
  enclose the node's vertices and its children's boxes; a parent's geometric error is kept at least as
  large as its children's (leaves: 0).

Run as ``python -m tiles.mesh PACKAGE OUT``: prints a JSON summary (the converter calls it so).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from cim.errors import CIMError
from cim.heights import GeoidModel, get_geoid
from tiles.frames import LocalFrame, enu_matrix, enu_to_gltf, tile_transform
from tiles.glb import GENERATOR, _BinaryBuffer, _glb_bytes

KHR_UNLIT = "KHR_materials_unlit"
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_UBYTE, _USHORT, _UINT, _FLOAT = 5121, 5123, 5125, 5126
_LINEAR, _CLAMP = 9729, 33071
_MIME = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


@dataclass
class TexturedPart:
    """One primitive in ENU metres: positions, triangles, and texture (bytes) or colours."""

    positions: np.ndarray
    indices: np.ndarray
    uv: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    image: bytes | None = None
    clamp: bool = False


@dataclass
class _Tile:
    name: str
    geometric_error: float
    parts: list[dict[str, Any]]
    children: list[_Tile] = field(default_factory=list)
    box_min: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))
    box_max: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    content: str | None = None


def image_mime(data: bytes) -> str:
    """MIME type of an embedded texture; ValueError for anything but JPEG and PNG."""
    for magic, mime in _MIME.items():
        if data.startswith(magic):
            return mime
    raise ValueError("texture is neither JPEG nor PNG")


def _accessor(buf: _BinaryBuffer, accessors: list[dict[str, Any]], data: np.ndarray, component: int,
              kind: str, target: int | None, *, normalized: bool = False, bounds: bool = False) -> int:
    view = buf.add(np.ascontiguousarray(data).tobytes(), target)
    acc: dict[str, Any] = {"bufferView": view, "componentType": component, "count": int(len(data)), "type": kind}
    if normalized:
        acc["normalized"] = True
    if bounds:
        acc["min"] = [float(v) for v in data.min(axis=0)]
        acc["max"] = [float(v) for v in data.max(axis=0)]
    accessors.append(acc)
    return len(accessors) - 1


def write_textured_glb(path: str | Path, parts: list[TexturedPart], *, translation: np.ndarray | None = None,
                       extras: dict[str, Any] | None = None) -> int:
    """Write ENU parts (relative to ``translation``, an ENU offset) as a y-up .glb; return the bytes written."""
    buf = _BinaryBuffer()
    accessors: list[dict[str, Any]] = []
    primitives: list[dict[str, Any]] = []
    materials: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    textures: list[dict[str, Any]] = []
    samplers: list[dict[str, Any]] = []
    image_index: dict[int, int] = {}
    for part in parts:
        if not len(part.indices):
            continue
        attributes = {"POSITION": _accessor(buf, accessors, enu_to_gltf(part.positions).astype("<f4"), _FLOAT,
                                            "VEC3", _ARRAY_BUFFER, bounds=True)}
        if part.normals is not None:
            attributes["NORMAL"] = _accessor(buf, accessors, enu_to_gltf(part.normals).astype("<f4"), _FLOAT,
                                             "VEC3", _ARRAY_BUFFER)
        material: dict[str, Any] = {"pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0},
                                    "extensions": {KHR_UNLIT: {}}}
        if part.image is not None and part.uv is not None:
            attributes["TEXCOORD_0"] = _accessor(buf, accessors, part.uv.astype("<f4"), _FLOAT, "VEC2",
                                                 _ARRAY_BUFFER)
            key = id(part.image)
            if key not in image_index:
                images.append({"bufferView": buf.add(part.image), "mimeType": image_mime(part.image)})
                sampler = {"magFilter": _LINEAR, "minFilter": _LINEAR}
                if part.clamp:
                    sampler.update(wrapS=_CLAMP, wrapT=_CLAMP)
                if sampler not in samplers:
                    samplers.append(sampler)
                textures.append({"sampler": samplers.index(sampler), "source": len(images) - 1})
                image_index[key] = len(textures) - 1
            material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": image_index[key]}
        elif part.colors is not None:
            attributes["COLOR_0"] = _accessor(buf, accessors, part.colors.astype("u1"), _UBYTE, "VEC4",
                                              _ARRAY_BUFFER, normalized=True)
        small = len(part.positions) < 65536
        index_data = part.indices.astype("<u2" if small else "<u4")
        primitives.append({"attributes": attributes, "mode": 4, "material": len(materials),
                           "indices": _accessor(buf, accessors, index_data, _USHORT if small else _UINT,
                                                "SCALAR", _ELEMENT_ARRAY_BUFFER)})
        materials.append(material)
    if not primitives:
        raise ValueError("no triangles to write")
    node: dict[str, Any] = {"mesh": 0}
    if translation is not None:
        node["translation"] = [float(v) for v in enu_to_gltf(np.asarray(translation, dtype="f8"))[0]]
    binary = buf.payload()
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "extensionsUsed": [KHR_UNLIT],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [node],
        "meshes": [{"primitives": primitives}], "materials": materials, "accessors": accessors,
        "bufferViews": buf.views, "buffers": [{"byteLength": len(binary)}],
    }
    if images:
        gltf.update(images=images, textures=textures, samplers=samplers)
    if extras:
        gltf["extras"] = extras
    data = _glb_bytes(gltf, binary)
    Path(path).write_bytes(data)
    return len(data)


# ---------------------------------------------------------------------------------------------------
# placement


class _Placer:
    """Source coordinates (metres from the SRS origin) → ENU metres of the root frame."""

    def __init__(self, georef: dict[str, Any], centre: np.ndarray, geoid: GeoidModel) -> None:
        self.origin = np.asarray(georef["origin"], dtype="f8")
        if georef.get("enu"):
            lat, lon = georef["enu"]
            self.frame = None
            self.matrix = enu_matrix(float(lon), float(lat), 0.0)
            self.lonlat = (float(lon), float(lat))
        else:
            crs = CRS.from_wkt(georef["crs"])
            c = self.origin + centre
            self.frame = LocalFrame.at(float(c[0]), float(c[1]), float(c[2]), crs, geoid)
            self.matrix = self.frame.matrix
            self.lonlat = (self.frame.lon, self.frame.lat)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        p = positions + self.origin
        if self.frame is None:
            return p
        return self.frame.to_local(p[:, 0], p[:, 1], p[:, 2])


def _load_tree(doc: dict[str, Any]) -> list[_Tile]:
    def build(entry: dict[str, Any]) -> _Tile:
        return _Tile(entry["name"], float(entry["geometric_error"]), entry["parts"],
                     [build(c) for c in entry["children"]])
    return [build(r) for r in doc["roots"]]


def _write_node(tile: _Tile, package: Path, out: Path, place: _Placer, images: dict[str, bytes],
                names: set[str]) -> int:
    """Write ``tile``'s content and extend its box; return the glb bytes written."""
    parts: list[TexturedPart] = []
    for entry in tile.parts:
        with np.load(package / entry["file"]) as data:
            arrays = {k: data[k] for k in data.files}
        if not len(arrays["indices"]):
            continue
        enu = place(arrays["positions"])
        image = None
        if "texture" in entry:
            if entry["texture"] not in images:
                images[entry["texture"]] = (package / entry["texture"]).read_bytes()
            image = images[entry["texture"]]
        parts.append(TexturedPart(enu, arrays["indices"], arrays.get("uv"), arrays.get("normals"),
                                  arrays.get("colors"), image, bool(entry.get("clamp"))))
    if not parts:
        return 0
    lo = np.min([p.positions.min(axis=0) for p in parts], axis=0)
    hi = np.max([p.positions.max(axis=0) for p in parts], axis=0)
    tile.box_min, tile.box_max = np.minimum(tile.box_min, lo), np.maximum(tile.box_max, hi)
    centre = (lo + hi) / 2.0
    for p in parts:
        p.positions = p.positions - centre
    name = tile.name
    while name in names:
        name += "_"
    names.add(name)
    tile.content = f"tiles/{name}.glb"
    return write_textured_glb(out / tile.content, parts, translation=centre, extras={"node": tile.name})


def _finish(tile: _Tile) -> None:
    """Boxes enclose children; parents' geometric errors are at least their children's."""
    for child in tile.children:
        _finish(child)
        tile.box_min = np.minimum(tile.box_min, child.box_min)
        tile.box_max = np.maximum(tile.box_max, child.box_max)
    if tile.children:
        floor = max(c.geometric_error for c in tile.children)
        if tile.geometric_error <= floor:
            size = float(np.linalg.norm(tile.box_max - tile.box_min))
            tile.geometric_error = max(2.0 * floor, size / 16.0)
    else:
        tile.geometric_error = max(tile.geometric_error, 0.0) if tile.content else 0.0


def _box(tile: _Tile) -> list[float]:
    centre = (tile.box_min + tile.box_max) / 2.0
    half = np.maximum((tile.box_max - tile.box_min) / 2.0, 0.01)
    return [*map(float, centre), float(half[0]), 0.0, 0.0, 0.0, float(half[1]), 0.0, 0.0, 0.0, float(half[2])]


def _json(tile: _Tile) -> dict[str, Any]:
    out: dict[str, Any] = {"boundingVolume": {"box": _box(tile)}, "geometricError": float(tile.geometric_error),
                           "refine": "REPLACE"}
    if tile.content:
        out["content"] = {"uri": tile.content}
    kids = [c for c in tile.children if np.isfinite(c.box_min).all()]
    if kids:
        out["children"] = [_json(c) for c in kids]
    return out


def write_mesh_tileset(package: str | Path, out: str | Path, *, geoid: GeoidModel | None = None) -> dict[str, Any]:
    """Write ``tileset.json`` and ``tiles/*.glb`` for a mesh package; return a summary.

    ``geoid`` defaults to the one the package names (``georef.geoid``/``geoid_path``).
    """
    package, out = Path(package), Path(out)
    doc = json.loads((package / "mesh.json").read_text(encoding="utf-8"))
    georef = doc["georef"]
    if geoid is None:
        geoid = get_geoid(georef.get("geoid", "egm96"), Path(georef["geoid_path"]) if georef.get("geoid_path")
                          else None)
    bbox = np.asarray(georef["bbox_local"], dtype="f8")
    place = _Placer(georef, (bbox[:3] + bbox[3:]) / 2.0, geoid)
    roots = _load_tree(doc)
    root = roots[0] if len(roots) == 1 else _Tile("root", 0.0, [], roots)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    names: set[str] = set()
    written, tiles = 0, 0
    for tile in _iter(root):
        size = _write_node(tile, package, out, place, images, names)
        written += size
        tiles += bool(size)
        if len(images) > 64:  # textures are shared within a file's nodes only: keep memory bounded
            images.clear()
    _finish(root)
    if not np.isfinite(root.box_min).all():
        raise ValueError("the mesh has no triangles")
    root_json = _json(root)
    root_json["transform"] = tile_transform(place.matrix)
    half_diagonal = float(np.linalg.norm(root.box_max - root.box_min)) / 2.0
    tileset = {"asset": {"version": "1.1", "generator": GENERATOR},
               "geometricError": max(2.0 * root.geometric_error, half_diagonal),
               "root": root_json}
    (out / "tileset.json").write_text(json.dumps(tileset, ensure_ascii=False, indent=1), encoding="utf-8")
    return {"tiles": tiles, "bytes": written, "depth": _depth(root), "lonlat": list(place.lonlat),
            "box_enu": [*map(float, root.box_min), *map(float, root.box_max)]}


def _iter(tile: _Tile) -> list[_Tile]:
    out = [tile]
    for child in tile.children:
        out.extend(_iter(child))
    return out


def _depth(tile: _Tile) -> int:
    return 1 + max((_depth(c) for c in tile.children), default=0)


def main(argv: list[str] | None = None) -> int:
    """``python -m tiles.mesh PACKAGE OUT``: write the tileset, print the summary as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tiles.mesh PACKAGE OUT", file=sys.stderr)
        return 2
    try:
        summary = write_mesh_tileset(args[0], args[1])
    except (ValueError, OSError, KeyError, CIMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

