"""OpenSceneGraph binary (``.osgb``) tile trees as ContextCapture/Smart3D deliver them.

Each file is converted by OpenSceneGraph's ``osgconv`` (Debian ``openscenegraph``) to the ASCII
``.osgt`` form with full float precision and its embedded images written out, then read here:

* every ``osg::PagedLOD`` is a node: its loaded children are its own geometry, the file names of its
  ``RangeDataList`` are its finer children (read recursively; a file the production lacks makes the
  node a leaf and is counted);
* ``osg::Geometry``: vertex, normal and first texture-coordinate arrays, ``DrawElements*``/``DrawArrays``
  triangles, triangle strips/fans and quads, the ``osg::Texture2D`` image of its (or an ancestor's) state
  set; ``osg::MatrixTransform`` matrices are applied.

The geometric error of a node reproduces its level switch: with ``PIXEL_SIZE_ON_SCREEN`` ranges a node
hands over to its children when its bounding sphere (radius r) covers ``T`` pixels, and a 3D Tiles client
refines when ``geometricError × k / d`` exceeds the maximum screen-space error (16 px by default), so
``geometricError = 16 · 2r / T``; with ``DISTANCE_FROM_EYE_POINT`` ranges (switch distance ``D``) it is
``16 · D / k`` with ``k`` = 935 px per radian (1080 px, 60° field of view).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import InvalidInputError, UnsupportedError
from converters.mesh.model import MeshNode, MeshPart

MAX_SSE = 16.0
PIXELS_PER_RADIAN = 1080 / (2 * np.tan(np.radians(30.0)))
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_NUMERIC = re.compile(r"^[-+0-9.]")
_TRIANGLE_MODES = ("TRIANGLES", "TRIANGLE_STRIP", "TRIANGLE_FAN", "QUADS", "QUAD_STRIP", "POLYGON")


class Item:
    """One ``.osgt`` entry: ``key args...`` with an optional body (entries, or numbers for arrays)."""

    __slots__ = ("key", "args", "body")

    def __init__(self, key: str, args: list[str], body: list[Item] | np.ndarray | None = None) -> None:
        self.key, self.args, self.body = key, args, body

    def items(self) -> list[Item]:
        """The entries of the body (none for arrays and plain values)."""
        return self.body if isinstance(self.body, list) else []

    def find(self, key: str) -> Item | None:
        """The first entry called ``key``."""
        return next((i for i in self.items() if i.key == key), None)

    def values(self) -> np.ndarray:
        """A numeric body (an empty array when there is none)."""
        return self.body if isinstance(self.body, np.ndarray) else np.empty(0)


def _tokens(line: str) -> list[str]:
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _TOKEN.finditer(line)]


def parse_osgt(text: str, *, file: str | None = None) -> Item:
    """The entry tree of an ``.osgt`` text; objects written once and referenced again by ``UniqueID``
    are resolved to their first, complete occurrence."""
    root = Item("<root>", [], [])
    stack: list[Item] = [root]
    registry: dict[str, Item] = {}
    pos, n = 0, len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        line = text[pos:end].strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if len(stack) == 1:
                raise InvalidInputError("unbalanced '}' in the osgconv output", file=file)
            done = stack.pop()
            _register(done, stack[-1], registry)
            continue
        if line.endswith("{"):
            toks = _tokens(line[:-1])
            item = Item(toks[0] if toks else "", toks[1:], [])
            assert isinstance(stack[-1].body, list)
            stack[-1].body.append(item)
            nxt = text[pos:pos + 64].lstrip()
            if nxt and _NUMERIC.match(nxt):  # a numeric array block: parse it at once
                close = text.find("}", pos)
                if close < 0:
                    raise InvalidInputError("truncated array in the osgconv output", file=file)
                try:
                    item.body = np.array(text[pos:close].split(), dtype="f8")
                except ValueError:
                    raise InvalidInputError(f"non-numeric data in array {item.key}", file=file) from None
                pos = close + 1
                nl = text.find("\n", pos)
                pos = n if nl < 0 else nl + 1
                continue
            stack.append(item)
            continue
        toks = _tokens(line)
        assert isinstance(stack[-1].body, list)
        stack[-1].body.append(Item(toks[0], toks[1:]))
    if len(stack) != 1:
        raise InvalidInputError("truncated osgconv output (unclosed blocks)", file=file)
    return root


def _register(item: Item, parent: Item, registry: dict[str, Item]) -> None:
    if "::" not in item.key:
        return
    uid = item.find("UniqueID")
    if uid is None or not uid.args:
        return
    if len(item.items()) == 1 and uid.args[0] in registry:  # a reference to an object written before
        assert isinstance(parent.body, list)
        parent.body[-1] = registry[uid.args[0]]
    else:
        registry.setdefault(uid.args[0], item)


# ---------------------------------------------------------------------------------------------------
# scene graph → nodes


@dataclass
class OsgNode:
    """A PagedLOD (or the loose geometry of a file) with what it refers to."""

    name: str
    parts: list[MeshPart] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    geometric_error: float = 0.0


def _array(holder: Item | None) -> tuple[np.ndarray | None, str]:
    """Values and binding of the ``osg::*Array`` inside a ``VertexArray TRUE {...}`` style entry."""
    if holder is None:
        return None, ""
    arrays = [i for i in holder.items() if i.key.startswith("osg::") and "Array" in i.key]
    if not arrays:
        return None, ""
    arr = arrays[0]
    vec = arr.find("vector")
    width = {"Vec2": 2, "Vec3": 3, "Vec4": 4}.get(re.sub(r"^osg::(Vec\d).*$", r"\1", arr.key), 0)
    binding = arr.find("Binding")
    if vec is None or not width:
        return None, ""
    values = vec.values()
    if values.size % width:
        raise ValueError(f"{arr.key} has {values.size} numbers, not a multiple of {width}")
    return values.reshape(-1, width), (binding.args[0] if binding and binding.args else "BIND_PER_VERTEX")


def _triangles(prim: Item, vertex_count: int) -> np.ndarray:
    """Triangle indices (m, 3) of one primitive set (none for points and lines)."""
    mode_item = prim.find("Mode")
    mode = mode_item.args[0] if mode_item and mode_item.args else "TRIANGLES"
    if mode not in _TRIANGLE_MODES:
        return np.empty((0, 3), dtype=np.int64)
    if "DrawElements" in prim.key:
        vec = prim.find("vector")
        idx = vec.values().astype(np.int64) if vec is not None else np.empty(0, np.int64)
    elif prim.key == "osg::DrawArrays":
        first = int(float(prim.find("First").args[0])) if prim.find("First") else 0
        count_item = prim.find("Count")
        count = int(float(count_item.args[0])) if count_item else vertex_count - first
        idx = np.arange(first, first + count, dtype=np.int64)
    else:
        raise UnsupportedError(f"primitive set {prim.key} is not supported")
    return _assemble(idx, mode)


def _assemble(idx: np.ndarray, mode: str) -> np.ndarray:
    if mode == "TRIANGLES":
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if mode == "TRIANGLE_STRIP" and len(idx) >= 3:
        tri = np.column_stack([idx[:-2], idx[1:-1], idx[2:]])
        odd = np.arange(len(tri)) % 2 == 1
        tri[odd] = tri[odd][:, [1, 0, 2]]
        return tri
    if mode in ("TRIANGLE_FAN", "POLYGON") and len(idx) >= 3:
        return np.column_stack([np.full(len(idx) - 2, idx[0]), idx[1:-1], idx[2:]])
    if mode == "QUADS":
        q = idx[: len(idx) // 4 * 4].reshape(-1, 4)
        return np.vstack([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    if mode == "QUAD_STRIP" and len(idx) >= 4:
        q = np.column_stack([idx[0:-2:2], idx[1:-2:2], idx[3::2], idx[2::2]])
        return np.vstack([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return np.empty((0, 3), dtype=np.int64)


def _texture_of(stateset_holder: Item | None, folder: Path) -> Path | None:
    """The image file of the first ``osg::Texture2D`` in a ``StateSet TRUE {...}`` entry."""
    if stateset_holder is None:
        return None
    stack = list(stateset_holder.items())
    while stack:
        item = stack.pop(0)
        if item.key == "osg::Texture2D":
            image = item.find("Image")
            name = image.find("FileName") if image is not None else None
            if name is None or not name.args or not name.args[0]:
                raise InvalidInputError("a texture has no image (not embedded and no file name)")
            return folder / Path(name.args[0]).name
        stack.extend(item.items())
    return None


def _geometry(item: Item, matrix: np.ndarray | None, texture: Path | None, folder: Path) -> MeshPart | None:
    vertices, _ = _array(item.find("VertexArray"))
    if vertices is None or not len(vertices):
        return None
    tris = [_triangles(p, len(vertices)) for ps in [item.find("PrimitiveSetList")] if ps is not None
            for p in ps.items() if p.key.startswith("osg::")]
    faces = np.vstack(tris) if tris else np.empty((0, 3), np.int64)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"triangle indices outside the {len(vertices)} vertices")
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    if not len(faces):
        return None
    normals, nbind = _array(item.find("NormalArray"))
    tex_list = item.find("TexCoordArrayList")
    uv = None
    if tex_list is not None and tex_list.items():
        uv, _ = _array(Item("", [], [tex_list.items()[0]]))
    own_texture = _texture_of(item.find("StateSet"), folder) or texture
    positions = vertices.astype("f8")
    if matrix is not None:
        positions = np.c_[positions, np.ones(len(positions))] @ matrix
        positions = positions[:, :3]
        if normals is not None:
            normals = normals @ matrix[:3, :3]
    if normals is not None and (nbind != "BIND_PER_VERTEX" or len(normals) != len(vertices)):
        normals = None
    if normals is not None:
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.where(length > 0, normals / np.where(length > 0, length, 1), [0.0, 0.0, 1.0]).astype("f4")
    if uv is not None and len(uv) != len(vertices):
        uv = None
    if own_texture is not None and uv is None:
        own_texture = None
    if uv is not None:
        uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype("f4")  # OpenGL v up → glTF v down
    return MeshPart(positions, faces.reshape(-1).astype("<u4"), uv=uv, normals=normals, texture=own_texture)


def _walk(item: Item, matrix: np.ndarray | None, texture: Path | None, folder: Path,
          node: OsgNode, out: list[OsgNode], stem: str) -> None:
    """Collect ``item``'s geometry into ``node``; each PagedLOD met becomes a node of its own."""
    key = item.key
    if key == "osg::PagedLOD":
        child = _paged_lod(item, f"{stem}_{len(out)}")
        out.append(child)
        node = child
    elif key in ("osg::MatrixTransform",):
        m_item = item.find("Matrix")
        if m_item is not None and m_item.values().size == 16:
            local = m_item.values().reshape(4, 4)
            matrix = local if matrix is None else local @ matrix
    elif key == "osg::Geometry":
        part = _geometry(item, matrix, texture, folder)
        if part is not None:
            node.parts.append(part)
        return
    if "::" in key:
        texture = _texture_of(item.find("StateSet"), folder) or texture
    for sub in item.items():
        if sub.key in ("Children", "Drawables") or "::" in sub.key:
            _walk(sub, matrix, texture, folder, node, out, stem)


