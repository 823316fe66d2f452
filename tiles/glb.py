"""glTF 2.0 binary (.glb) writer and reader for 3D Tiles 1.1 content with per-feature metadata.

Meshes come in a local east-north-up frame (x east, y north, z up, metres). glTF is y-up, so an ENU
point ``(x, y, z)`` is written as glTF ``(x, z, -y)``; 3D Tiles clients rotate y-up back to z-up.

Every vertex carries a feature ID (``_FEATURE_ID_0``, declared with ``EXT_mesh_features``) that
indexes one row of a property table stored in the binary chunk with ``EXT_structural_metadata``.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from cim.errors import StoreError, UnsupportedError

EXT_MESH_FEATURES = "EXT_mesh_features"
EXT_STRUCTURAL_METADATA = "EXT_structural_metadata"
EXT_MESHOPT = "EXT_meshopt_compression"
FEATURE_ID_ATTRIBUTE = "_FEATURE_ID_0"
GENERATOR = "cim-service"

_GLB_MAGIC = b"glTF"
_GLB_VERSION = 2
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_ALIGN = 8  # EXT_structural_metadata: buffer views of property tables start on 8-byte boundaries

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_GL_UNSIGNED_SHORT = 5123
_GL_UNSIGNED_INT = 5125
_GL_FLOAT = 5126
_GL_DTYPES: dict[int, str] = {
    5120: "<i1",
    5121: "<u1",
    5122: "<i2",
    5123: "<u2",
    5125: "<u4",
    5126: "<f4",
}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

#: metadata component type -> little-endian numpy dtype
COMPONENT_DTYPES: dict[str, str] = {
    "INT8": "<i1",
    "UINT8": "<u1",
    "INT16": "<i2",
    "UINT16": "<u2",
    "INT32": "<i4",
    "UINT32": "<u4",
    "INT64": "<i8",
    "UINT64": "<u8",
    "FLOAT32": "<f4",
    "FLOAT64": "<f8",
}
_IDENTIFIER = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MAX_FLOAT_FEATURE_ID = 1 << 24  # every integer below this is exact in float32

ColumnType = Literal["STRING", "SCALAR", "BOOLEAN"]


class Mesh(Protocol):
    """A triangle mesh in local ENU coordinates with one feature ID per vertex."""

    @property
    def positions(self) -> np.ndarray:
        """(n, 3) float64 vertex positions, x east, y north, z up."""
        ...

    @property
    def normals(self) -> np.ndarray:
        """(n, 3) float32 unit vertex normals in the same frame."""
        ...

    @property
    def indices(self) -> np.ndarray:
        """(m,) uint32 triangle vertex indices, three per triangle."""
        ...

    @property
    def feature_ids(self) -> np.ndarray:
        """(n,) uint32 property-table row of each vertex."""
        ...


@dataclass
class Column:
    """One property-table column: ``values`` has one entry per feature, ``None`` (or NaN) when missing.

    ``no_data`` is the sentinel written for missing values (a type-specific default when ``None``).
    """

    type: ColumnType
    component_type: str | None
    values: Sequence[Any]
    no_data: Any = None
    description: str | None = None


@dataclass
class PropertyTable:
    """Per-feature metadata: ``count`` rows (feature IDs ``0 .. count-1``) of named columns."""

    count: int
    columns: dict[str, Column] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# writing


class _BinaryBuffer:
    """The GLB binary chunk under construction: 8-byte aligned buffer views."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.fallback_length = 0  # EXT_meshopt_compression: size of the data-less fallback buffer

    def add(self, data: bytes, target: int | None = None) -> int:
        """Append ``data`` as a new buffer view and return its index."""
        pad = -self.length % _ALIGN
        if pad:
            self.parts.append(bytes(pad))
            self.length += pad
        if not data:  # a buffer view is at least one byte long
            data = b"\0"
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.parts.append(data)
        self.length += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def add_compressed(self, rows: np.ndarray, mode: str, target: int) -> int:
        """Append ``rows`` (count × stride bytes) EXT_meshopt_compression-encoded; return the view index.

        The view itself points into the fallback buffer (1), which has no data: clients must decode.
        """
        import meshopt

        rows = np.ascontiguousarray(rows)
        count = len(rows)
        stride = rows.itemsize * (rows.shape[1] if rows.ndim == 2 else 1)
        encoded = meshopt.encode_gltf_buffer(rows, mode)
        pad = -self.length % _ALIGN
        if pad:
            self.parts.append(bytes(pad))
            self.length += pad
        offset = self.length
        self.parts.append(encoded)
        self.length += len(encoded)
        fallback_offset = self.fallback_length + (-self.fallback_length % 4)
        self.fallback_length = fallback_offset + count * stride
        ext = {"buffer": 0, "byteOffset": offset, "byteLength": len(encoded), "byteStride": stride,
               "count": count, "mode": mode}
        view: dict[str, Any] = {"buffer": 1, "byteOffset": fallback_offset, "byteLength": count * stride,
                                "target": target, "extensions": {EXT_MESHOPT: ext}}
        if mode == "ATTRIBUTES":
            view["byteStride"] = stride
        self.views.append(view)
        return len(self.views) - 1

    def payload(self) -> bytes:
        """The whole buffer, zero-padded to a multiple of 8 bytes."""
        pad = -self.length % _ALIGN
        return b"".join(self.parts) + bytes(pad)


