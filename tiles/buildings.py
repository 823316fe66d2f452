"""BIM buildings as an OGC 3D Tiles 1.1 tileset, read only from the store (current model of each BIM dataset).

Placement is the pipe tiler's, vertex by vertex: model origin + float32 offset → storage easting/northing and
1985 height → CGCS2000 lon/lat → ellipsoidal height through the geoid → ECEF → the tile's east-north-up frame
(tile ``transform``, relative to the parent's) → glTF y-up. A building and the pipes under its street
therefore meet to the millimetre.

Hierarchy: a *loose* quadtree over element footprints (bounds centres) on the stable grid of
:mod:`tiles.quadtree`, refined with ``ADD``. Every element is drawn exactly once, in the shallowest cell
on its path whose edge is at most ``promote_ratio`` × the element's size (leaves keep what is left), so slabs,
roofs and long walls stream first and windows, doors and furniture come in as the camera approaches. A tile's
``geometricError`` is the size (bounds diagonal) of the largest element below it — what is missing while its
children are not drawn — and 0 for leaves. A small building is one tile; a city is split by
``leaf_capacity``. Bounding volumes are ``region``s from the placed vertices (plus a 5 cm margin), each one
the union of its content and its children's.

Content: one feature per element (``_FEATURE_ID_0``, EXT_mesh_features) with an EXT_structural_metadata
table (``bim_element``: global_id, ifc_class, predefined_type, name, storey, dataset, version, materials,
is_external, load_bearing, fire_rating; flags are UINT8 1/0 with noData 255, as metadata booleans have no
noData). Triangles are flat shaded (one normal per face; a corner is shared only by coplanar triangles)
and materials double-sided, as authoring tools do not orient every face. Colour: the element's ``color``
(#RRGGBBAA), else a per-class palette (:data:`PALETTE`); anything with alpha < 255 (windows by default) is
an ``alphaMode: BLEND`` material of its own. ``IfcSpace`` is excluded unless ``include_spaces`` (then drawn
nearly transparent); openings and virtual elements are never drawn.

``manifest.json`` records each tile's digest (element ids, geometry hashes, model origin, emitted
properties, colours), so a rebuild rewrites only tiles whose elements changed; a new version of one building
touches only that building's tiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cim.crs import to_lonlat
from cim.errors import InvalidInputError, NotFoundError
from cim.heights import GeoidModel, to_ellipsoidal
from cim.store import DuckDBStore
from tiles.frames import LocalFrame, ecef_to_enu, geodetic_to_ecef, region_bounds, relative_transform
from tiles.glb import Column, PropertyTable, write_atomic, write_glb
from tiles.pipes import BuildResult
from tiles.quadtree import Cell, root_cell, split
from tiles.solids import Mesh

__all__ = [
    "PALETTE",
    "BuildingTilingOptions",
    "build_buildings_tileset",
    "common_properties",
    "element_colour",
    "parse_color",
]

log = logging.getLogger(__name__)

BUILD_VERSION = "1"  # bump when geometry or metadata layout changes: forces a full rebuild
CLASS_ID = "bim_element"
REGION_MARGIN_M = 0.05
_R_EARTH = 6_371_000.0

RGBA = tuple[int, int, int, int]
_Work = tuple[str, np.ndarray, str]  # tile key, its elements, their digest

#: Colours (sRGB 0..255 + alpha) by IFC class, used when an element has no ``color``.
PALETTE: dict[str, RGBA] = {
    "IfcWall": (222, 222, 216, 255),
    "IfcCurtainWall": (150, 185, 215, 140),
    "IfcSlab": (150, 150, 150, 255),
    "IfcRoof": (150, 72, 50, 255),
    "IfcWindow": (120, 170, 225, 100),
    "IfcDoor": (139, 90, 43, 255),
    "IfcColumn": (190, 190, 184, 255),
    "IfcBeam": (190, 190, 184, 255),
    "IfcMember": (176, 176, 170, 255),
    "IfcPlate": (176, 176, 170, 255),
    "IfcStair": (200, 196, 188, 255),
    "IfcStairFlight": (200, 196, 188, 255),
    "IfcRamp": (200, 196, 188, 255),
    "IfcRampFlight": (200, 196, 188, 255),
    "IfcRailing": (90, 90, 90, 255),
    "IfcCovering": (235, 232, 224, 255),
    "IfcFooting": (130, 130, 126, 255),
    "IfcPile": (130, 130, 126, 255),
    "IfcFurnishingElement": (181, 148, 106, 255),
    "IfcFurniture": (181, 148, 106, 255),
    "IfcFlowSegment": (80, 125, 170, 255),
    "IfcPipeSegment": (80, 125, 170, 255),
    "IfcDuctSegment": (150, 160, 170, 255),
    "IfcSpace": (110, 180, 255, 40),
}
ROOF_COLOUR: RGBA = PALETTE["IfcRoof"]  # also for IfcSlab ROOF
DEFAULT_COLOUR: RGBA = (200, 200, 200, 255)
NEVER_DRAWN = frozenset({"ifcopeningelement", "ifcopeningstandardcase", "ifcvirtualelement", "ifcannotation"})


@dataclass
class BuildingTilingOptions:
    """Knobs of the buildings tileset."""

    leaf_capacity: int = 2000  # elements per quadtree leaf
    max_level: int = 12
    promote_ratio: float = 8.0  # an element ≥ cell edge / ratio is drawn in that cell, not deeper
    include_spaces: bool = False  # IfcSpace volumes (drawn nearly transparent when included)
    fetch_batch: int = 20000  # elements whose meshes one store query brings in
    compress: bool = False  # EXT_meshopt_compression on vertex and index data


# ---------------------------------------------------------------------------------------------------
# colours and properties


def parse_color(text: str | None) -> RGBA | None:
    """``#RRGGBBAA`` or ``#RRGGBB`` → (r, g, b, a); ``None`` for missing or malformed text."""
    if not text:
        return None
    value = text.strip().lstrip("#")
    if len(value) not in (6, 8):
        return None
    try:
        channels = [int(value[i : i + 2], 16) for i in range(0, len(value), 2)]
    except ValueError:
        return None
    return (channels[0], channels[1], channels[2], channels[3] if len(channels) == 4 else 255)


