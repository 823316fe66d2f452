"""Vectorised triangle meshes for pipe networks (3D Tiles content).

All geometry is in a local metric frame: x east, y north, z up, metres. Positions are float64,
normals float32 (unit length), triangle indices uint32 wound counter-clockwise seen from outside,
and every vertex carries the uint32 feature id of the object it belongs to.

Inputs are the centre-line heights the store already computes (``start_z``/``end_z``; see
domain.md §2.6), so no invert/top conversion happens here. Sizes are in metres.

Degenerate items are **skipped** (they produce no vertices): non-finite coordinates, segments
shorter than :data:`MIN_LENGTH`, and radius/width/height/size that is non-finite or not > 0.
Work is done in chunks of :data:`CHUNK` items written into preallocated output arrays, so peak
memory beyond the result itself stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CHUNK",
    "MIN_LENGTH",
    "Mesh",
    "pipe_boxes",
    "pipe_cylinders",
    "simplified_segments",
    "symbols",
    "vertical_cylinders",
]

#: Segments shorter than this (metres) are skipped.
MIN_LENGTH = 1e-6
#: Items processed per vectorised step.
CHUNK = 1 << 12
#: Boxes steeper than this (horizontal fraction of the unit axis, i.e. > 45°) use a section
#: perpendicular to the axis instead of an upright one.
_UPRIGHT_MIN_HORIZONTAL = np.sqrt(0.5)
_VERTICAL_EPS = 1e-9
_MAX_VERTICES = 2**32

F64 = NDArray[np.float64]
Fill = Callable[[slice, NDArray[np.float64], NDArray[np.float32]], None]


@dataclass
class Mesh:
    """Indexed triangle mesh with per-vertex feature ids."""

    positions: NDArray[np.float64]
    normals: NDArray[np.float32]
    indices: NDArray[np.uint32]
    feature_ids: NDArray[np.uint32]

    @property
    def vertex_count(self) -> int:
        """Number of vertices."""
        return int(self.positions.shape[0])

    @property
    def triangle_count(self) -> int:
        """Number of triangles."""
        return int(self.indices.shape[0] // 3)

    @classmethod
    def empty(cls) -> Mesh:
        """A mesh with no vertices and no triangles."""
        return cls(
            np.empty((0, 3), np.float64),
            np.empty((0, 3), np.float32),
            np.empty(0, np.uint32),
            np.empty(0, np.uint32),
        )

    @classmethod
    def concat(cls, meshes: Iterable[Mesh]) -> Mesh:
        """Join meshes into one, offsetting each mesh's indices by the vertices before it."""
        parts = [m for m in meshes if m.vertex_count]
        if not parts:
            return cls.empty()
        total = sum(m.vertex_count for m in parts)
        if total > _MAX_VERTICES:
            raise ValueError(f"{total} vertices exceed the uint32 index range")
        offsets = np.cumsum([0] + [m.vertex_count for m in parts[:-1]], dtype=np.uint64)
        indices = np.concatenate(
            [
                (m.indices.astype(np.uint64) + off).astype(np.uint32)
                for m, off in zip(parts, offsets, strict=True)
            ]
        )
        return cls(
            np.concatenate([m.positions for m in parts]).astype(np.float64, copy=False),
            np.concatenate([m.normals for m in parts]).astype(np.float32, copy=False),
            indices,
            np.concatenate([m.feature_ids for m in parts]).astype(np.uint32, copy=False),
        )


# --------------------------------------------------------------------------- input helpers


def _points(a: ArrayLike, dim: int, name: str) -> F64:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (k, {dim}), got {arr.shape}")
    return arr


def _per_item(a: ArrayLike, k: int, name: str) -> F64:
    arr = np.asarray(a, dtype=np.float64)
    try:
        return np.broadcast_to(arr, (k,))
    except ValueError:
        raise ValueError(f"{name} must be a scalar or shape ({k},), got {arr.shape}") from None


