"""LAS/LAZ point clouds to a 3D Tiles 1.1 tileset, out of core, on every core.

Example::

    src = PointSource(Path("scan.laz"), crs_wkt=crs.to_wkt(), heights=HeightModel(0.3048), geoid="egm96")
    result = build_pointcloud_tileset(src, Path("out/scan"))

How it works:

1. **Place and spill** (one task per range of points, in parallel): laspy streams the file in chunks; each
   chunk goes to the tileset's east-north-up frame (:class:`tiles.pointcloud_frame.GridTransform`: the
   exact CRS → geoid → ECEF chain, interpolated), is quantised to millimetres inside the root cube and
   appended to one spill file per cell of an octree level ``L`` chosen so a cell holds about
   ``cell_points`` points. Only a chunk is ever in memory. Facts are gathered on the way: class
   histogram, intensity and colour ranges, the occupied ground (for the density), GPS time range.
2. **Build cells** (one task per cell, in parallel): a cell's points are sorted by Morton code; a level of
   the octree keeps one point per voxel of a ``grid``³ grid over its node (the point of highest hash
   priority, so picks are spatially uniform and not corner-biased), the rest go down; a node with at most
   ``leaf_points`` left keeps them all (refine ``ADD``: every point is in exactly one tile). Nodes inside the
   cell are written at once (tile content + the query copy); picks for the levels above the cell are sent
   back. A cell larger than ``max_cell_points`` is spilled again into its eight children first.
3. **Top and tileset** (main process): the picks of the levels above the cells become their tiles;
   bounding boxes are the union of the points and the children's boxes, geometric errors come from the
   voxel spacing (leaves 0), and ``tileset.json`` is written last.

Worker processes are spawned, not forked (a process whose multi-threaded LAZ decoder already ran hangs in
forked children), so a script calling :func:`build_pointcloud_tileset` on a large file needs the usual
``if __name__ == "__main__":`` guard; ``python -m tiles.pointcloud JOB.json`` (what the ingest runs) has it.

The query copy (``points/*.npy`` and ``points/index.json``) keeps, per tile, the points in the file's own
CRS (raw LAS integers with the header's scales and offsets) with their native bounds, so spatial queries
(:mod:`cim.realscene.points`) read only the tiles they touch.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import InvalidInputError
from cim.heights import get_geoid
from tiles.frames import tile_transform
from tiles.pointcloud_content import points_glb, points_pnts
from tiles.pointcloud_frame import GridTransform, HeightModel

BITS = 21  #: Morton bits per axis
VOXEL_BITS = 7  #: log2 of the per-node sampling grid (128³)
MAX_DEPTH = BITS - VOXEL_BITS
OCCUPANCY_CELLS = 4096  #: occupancy grid for the density: at most 4096² cells of at least 1 m

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PointSource:
    """A LAS/LAZ file and how to read its coordinates: the horizontal CRS (WKT) of X/Y and the height model
    of Z. ``units_per_metre`` (horizontal units in a metre: 1 for metres, 3.28 for feet, ~9e-6 for
    degrees) sizes the placement grid."""

    path: Path
    crs_wkt: str
    heights: HeightModel = HeightModel()
    geoid: str = "egm96"
    geoid_path: Path | None = None
    units_per_metre: float = 1.0


@dataclass(frozen=True)
class TilerOptions:
    """Tuning of the tiler; the defaults suit aerial and mobile lidar."""

    leaf_points: int = 50_000
    workers: int = 2
    chunk_points: int = 1_000_000
    cell_points: int = 2_000_000
    max_cell_points: int = 6_000_000
    content: str = "glb"  # or "pnts" for clients that need 3D Tiles 1.0 point content
    parallel_from: int = 1_500_000  # smaller files run in this process (a pool costs a second to start)
    error_factor: float = 8.0  # geometric error = factor × voxel spacing (≈ refine at 2 px spacing)
    #: run the passes on a Dask cluster instead of local processes: "local" (a LocalCluster of ``workers``) or
    #: a scheduler address; workers must see the source file and the output folder at the same paths
    dask: str | None = None

    def __post_init__(self) -> None:
        if self.content not in ("glb", "pnts"):
            raise InvalidInputError(f"tile content {self.content!r} is not glb or pnts", field="content")
        if self.workers < 1 or self.leaf_points < 1000 or self.chunk_points < 1000:
            raise InvalidInputError("workers ≥ 1, leaf_points ≥ 1000 and chunk_points ≥ 1000")


@dataclass
class TilesetResult:
    """What one conversion produced and learned about the points."""

    out_dir: Path
    points: int
    tiles: int
    bytes: int
    seconds: float
    classes: dict[int, int]
    native_bounds: tuple[float, ...]
    enu_bounds: tuple[float, ...]
    occupied_m2: float
    occupancy_cell_m: float
    intensity_max: int
    rgb_max: int
    gps_time: tuple[float, float] | None
    placement_error_m: float
    levels: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def density(self) -> float:
        """Points per square metre of occupied ground."""
        return self.points / self.occupied_m2 if self.occupied_m2 else 0.0


# ---------------------------------------------------------------------------------------------------- Morton
def _part1by2(v: np.ndarray) -> np.ndarray:
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def morton3(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Interleave up to 21-bit integers: bit i of x, y, z go to bits 3i, 3i+1, 3i+2."""
    m = _part1by2(x)
    m |= _part1by2(y) << np.uint64(1)
    m |= _part1by2(z) << np.uint64(2)
    return m


