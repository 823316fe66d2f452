"""PLY meshes (ASCII and binary, read with ``plyfile``): vertex colours or texture coordinates.

Vertices: ``x y z``, optional ``nx ny nz``, colours ``red green blue [alpha]`` (or ``diffuse_*``), texture
coordinates per vertex (``s t``, ``u v``, ``texture_u texture_v``) or per face corner (``texcoord``, as
MeshLab writes) with the image named in a ``comment TextureFile <name>`` header line. Faces
(``vertex_indices`` or ``vertex_index``) are triangulated as fans.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cim.errors import InvalidInputError, UnsupportedError
from converters.mesh.model import MeshPart, image_mime

_UV_NAMES = (("s", "t"), ("u", "v"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


def _field(names: tuple[str, ...], *candidates: str) -> str | None:
    return next((c for c in candidates if c in names), None)


def _faces(face: np.ndarray, key: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    """Fan triangles (m, 3) and, per triangle, the face row and corner numbers (m, 3) for face data."""
    lists = face[key]
    sizes = np.fromiter((len(f) for f in lists), dtype=np.int64, count=len(lists))
    if (sizes < 3).any():
        raise InvalidInputError("a face has fewer than 3 vertices", file=file, field=key)
    if (sizes == 3).all():
        tri = np.vstack(lists).astype(np.int64) if len(lists) else np.empty((0, 3), np.int64)
        rows = np.repeat(np.arange(len(lists)), 1)
        return tri, np.column_stack([rows * 3, rows * 3 + 1, rows * 3 + 2])
    tris, corner = [], []
    offset = 0
    for f, n in zip(lists, sizes, strict=True):
        for k in range(1, n - 1):
            tris.append((f[0], f[k], f[k + 1]))
            corner.append((offset, offset + k, offset + k + 1))
        offset += n
    return np.array(tris, dtype=np.int64), np.array(corner, dtype=np.int64)


def read_ply(path: str | Path) -> list[MeshPart]:
    """The mesh of a PLY file as one part (positions in the file's units)."""
    try:
        from plyfile import PlyData, PlyElementParseError, PlyHeaderParseError
    except ImportError:
        raise UnsupportedError("reading PLY needs plyfile: pip install 'cim-service[mesh]'") from None
    path = Path(path)
    file = str(path)
    try:
        ply = PlyData.read(str(path))
    except (PlyHeaderParseError, PlyElementParseError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"not a readable PLY file: {exc}", file=file) from None
    names = [e.name for e in ply.elements]
    if "vertex" not in names or "face" not in names:
        raise InvalidInputError("a PLY mesh needs 'vertex' and 'face' elements (a point cloud is not a mesh)",
                                file=file)
    vertex = ply["vertex"].data
    vnames = tuple(vertex.dtype.names or ())
    if not all(k in vnames for k in ("x", "y", "z")):
        raise InvalidInputError("vertices lack x, y, z", file=file, field="vertex")
    positions = np.column_stack([vertex["x"], vertex["y"], vertex["z"]]).astype("f8")
    face = ply["face"].data
    key = _field(tuple(face.dtype.names or ()), "vertex_indices", "vertex_index")
    if key is None:
        raise InvalidInputError("faces lack vertex_indices", file=file, field="face")
    tri, corner = _faces(face, key, file)
    if len(tri) and (tri.min() < 0 or tri.max() >= len(positions)):
        raise InvalidInputError("a face refers to a missing vertex", file=file, field=key)
    normals = None
    if all(k in vnames for k in ("nx", "ny", "nz")):
        normals = np.column_stack([vertex["nx"], vertex["ny"], vertex["nz"]]).astype("f8")
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.where(length > 0, normals / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0]).astype("f4")
    colors = _colours(vertex, vnames)
    texture = _texture(ply, path)
    uv = None
    pair = next((p for p in _UV_NAMES if p[0] in vnames and p[1] in vnames), None)
    if pair is not None:
        uv = np.column_stack([vertex[pair[0]], 1.0 - vertex[pair[1]]]).astype("f4")
    elif "texcoord" in (face.dtype.names or ()):
        # per-corner coordinates: one vertex per corner
        coords = np.concatenate([np.asarray(c, dtype="f8") for c in face["texcoord"]]).reshape(-1, 2)
        flat = corner.reshape(-1)
        if len(coords) <= flat.max(initial=-1):
            raise InvalidInputError("texcoord lists do not match the faces' vertex counts", file=file,
                                    field="texcoord")
        positions = positions[tri.reshape(-1)]
        normals = normals[tri.reshape(-1)] if normals is not None else None
        colors = colors[tri.reshape(-1)] if colors is not None else None
        uv = np.column_stack([coords[flat, 0], 1.0 - coords[flat, 1]]).astype("f4")
        tri = np.arange(len(positions), dtype=np.int64).reshape(-1, 3)
    if texture is not None and uv is None:
        raise InvalidInputError(f"a TextureFile {texture.name} is named but the mesh has no texture coordinates",
                                file=file)
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return [MeshPart(positions, tri[keep].reshape(-1).astype("<u4"), uv=uv if texture is not None else None,
                     normals=normals, colors=colors, texture=texture)]


def _colours(vertex: np.ndarray, vnames: tuple[str, ...]) -> np.ndarray | None:
    for prefix in ("", "diffuse_"):
        rgb = [f"{prefix}{c}" for c in ("red", "green", "blue")]
        if all(k in vnames for k in rgb):
            cols = [np.asarray(vertex[k]) for k in rgb]
            alpha = f"{prefix}alpha"
            cols.append(np.asarray(vertex[alpha]) if alpha in vnames else np.full(len(vertex), 255))
            out = np.column_stack(cols)
            if out.dtype.kind == "f":
                out = np.clip(out * (255.0 if out.max(initial=0) <= 1.0 else 1.0) + 0.5, 0, 255)
            return out.astype("u1")
    return None


def _texture(ply: object, path: Path) -> Path | None:
    for comment in getattr(ply, "comments", []):
        words = comment.split(None, 1)
        if len(words) == 2 and words[0].lower() == "texturefile":
            texture = path.parent / words[1].strip().replace("\\", "/")
            if not texture.is_file():
                raise InvalidInputError(f"texture {words[1].strip()} is missing", file=str(path),
                                        field="TextureFile")
            if image_mime(texture) is None:
                raise UnsupportedError(f"texture {texture.name} is neither JPEG nor PNG")
            return texture
    return None
