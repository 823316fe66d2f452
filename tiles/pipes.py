"""The pipe network "one map" as an OGC 3D Tiles 1.1 tileset, read only from the store.

Layout: a stable quadtree over the storage CRS (:mod:`tiles.quadtree`). Leaf tiles carry full solids
(cylinders, boxes, manholes, symbols) for every feature in their cell; inner tiles carry simplified
prisms of the largest pipes beneath them and are REPLACEd by their children when a client zooms in.
Each tile's content is in its own east-north-up frame (tile ``transform``), positions are ECEF after
the 1985 → ellipsoidal height correction through the configured geoid, and bounding volumes are
``region``s. ``manifest.json`` records what each tile holds, so a rebuild rewrites only tiles whose
features changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.crs import to_lonlat
from cim.heights import GeoidModel
from cim.pipes import dictionaries as dic
from cim.store import DuckDBStore
from tiles.frames import LocalFrame, region_bounds, relative_transform
from tiles.glb import Column, PropertyTable, write_glb
from tiles.quadtree import Cell, root_cell, split
from tiles.solids import Mesh, pipe_boxes, pipe_cylinders, simplified_segments, symbols, vertical_cylinders

BUILD_VERSION = "2"  # bump when geometry or metadata layout changes: forces a full rebuild
MIN_RADIUS_M = 0.05


@dataclass
class TilingOptions:
    """Knobs of the tileset."""

    leaf_capacity: int = 4000  # features per leaf tile
    max_level: int = 12
    parent_budget: int = 12000  # simplified pipes per inner tile
    sides: int = 8  # cylinder facets in leaf tiles
    compress: bool = False  # EXT_meshopt_compression on vertex and index data
    datasets: list[str] | None = None  # None: every pipe dataset


@dataclass
class BuildResult:
    """What a build wrote."""

    out_dir: Path
    tiles: int
    written: int
    skipped: int
    features: int
    bytes: int
    keys_written: list[str] = field(default_factory=list)


def _load(store: DuckDBStore, datasets: list[str] | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    where = "version_to IS NULL" + (" AND dataset_id IN (SELECT unnest($ds))" if datasets else "")
    params = {"ds": datasets} if datasets else {}
    con = store.read()
    seg = con.execute(
        f"""SELECT feature_id, dataset_id, category, subtype, kind, shape, diameter_mm, width_mm, height_mm,
                   material, burial, start_depth, end_depth, start_h, end_h, start_z, end_z, length_3d,
                   owner, year, road, array_to_string(qc_flags, ',') AS qc_flags, row_hash,
                   ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1,
                   ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2
            FROM pipe_segments WHERE {where} ORDER BY feature_id""",
        params,
    ).fetchnumpy()
    pts = con.execute(
        f"""SELECT feature_id, dataset_id, category, subtype, feature, appurtenance, x, y, ground_h,
                   well_depth, well_bottom_h, road, array_to_string(qc_flags, ',') AS qc_flags, row_hash
            FROM pipe_points WHERE {where} AND appurtenance IS NOT NULL ORDER BY feature_id""",
        params,
    ).fetchnumpy()
    return seg, pts


def _text(values: np.ndarray) -> list[str | None]:
    mask = np.ma.getmaskarray(values)
    return [None if m or v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v, m in zip(np.ma.getdata(values), mask, strict=True)]


def _num(values: np.ndarray) -> np.ndarray:
    """Float64 with NaN for SQL NULL (DuckDB's fetchnumpy gives masked arrays whose hidden data is 0)."""
    return np.ma.filled(np.ma.asarray(values).astype("f8"), np.nan)


def _size_text(shape: str | None, d: float, w: float, h: float) -> str | None:
    if shape == "rect" and np.isfinite(w) and np.isfinite(h):
        return f"{w:g}×{h:g}"
    if np.isfinite(d):
        return f"DN{d:g}"
    return None


_CHAMBERS = {p.name for p in dic.POINT_TYPES.values() if p.is_chamber}


class _Network:
    """Store rows as arrays, with the derived numbers tiles need."""

    def __init__(self, seg: dict[str, np.ndarray], pts: dict[str, np.ndarray]) -> None:
        self.seg, self.pts = seg, pts
        self.compress = False
        self.ns, self.np = len(seg["feature_id"]), len(pts["feature_id"])
        d, w, h = _num(seg["diameter_mm"]), _num(seg["width_mm"]), _num(seg["height_mm"])
        self.seg_size_m = np.where(np.isfinite(h), h, np.where(np.isfinite(d), d, 200.0)) / 1000.0
        self.seg_rect = (np.asarray(seg["shape"], dtype=object) == "rect") & np.isfinite(w) & np.isfinite(h)
        self.seg_width_m = np.where(np.isfinite(w), w, 200.0) / 1000.0
        self.mid_x = (_num(seg["x1"]) + _num(seg["x2"])) / 2
        self.mid_y = (_num(seg["y1"]) + _num(seg["y2"])) / 2
        ground = _num(pts["ground_h"])
        bottom = _num(pts["well_bottom_h"])
        depth = _num(pts["well_depth"])
        self.pt_top = np.where(np.isfinite(ground), ground, 0.0)
        self.pt_bottom = np.where(np.isfinite(bottom), bottom, self.pt_top - np.where(np.isfinite(depth), depth, 1.5))
        self.pt_chamber = np.isin(np.asarray(pts["appurtenance"], dtype=object), list(_CHAMBERS))

    def item_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Plan position of every item: segments (midpoints) first, then points."""
        return (np.concatenate([self.mid_x, _num(self.pts["x"])]), np.concatenate([self.mid_y, _num(self.pts["y"])]))


def _digest(net: _Network, segs: np.ndarray, pts: np.ndarray, kind: str) -> str:
    h = hashlib.sha1(f"{BUILD_VERSION}|{kind}|{net.compress}".encode())
    for i in segs:
        h.update(f"{net.seg['feature_id'][i]}\x1f{net.seg['row_hash'][i]}\x1e".encode())
    for i in pts:
        h.update(f"{net.pts['feature_id'][i]}\x1f{net.pts['row_hash'][i]}\x1e".encode())
    return h.hexdigest()


def _table(net: _Network, segs: np.ndarray, pts: np.ndarray) -> PropertyTable:
    s, p = net.seg, net.pts

    def cat(seg_col: str, pt_col: str | None = None) -> list[str | None]:
        left = _text(s[seg_col][segs])
        right = _text(p[pt_col or seg_col][pts]) if (pt_col or seg_col) in p else [None] * len(pts)
        return left + right

    def num(seg_col: str | None, pt_col: str | None = None) -> np.ndarray:
        left = _num(s[seg_col][segs]) if seg_col else np.full(len(segs), np.nan)
        right = _num(p[pt_col][pts]) if pt_col else np.full(len(pts), np.nan)
        return np.concatenate([left, right])

    size = [_size_text(sh, d, w, h) for sh, d, w, h in zip(
        s["shape"][segs], _num(s["diameter_mm"][segs]), _num(s["width_mm"][segs]), _num(s["height_mm"][segs]),
        strict=True)] + [None] * len(pts)
    kind = ["segment"] * len(segs) + ["point"] * len(pts)
    point_type = [None] * len(segs) + _text(p["appurtenance"][pts])
    columns = {
        "id": Column("STRING", None, cat("feature_id"), description="feature id in the store"),
        "dataset": Column("STRING", None, cat("dataset_id")),
        "kind": Column("STRING", None, kind, description="segment or point"),
        "category": Column("STRING", None, cat("category"), description="CJJ 61 major category code"),
        "subtype": Column("STRING", None, cat("subtype")),
        "point_type": Column("STRING", None, point_type, description="附属物 of a point"),
        "material": Column("STRING", None, _text(s["material"][segs]) + [None] * len(pts)),
        "size": Column("STRING", None, size, description="DN or width×height in mm"),
        "burial": Column("STRING", None, _text(s["burial"][segs]) + [None] * len(pts)),
        "start_depth": Column("SCALAR", "FLOAT64", num("start_depth"), no_data=-9999.0),
        "end_depth": Column("SCALAR", "FLOAT64", num("end_depth"), no_data=-9999.0),
        "start_elevation": Column("SCALAR", "FLOAT64", num("start_h"), no_data=-9999.0,
                                  description="recorded: invert (gravity) or top (pressure, duct), 1985 heights"),
        "end_elevation": Column("SCALAR", "FLOAT64", num("end_h"), no_data=-9999.0),
        "ground_elevation": Column("SCALAR", "FLOAT64", num(None, "ground_h"), no_data=-9999.0),
        "well_depth": Column("SCALAR", "FLOAT64", num(None, "well_depth"), no_data=-9999.0),
        "owner": Column("STRING", None, _text(s["owner"][segs]) + [None] * len(pts)),
        "year": Column("STRING", None, _text(s["year"][segs]) + [None] * len(pts)),
        "road": Column("STRING", None, cat("road")),
        "qc_flags": Column("STRING", None, cat("qc_flags"), description="QC rule ids flagged on the row"),
    }
    return PropertyTable(count=len(segs) + len(pts), columns=columns)


def _colour(category: str | None, subtype: str | None) -> tuple[int, int, int]:
    if subtype and subtype in dic.SUBTYPES:
        return dic.SUBTYPES[subtype].colour
    if category and category in dic.CATEGORIES:
        return dic.CATEGORIES[category].colour
    return (128, 128, 128)


def _meshes(net: _Network, frame: LocalFrame, segs: np.ndarray, pts: np.ndarray, *, simplified: bool,
            sides: int) -> list[tuple[Mesh, tuple[int, int, int]]]:
    s, p = net.seg, net.pts
    start = frame.to_local(_num(s["x1"][segs]), _num(s["y1"][segs]), _num(s["start_z"][segs]))
    end = frame.to_local(_num(s["x2"][segs]), _num(s["y2"][segs]), _num(s["end_z"][segs]))
    radius = np.maximum(net.seg_size_m[segs] / 2, MIN_RADIUS_M)
    fids = np.arange(len(segs), dtype=np.uint32)
    placed = np.isfinite(start).all(axis=1) & np.isfinite(end).all(axis=1)  # rows kept with QC errors may lack heights
    colours = np.array([_colour(c, t) for c, t in zip(s["category"][segs], s["subtype"][segs], strict=True)],
                       dtype=np.int64).reshape(-1, 3)
    out: dict[tuple[int, int, int], list[Mesh]] = {}

    def add(colour: tuple[int, int, int], mesh: Mesh) -> None:
        out.setdefault(colour, []).append(mesh)

    keys = [tuple(int(v) for v in c) for c in np.unique(colours, axis=0)] if len(segs) else []
    for colour in keys:
        m = np.all(colours == np.array(colour), axis=1) & placed
        if simplified:
            add(colour, simplified_segments(start[m], end[m], radius[m], fids[m]))
            continue
        rect = m & net.seg_rect[segs]
        circ = m & ~net.seg_rect[segs]
        if circ.any():
            add(colour, pipe_cylinders(start[circ], end[circ], radius[circ], fids[circ], sides=sides))
        if rect.any():
            add(colour, pipe_boxes(start[rect], end[rect], net.seg_width_m[segs][rect],
                                   net.seg_size_m[segs][rect], fids[rect]))
    if len(pts) and not simplified:
        top = frame.to_local(_num(p["x"][pts]), _num(p["y"][pts]), net.pt_top[pts])
        bottom = frame.to_local(_num(p["x"][pts]), _num(p["y"][pts]), net.pt_bottom[pts])
        pfids = np.arange(len(segs), len(segs) + len(pts), dtype=np.uint32)
        pcol = np.array([_colour(c, t) for c, t in zip(p["category"][pts], p["subtype"][pts], strict=True)],
                        dtype=np.int64).reshape(-1, 3)
        chamber = net.pt_chamber[pts]
        for colour in [tuple(int(v) for v in c) for c in np.unique(pcol, axis=0)]:
            m = np.all(pcol == np.array(colour), axis=1)
            if (m & chamber).any():
                c = m & chamber
                add(colour, vertical_cylinders(top[c, :2], top[c, 2], bottom[c, 2], np.full(c.sum(), 0.5), pfids[c],
                                               sides=sides))
            if (m & ~chamber).any():
                c = m & ~chamber
                centre = top[c].copy()
                centre[:, 2] -= 0.6  # appurtenances sit just under the cover
                add(colour, symbols(centre, np.full(c.sum(), 0.4), pfids[c]))
    return [(Mesh.concat(ms), colour) for colour, ms in out.items()]


def _important(net: _Network, segs: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` largest pipes (by section, then length) among ``segs``, in feature order."""
    if len(segs) <= budget:
        return segs
    score = net.seg_size_m[segs] * 1000 + np.nan_to_num(_num(net.seg["length_3d"][segs])) / 1000
    keep = np.argpartition(-score, budget)[:budget]
    return np.sort(segs[keep])


def _lonlat_bounds(bounds: tuple[float, float, float, float], storage_crs: str) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = bounds
    lon, lat = to_lonlat(np.array([minx, maxx, minx, maxx]), np.array([miny, miny, maxy, maxy]), storage_crs)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def build_pipe_tileset(
    store: DuckDBStore,
    out_dir: Path,
    *,
    storage_crs: str,
    geoid: GeoidModel,
    options: TilingOptions | None = None,
) -> BuildResult:
    """Write (or refresh) ``out_dir/tileset.json`` and its ``tiles/*.glb`` from the store's pipe network."""
    plan = plan_build(store, out_dir, storage_crs=storage_crs, geoid=geoid, options=options)
    root_json = _tile_json(plan.root, plan.net, plan.out_dir, plan.opts, storage_crs, geoid, None, plan.old_tiles,
                           plan.manifest, plan.result)
    return finish_build(plan, root_json, geoid)


@dataclass
class BuildPlan:
    """A build before any tile is written: the network, its quadtree and the previous build's manifest."""

    out_dir: Path
    opts: TilingOptions
    net: _Network
    root: Cell
    old_tiles: dict[str, Any]
    manifest: dict[str, Any]
    result: BuildResult


def plan_build(store: DuckDBStore, out_dir: Path, *, storage_crs: str, geoid: GeoidModel,
               options: TilingOptions | None = None) -> BuildPlan:
    """Load the current pipe network and lay out the quadtree (what every build, serial or distributed, shares)."""
    opts = options or TilingOptions()
    out_dir = Path(out_dir)
    (out_dir / "tiles").mkdir(parents=True, exist_ok=True)
    seg, pts = _load(store, opts.datasets)
    net = _Network(seg, pts)
    net.compress = opts.compress
    ix, iy = net.item_xy()
    root = split(root_cell(ix, iy), ix, iy, capacity=opts.leaf_capacity, max_level=opts.max_level)
    manifest_path = out_dir / "manifest.json"
    old = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    old_tiles = old.get("tiles", {}) if old.get("build_version") == BUILD_VERSION else {}
    manifest: dict[str, Any] = {"build_version": BUILD_VERSION, "storage_crs": storage_crs, "geoid": geoid.name,
                                "tiles": {}}
    return BuildPlan(out_dir, opts, net, root, old_tiles, manifest, BuildResult(out_dir, 0, 0, 0, net.ns + net.np, 0))


def finish_build(plan: BuildPlan, root_json: dict[str, Any], geoid: GeoidModel) -> BuildResult:
    """Write tileset.json and manifest.json (atomically), drop tiles no longer in the tree, total the bytes."""
    out_dir, root, manifest = plan.out_dir, plan.root, plan.manifest
    tileset = {
        "asset": {"version": "1.1", "generator": "cim-service", "extras": {
            "gltfExtensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
            "heights": "ellipsoidal, from 1985 normal heights + geoid " + geoid.name}},
        # the error of not drawing the root at all: never tiny, or clients skip a one-tile tileset from afar
        "geometricError": max(root.size / 8.0, root_json["geometricError"] * 2, 16.0),
        "root": root_json,
    }
    write_atomic(out_dir / "tileset.json", json.dumps(tileset, ensure_ascii=False, indent=1))
    for key in set(plan.old_tiles) - set(manifest["tiles"]):
        (out_dir / "tiles" / f"{key}.glb").unlink(missing_ok=True)
    write_atomic(out_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False))
    plan.result.bytes = sum(f.stat().st_size for f in (out_dir / "tiles").glob("*.glb"))
    return plan.result


