"""The normalised mesh a reader produces and the package the mesh tiler (``tiles.mesh``) reads.

A package is a folder: ``mesh.json`` (georeference, node tree, geometric errors) and one ``.npz`` per
textured part (``positions`` float64 metres relative to the SRS origin, ``indices`` uint32 triangles,
optional ``uv`` (glTF convention: v down), ``normals``, ``colors`` RGBA uint8) with its texture image
beside it. Converters and tiles meet only in such files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE_VERSION = 1
IMAGE_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


@dataclass
class MeshPart:
    """One primitive: triangles sharing one texture (or vertex colours, or neither)."""

    positions: np.ndarray
    indices: np.ndarray
    uv: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    texture: Path | None = None

    def check(self, where: str) -> None:
        """Shapes and index ranges; raises ValueError naming ``where``."""
        n = len(self.positions)
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise ValueError(f"{where}: positions must be (n, 3)")
        if len(self.indices) % 3 or (len(self.indices) and (self.indices.max() >= n)):
            raise ValueError(f"{where}: triangle indices out of range or not a multiple of 3")
        for name, arr, width in (("uv", self.uv, 2), ("normals", self.normals, 3), ("colors", self.colors, 4)):
            if arr is not None and arr.shape != (n, width):
                raise ValueError(f"{where}: {name} must be ({n}, {width}), got {arr.shape}")


@dataclass
class MeshNode:
    """A level-of-detail node: its own parts, finer children, and the geometric error of its geometry
    (metres; 0 for leaves: the tiler keeps parents at least as large as their children)."""

    name: str
    parts: list[Any] = field(default_factory=list)
    children: list[MeshNode] = field(default_factory=list)
    geometric_error: float = 0.0

    def walk(self) -> list[MeshNode]:
        """This node and every descendant, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def depth(self) -> int:
        """Levels below and including this node."""
        return 1 + max((c.depth() for c in self.children), default=0)


def image_mime(path: Path) -> str | None:
    """``image/jpeg`` or ``image/png`` from the file's magic bytes, else ``None``."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, mime in IMAGE_TYPES.items():
        if head.startswith(magic):
            return mime
    return None


class PackageWriter:
    """Writes nodes into a package folder as they are read (parts go to disk at once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "parts").mkdir(parents=True, exist_ok=True)
        (folder / "textures").mkdir(exist_ok=True)
        self._parts = 0
        self._textures: dict[Path, str] = {}
        self.bbox_min = np.full(3, np.inf)
        self.bbox_max = np.full(3, -np.inf)
        self.vertices = 0
        self.triangles = 0

    def add_part(self, part: MeshPart, where: str, *, clamp: bool = False) -> dict[str, Any]:
        """Store one part; return its ``mesh.json`` entry."""
        part.check(where)
        name = f"parts/p{self._parts:06d}.npz"
        self._parts += 1
        arrays: dict[str, np.ndarray] = {"positions": np.asarray(part.positions, dtype="f8"),
                                         "indices": np.asarray(part.indices, dtype="<u4")}
        for key in ("uv", "normals", "colors"):
            value = getattr(part, key)
            if value is not None:
                arrays[key] = value
        np.savez(self.folder / name, **arrays)
        if len(part.positions):
            self.bbox_min = np.minimum(self.bbox_min, part.positions.min(axis=0))
            self.bbox_max = np.maximum(self.bbox_max, part.positions.max(axis=0))
        self.vertices += len(part.positions)
        self.triangles += len(part.indices) // 3
        entry: dict[str, Any] = {"file": name}
        if part.texture is not None:
            entry["texture"] = self._texture(part.texture)
            entry["clamp"] = clamp
        return entry

    def _texture(self, path: Path) -> str:
        key = path.resolve()
        if key not in self._textures:
            name = f"textures/t{len(self._textures):05d}{path.suffix.lower()}"
            shutil.copyfile(path, self.folder / name)
            self._textures[key] = name
        return self._textures[key]

    def node(self, node: MeshNode, children: list[dict[str, Any]], parts: list[dict[str, Any]]) -> dict[str, Any]:
        """A node's ``mesh.json`` entry."""
        return {"name": node.name, "geometric_error": float(node.geometric_error), "parts": parts,
                "children": children}

    def add_tree(self, node: MeshNode, *, clamp: bool = False) -> dict[str, Any]:
        """Store a tree (``clamp``: textures are atlases, clamp to edge); parts already stored (entries
        from :meth:`add_part`) are kept as they are."""
        parts = [self.add_part(p, node.name, clamp=clamp) if isinstance(p, MeshPart) else p for p in node.parts]
        return self.node(node, [self.add_tree(c, clamp=clamp) for c in node.children], parts)

    def finish(self, roots: list[dict[str, Any]], georef: dict[str, Any]) -> Path:
        """Write ``mesh.json``; return its path."""
        path = self.folder / "mesh.json"
        doc = {"version": PACKAGE_VERSION, "georef": georef, "roots": roots,
               "counts": {"parts": self._parts, "textures": len(self._textures), "vertices": self.vertices,
                          "triangles": self.triangles}}
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        return path

    @property
    def textures(self) -> int:
        """Distinct texture images stored."""
        return len(self._textures)