def node_xyz(key: int, depth: int) -> tuple[int, int, int]:
    """The integer position of octree node ``key`` (Morton code of its ``depth`` bits per axis)."""
    x = y = z = 0
    for i in range(depth):
        x |= ((key >> (3 * i)) & 1) << i
        y |= ((key >> (3 * i + 1)) & 1) << i
        z |= ((key >> (3 * i + 2)) & 1) << i
    return x, y, z


def node_name(depth: int, key: int) -> str:
    x, y, z = node_xyz(key, depth)
    return f"{depth}-{x}-{y}-{z}"


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Start positions of the runs of equal values in a sorted array."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def _priority(e: np.ndarray, n: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random 32-bit priority per point, from its position."""
    h = e.astype(np.uint32) * np.uint32(0x9E3779B1)
    h ^= n.astype(np.uint32) * np.uint32(0x85EBCA77)
    h ^= u.astype(np.uint32) * np.uint32(0xC2B2AE3D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    return h


# ---------------------------------------------------------------------------------------------------- plan
def spill_dtype(has_rgb: bool) -> np.dtype:
    """One spilled point: native raw integers, ENU millimetres in the root cube, attributes."""
    fields = [("X", "<i4"), ("Y", "<i4"), ("Z", "<i4"), ("e", "<i4"), ("n", "<i4"), ("u", "<i4"),
              ("intensity", "<u2"), ("classification", "u1")]
    if has_rgb:
        fields += [("red", "<u2"), ("green", "<u2"), ("blue", "<u2")]
    return np.dtype(fields)


def query_dtype(has_rgb: bool) -> np.dtype:
    """A point of the query copy: native raw integers and attributes."""
    fields = [("X", "<i4"), ("Y", "<i4"), ("Z", "<i4"), ("intensity", "<u2"), ("classification", "u1")]
    if has_rgb:
        fields += [("red", "<u2"), ("green", "<u2"), ("blue", "<u2")]
    return np.dtype(fields)


@dataclass
class Plan:
    """Everything a worker needs: the source, the frame, the root cube and the spill level."""

    source: PointSource
    transform: GridTransform
    cube_min: tuple[float, float, float]  # ENU metres of the root cube's corner
    cube_mm: int  # root cube side in millimetres
    spill_level: int
    has_rgb: bool
    has_gps: bool
    point_count: int
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    work: Path
    out: Path
    options: TilerOptions
    occ_cell_m: float = 1.0
    occ_n: int = 1
    rgb_shift: int = 8
    serial: bool = True

    @property
    def dtype(self) -> np.dtype:
        return spill_dtype(self.has_rgb)


def _open(path: Path, serial: bool) -> Any:
    import laspy

    backend = None if serial else laspy.LazBackend.Lazrs  # one thread per worker process
    return laspy.open(str(path), laz_backend=backend) if backend else laspy.open(str(path))


def make_plan(source: PointSource, out_dir: Path, work: Path, options: TilerOptions) -> Plan:
    """Read the header, set up the frame and the root cube, choose the spill level."""
    with _open(source.path, True) as reader:
        h = reader.header
        count = int(h.point_count)
        mins, maxs = np.asarray(h.mins, "f8"), np.asarray(h.maxs, "f8")
        dims = set(h.point_format.dimension_names)
        scales, offsets = tuple(float(v) for v in h.scales), tuple(float(v) for v in h.offsets)
    geoid = get_geoid(source.geoid, source.geoid_path)
    transform = GridTransform(source.crs_wkt, (mins[0], mins[1], maxs[0], maxs[1]), source.heights, geoid,
                              units_per_metre=source.units_per_metre)
    # the header box in ENU: its faces sampled densely (ENU is nearly affine in native coordinates)
    g = np.linspace(0.0, 1.0, 9)
    gx, gy, gz = np.meshgrid(g, g, np.array([0.0, 1.0]))
    pts = mins + (maxs - mins) * np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])
    enu = transform.enu(pts[:, 0], pts[:, 1], pts[:, 2])
    lo, hi = enu.min(axis=0), enu.max(axis=0)
    size = float((hi - lo).max())
    pad = 1.0 + 0.01 * size
    lo, size = lo - pad, size + 2 * pad
    cube_mm = int(math.ceil(size * 1000))
    area = max(float((hi[0] - lo[0]) * (hi[1] - lo[1])), 1.0)
    fill = min(1.0, area / size ** 2)
    cells_needed = count / max(options.cell_points, 1) / fill
    level = int(min(7, max(0, math.ceil(math.log(max(cells_needed, 1.0), 4)))))
    # occupancy cells hold ~4 points at the mean density, so sparse clouds do not look patchy
    occ_cell = max(1.0, size / OCCUPANCY_CELLS, math.sqrt(4.0 * area / max(count, 1)))
    return Plan(source, transform, (float(lo[0]), float(lo[1]), float(lo[2])), cube_mm, level,
                has_rgb={"red", "green", "blue"} <= dims, has_gps="gps_time" in dims, point_count=count,
                scales=scales, offsets=offsets, work=work, out=out_dir, options=options,
                occ_cell_m=occ_cell, occ_n=int(math.ceil(size / occ_cell)),
                serial=count < options.parallel_from or options.workers == 1)


