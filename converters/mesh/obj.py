"""Wavefront OBJ meshes with MTL materials and texture images.

Reads ``v``, ``vt``, ``vn``, ``f`` (``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``, negative indices, polygons as
fans), ``mtllib``, ``usemtl`` and the materials' ``map_Kd`` (the texture; its options are skipped) and
``Kd`` (a colour when there is no texture). One part per material; vertices are shared where their
(v, vt, vn) triples are equal. Texture v is flipped to glTF's top-left origin. JPEG and PNG are kept as
they are; other image formats are converted to PNG with Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cim.errors import InvalidInputError, UnsupportedError
from converters.mesh.model import MeshPart, image_mime


@dataclass
class Material:
    """What the mesh needs of an MTL material."""

    texture: Path | None = None
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


def read_mtl(path: Path) -> dict[str, Material]:
    """Materials of an MTL file; a ``map_Kd`` image that does not exist is an error."""
    if not path.is_file():
        raise InvalidInputError(f"material library {path.name} is missing: its textures cannot be found",
                                file=str(path))
    out: dict[str, Material] = {}
    current: Material | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = raw.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0]
        if key == "newmtl":
            current = out.setdefault(" ".join(parts[1:]), Material())
        elif current is not None and key == "map_Kd" and len(parts) > 1:
            name = _map_file(parts[1:])
            texture = (path.parent / name.replace("\\", "/"))
            if not texture.is_file():
                raise InvalidInputError(f"texture {name} of material {next(k for k, v in out.items() if v is current)}"
                                        " is missing", file=str(path), row=number, field="map_Kd")
            current.texture = texture
        elif current is not None and key == "Kd" and len(parts) >= 4:
            try:
                current.colour = (float(parts[1]), float(parts[2]), float(parts[3]))
            except ValueError:
                raise InvalidInputError("Kd is not three numbers", file=str(path), row=number, field="Kd") from None
    return out


_MAP_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1,
                "-mm": 2, "-o": 3, "-s": 3, "-t": 3, "-texres": 1, "-type": 1}


def _map_file(args: list[str]) -> str:
    """The file name of a ``map_Kd`` statement (after its options; names may contain spaces)."""
    i = 0
    while i < len(args) and args[i] in _MAP_OPTIONS:
        step = _MAP_OPTIONS[args[i]]
        i += 1
        while step and i < len(args) and _is_number(args[i]):
            i += 1
            step -= 1
    return " ".join(args[i:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _floats(lines: list[str], width: int, file: str, what: str) -> np.ndarray:
    if not lines:
        return np.empty((0, width))
    rows = [line.split()[1:width + 1] for line in lines]
    try:
        arr = np.array(rows, dtype="f8")
    except ValueError:
        raise InvalidInputError(f"a {what} line does not have {width} numbers", file=file) from None
    if arr.ndim != 2 or arr.shape[1] != width:
        raise InvalidInputError(f"a {what} line does not have {width} numbers", file=file)
    return arr


def read_obj(path: str | Path, *, convert_dir: Path | None = None) -> list[MeshPart]:
    """The parts of an OBJ file (one per material), positions in the file's units.

    ``convert_dir`` receives textures that are neither JPEG nor PNG, converted to PNG.
    """
    path = Path(path)
    file = str(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    v_lines: list[str] = []
    vt_lines: list[str] = []
    vn_lines: list[str] = []
    faces: dict[str, list[tuple[int, list[str]]]] = {}
    materials: dict[str, Material] = {}
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("v "):
            v_lines.append(line)
        elif line.startswith("vt "):
            vt_lines.append(line)
        elif line.startswith("vn "):
            vn_lines.append(line)
        elif line.startswith("f "):
            faces.setdefault(current, []).append((number, line.split()[1:]))
        elif line.startswith("usemtl"):
            current = line[6:].strip()
        elif line.startswith("mtllib"):
            for name in [line[6:].strip()]:
                materials.update(read_mtl(path.parent / name))
    vertices = _floats(v_lines, 3, file, "v")
    uvs = _floats([ln if len(ln.split()) > 2 else ln + " 0" for ln in vt_lines], 2, file, "vt")
    normals = _floats(vn_lines, 3, file, "vn")
    if not len(vertices) or not faces:
        raise InvalidInputError("the OBJ file has no vertices or no faces", file=file)
    parts = []
    for name, rows in faces.items():
        material = materials.get(name)
        if name and material is None and materials:
            raise InvalidInputError(f"usemtl {name}: no such material in the material library", file=file)
        parts.append(_part(rows, vertices, uvs, normals, material, file, convert_dir))
    return [p for p in parts if len(p.indices)]


def _corner(token: str, counts: tuple[int, int, int], number: int, file: str) -> tuple[int, int, int]:
    fields = token.split("/")
    out = []
    for i, value in enumerate((fields + ["", ""])[:3]):
        if not value:
            out.append(-1)
            continue
        try:
            k = int(value)
        except ValueError:
            raise InvalidInputError(f"face corner {token!r} is not v/vt/vn indices", file=file, row=number) \
                from None
        k = k - 1 if k > 0 else counts[i] + k
        if not 0 <= k < counts[i]:
            raise InvalidInputError(f"face corner {token!r} refers to a missing element", file=file, row=number)
        out.append(k)
    return out[0], out[1], out[2]


def _part(rows: list[tuple[int, list[str]]], vertices: np.ndarray, uvs: np.ndarray, normals: np.ndarray,
          material: Material | None, file: str, convert_dir: Path | None) -> MeshPart:
    counts = (len(vertices), len(uvs), len(normals))
    corners: list[tuple[int, int, int]] = []
    triangles: list[int] = []
    for number, tokens in rows:
        ids = [_corner(t, counts, number, file) for t in tokens]
        base = len(corners)
        corners.extend(ids)
        for k in range(1, len(ids) - 1):
            triangles.extend((base, base + k, base + k + 1))
    table = np.array(corners, dtype=np.int64)
    unique, inverse = np.unique(table, axis=0, return_inverse=True)
    indices = inverse.reshape(-1)[np.array(triangles, dtype=np.int64)].astype("<u4")
    positions = vertices[unique[:, 0]]
    uv = None
    if (unique[:, 1] >= 0).all() and len(uvs):
        uv = uvs[unique[:, 1]]
        uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype("f4")
    nrm = None
    if (unique[:, 2] >= 0).all() and len(normals):
        nrm = normals[unique[:, 2]]
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0]).astype("f4")
    texture = material.texture if material is not None else None
    colors = None
    if texture is not None and uv is None:
        raise InvalidInputError(f"faces use texture {texture.name} but have no texture coordinates", file=file)
    if texture is not None:
        texture = _usable_image(texture, convert_dir)
    elif material is not None:
        rgb = np.clip(np.array(material.colour) * 255.0 + 0.5, 0, 255).astype("u1")
        colors = np.tile(np.append(rgb, 255).astype("u1"), (len(positions), 1))
    tri = indices.reshape(-1, 3)
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return MeshPart(positions, tri[keep].reshape(-1), uv=uv, normals=nrm, colors=colors, texture=texture)


def _usable_image(path: Path, convert_dir: Path | None) -> Path:
    """``path`` when JPEG or PNG, else a PNG copy in ``convert_dir`` (Pillow)."""
    if image_mime(path):
        return path
    if convert_dir is None:
        raise UnsupportedError(f"texture {path} is neither JPEG nor PNG")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UnsupportedError(f"texture {path.name} is neither JPEG nor PNG and Pillow is not installed") from None
    convert_dir.mkdir(parents=True, exist_ok=True)
    out = convert_dir / f"{path.stem}_{abs(hash(str(path))) % 10**8}.png"
    try:
        with Image.open(path) as image:
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, "PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInputError(f"texture {path.name} is not a readable image: {exc}", file=str(path)) from None
    return out