def _ids(a: ArrayLike, k: int) -> NDArray[np.uint32]:
    arr = np.broadcast_to(np.asarray(a), (k,))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("feature_ids must be integers")
    if arr.size and (arr.min() < 0 or arr.max() >= 2**32):
        raise ValueError("feature_ids must fit in uint32")
    return arr.astype(np.uint32)


def _positive(*arrays: F64) -> NDArray[np.bool_]:
    ok = np.ones(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def _axis(start: F64, end: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
    """Unit axis, length and validity (finite, long enough) of each segment."""
    delta = end - start
    length = np.sqrt(np.einsum("ij,ij->i", delta, delta))
    ok = np.isfinite(length) & (length >= MIN_LENGTH)
    safe = np.where(ok, length, 1.0)
    return delta / safe[:, None], length, ok


def _plan_perpendicular(d: F64) -> tuple[F64, F64]:
    """Horizontal unit vector left of each unit axis in plan (east for vertical axes) and the
    axis's horizontal fraction."""
    hl = np.hypot(d[:, 0], d[:, 1])
    vertical = hl <= _VERTICAL_EPS
    safe = np.where(vertical, 1.0, hl)
    a = np.stack([-d[:, 1] / safe, d[:, 0] / safe, np.zeros_like(hl)], axis=1)
    a[vertical] = (1.0, 0.0, 0.0)
    return a, hl


def _unit(v: F64) -> F64:
    return v / np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]


# --------------------------------------------------------------------------- assembly


def _build(ids: NDArray[np.uint32], nv: int, template: NDArray[np.int64], fill: Fill) -> Mesh:
    """Allocate a mesh of ``len(ids)`` items with ``nv`` vertices each and local triangle
    ``template``; ``fill(chunk, positions, normals)`` writes each chunk's (c, nv, 3) blocks."""
    n = ids.shape[0]
    total = n * nv
    if total > _MAX_VERTICES:
        raise ValueError(f"{total} vertices exceed the uint32 index range; split the input")
    positions = np.empty((n, nv, 3), np.float64)
    normals = np.empty((n, nv, 3), np.float32)
    indices = np.empty((n, template.size), np.uint32)
    tmpl = template.reshape(-1).astype(np.uint64)
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(lo + CHUNK, n))
        fill(sl, positions[sl], normals[sl])
        base = np.arange(sl.start, sl.stop, dtype=np.uint64) * np.uint64(nv)
        indices[sl] = base[:, None] + tmpl[None, :]
    return Mesh(
        positions.reshape(-1, 3),
        normals.reshape(-1, 3),
        indices.reshape(-1),
        np.repeat(ids, nv),
    )


def _tube_template(sides: int, caps: bool) -> NDArray[np.int64]:
    """Triangles of a ``sides``-gon tube: rings 0..s-1 (start) and s..2s-1 (end) for the
    mantle; with caps, 2s..3s-1 (start cap) and 3s..4s-1 (end cap) as fans."""
    j = np.arange(sides)
    j1 = (j + 1) % sides
    s = sides
    tris = [np.stack([j, j1, s + j], 1), np.stack([j1, s + j1, s + j], 1)]
    if caps:
        f = np.arange(1, sides - 1)
        tris.append(np.stack([np.full_like(f, 2 * s), 2 * s + f + 1, 2 * s + f], 1))
        tris.append(np.stack([np.full_like(f, 3 * s), 3 * s + f, 3 * s + f + 1], 1))
    return np.concatenate(tris).astype(np.int64)