# ---------------------------------------------------------------------------------------------------- pass 1
def _cell_keys(rec: np.ndarray, plan: Plan, level: int) -> np.ndarray:
    if level == 0:
        return np.zeros(len(rec), dtype=np.uint64)
    f = (1 << level)
    cx = (rec["e"].astype(np.int64) * f) // plan.cube_mm
    cy = (rec["n"].astype(np.int64) * f) // plan.cube_mm
    cz = (rec["u"].astype(np.int64) * f) // plan.cube_mm
    np.clip(cx, 0, f - 1, out=cx)
    np.clip(cy, 0, f - 1, out=cy)
    np.clip(cz, 0, f - 1, out=cz)
    return morton3(cx, cy, cz)


def _write_cells(rec: np.ndarray, keys: np.ndarray, level: int, work: Path, tag: str) -> dict[int, int]:
    """Append each cell's records to its spill file; counts per cell."""
    if level <= 5:
        order = np.argsort(keys.astype(np.uint16), kind="stable")  # radix sort
    else:
        order = np.argsort(keys, kind="stable")
    keys = keys[order]
    rec = rec[order]
    starts = _run_starts(keys)
    ends = np.append(starts[1:], len(keys))
    counts: dict[int, int] = {}
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        key = int(keys[s])
        with open(work / f"{level}_{key}.{tag}.bin", "ab") as fh:
            rec[s:e].tofile(fh)
        counts[key] = counts.get(key, 0) + (e - s)
    return counts