def write_atomic(path: Path, text: str) -> None:
    """Write a text file so readers see the old or the new content, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: ``hook(cell, parent_matrix)`` may return a tile's JSON in place of building it (distributed builds)
TileHook = Callable[[Cell, "np.ndarray | None"], "dict[str, Any] | None"]


def _tile_json(
    cell: Cell, net: _Network, out_dir: Path, opts: TilingOptions, storage_crs: str, geoid: GeoidModel,
    parent_matrix: np.ndarray | None, old_tiles: dict, manifest: dict, result: BuildResult,
    hook: TileHook | None = None,
) -> dict[str, Any]:
    if hook is not None and (given := hook(cell, parent_matrix)) is not None:
        return given
    items = cell.items
    segs = items[items < net.ns]
    pts = items[items >= net.ns] - net.ns
    leaf = not cell.children
    if not leaf:
        segs, pts = _important(net, segs, opts.parent_budget), pts[:0]
    zs = np.concatenate([_num(net.seg["start_z"][segs]), _num(net.seg["end_z"][segs]), net.pt_top[pts],
                         net.pt_bottom[pts]]) if len(segs) + len(pts) else np.array([0.0])
    zs = zs[np.isfinite(zs)] if np.isfinite(zs).any() else np.array([0.0])
    cx, cy = (cell.bounds[0] + cell.bounds[2]) / 2, (cell.bounds[1] + cell.bounds[3]) / 2
    frame = LocalFrame.at(cx, cy, float(np.mean(zs)), storage_crs, geoid)
    west, south, east, north = _lonlat_bounds(cell.bounds, storage_crs)
    n_here = geoid.undulation(np.array([(west + east) / 2]), np.array([(south + north) / 2]))[0]
    margin = 3.0 + float(np.nanmax(net.seg_size_m[segs])) if len(segs) else 3.0
    tile: dict[str, Any] = {
        "boundingVolume": {"region": region_bounds(west, south, east, north, float(zs.min()) + n_here - margin,
                                                   float(zs.max()) + n_here + margin)},
        "geometricError": 0.0 if leaf else max(cell.size / 32.0, 1.0),
        "refine": "REPLACE",
        "transform": relative_transform(frame.matrix, parent_matrix),
    }
    result.tiles += 1
    if len(segs) + len(pts):
        kind = "leaf" if leaf else "simplified"
        digest = _digest(net, segs, pts, kind)
        path = out_dir / "tiles" / f"{cell.key}.glb"
        manifest["tiles"][cell.key] = {"digest": digest, "segments": int(len(segs)), "points": int(len(pts)),
                                       "bounds": list(cell.bounds)}
        if old_tiles.get(cell.key, {}).get("digest") == digest and path.is_file():
            result.skipped += 1
        else:
            parts = _meshes(net, frame, segs, pts, simplified=not leaf, sides=opts.sides)
            write_glb(path, parts, _table(net, segs, pts), compress=opts.compress)
            result.written += 1
            result.keys_written.append(cell.key)
        tile["content"] = {"uri": f"tiles/{cell.key}.glb"}
    if cell.children:
        tile["children"] = [
            _tile_json(c, net, out_dir, opts, storage_crs, geoid, frame.matrix, old_tiles, manifest, result, hook)
            for c in cell.children
        ]
    return tile