def _base_class(ifc_class: str) -> str:
    for suffix in ("StandardCase", "ElementedCase"):
        if ifc_class.endswith(suffix) and len(ifc_class) > len(suffix):
            return ifc_class[: -len(suffix)]
    return ifc_class


def element_colour(color: str | None, ifc_class: str, predefined_type: str | None = None) -> RGBA:
    """The element's own colour, else the palette colour of its class (roof slabs as roofs)."""
    own = parse_color(color)
    if own is not None:
        return own
    base = _base_class(ifc_class)
    if base == "IfcSlab" and (predefined_type or "").upper() == "ROOF":
        return ROOF_COLOUR
    return PALETTE.get(base, DEFAULT_COLOUR)


def _flag(value: Any) -> int | None:
    """A property value as 1/0, ``None`` when unknown."""
    if isinstance(value, dict):  # {"value": ..., "type": ...} style
        for key in ("value", "nominal_value", "NominalValue", "wrappedValue"):
            if key in value:
                return _flag(value[key])
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        text = value.strip().strip(".").upper()
        if text in ("TRUE", "T", "YES", "Y", "1"):
            return 1
        if text in ("FALSE", "F", "NO", "N", "0"):
            return 0
    return None


def _label(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("value", "nominal_value", "NominalValue", "wrappedValue"):
            if key in value:
                return _label(value[key])
        return None
    if value is None or isinstance(value, list | dict):
        return None
    text = str(value).strip()
    return text or None


def common_properties(psets: str | dict | None, ifc_class: str) -> tuple[int | None, int | None, str | None]:
    """(IsExternal, LoadBearing, FireRating) from ``Pset_<Class>Common``, else from any ``Pset_*Common``."""
    if isinstance(psets, str):
        try:
            psets = json.loads(psets)
        except json.JSONDecodeError:
            return None, None, None
    if not isinstance(psets, dict):
        return None, None, None
    own = f"Pset_{_base_class(ifc_class)[3:]}Common"
    names = [own] if isinstance(psets.get(own), dict) else []
    names += sorted(n for n in psets if n != own and n.startswith("Pset_") and n.endswith("Common")
                    and isinstance(psets[n], dict))
    found: dict[str, Any] = {}
    for name in names:
        for key in ("IsExternal", "LoadBearing", "FireRating"):
            if key not in found and psets[name].get(key) is not None:
                found[key] = psets[name][key]
    return _flag(found.get("IsExternal")), _flag(found.get("LoadBearing")), _label(found.get("FireRating"))


# ---------------------------------------------------------------------------------------------------
# loading


_SELECT = """
    SELECT e.dataset_id, e.version, e.global_id, e.ifc_class, e.predefined_type, e.name, e.storey_name,
           array_to_string(e.materials, '; ') AS materials, CAST(e.psets AS VARCHAR) AS psets, e.color,
           e.minx, e.miny, e.minz, e.maxx, e.maxy, e.maxz, m.origin_x, m.origin_y, m.origin_h,
           md5(e.mesh_positions || e.mesh_indices) AS mesh_md5
    FROM bim_elements e
    JOIN datasets d ON d.id = e.dataset_id AND d.current_version = e.version AND d.kind = 'bim'
    LEFT JOIN bim_models m ON m.dataset_id = e.dataset_id AND m.version = e.version
    WHERE e.mesh_positions IS NOT NULL AND e.mesh_indices IS NOT NULL AND octet_length(e.mesh_indices) >= 12
      {where}
    ORDER BY e.dataset_id, e.global_id"""

_TEXT_COLUMNS = ("dataset_id", "global_id", "ifc_class", "predefined_type", "name", "storey_name",
                 "materials", "psets", "color", "mesh_md5")


class _Elements:
    """The tiled elements' store rows (without meshes) and what tiling derives from them."""

    def __init__(self, rows: list[tuple], names: list[str]) -> None:
        cols = {n: [r[i] for r in rows] for i, n in enumerate(names)}
        self.n = len(rows)
        self.text = {n: [None if v is None or v == "" else str(v) for v in cols[n]] for n in _TEXT_COLUMNS}
        self.version = np.array(cols["version"], dtype=np.int64)
        nan = float("nan")
        bounds = [[nan if v is None else float(v) for v in cols[c]]
                  for c in ("minx", "miny", "minz", "maxx", "maxy", "maxz")]
        self.bounds = np.array(bounds, dtype="f8").T.reshape(-1, 6)
        self.origin = np.array([[float(v) for v in cols[c]] for c in ("origin_x", "origin_y", "origin_h")],
                               dtype="f8").T.reshape(-1, 3)
        self.colour = [element_colour(c, k, p) for c, k, p in zip(
            self.text["color"], self.text["ifc_class"], self.text["predefined_type"], strict=True)]
        flags = [common_properties(p, k)
                 for p, k in zip(self.text["psets"], self.text["ifc_class"], strict=True)]
        self.is_external = [f[0] for f in flags]
        self.load_bearing = [f[1] for f in flags]
        self.fire_rating = [f[2] for f in flags]

    def centre(self) -> tuple[np.ndarray, np.ndarray]:
        """Plan position (bounds centre) of every element."""
        return (self.bounds[:, 0] + self.bounds[:, 3]) / 2, (self.bounds[:, 1] + self.bounds[:, 4]) / 2

    def size(self) -> np.ndarray:
        """Bounds diagonal of every element (m): the error of not drawing it."""
        return np.linalg.norm(self.bounds[:, 3:] - self.bounds[:, :3], axis=1)


def _load(store: DuckDBStore, datasets: list[str] | None, opts: BuildingTilingOptions) -> _Elements:
    con = store.read()
    if datasets:
        known = dict(con.execute("SELECT id, kind FROM datasets WHERE id IN (SELECT unnest($ds))",
                                 {"ds": datasets}).fetchall())
        for ds in datasets:
            if ds not in known:
                raise NotFoundError(f"dataset {ds!r} does not exist")
            if known[ds] != "bim":
                raise InvalidInputError(f"dataset {ds!r} is a {known[ds]} dataset, not a BIM model")
    excluded = set(NEVER_DRAWN) | (set() if opts.include_spaces else {"ifcspace"})
    where = "AND lower(e.ifc_class) NOT IN (SELECT unnest($skip))"
    params: dict[str, Any] = {"skip": sorted(excluded)}
    if datasets:
        where += " AND e.dataset_id IN (SELECT unnest($ds))"
        params["ds"] = datasets
    cur = con.execute(_SELECT.format(where=where), params)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    unplaced = sorted({(r[0], r[1]) for r in rows if None in r[16:19]})
    if unplaced:
        listed = ", ".join(f"{d} v{v}" for d, v in unplaced)
        if datasets:
            raise InvalidInputError(
                f"BIM models without an origin (bim_models.origin_x/y/h) cannot be placed: {listed}")
        log.warning("skipping BIM models without an origin: %s", listed)
        rows = [r for r in rows if None not in r[16:19]]
    if not rows:
        scope = ", ".join(datasets) if datasets else "the store"
        raise NotFoundError(f"no BIM elements with meshes to tile in {scope}")
    elements = _Elements(rows, names)
    missing = np.flatnonzero(~np.isfinite(elements.bounds).all(axis=1))
    if len(missing):  # bounds are optional in the store: take them from the meshes
        for start in range(0, len(missing), opts.fetch_batch):
            chunk = missing[start : start + opts.fetch_batch]
            for i, (pos, _) in zip(chunk, _fetch_meshes(store, elements, chunk), strict=True):
                p = pos + elements.origin[i]
                elements.bounds[i] = [*p.min(axis=0), *p.max(axis=0)]
    finite = np.isfinite(elements.bounds).all(axis=1) & np.isfinite(elements.origin).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        where = f"BIM element {elements.text['global_id'][i]} of {elements.text['dataset_id'][i]}"
        count = int((~finite).sum())
        raise InvalidInputError(f"{where}: non-finite bounds or model origin ({count} such elements)")
    return elements


def _fetch_meshes(
    store: DuckDBStore, el: _Elements, items: np.ndarray
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(model-relative float64 positions (n, 3), uint32 triangles (m, 3)) of each of ``items``, in order."""
    keys = {"ds": [el.text["dataset_id"][i] for i in items], "v": [int(el.version[i]) for i in items],
            "gid": [el.text["global_id"][i] for i in items], "k": list(range(len(items)))}
    rows = store.read().execute(
        """SELECT k.k, e.mesh_positions, e.mesh_indices
           FROM (SELECT unnest($ds) AS dataset_id, unnest($v) AS version, unnest($gid) AS global_id,
                        unnest($k) AS k) k
           JOIN bim_elements e USING (dataset_id, version, global_id) ORDER BY k.k""",
        keys,
    ).fetchall()
    if len(rows) != len(items):
        raise InvalidInputError("BIM elements changed in the store while tiling; run the build again")
    for (_k, pos_blob, idx_blob), i in zip(rows, items, strict=True):
        where = f"BIM element {el.text['global_id'][i]} of {el.text['dataset_id'][i]} v{el.version[i]}"
        if len(pos_blob) % 12 or len(idx_blob) % 12:
            raise InvalidInputError(f"{where}: mesh blobs are not whole float32/uint32 triples "
                                    f"({len(pos_blob)} and {len(idx_blob)} bytes)")
        pos = np.frombuffer(pos_blob, dtype="<f4").reshape(-1, 3).astype("f8")
        tri = np.frombuffer(idx_blob, dtype="<u4").reshape(-1, 3)
        if not np.isfinite(pos).all():
            raise InvalidInputError(f"{where}: mesh positions are not finite")
        if len(tri) and int(tri.max()) >= len(pos):
            raise InvalidInputError(
                f"{where}: triangle index {int(tri.max())} beyond its {len(pos)} vertices")
        yield pos, tri


# ---------------------------------------------------------------------------------------------------
# hierarchy


def _assign(
    cell: Cell, size: np.ndarray, placed: np.ndarray, ratio: float, homes: dict[str, np.ndarray]
) -> None:
    """Give every element of ``cell``'s subtree one home: the first cell on its path it is large for."""
    free = cell.items[~placed[cell.items]]
    here = free if not cell.children else free[size[free] * ratio >= cell.size]
    placed[here] = True
    if len(here):
        homes[cell.key] = np.sort(here)
    for child in cell.children:
        _assign(child, size, placed, ratio, homes)


def _digest(
    el: _Elements, items: np.ndarray, storage_crs: str, geoid: str, opts: BuildingTilingOptions
) -> str:
    h = hashlib.sha1(f"{BUILD_VERSION}|{storage_crs}|{geoid}|{opts.include_spaces}|{opts.compress}".encode())
    for i in items:
        parts = [el.text[c][i] for c in ("dataset_id", "global_id", "mesh_md5", "ifc_class",
                                          "predefined_type", "name", "storey_name", "materials")]
        parts += [int(el.version[i]), *map(float, el.origin[i]), el.colour[i], el.is_external[i],
                  el.load_bearing[i], el.fire_rating[i]]
        h.update(("\x1f".join(repr(p) for p in parts) + "\x1e").encode())
    return h.hexdigest()


def _table(el: _Elements, items: np.ndarray) -> PropertyTable:
    def text(col: str) -> list[str | None]:
        return [el.text[col][i] for i in items]

    flag = "1 true, 0 false, 255 unknown"
    columns = {
        "global_id": Column("STRING", None, text("global_id"), description="IFC GlobalId"),
        "ifc_class": Column("STRING", None, text("ifc_class")),
        "predefined_type": Column("STRING", None, text("predefined_type")),
        "name": Column("STRING", None, text("name")),
        "storey": Column("STRING", None, text("storey_name"), description="building storey name"),
        "dataset": Column("STRING", None, text("dataset_id")),
        "version": Column("SCALAR", "INT32", [int(el.version[i]) for i in items],
                          description="model version"),
        "materials": Column("STRING", None, text("materials"), description="material names joined by '; '"),
        "is_external": Column("SCALAR", "UINT8", [el.is_external[i] for i in items], no_data=255,
                              description=f"Pset_*Common.IsExternal: {flag}"),
        "load_bearing": Column("SCALAR", "UINT8", [el.load_bearing[i] for i in items], no_data=255,
                               description=f"Pset_*Common.LoadBearing: {flag}"),
        "fire_rating": Column("STRING", None, [el.fire_rating[i] for i in items],
                              description="Pset_*Common.FireRating"),
    }
    return PropertyTable(count=len(items), columns=columns)


# ---------------------------------------------------------------------------------------------------
# content


@dataclass
class _Content:
    """What one written (or unchanged) tile holds: its region and frame origin."""

    region: list[float]
    centre: list[float]  # storage x, y and 1985 height of the tile frame origin


def _frame_centre(el: _Elements, items: np.ndarray) -> list[float]:
    b = el.bounds[items]
    return [float((b[:, 0].min() + b[:, 3].max()) / 2), float((b[:, 1].min() + b[:, 4].max()) / 2),
            float(b[:, 2].min())]


def _place(
    points: np.ndarray, storage_crs: str, geoid: GeoidModel, frame: LocalFrame
) -> tuple[np.ndarray, list[float]]:
    """Absolute storage points (n, 3) → ENU in ``frame`` and the region (with margin) they span."""
    lon, lat = to_lonlat(points[:, 0], points[:, 1], storage_crs)
    h = to_ellipsoidal(geoid, lon, lat, points[:, 2])
    enu = ecef_to_enu(geodetic_to_ecef(lon, lat, h), frame.matrix)
    dlat = math.degrees(REGION_MARGIN_M / _R_EARTH)
    dlon = dlat / max(math.cos(math.radians(float(np.abs(lat).max()))), 1e-6)
    region = region_bounds(float(lon.min()) - dlon, float(lat.min()) - dlat, float(lon.max()) + dlon,
                           float(lat.max()) + dlat, float(h.min()) - REGION_MARGIN_M,
                           float(h.max()) + REGION_MARGIN_M)
    return enu, region


def _faceted(enu: np.ndarray, tri: np.ndarray, fid: np.ndarray) -> Mesh | None:
    """Flat-shaded mesh of triangles ``tri`` (m, 3) over ``enu`` with per-triangle feature ids ``fid``.

    Corners are shared only by triangles of the same vertex and (to 1/1024) the same face normal, so
    coplanar faces stay welded and every crease stays sharp. Zero-area triangles are dropped.
    """
    corners = enu[tri]  # (m, 3, 3)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normal, axis=1)
    keep = length > 1e-12
    if not keep.any():
        return None
    tri, fid, normal = tri[keep], fid[keep], normal[keep] / length[keep, None]
    q = np.rint(normal * 1024).astype(np.int64) + 1024
    _, cluster = np.unique((q[:, 0] * 2049 + q[:, 1]) * 2049 + q[:, 2], return_inverse=True)
    clusters = int(cluster.max()) + 1
    keys = tri.astype(np.int64) * clusters + cluster.reshape(-1, 1)
    unique, first, inverse = np.unique(keys.reshape(-1), return_index=True, return_inverse=True)
    return Mesh(enu[unique // clusters], np.repeat(normal, 3, axis=0)[first].astype(np.float32),
                inverse.reshape(-1).astype(np.uint32), np.repeat(fid, 3)[first].astype(np.uint32))


def _write_tile(path: Path, el: _Elements, items: np.ndarray, meshes: list[tuple[np.ndarray, np.ndarray]],
                storage_crs: str, geoid: GeoidModel, compress: bool) -> _Content | None:
    """Write one tile's .glb; ``None`` (and no file) when its elements have no drawable triangle."""
    centre = _frame_centre(el, items)
    frame = LocalFrame.at(*centre, storage_crs, geoid)
    absolute = np.concatenate([pos + el.origin[i] for (pos, _), i in zip(meshes, items, strict=True)])
    enu, region = _place(absolute, storage_crs, geoid, frame)
    starts = np.cumsum([0] + [len(pos) for pos, _ in meshes[:-1]])
    tri = np.concatenate([t + s for (_, t), s in zip(meshes, starts, strict=True)]).astype(np.int64)
    counts = [len(t) for _, t in meshes]
    fid = np.repeat(np.arange(len(items)), counts)
    colour_of = {rgba: n for n, rgba in enumerate(dict.fromkeys(el.colour[i] for i in items))}
    colour = np.repeat([colour_of[el.colour[i]] for i in items], counts)
    parts = []
    for rgba, n in colour_of.items():
        mesh = _faceted(enu, tri[colour == n], fid[colour == n])
        if mesh is not None:
            parts.append((mesh, rgba))
    if not parts:
        log.warning("tile %s: its %d BIM elements have no non-degenerate triangle", path.stem, len(items))
        path.unlink(missing_ok=True)
        return None
    write_glb(path, parts, _table(el, items), class_id=CLASS_ID, compress=compress, double_sided=True)
    return _Content(region, centre)


# ---------------------------------------------------------------------------------------------------
# the tileset


def build_buildings_tileset(
    store: DuckDBStore,
    out_dir: Path,
    *,
    storage_crs: str,
    geoid: GeoidModel,
    datasets: list[str] | None = None,
    options: BuildingTilingOptions | None = None,
) -> BuildResult:
    """Write (or refresh) ``out_dir/tileset.json`` and ``tiles/*.glb`` from the store's current BIM models.

    ``datasets`` limits the tileset to those BIM datasets (default: every one). Raises NotFoundError when a
    named dataset does not exist or nothing is left to tile, InvalidInputError for a non-BIM dataset, a
    model without an origin (when named) or a corrupt mesh.
    """
    opts = options or BuildingTilingOptions()
    out_dir = Path(out_dir)
    (out_dir / "tiles").mkdir(parents=True, exist_ok=True)
    el = _load(store, datasets, opts)
    cx, cy = el.centre()
    size = el.size()
    root = split(root_cell(cx, cy), cx, cy, capacity=opts.leaf_capacity, max_level=opts.max_level)
    homes: dict[str, np.ndarray] = {}
    _assign(root, size, np.zeros(el.n, dtype=bool), opts.promote_ratio, homes)

    manifest_path = out_dir / "manifest.json"
    old = _read_manifest(manifest_path)
    old_tiles = old.get("tiles", {}) if old.get("build_version") == BUILD_VERSION else {}
    result = BuildResult(out_dir, 0, 0, 0, el.n, 0)
    manifest: dict[str, Any] = {"build_version": BUILD_VERSION, "storage_crs": storage_crs,
                                "geoid": geoid.name, "options": asdict(opts), "tiles": {}}
    contents: dict[str, _Content] = {}
    to_write: list[_Work] = []
    for key, items in homes.items():
        digest = _digest(el, items, storage_crs, geoid.name, opts)
        entry = old_tiles.get(key, {})
        manifest["tiles"][key] = {"digest": digest, "elements": int(len(items)),
                                  "datasets": sorted({el.text["dataset_id"][i] for i in items})}
        fresh = entry.get("digest") == digest and "region" in entry
        if fresh and (out_dir / "tiles" / f"{key}.glb").is_file():
            contents[key] = _Content(entry["region"], entry["centre"])
            result.skipped += 1
        else:
            to_write.append((key, items, digest))
    for batch in _batches(to_write, opts.fetch_batch):
        items_all = np.concatenate([items for _, items, _ in batch])
        meshes = list(_fetch_meshes(store, el, items_all))
        start = 0
        for key, items, _ in batch:
            content = _write_tile(out_dir / "tiles" / f"{key}.glb", el, items,
                                  meshes[start : start + len(items)], storage_crs, geoid, opts.compress)
            start += len(items)
            if content is None:
                continue
            contents[key] = content
            result.written += 1
            result.keys_written.append(key)
    manifest["tiles"] = {key: manifest["tiles"][key] | {"region": content.region, "centre": content.centre}
                         for key in homes if (content := contents.get(key))}  # nothing drawable: left out

    root_json = _tile_json(root, el, size, homes, contents, storage_crs, geoid)
    if root_json is None:
        raise NotFoundError("none of the BIM elements has a drawable triangle")
    _set_transforms(root_json, None, result)
    tileset = {
        "asset": {"version": "1.1", "generator": "cim-service", "extras": {
            "gltfExtensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
            "heights": "ellipsoidal, from 1985 normal heights + geoid " + geoid.name}},
        # the error of not drawing the root at all: never tiny, or clients skip a one-tile tileset from afar
        "geometricError": max(root.size / 8.0, float(size.max()) * 2, root_json["geometricError"] * 2, 16.0),
        "root": root_json,
    }
    write_atomic(out_dir / "tileset.json", json.dumps(tileset, ensure_ascii=False, indent=1).encode("utf-8"))
    for key in set(old_tiles) - set(manifest["tiles"]):
        (out_dir / "tiles" / f"{key}.glb").unlink(missing_ok=True)
    write_atomic(manifest_path, json.dumps(manifest, ensure_ascii=False).encode("utf-8"))
    result.bytes = sum((out_dir / "tiles" / f"{key}.glb").stat().st_size for key in contents)
    return result


def _read_manifest(path: Path) -> dict[str, Any]:
    """The previous build's manifest; empty (a full rebuild) when missing or unreadable."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("manifest %s is unreadable: rebuilding every tile", path)
        return {}
    return old if isinstance(old, dict) and isinstance(old.get("tiles", {}), dict) else {}


def _batches(work: list[_Work], limit: int) -> Iterable[list[_Work]]:
    """Consecutive groups of tiles holding at most ``limit`` elements (or one tile)."""
    batch: list[_Work] = []
    count = 0
    for item in work:
        if batch and count + len(item[1]) > limit:
            yield batch
            batch, count = [], 0
        batch.append(item)
        count += len(item[1])
    if batch:
        yield batch


def _union(regions: list[list[float]]) -> list[float]:
    r = np.array(regions)
    return [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
            float(r[:, 4].min()), float(r[:, 5].max())]


def _tile_json(
    cell: Cell, el: _Elements, size: np.ndarray, homes: dict[str, np.ndarray], contents: dict[str, _Content],
    storage_crs: str, geoid: GeoidModel,
) -> dict[str, Any] | None:
    """The tile of ``cell`` and its subtree (absolute frame in ``_matrix``); ``None`` when nothing is drawn.

    A tile without content and with one child is left out (the child takes its place).
    """
    content = contents.get(cell.key)
    children = [tile for tile in (_tile_json(child, el, size, homes, contents, storage_crs, geoid)
                                  for child in cell.children) if tile is not None]
    if content is None and len(children) <= 1:
        return children[0] if children else None
    centre = content.centre if content is not None else _frame_centre(el, cell.items)
    below = [homes[c.key] for c in cell.walk() if c is not cell and c.key in homes]
    regions = [c["boundingVolume"]["region"] for c in children]
    if content is not None:
        regions.append(content.region)
    tile: dict[str, Any] = {
        "boundingVolume": {"region": _union(regions)},
        "geometricError": float(size[np.concatenate(below)].max()) if below else 0.0,
        "refine": "ADD",
        "_matrix": LocalFrame.at(*centre, storage_crs, geoid).matrix,
    }
    if content is not None:
        tile["content"] = {"uri": f"tiles/{cell.key}.glb"}
    if children:
        tile["children"] = children
    return tile


def _set_transforms(tile: dict[str, Any], parent: np.ndarray | None, result: BuildResult) -> None:
    """Replace each tile's absolute ``_matrix`` by its ``transform`` relative to its parent's; count tiles."""
    matrix = tile.pop("_matrix")
    fields = list(tile.items())
    tile.clear()
    for key, value in fields:  # transform right after refine, before content and children
        tile[key] = value
        if key == "refine":
            tile["transform"] = relative_transform(matrix, parent)
    result.tiles += 1
    for child in tile.get("children", []):
        _set_transforms(child, matrix, result)