def spill_range(plan: Plan, start: int, stop: int, tag: str) -> dict[str, Any]:
    """Pass 1 over points ``start..stop``: place, quantise, spill; the facts of these points."""
    dt = plan.dtype
    hist = np.zeros(256, dtype=np.int64)
    occ = np.zeros(plan.occ_n * plan.occ_n, dtype=bool)
    nat_lo = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
    nat_hi = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)
    enu_lo, enu_hi = np.full(3, np.inf), np.full(3, -np.inf)
    imax = rgbmax = 0
    gps = [math.inf, -math.inf]
    cells: dict[int, int] = {}
    cube = np.array(plan.cube_min)
    sx, sy, sz = plan.scales
    ox, oy, oz = plan.offsets
    with _open(plan.source.path, plan.serial) as reader:
        if start:
            reader.seek(start)
        left = stop - start
        for chunk in reader.chunk_iterator(min(plan.options.chunk_points, max(left, 1))):
            if left <= 0:
                break
            if len(chunk) > left:
                chunk = chunk[:left]
            left -= len(chunk)
            n = len(chunk)
            if n == 0:
                continue
            X = np.asarray(chunk.X)
            Y = np.asarray(chunk.Y)
            Z = np.asarray(chunk.Z)
            enu = plan.transform.enu(X * sx + ox, Y * sy + oy, Z * sz + oz)
            enu -= cube
            enu_lo = np.minimum(enu_lo, enu.min(axis=0))
            enu_hi = np.maximum(enu_hi, enu.max(axis=0))
            rec = np.empty(n, dtype=dt)
            rec["X"], rec["Y"], rec["Z"] = X, Y, Z
            mm = np.rint(enu * 1000.0)
            np.clip(mm, 0, plan.cube_mm - 1, out=mm)
            rec["e"], rec["n"], rec["u"] = mm[:, 0], mm[:, 1], mm[:, 2]
            inten = np.asarray(chunk["intensity"])
            cls = np.asarray(chunk["classification"])
            rec["intensity"] = inten
            rec["classification"] = cls
            if plan.has_rgb:
                r, g, b = np.asarray(chunk["red"]), np.asarray(chunk["green"]), np.asarray(chunk["blue"])
                rec["red"], rec["green"], rec["blue"] = r, g, b
                rgbmax = max(rgbmax, int(r.max()), int(g.max()), int(b.max()))
            if plan.has_gps:
                t = np.asarray(chunk["gps_time"])
                gps = [min(gps[0], float(t.min())), max(gps[1], float(t.max()))]
            hist += np.bincount(cls, minlength=256)[:256]
            imax = max(imax, int(inten.max()))
            for k, v in enumerate((X, Y, Z)):
                nat_lo[k] = min(nat_lo[k], int(v.min()))
                nat_hi[k] = max(nat_hi[k], int(v.max()))
            oi = np.minimum((mm[:, 0] * (0.001 / plan.occ_cell_m)).astype(np.int64), plan.occ_n - 1)
            oj = np.minimum((mm[:, 1] * (0.001 / plan.occ_cell_m)).astype(np.int64), plan.occ_n - 1)
            occ[oj * plan.occ_n + oi] = True
            for key, c in _write_cells(rec, _cell_keys(rec, plan, plan.spill_level), plan.spill_level,
                                       plan.work, tag).items():
                cells[key] = cells.get(key, 0) + c
    return {"hist": hist, "occ": np.packbits(occ), "nat_lo": nat_lo, "nat_hi": nat_hi, "enu_lo": enu_lo,
            "enu_hi": enu_hi, "imax": imax, "rgbmax": rgbmax, "gps": gps, "cells": cells,
            "points": stop - start - max(left, 0)}


# ---------------------------------------------------------------------------------------------------- pass 2
def _assign_levels(m: np.ndarray, pri: np.ndarray, depth0: int, leaf_points: int) -> np.ndarray:
    """The octree depth each (Morton-sorted) point is written at; depths below ``depth0`` are never leaves."""
    level = np.full(len(m), -1, dtype=np.int8)
    alive = np.arange(len(m), dtype=np.int64)
    am = m
    for d in range(MAX_DEPTH + 1):
        if d >= depth0:
            nk = am >> np.uint64(3 * (BITS - d))
            starts = _run_starts(nk)
            counts = np.diff(np.append(starts, len(nk)))
            small = counts <= leaf_points if d < MAX_DEPTH else np.ones(len(counts), dtype=bool)
            if small.any():
                leaf = np.repeat(small, counts)
                level[alive[leaf]] = d
                alive, am = alive[~leaf], am[~leaf]
                if not len(alive):
                    break
        vk = am >> np.uint64(3 * (BITS - d - VOXEL_BITS))
        vstarts = _run_starts(vk)
        comb = pri[alive].astype(np.uint64) << np.uint64(32)
        comb |= np.arange(len(alive), dtype=np.uint64)
        win = (np.maximum.reduceat(comb, vstarts) & np.uint64(0xFFFFFFFF)).astype(np.int64)
        level[alive[win]] = d
        keep = np.ones(len(alive), dtype=bool)
        keep[win] = False
        alive, am = alive[keep], am[keep]
        if not len(alive):
            break
    return level


def _colours(rec: np.ndarray, plan: Plan) -> np.ndarray | None:
    if not plan.has_rgb:
        return None
    rgb = np.empty((len(rec), 3), dtype=np.uint8)
    for k, name in enumerate(("red", "green", "blue")):
        rgb[:, k] = rec[name] >> plan.rgb_shift
    return rgb