def _tubes(start: F64, end: F64, radius: F64, ids: NDArray[np.uint32], sides: int, caps: bool) -> Mesh:
    d, _, ok = _axis(start, end)
    ok &= _positive(radius) & np.isfinite(start).all(1) & np.isfinite(end).all(1)
    start, end, radius, d, ids = start[ok], end[ok], radius[ok], d[ok], ids[ok]
    u, _ = _plan_perpendicular(d)
    v = np.cross(d, u)
    theta = 2.0 * np.pi * np.arange(sides) / sides
    cos, sin = np.cos(theta), np.sin(theta)
    s = sides

    def fill(sl: slice, pos: NDArray[np.float64], nrm: NDArray[np.float32]) -> None:
        ring = u[sl, None, :] * cos[None, :, None] + v[sl, None, :] * sin[None, :, None]
        off = ring * radius[sl, None, None]
        a, b = start[sl, None, :], end[sl, None, :]
        pos[:, :s] = a + off
        pos[:, s : 2 * s] = b + off
        nrm[:, :s] = ring
        nrm[:, s : 2 * s] = ring
        if caps:
            pos[:, 2 * s : 3 * s] = pos[:, :s]
            pos[:, 3 * s :] = pos[:, s : 2 * s]
            nrm[:, 2 * s : 3 * s] = -d[sl, None, :]
            nrm[:, 3 * s :] = d[sl, None, :]

    return _build(ids, (4 if caps else 2) * s, _tube_template(s, caps), fill)


# --------------------------------------------------------------------------- primitives


def pipe_cylinders(
    start: ArrayLike, end: ArrayLike, radius: ArrayLike, feature_ids: ArrayLike, sides: int = 12
) -> Mesh:
    """Closed ``sides``-gon prisms along each 3D segment (circular pipes).

    Per segment: 4·sides vertices (two mantle rings with radial normals, two cap rings with
    axial normals), 4·sides − 4 triangles (caps are fans). Every vertex lies at ``radius`` from
    the axis. The section's first corner points left of the segment in plan (east for a
    vertical segment).
    """
    if sides < 3:
        raise ValueError("sides must be >= 3")
    s, e = _points(start, 3, "start"), _points(end, 3, "end")
    k = s.shape[0]
    return _tubes(s, e, _per_item(radius, k, "radius"), _ids(feature_ids, k), sides, caps=True)


def simplified_segments(start: ArrayLike, end: ArrayLike, radius: ArrayLike, feature_ids: ArrayLike) -> Mesh:
    """Far-LOD pipes: open triangular prisms (no caps), 6 vertices and 6 triangles each, with
    radial normals; corners at ``radius`` from the axis."""
    s, e = _points(start, 3, "start"), _points(end, 3, "end")
    k = s.shape[0]
    return _tubes(s, e, _per_item(radius, k, "radius"), _ids(feature_ids, k), 3, caps=False)


def vertical_cylinders(
    centre_xy: ArrayLike,
    z_top: ArrayLike,
    z_bottom: ArrayLike,
    radius: ArrayLike,
    feature_ids: ArrayLike,
    sides: int = 12,
) -> Mesh:
    """Closed vertical prisms from ``z_bottom`` to ``z_top`` (manholes, wells); same layout as
    :func:`pipe_cylinders`. Items with ``z_top == z_bottom`` are skipped."""
    xy = _points(centre_xy, 2, "centre_xy")
    k = xy.shape[0]
    top, bottom = _per_item(z_top, k, "z_top"), _per_item(z_bottom, k, "z_bottom")
    return pipe_cylinders(
        np.column_stack([xy, bottom]), np.column_stack([xy, top]), radius, feature_ids, sides
    )


# Box corner c = 4·p + 2·(s>0) + (t>0): p = 0 start / 1 end, s = side along width, t along height.
_BOX_FACES = np.array(
    [
        [0, 4, 5, 1],  # -width
        [2, 3, 7, 6],  # +width
        [0, 2, 6, 4],  # -height
        [1, 5, 7, 3],  # +height
        [0, 1, 3, 2],  # start
        [4, 6, 7, 5],  # end
    ]
)
_BOX_TEMPLATE = (np.arange(6)[:, None, None] * 4 + np.array([[0, 1, 2], [0, 2, 3]])[None]).reshape(-1, 3)