def _enu_to_gltf(xyz: np.ndarray) -> np.ndarray:
    """ENU (x east, y north, z up) -> glTF y-up (x, z, -y)."""
    return np.column_stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]])


def _gltf_to_enu(xyz: np.ndarray) -> np.ndarray:
    """glTF y-up (x, y, z) -> ENU (x, -z, y)."""
    return np.column_stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]])


def srgb_to_linear(colour: tuple[int, int, int]) -> list[float]:
    """8-bit sRGB colour -> linear RGBA ``baseColorFactor`` (alpha 1)."""
    out: list[float] = []
    for channel in colour:
        if not 0 <= int(channel) <= 255:
            raise ValueError(f"colour channel out of 0..255: {colour}")
        c = int(channel) / 255.0
        out.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return [*out, 1.0]


def _checked_mesh(mesh: Mesh, feature_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a mesh; return glTF-frame float32 positions and unit normals, indices and feature IDs."""
    positions = np.asarray(mesh.positions, dtype=np.float64)
    normals = np.asarray(mesh.normals, dtype=np.float64)
    indices = np.asarray(mesh.indices).ravel()
    ids = np.asarray(mesh.feature_ids).ravel()
    n = len(positions)
    if positions.shape != (n, 3) or normals.shape != (n, 3) or ids.shape != (n,):
        raise ValueError("mesh positions and normals must be (n, 3) and feature_ids (n,)")
    if not np.isfinite(positions).all() or not np.isfinite(normals).all():
        raise ValueError("mesh positions and normals must be finite")
    if len(indices) % 3:
        raise ValueError(f"mesh indices must come in triangles, got {len(indices)}")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError("mesh indices out of range of its vertices")
    if n and (ids.min() < 0 or ids.max() >= feature_count):
        raise ValueError(f"feature IDs must lie in 0..{feature_count - 1} (the property table's rows)")
    length = np.linalg.norm(normals, axis=1)
    unit = np.where(
        length[:, None] > 0, normals / np.where(length > 0, length, 1.0)[:, None], [0.0, 0.0, 1.0]
    )
    return (
        _enu_to_gltf(positions).astype(np.float32),
        _enu_to_gltf(unit).astype(np.float32),
        indices.astype(np.int64),
        ids.astype(np.int64),
    )


def _accessor(
    accessors: list[dict[str, Any]], view: int, component_type: int, count: int, kind: str, **extra: Any
) -> int:
    accessors.append(
        {"bufferView": view, "componentType": component_type, "count": count, "type": kind, **extra}
    )
    return len(accessors) - 1


def _primitive(
    meshes: list[Mesh],
    material: int,
    table: PropertyTable,
    buf: _BinaryBuffer,
    accessors: list[dict[str, Any]],
    compress: bool = False,
) -> dict[str, Any] | None:
    """Merge the meshes of one colour into one primitive; ``None`` when they hold no triangles."""
    pos_parts, nor_parts, idx_parts, id_parts = [], [], [], []
    base = 0
    for mesh in meshes:
        pos, nor, idx, ids = _checked_mesh(mesh, table.count)
        if not len(idx):
            continue
        pos_parts.append(pos)
        nor_parts.append(nor)
        idx_parts.append(idx + base)
        id_parts.append(ids)
        base += len(pos)
    if not idx_parts:
        return None
    positions = np.concatenate(pos_parts)
    normals = np.concatenate(nor_parts)
    indices = np.concatenate(idx_parts)
    ids = np.concatenate(id_parts)

    def vertex_view(rows: np.ndarray) -> int:
        return buf.add_compressed(rows, "ATTRIBUTES", _ARRAY_BUFFER) if compress else buf.add(
            rows.tobytes(), _ARRAY_BUFFER)

    position = _accessor(
        accessors,
        vertex_view(positions),
        _GL_FLOAT,
        len(positions),
        "VEC3",
        min=[float(v) for v in positions.min(axis=0)],
        max=[float(v) for v in positions.max(axis=0)],
    )
    normal = _accessor(accessors, vertex_view(normals), _GL_FLOAT, len(normals), "VEC3")
    # 4-byte components keep the tightly packed attribute aligned; float32 is exact below 2**24
    if table.count <= _MAX_FLOAT_FEATURE_ID:
        id_data, id_type = ids.astype("<f4"), _GL_FLOAT
    else:
        id_data, id_type = ids.astype("<u4"), _GL_UNSIGNED_INT
    feature = _accessor(accessors, vertex_view(id_data), id_type, len(ids), "SCALAR")
    # the maximum value of an index type is reserved (primitive restart)
    if len(positions) < 0xFFFF:
        idx_data, idx_type = indices.astype("<u2"), _GL_UNSIGNED_SHORT
    else:
        idx_data, idx_type = indices.astype("<u4"), _GL_UNSIGNED_INT
    index_view = (buf.add_compressed(idx_data, "TRIANGLES", _ELEMENT_ARRAY_BUFFER) if compress
                  else buf.add(idx_data.tobytes(), _ELEMENT_ARRAY_BUFFER))
    index = _accessor(accessors, index_view, idx_type, len(indices), "SCALAR")
    return {
        "attributes": {"POSITION": position, "NORMAL": normal, FEATURE_ID_ATTRIBUTE: feature},
        "indices": index,
        "material": material,
        "mode": 4,
        "extensions": {
            EXT_MESH_FEATURES: {
                "featureIds": [{"featureCount": int(len(np.unique(ids))), "attribute": 0, "propertyTable": 0}]
            }
        },
    }


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _default_no_data(dtype: np.dtype) -> int | float:
    if dtype.kind == "u":
        return int(np.iinfo(dtype).max)
    if dtype.kind == "i":
        return int(np.iinfo(dtype).min)
    return float(-np.finfo(dtype).max)


def _encode_scalar(name: str, column: Column, prop: dict[str, Any]) -> bytes:
    if column.component_type not in COMPONENT_DTYPES:
        raise ValueError(f"column {name!r}: unknown component type {column.component_type!r}")
    prop["componentType"] = column.component_type
    dtype = np.dtype(COMPONENT_DTYPES[column.component_type])
    missing = np.array([_is_missing(v) for v in column.values], dtype=bool)
    no_data = column.no_data
    if missing.any() or no_data is not None:
        no_data = _default_no_data(dtype) if no_data is None else no_data
        prop["noData"] = no_data
    filled = [no_data if m else v for v, m in zip(column.values, missing, strict=True)]
    if dtype.kind in "iu":
        if any(int(v) != v for v in filled):
            raise ValueError(f"column {name!r}: {column.component_type} values must be integers")
        info = np.iinfo(dtype)
        if any(not info.min <= int(v) <= info.max for v in filled):
            raise ValueError(f"column {name!r}: values out of {column.component_type} range")
        data = np.array([int(v) for v in filled], dtype=dtype)
    else:
        data = np.array(filled, dtype=np.float64).astype(dtype)
    if no_data is not None and (data[~missing] == dtype.type(no_data)).any():
        raise ValueError(f"column {name!r}: a value equals the noData sentinel {no_data!r}")
    return data.tobytes()


def _encode_strings(name: str, column: Column, prop: dict[str, Any]) -> tuple[bytes, bytes]:
    missing = [v is None for v in column.values]
    no_data = column.no_data
    if any(missing) or no_data is not None:
        no_data = "" if no_data is None else str(no_data)
        prop["noData"] = no_data
    encoded: list[bytes] = []
    for value, absent in zip(column.values, missing, strict=True):
        if absent:
            value = no_data
        elif not isinstance(value, str):
            raise TypeError(f"column {name!r}: STRING values must be str, got {type(value).__name__}")
        elif value == no_data:
            raise ValueError(f"column {name!r}: a value equals the noData sentinel {no_data!r}")
        encoded.append(value.encode("utf-8"))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in encoded], dtype=np.int64)])
    if offsets[-1] > np.iinfo(np.uint32).max:
        raise ValueError(f"column {name!r}: more than 4 GiB of text")
    return b"".join(encoded), offsets.astype("<u4").tobytes()


def _encode_column(name: str, column: Column, count: int, buf: _BinaryBuffer) -> tuple[dict, dict]:
    """Encode one column into ``buf``; return its class property and property-table property."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"property name {name!r} is not an identifier ([a-zA-Z_][a-zA-Z0-9_]*)")
    if len(column.values) != count:
        raise ValueError(f"column {name!r} has {len(column.values)} values for {count} features")
    prop: dict[str, Any] = {"type": column.type}
    if column.description:
        prop["description"] = column.description
    if column.type == "SCALAR":
        table_prop = {"values": buf.add(_encode_scalar(name, column, prop))}
    elif column.type == "STRING":
        values, offsets = _encode_strings(name, column, prop)
        table_prop = {
            "values": buf.add(values),
            "stringOffsets": buf.add(offsets),
            "stringOffsetType": "UINT32",
        }
    elif column.type == "BOOLEAN":
        if column.no_data is not None or any(v is None for v in column.values):
            raise ValueError(f"column {name!r}: BOOLEAN columns cannot have missing values (no noData)")
        bits = np.packbits(np.array([bool(v) for v in column.values], dtype=bool), bitorder="little")
        table_prop = {"values": buf.add(bits.tobytes())}
    else:
        raise ValueError(f"column {name!r}: unsupported type {column.type!r}")
    return prop, table_prop


def _metadata(table: PropertyTable, class_id: str, schema_id: str, buf: _BinaryBuffer) -> dict[str, Any]:
    """The ``EXT_structural_metadata`` object: the schema of one class and its property table."""
    for label, ident in (("class_id", class_id), ("schema_id", schema_id)):
        if not _IDENTIFIER.match(ident):
            raise ValueError(f"{label} {ident!r} is not an identifier ([a-zA-Z_][a-zA-Z0-9_]*)")
    if table.count < 1:
        raise ValueError("the property table needs at least one feature")
    class_props: dict[str, Any] = {}
    table_props: dict[str, Any] = {}
    for name, column in table.columns.items():
        class_props[name], table_props[name] = _encode_column(name, column, table.count, buf)
    cls: dict[str, Any] = {"properties": class_props} if class_props else {}
    property_table: dict[str, Any] = {"class": class_id, "count": table.count}
    if table_props:
        property_table["properties"] = table_props
    return {"schema": {"id": schema_id, "classes": {class_id: cls}}, "propertyTables": [property_table]}


def _glb_bytes(gltf: dict[str, Any], binary: bytes) -> bytes:
    """Assemble a GLB: JSON chunk padded so the BIN chunk's data starts on an 8-byte boundary."""
    text = json.dumps(gltf, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * ((4 - len(text)) % _ALIGN)  # 12 + 8 + len + 8 is then a multiple of 8
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", _GLB_MAGIC, _GLB_VERSION, total),
            struct.pack("<II", len(text), _CHUNK_JSON),
            text,
            struct.pack("<II", len(binary), _CHUNK_BIN),
            binary,
        ]
    )