def write_node(plan: Plan, depth: int, key: int, rec: np.ndarray) -> dict[str, Any]:
    """Write one tile's content and its query copy; its facts for the tileset and the index."""
    name = node_name(depth, key)
    lo = np.array([rec["e"].min(), rec["n"].min(), rec["u"].min()], dtype=np.int64)
    hi = np.array([rec["e"].max(), rec["n"].max(), rec["u"].max()], dtype=np.int64)
    centre_mm = (lo + hi) // 2
    pos = np.empty((len(rec), 3), dtype="f8")
    pos[:, 0] = rec["e"] - centre_mm[0]
    pos[:, 1] = rec["n"] - centre_mm[1]
    pos[:, 2] = rec["u"] - centre_mm[2]
    pos *= 0.001
    centre = np.asarray(plan.cube_min) + centre_mm * 0.001
    writer = points_glb if plan.options.content == "glb" else points_pnts
    data = writer(pos, centre, _colours(rec, plan), rec["intensity"], rec["classification"])
    uri = f"tiles/{name}.{plan.options.content}"
    with open(plan.out / uri, "wb") as fh:
        fh.write(data)
    q = np.empty(len(rec), dtype=query_dtype(plan.has_rgb))
    for f in q.dtype.names:
        q[f] = rec[f]
    np.save(plan.out / "points" / f"{name}.npy", q)
    nlo = [int(rec[f].min()) for f in ("X", "Y", "Z")]
    nhi = [int(rec[f].max()) for f in ("X", "Y", "Z")]
    hist = np.bincount(rec["classification"], minlength=256)
    return {"depth": depth, "key": key, "name": name, "uri": uri, "count": len(rec), "bytes": len(data),
            "lo": lo.tolist(), "hi": hi.tolist(), "native_lo": nlo, "native_hi": nhi,
            "classes": {str(c): int(hist[c]) for c in np.flatnonzero(hist)}}


def _load_cell(plan: Plan, files: list[str]) -> np.ndarray:
    parts = [np.fromfile(plan.work / f, dtype=plan.dtype) for f in files]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _split_cell(plan: Plan, depth: int, files: list[str]) -> list[tuple[int, int, list[str]]]:
    """Spill a too-large cell into its children (chunk by chunk); the children's tasks."""
    itemsize = plan.dtype.itemsize
    counts: dict[int, int] = {}
    for f in files:
        path = plan.work / f
        total = path.stat().st_size // itemsize
        for s in range(0, total, plan.options.chunk_points):
            rec = np.fromfile(path, dtype=plan.dtype, count=plan.options.chunk_points, offset=s * itemsize)
            for k, c in _write_cells(rec, _cell_keys(rec, plan, depth + 1), depth + 1, plan.work,
                                     f"s{depth}").items():
                counts[k] = counts.get(k, 0) + c
        path.unlink()
    return [(depth + 1, k, [f"{depth + 1}_{k}.s{depth}.bin"]) for k in sorted(counts)]