def pipe_boxes(
    start: ArrayLike, end: ArrayLike, width: ArrayLike, height: ArrayLike, feature_ids: ArrayLike
) -> Mesh:
    """Closed boxes along each segment (rectangular culverts, duct banks): 24 vertices with
    face normals and 12 triangles per box.

    Width runs horizontally, perpendicular to the segment in plan; height runs vertically, so the
    box stays upright on sloping segments (end faces vertical, corners at ±w/2 across and ±h/2
    vertically from the axis). Segments steeper than 45° use a section perpendicular to the axis
    instead (width still horizontal, height along axis × width); for a vertical segment width
    runs east and height north.
    """
    s, e = _points(start, 3, "start"), _points(end, 3, "end")
    k = s.shape[0]
    w, h = _per_item(width, k, "width"), _per_item(height, k, "height")
    ids = _ids(feature_ids, k)
    d, _, ok = _axis(s, e)
    ok &= _positive(w, h) & np.isfinite(s).all(1) & np.isfinite(e).all(1)
    s, e, w, h, d, ids = s[ok], e[ok], w[ok], h[ok], d[ok], ids[ok]
    a, hl = _plan_perpendicular(d)
    b = np.cross(d, a)
    upright = hl >= _UPRIGHT_MIN_HORIZONTAL
    b[upright] = (0.0, 0.0, 1.0)
    # Outward face normals; (d, a, b) is right-handed in both cases.
    n_w, n_h, n_d = _unit(np.cross(b, d)), _unit(np.cross(d, a)), _unit(np.cross(a, b))
    face_normals = np.stack([-n_w, n_w, -n_h, n_h, -n_d, n_d], axis=1)  # (k, 6, 3)
    sign = np.array([-1.0, 1.0])

    def fill(sl: slice, pos: NDArray[np.float64], nrm: NDArray[np.float32]) -> None:
        ends = np.stack([s[sl], e[sl]], axis=1)  # (c, 2, 3)
        across = a[sl, None, :] * (0.5 * w[sl, None, None] * sign[None, :, None])
        up = b[sl, None, :] * (0.5 * h[sl, None, None] * sign[None, :, None])
        corners = ends[:, :, None, None, :] + across[:, None, :, None, :] + up[:, None, None, :, :]
        pos[:] = corners.reshape(-1, 8, 3)[:, _BOX_FACES.reshape(-1)]
        nrm[:] = np.repeat(face_normals[sl], 4, axis=1)

    return _build(ids, 24, _BOX_TEMPLATE, fill)


# Octahedron faces: one per octant (sx, sy, sz); tips ordered x, y, z (reversed when the
# octant's sign product is negative, to keep outward winding).
_OCT_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
_OCT_CORNERS = np.zeros((8, 3, 3))
for _f, _sg in enumerate(_OCT_SIGNS):
    _order = (0, 1, 2) if _sg.prod() > 0 else (0, 2, 1)
    for _slot, _ax in enumerate(_order):
        _OCT_CORNERS[_f, _slot, _ax] = _sg[_ax]
_OCT_VERTS = _OCT_CORNERS.reshape(24, 3)
_OCT_NORMALS = np.repeat(_OCT_SIGNS / np.sqrt(3.0), 3, axis=0)
_OCT_TEMPLATE = np.arange(24).reshape(8, 3)


def symbols(centre: ArrayLike, size: ArrayLike, feature_ids: ArrayLike) -> Mesh:
    """Axis-aligned octahedra marking point features (valves, hydrants, other appurtenances):
    tips at ``size / 2`` from ``centre`` along ±x, ±y, ±z; 24 vertices with face normals and
    8 triangles each."""
    c = _points(centre, 3, "centre")
    k = c.shape[0]
    sz = _per_item(size, k, "size")
    ids = _ids(feature_ids, k)
    ok = _positive(sz) & np.isfinite(c).all(1)
    c, sz, ids = c[ok], sz[ok], ids[ok]

    def fill(sl: slice, pos: NDArray[np.float64], nrm: NDArray[np.float32]) -> None:
        pos[:] = c[sl, None, :] + (0.5 * sz[sl, None, None]) * _OCT_VERTS[None]
        nrm[:] = _OCT_NORMALS[None]

    return _build(ids, 24, _OCT_TEMPLATE, fill)