def write_glb(
    path: str | Path,
    parts: list[tuple[Mesh, tuple[int, ...]]],
    table: PropertyTable,
    *,
    class_id: str = "pipe_feature",
    schema_id: str = "cim",
    extras: dict | None = None,
    compress: bool = False,
    double_sided: bool = False,
) -> int:
    """Write coloured ENU meshes and their feature metadata as a .glb; return the bytes written.

    Colours are sRGB ``(r, g, b)`` or ``(r, g, b, a)`` in 0..255; a colour with alpha < 255 gets an
    ``alphaMode: BLEND`` material. ``compress`` stores vertex and index data with EXT_meshopt_compression
    (a required extension then). ``double_sided`` marks every material double-sided.

    Parts sharing a colour become one primitive with one material. Normals are renormalised
    (zero-length ones point up). ``extras`` is stored as the glTF root ``extras``.
    """
    by_colour: dict[tuple[int, int, int, int], list[Mesh]] = {}
    for mesh, colour in parts:
        alpha = int(colour[3]) if len(colour) > 3 else 255
        key = (int(colour[0]), int(colour[1]), int(colour[2]), alpha)
        by_colour.setdefault(key, []).append(mesh)
    by_colour = dict(sorted(by_colour.items(), key=lambda kv: kv[0][3] < 255))  # opaque primitives first
    buf = _BinaryBuffer()
    metadata = _metadata(table, class_id, schema_id, buf)
    accessors: list[dict[str, Any]] = []
    materials: list[dict[str, Any]] = []
    primitives: list[dict[str, Any]] = []
    for colour, meshes in by_colour.items():
        primitive = _primitive(meshes, len(materials), table, buf, accessors, compress)
        if primitive is None:
            continue
        primitives.append(primitive)
        rgb, alpha = colour[:3], colour[3]
        material: dict[str, Any] = {
            "name": "#{:02x}{:02x}{:02x}".format(*rgb) + (f"{alpha:02x}" if alpha < 255 else ""),
            "pbrMetallicRoughness": {
                "baseColorFactor": [*srgb_to_linear(rgb)[:3], alpha / 255.0],
                "metallicFactor": 0.0,
                "roughnessFactor": 0.8,
            },
            "doubleSided": double_sided,
        }
        if alpha < 255:
            material["alphaMode"] = "BLEND"
        materials.append(material)
    if not primitives:
        raise ValueError("no triangles to write")
    binary = buf.payload()
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "extensionsUsed": [EXT_MESH_FEATURES, EXT_STRUCTURAL_METADATA],
        "extensions": {EXT_STRUCTURAL_METADATA: metadata},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": primitives}],
        "materials": materials,
        "accessors": accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(binary)}],
    }
    if compress:
        gltf["extensionsUsed"].append(EXT_MESHOPT)
        gltf["extensionsRequired"] = [EXT_MESHOPT]
        gltf["buffers"].append({"byteLength": max(buf.fallback_length, 4), "extensions": {EXT_MESHOPT: {"fallback": True}}})
    if extras:
        gltf["extras"] = extras
    data = _glb_bytes(gltf, binary)
    write_atomic(path, data)
    return len(data)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary file beside it, fsynced, then renamed over it,
    so a reader (or a crash) never sees a half-written file. An OSError (disk full...) is a StoreError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, read-only folder, file size limit: one clear line
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}; the previous file is unchanged") from None
        raise