def build_cell(plan: Plan, depth: int, key: int, files: list[str]) -> dict[str, Any]:
    """Pass 2 for one spill cell: its tiles, written; the picks for the levels above it, returned."""
    rec = _load_cell(plan, files)
    if len(rec) > plan.options.max_cell_points and depth < 10:
        del rec
        return {"split": _split_cell(plan, depth, files)}
    for f in files:
        (plan.work / f).unlink(missing_ok=True)
    q = [(rec[c].astype(np.int64) << BITS) // plan.cube_mm for c in ("e", "n", "u")]
    for a in q:
        np.clip(a, 0, (1 << BITS) - 1, out=a)
    m = morton3(q[0], q[1], q[2])
    del q
    order = np.argsort(m)
    m = m[order]
    rec = rec[order]
    del order
    pri = _priority(rec["e"], rec["n"], rec["u"])
    level = _assign_levels(m, pri, depth, plan.options.leaf_points)
    del pri
    nodes: list[dict[str, Any]] = []
    picks: dict[tuple[int, int], np.ndarray] = {}
    for d in np.unique(level).tolist():
        idx = np.flatnonzero(level == d)
        nk = m[idx] >> np.uint64(3 * (BITS - d))
        starts = _run_starts(nk)
        ends = np.append(starts[1:], len(idx))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            part = rec[idx[s:e]]
            if d < depth:
                picks[(d, int(nk[s]))] = part
            else:
                nodes.append(write_node(plan, d, int(nk[s]), part))
    return {"cell": (depth, key), "nodes": nodes, "picks": picks, "points": len(rec)}


# ---------------------------------------------------------------------------------------------------- tileset
def _box(lo: list[int], hi: list[int], cube_min: tuple[float, float, float]) -> list[float]:
    c = [cube_min[k] + (lo[k] + hi[k]) * 0.0005 for k in range(3)]
    h = [max((hi[k] - lo[k]) * 0.0005, 0.05) for k in range(3)]
    return [c[0], c[1], c[2], h[0], 0.0, 0.0, 0.0, h[1], 0.0, 0.0, 0.0, h[2]]


def _tileset(plan: Plan, nodes: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The tileset JSON from every written node (children linked by Morton prefix); the tree depth."""
    by_key = {(n["depth"], n["key"]): {**n, "children": []} for n in nodes}
    roots = []
    for (d, k), n in sorted(by_key.items(), key=lambda kv: kv[0]):
        parent = None
        pd, pk = d - 1, k >> 3
        while pd >= 0 and parent is None:
            parent = by_key.get((pd, pk))
            pd, pk = pd - 1, pk >> 3
        (parent["children"] if parent else roots).append(n)
    if len(roots) != 1:
        raise RuntimeError(f"point-cloud tree has {len(roots)} roots")
    size_m = plan.cube_mm / 1000.0
    deepest = 0

    def tile(n: dict[str, Any]) -> tuple[dict[str, Any], list[int], list[int]]:
        nonlocal deepest
        deepest = max(deepest, n["depth"])
        lo, hi = list(n["lo"]), list(n["hi"])
        children = []
        for c in n["children"]:
            cj, clo, chi = tile(c)
            children.append(cj)
            lo = [min(a, b) for a, b in zip(lo, clo, strict=True)]
            hi = [max(a, b) for a, b in zip(hi, chi, strict=True)]
        spacing = size_m / (1 << (n["depth"] + VOXEL_BITS))
        t: dict[str, Any] = {"boundingVolume": {"box": _box(lo, hi, plan.cube_min)},
                             "geometricError": plan.options.error_factor * spacing if children else 0.0,
                             "content": {"uri": n["uri"]}}
        if children:
            t["children"] = children
        return t, lo, hi

    root, _, _ = tile(roots[0])
    root["refine"] = "ADD"
    root["transform"] = tile_transform(plan.transform.matrix)
    root_error = max(root["geometricError"], plan.options.error_factor * size_m / (1 << VOXEL_BITS))
    if "children" in root:
        root["geometricError"] = root_error
    doc = {
        "asset": {"version": "1.1", "generator": "cim-service point-cloud tiler",
                  "extras": {"points": plan.point_count}},
        "geometricError": root_error * 2,
        "root": root,
    }
    return doc, deepest


# ---------------------------------------------------------------------------------------------------- driver
def _ranges(count: int, parts: int) -> list[tuple[int, int]]:
    step = -(-count // parts)
    return [(s, min(count, s + step)) for s in range(0, count, step)]


_WORKER_PLAN: Plan | None = None


def _init_worker(plan: Plan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan


def _spill_task(args: tuple[int, int, str]) -> dict[str, Any]:
    assert _WORKER_PLAN is not None
    return spill_range(_WORKER_PLAN, *args)


def _cell_task(args: tuple[int, int, int, list[str]]) -> dict[str, Any]:
    assert _WORKER_PLAN is not None
    _WORKER_PLAN.rgb_shift = args[0]
    return build_cell(_WORKER_PLAN, *args[1:])


def _pool(plan: Plan) -> Any:
    """Worker processes (spawned: forking a process whose LAZ decoder threads already ran can hang), or a
    Dask cluster when ``options.dask`` says so."""
    if plan.options.dask:
        return DaskPool(plan)
    if plan.serial:
        return None
    return mp.get_context("spawn").Pool(plan.options.workers, initializer=_init_worker, initargs=(plan,))


def _dask_spill(args: tuple[int, int, str], plan: Plan) -> dict[str, Any]:
    return spill_range(plan, *args)


def _dask_cell(args: tuple[int, int, int, list[str]], plan: Plan) -> dict[str, Any]:
    plan.rgb_shift = args[0]
    return build_cell(plan, *args[1:])


class DaskPool:
    """The two passes as Dask tasks, behind the ``map``/``imap_unordered`` of a process pool: the plan is
    sent to every worker once; each task is one spill range or one cell, as with local processes."""

    TASKS = {_spill_task: _dask_spill, _cell_task: _dask_cell}

    def __init__(self, plan: Plan) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        address = plan.options.dask
        if address == "local":
            self._cluster = LocalCluster(n_workers=plan.options.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            address = self._cluster
        try:
            self._client = Client(address, timeout=30)
        except OSError as exc:
            raise InvalidInputError(f"no Dask scheduler at {plan.options.dask}: {exc}", field="dask") from None
        self._plan = self._client.scatter(plan, broadcast=True)

    def map(self, fn: Callable[[Any], Any], args: list[Any], chunksize: int = 1) -> list[Any]:
        futures = self._client.map(self.TASKS[fn], args, plan=self._plan, pure=False)
        return self._client.gather(futures)

    def imap_unordered(self, fn: Callable[[Any], Any], args: list[Any]) -> list[Any]:
        return self.map(fn, args)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def join(self) -> None:
        return None


def _merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0])
    for p in parts[1:]:
        out["hist"] = out["hist"] + p["hist"]
        out["occ"] = np.bitwise_or(out["occ"], p["occ"])
        out["nat_lo"] = np.minimum(out["nat_lo"], p["nat_lo"])
        out["nat_hi"] = np.maximum(out["nat_hi"], p["nat_hi"])
        out["enu_lo"] = np.minimum(out["enu_lo"], p["enu_lo"])
        out["enu_hi"] = np.maximum(out["enu_hi"], p["enu_hi"])
        out["imax"], out["rgbmax"] = max(out["imax"], p["imax"]), max(out["rgbmax"], p["rgbmax"])
        out["gps"] = [min(out["gps"][0], p["gps"][0]), max(out["gps"][1], p["gps"][1])]
        out["points"] += p["points"]
        cells = dict(out["cells"])
        for k, v in p["cells"].items():
            cells[k] = cells.get(k, 0) + v
        out["cells"] = cells
    return out


def _build_cells(pool: Any, plan: Plan, tasks: list[tuple[int, int, list[str]]]) -> list[dict[str, Any]]:
    """Pass 2 over every cell, splitting the cells that are too large; the cells' results."""
    results: list[dict[str, Any]] = []
    while tasks:
        if pool is None:
            outs = [build_cell(plan, d, k, files) for d, k, files in tasks]
        else:
            outs = list(pool.imap_unordered(_cell_task, [(plan.rgb_shift, d, k, f) for d, k, f in tasks]))
        tasks = []
        for o in outs:
            if "split" in o:
                tasks.extend(o["split"])
            else:
                results.append(o)
    return results


def build_pointcloud_tileset(source: PointSource, out_dir: Path, options: TilerOptions | None = None, *,
                             progress: Progress | None = None) -> TilesetResult:
    """Convert ``source`` into ``out_dir`` (``tileset.json``, ``tiles/``, ``points/``); see the module doc.

    Raises:
        InvalidInputError: the file cannot be read to its end (truncated, corrupt compressed data).
    """
    options = options or TilerOptions()
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    for sub in ("tiles", "points"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    work = out_dir / ".spill"
    work.mkdir(exist_ok=True)
    try:
        plan = make_plan(source, out_dir, work, options)
        pool = _pool(plan)
        try:
            say(f"placing {plan.point_count:,} points (spill level {plan.spill_level})")
            parts = options.workers if not plan.serial or options.dask else 1
            args = [(s, e, f"p{i}") for i, (s, e) in enumerate(_ranges(plan.point_count, parts))]
            outs = [spill_range(plan, *a) for a in args] if pool is None else pool.map(_spill_task, args, 1)
            stats = _merge_stats(outs)
            if stats["points"] != plan.point_count:
                raise InvalidInputError(f"the header promises {plan.point_count:,} points but only "
                                        f"{stats['points']:,} could be read: the file is truncated",
                                        file=source.path.name)
            plan.rgb_shift = 8 if stats["rgbmax"] > 255 else 0
            files: dict[int, list[str]] = {}
            for f in sorted(os.listdir(work)):
                key = int(f.split(".", 1)[0].split("_", 1)[1])
                files.setdefault(key, []).append(f)
            say(f"building {len(files)} cells")
            cells = _build_cells(pool, plan, [(plan.spill_level, k, v) for k, v in sorted(files.items())])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        cells.sort(key=lambda c: c["cell"])  # the same files whatever order workers finished in
        nodes = [n for c in cells for n in c["nodes"]]
        picks: dict[tuple[int, int], list[np.ndarray]] = {}
        for c in cells:
            for k, v in c["picks"].items():
                picks.setdefault(k, []).append(v)
        for (d, k), parts_ in sorted(picks.items()):
            nodes.append(write_node(plan, d, k, np.concatenate(parts_) if len(parts_) > 1 else parts_[0]))
        say(f"writing tileset.json ({len(nodes)} tiles)")
        doc, deepest = _tileset(plan, nodes)
        _write_index(plan, nodes)
        (out_dir / "tileset.json").write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, InvalidInputError) and _is_decode_error(exc):
            raise InvalidInputError(f"the point data cannot be read ({exc}): the file is truncated or corrupt",
                                    file=source.path.name) from None
        raise
    shutil.rmtree(work, ignore_errors=True)
    sx, sy, sz = plan.scales
    ox, oy, oz = plan.offsets
    lo, hi = stats["nat_lo"], stats["nat_hi"]
    occupied = int(np.unpackbits(stats["occ"]).sum()) * plan.occ_cell_m ** 2
    gps = tuple(stats["gps"]) if plan.has_gps and math.isfinite(stats["gps"][0]) else None
    cube = np.asarray(plan.cube_min)
    return TilesetResult(
        out_dir=out_dir, points=int(stats["points"]), tiles=len(nodes), bytes=sum(n["bytes"] for n in nodes),
        seconds=time.perf_counter() - t0,
        classes={int(c): int(stats["hist"][c]) for c in np.flatnonzero(stats["hist"])},
        native_bounds=(lo[0] * sx + ox, lo[1] * sy + oy, lo[2] * sz + oz, hi[0] * sx + ox, hi[1] * sy + oy,
                       hi[2] * sz + oz),
        enu_bounds=tuple(float(v) for v in (*(stats["enu_lo"] + cube), *(stats["enu_hi"] + cube))),
        occupied_m2=float(occupied), occupancy_cell_m=plan.occ_cell_m, intensity_max=int(stats["imax"]),
        rgb_max=int(stats["rgbmax"]), gps_time=gps,  # type: ignore[arg-type]
        placement_error_m=plan.transform.check(
            (lo[0] * sx + ox, lo[1] * sy + oy, lo[2] * sz + oz, hi[0] * sx + ox, hi[1] * sy + oy, hi[2] * sz + oz)),
        levels=deepest + 1, extra={"spill_level": plan.spill_level, "serial": plan.serial,
                                   "origin": list(plan.transform.origin)})


def _is_decode_error(exc: BaseException) -> bool:
    """An error of the LAS/LAZ decoder (corrupt or cut compressed data), not of this code."""
    if type(exc).__module__.split(".")[0] in ("laspy", "lazrs"):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("laz", "decompress", "ioerror", "fill whole buffer", "unexpected eof"))


def _write_index(plan: Plan, nodes: list[dict[str, Any]]) -> None:
    sx, sy, sz = plan.scales
    ox, oy, oz = plan.offsets
    entries = []
    for n in sorted(nodes, key=lambda n: (n["depth"], n["key"])):
        lo, hi = n["native_lo"], n["native_hi"]
        entries.append({"file": f"{n['name']}.npy", "count": n["count"], "classes": n["classes"],
                        "bounds": [lo[0] * sx + ox, lo[1] * sy + oy, lo[2] * sz + oz,
                                   hi[0] * sx + ox, hi[1] * sy + oy, hi[2] * sz + oz]})
    index = {"version": 1, "crs_wkt": plan.source.crs_wkt, "scales": list(plan.scales),
             "offsets": list(plan.offsets), "z_to_metres": plan.source.heights.to_metres,
             "ellipsoidal": plan.source.heights.ellipsoidal,
             "has_rgb": plan.has_rgb, "points": sum(n["count"] for n in nodes), "nodes": entries}
    (plan.out / "points" / "index.json").write_text(json.dumps(index), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- command
#: Exit status of ``python -m tiles.pointcloud`` for input it refuses (an :class:`InvalidInputError`).
EXIT_INVALID_INPUT = 3


def result_dict(r: TilesetResult) -> dict[str, Any]:
    """A :class:`TilesetResult` as JSON-ready data (``density`` included)."""
    d = asdict(r)
    d["out_dir"] = str(r.out_dir)
    d["classes"] = {str(k): v for k, v in r.classes.items()}
    d["density"] = r.density
    return d


def run_job(job: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Run one conversion described as data: ``{"source": {path, crs_wkt, z_to_metres, ellipsoidal, geoid,
    geoid_path, units_per_metre}, "out": folder, "options": {TilerOptions fields}}``."""
    src = dict(job["source"])
    source = PointSource(Path(src["path"]), src["crs_wkt"],
                         HeightModel(float(src.get("z_to_metres", 1.0)), bool(src.get("ellipsoidal", False))),
                         src.get("geoid", "egm96"), Path(src["geoid_path"]) if src.get("geoid_path") else None,
                         float(src.get("units_per_metre", 1.0)))
    options = TilerOptions(**job.get("options", {}))
    return result_dict(build_pointcloud_tileset(source, Path(job["out"]), options, progress=progress))


def main(argv: list[str] | None = None) -> int:
    """``python -m tiles.pointcloud JOB.json``: convert, print progress on stderr and the result as JSON on
    stdout; exit 3 with ``error: <message>`` on stderr for refused input, 1 for other failures.

    Converters and tiles meet only here and in files: ``converters.pointcloud.ingest`` writes the job.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tiles.pointcloud JOB.json", file=sys.stderr)
        return 2
    try:
        job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        result = run_job(job, progress=lambda m: print(f"progress: {m}", file=sys.stderr, flush=True))
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