def _paged_lod(item: Item, name: str) -> OsgNode:
    node = OsgNode(name)
    ranges = item.find("RangeList")
    files = item.find("RangeDataList")
    names = [i.key for i in files.items()] if files is not None else []
    pairs = ranges.values().reshape(-1, 2) if ranges is not None and ranges.values().size % 2 == 0 \
        else np.empty((0, 2))
    mode_item = item.find("RangeMode")
    pixel_mode = bool(mode_item and mode_item.args and mode_item.args[0] == "PIXEL_SIZE_ON_SCREEN")
    centre = item.find("UserCenter")
    radius = float(centre.args[3]) if centre is not None and len(centre.args) >= 4 else 0.0
    switch = []
    for i, file_name in enumerate(names):
        if file_name:
            node.files.append(file_name)
            if i < len(pairs):
                switch.append(pairs[i][0] if pixel_mode else pairs[i][1])
    if node.files and switch:
        if pixel_mode:
            node.geometric_error = MAX_SSE * 2.0 * radius / max(min(switch), 1.0)
        else:
            node.geometric_error = MAX_SSE * max(switch) / PIXELS_PER_RADIAN
    return node


def nodes_of(tree: Item, folder: Path, stem: str) -> list[OsgNode]:
    """The PagedLOD nodes of one file (plus one node for geometry outside any PagedLOD)."""
    loose = OsgNode(stem)
    out: list[OsgNode] = []
    for item in tree.items():
        _walk(item, None, None, folder, loose, out, stem)
    if loose.parts:
        out.insert(0, loose)
    if len(out) == 1:
        out[0].name = stem
    return out