# ---------------------------------------------------------------------------------------------------
# reading


def read_glb(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Read a .glb: its glTF JSON and its BIN chunk (``b""`` when it has none)."""
    data = Path(path).read_bytes()
    if len(data) < 20:
        raise ValueError(f"{path}: too short for a GLB")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != _GLB_MAGIC or version != _GLB_VERSION:
        raise ValueError(f"{path}: not a glTF 2.0 binary (magic {magic!r}, version {version})")
    if length > len(data):
        raise ValueError(f"{path}: declared length {length} exceeds the file size {len(data)}")
    offset, chunks = 12, []
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", data, offset)
        chunks.append((kind, data[offset + 8 : offset + 8 + size]))
        offset += 8 + size
    if not chunks or chunks[0][0] != _CHUNK_JSON:
        raise ValueError(f"{path}: the first GLB chunk is not JSON")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == _CHUNK_BIN else b""
    return json.loads(chunks[0][1].decode("utf-8")), binary


def _view_bytes(gltf: dict[str, Any], binary: bytes, index: int) -> bytes:
    view = gltf["bufferViews"][index]
    ext = view.get("extensions", {}).get(EXT_MESHOPT)
    if ext is not None:  # decode EXT_meshopt_compression data from the GLB buffer
        import meshopt

        start = ext.get("byteOffset", 0)
        encoded = binary[start : start + ext["byteLength"]]
        rows = meshopt.decode_gltf_buffer(encoded, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter"))
        return np.ascontiguousarray(rows).tobytes()
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


def read_accessor(gltf: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """Decode accessor ``index`` from the GLB binary chunk: (count,) for SCALAR, else (count, n)."""
    accessor = gltf["accessors"][index]
    dtype = np.dtype(_GL_DTYPES[accessor["componentType"]])
    width = _TYPE_COMPONENTS[accessor["type"]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    stride = view.get("byteStride", dtype.itemsize * width)
    if EXT_MESHOPT in view.get("extensions", {}):  # compressed: decode the whole view first
        data, start = _view_bytes(gltf, binary, accessor["bufferView"]), accessor.get("byteOffset", 0)
    else:
        data, start = binary, view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    values = np.ndarray(
        (accessor["count"], width), dtype=dtype, buffer=data, offset=start, strides=(stride, dtype.itemsize)
    ).copy()
    return values[:, 0] if accessor["type"] == "SCALAR" else values


def _decode_property(
    prop: dict[str, Any], table_prop: dict[str, Any], count: int, gltf: dict, binary: bytes
) -> list:
    if prop.get("array"):
        raise UnsupportedError("array properties are not supported")
    values = _view_bytes(gltf, binary, table_prop["values"])
    kind = prop["type"]
    if kind == "BOOLEAN":
        bits = np.unpackbits(np.frombuffer(values, dtype=np.uint8), bitorder="little")
        return [bool(b) for b in bits[:count]]
    no_data = prop.get("noData")
    if kind == "STRING":
        offset_type = COMPONENT_DTYPES[table_prop.get("stringOffsetType", "UINT32")]
        offsets = np.frombuffer(_view_bytes(gltf, binary, table_prop["stringOffsets"]), dtype=offset_type)
        text = [values[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
        return [None if no_data is not None and t == no_data else t for t in text]
    if kind == "SCALAR":
        dtype = np.dtype(COMPONENT_DTYPES[prop["componentType"]])
        data = np.frombuffer(values, dtype=dtype, count=count)
        missing = data == dtype.type(no_data) if no_data is not None else np.zeros(count, dtype=bool)
        return [None if m else v for v, m in zip(data.tolist(), missing.tolist(), strict=True)]
    raise UnsupportedError(f"property type {kind!r} is not supported")


def read_property_table(path: str | Path, index: int = 0) -> dict[str, list]:
    """Decode property table ``index`` of a .glb into columns; ``noData`` values come back as ``None``."""
    gltf, binary = read_glb(path)
    metadata = gltf["extensions"][EXT_STRUCTURAL_METADATA]
    table = metadata["propertyTables"][index]
    cls = metadata["schema"]["classes"][table["class"]]
    columns: dict[str, list] = {}
    for name, table_prop in table.get("properties", {}).items():
        columns[name] = _decode_property(cls["properties"][name], table_prop, table["count"], gltf, binary)
    return columns


def feature_positions(path: str | Path) -> dict[int, np.ndarray]:
    """Mean ENU (z-up) position of each feature's vertices in a .glb written by :func:`write_glb`."""
    gltf, binary = read_glb(path)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for mesh in gltf.get("meshes", []):
        for primitive in mesh["primitives"]:
            attributes = primitive["attributes"]
            if FEATURE_ID_ATTRIBUTE not in attributes:
                continue
            null_id = None
            for feature_ids in (
                primitive.get("extensions", {}).get(EXT_MESH_FEATURES, {}).get("featureIds", [])
            ):
                if feature_ids.get("attribute") == 0:
                    null_id = feature_ids.get("nullFeatureId")
            ids = np.rint(read_accessor(gltf, binary, attributes[FEATURE_ID_ATTRIBUTE])).astype(np.int64)
            enu = _gltf_to_enu(read_accessor(gltf, binary, attributes["POSITION"]).astype(np.float64))
            for fid in np.unique(ids):
                if fid == null_id:
                    continue
                chosen = enu[ids == fid]
                key = int(fid)
                sums[key] = sums.get(key, np.zeros(3)) + chosen.sum(axis=0)
                counts[key] = counts.get(key, 0) + len(chosen)
    return {fid: sums[fid] / counts[fid] for fid in sorted(sums)}