# ---------------------------------------------------------------------------------------------------
# osgconv


def convert_file(path: Path, workdir: Path, *, timeout_s: float = 120.0) -> Item:
    """Run ``osgconv`` on one ``.osgb`` into ``workdir`` (the ``.osgt`` and its images) and parse it."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / (path.stem + ".osgt")
    env = {**os.environ, "OSG_OPTIMIZER": "OFF", "OSG_NOTIFY_LEVEL": "WARN"}
    try:
        done = subprocess.run(
            ["osgconv", "-O", "PRECISION 15 WriteImageHint=WriteOut", str(path.resolve()), out.name],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise UnsupportedError("osgconv (Debian package openscenegraph) is not installed: OSGB cannot be read") \
            from None
    except subprocess.TimeoutExpired:
        raise InvalidInputError(f"osgconv did not finish within {timeout_s:.0f} s", file=str(path)) from None
    if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        reason = errors[-1].replace(str(path.resolve()), path.name) if errors else "no output"
        raise InvalidInputError(f"not a readable OSGB file (osgconv: {reason[:300]})", file=str(path))
    try:
        return parse_osgt(out.read_text(encoding="utf-8", errors="replace"), file=str(path))
    finally:
        out.unlink(missing_ok=True)


@dataclass
class OsgbStats:
    """What a tree read found."""

    files: int = 0
    nodes: int = 0
    missing_children: list[str] = field(default_factory=list)


def read_file(path: Path, workdir: Path, *, timeout_s: float = 120.0) -> list[OsgNode]:
    """The nodes of one ``.osgb`` (its images written to ``workdir``); every error names the file."""
    try:
        tree = convert_file(path, workdir, timeout_s=timeout_s)
        nodes = nodes_of(tree, workdir, _safe(path.stem))
    except ValueError as exc:
        raise InvalidInputError(f"bad geometry: {exc}", file=str(path)) from None
    except InvalidInputError as exc:
        if exc.file is None:
            raise InvalidInputError(str(exc), file=str(path)) from None
        raise
    for n in nodes:
        for part in n.parts:
            if part.texture is not None and not part.texture.is_file():
                raise InvalidInputError(f"texture {part.texture.name} is missing (not embedded and not "
                                        "beside the file)", file=str(path))
    return nodes


def read_tile(root_file: Path, workdir: Path, stats: OsgbStats, *, timeout_s: float = 120.0,
              sink: Callable[[MeshPart], Any] | None = None, workers: int | None = None) -> MeshNode:
    """The LOD tree under one tile's root file as a :class:`MeshNode` (the file's nodes under one node
    when it holds several).

    The tree is read level by level, the files of a level converted by ``workers`` osgconv processes at
    once. ``sink`` takes each part as soon as its level is read and returns what the node keeps instead
    (a package entry), so only one level's arrays and images are held at a time.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    seen: set[Path] = set()
    roots: list[MeshNode] = []
    level: list[tuple[Path, MeshNode | None]] = [(root_file, None)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while level:
            jobs = []
            for path, _ in level:
                if path.resolve() in seen:
                    raise InvalidInputError("the PagedLOD tree refers back to this file (a cycle)", file=str(path))
                seen.add(path.resolve())
                stats.files += 1
                jobs.append((path, workdir / f"f{stats.files:05d}"))
            results = list(pool.map(lambda job: read_file(job[0], job[1], timeout_s=timeout_s), jobs))
            following: list[tuple[Path, MeshNode | None]] = []
            for (path, parent), (_, sub), osg_nodes in zip(level, jobs, results, strict=True):
                if sink is not None:
                    for n in osg_nodes:
                        n.parts = [sink(p) for p in n.parts]
                    shutil.rmtree(sub, ignore_errors=True)
                for n in osg_nodes:
                    stats.nodes += 1
                    node = MeshNode(n.name, n.parts, [], n.geometric_error)
                    (parent.children if parent is not None else roots).append(node)
                    for name in n.files:
                        child = path.parent / name
                        if child.is_file():
                            following.append((child, node))
                        else:
                            stats.missing_children.append(name)
            level = following
    if not roots:
        raise InvalidInputError("the file holds no geometry", file=str(root_file))
    for node in (n for r in roots for n in r.walk()):
        if not node.children:
            node.geometric_error = 0.0  # a leaf (its finer files may be missing)
    if len(roots) == 1:
        return roots[0]
    return MeshNode(_safe(root_file.stem), [], roots, max(n.geometric_error for n in roots))


def _safe(stem: str) -> str:
    """A file-name stem safe in a URL path (``+`` → ``p``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem.replace("+", "p"))


def tile_roots(production: Path) -> Iterator[tuple[str, Path]]:
    """(tile name, root file) of each ``Data/Tile_*`` folder of a production."""
    data = production / "Data" if (production / "Data").is_dir() else production
    found = False
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        root = folder / f"{folder.name}.osgb"
        if root.is_file():
            found = True
            yield folder.name, root
    if not found:
        raise InvalidInputError("no Data/<Tile>/<Tile>.osgb root files: not an OSGB production folder",
                                file=str(production))
