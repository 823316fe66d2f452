"""Element meshes: IfcOpenShell's geometry iterator (world coordinates, every core), then storage placement.

:func:`triangulate` yields one :class:`Mesh` per element in the project frame (metres, as IfcOpenShell
writes them) and the reason for each element whose geometry failed. :func:`place` moves all vertices to
the storage CRS through the :class:`~converters.ifc.georef.Georeference` in one PROJ call and packs each
mesh as ``cim/bim/schema.py`` describes: float32 (x, y, z) relative to the model origin, uint32 indices,
plus 3D bounds, a plan footprint (convex hull, WKB) and a geometry hash.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from converters.ifc.georef import Georeference

#: beyond this distance (m) from the project origin, float32 offsets lose sub-millimetre precision,
#: so the model origin moves to the centre of the model
ORIGIN_MAX_M = 4096.0
_ID = re.compile(r"#(\d+)\s*=")
_BODY_IDS = {None, "", "Body", "Facetation", "Body-Fallback", "Mesh", "Surface"}
#: context types IfcOpenShell's iterator triangulates by default
_MODEL_CONTEXTS = {"", "model", "design", "model view", "detail view"}
_NO_SOLID_TYPES = {"Curve2D", "Curve3D", "GeometricCurveSet", "Annotation2D", "Point", "PointCloud", "Curve"}
#: TEST HOOK ONLY: when set, the geometry loop sleeps for ever on reaching the product with this GlobalId,
#: standing in for a solid the geometry kernel never finishes (see tests/converters/ifc/test_geometry_budget.py)
HANG_ENV = "CIM_IFC_HANG_GLOBALID"


@dataclass
class Mesh:
    """One element's triangles in the project frame (metres), with its dominant surface colour."""

    step_id: int
    verts: np.ndarray  # (n, 3) float64
    faces: np.ndarray  # (m, 3) uint32
    color: str | None = None


@dataclass
class PlacedMesh:
    """One element's mesh in storage form."""

    positions: bytes  # float32 LE (x, y, z) relative to the model origin
    indices: bytes  # uint32 LE
    bounds: tuple[float, float, float, float, float, float]  # storage CRS, absolute
    footprint: bytes | None  # WKB, storage CRS
    geometry_hash: str
    vertices: int
    triangles: int
    color: str | None = None  # #RRGGBBAA


def expects_geometry(product: Any) -> bool:
    """True when a product has a 3D body representation the iterator should turn into a mesh."""
    shape = getattr(product, "Representation", None)
    if shape is None:
        return False
    for rep in shape.Representations or ():
        ctx = rep.ContextOfItems
        if ctx is not None and (getattr(ctx, "ContextType", None) or "").lower() not in _MODEL_CONTEXTS:
            continue
        if rep.RepresentationIdentifier in _BODY_IDS and rep.RepresentationType not in _NO_SOLID_TYPES:
            return True
    return False


def _color(geometry: Any) -> str | None:
    """#RRGGBBAA of the style covering most triangles, None when no IFC style applies."""
    ids = np.asarray(geometry.material_ids, dtype=np.int64)
    ids = ids[ids >= 0]
    if ids.size == 0 or not len(geometry.materials):
        return None
    style = geometry.materials[int(np.bincount(ids).argmax())]
    try:
        r, g, b = (float(c) for c in style.diffuse.components)
    except Exception:  # noqa: BLE001 - a style without a diffuse colour
        return None
    alpha = 1.0 - (float(style.transparency) if np.isfinite(style.transparency) else 0.0)
    return "#" + "".join(f"{round(min(max(v, 0.0), 1.0) * 255):02X}" for v in (r, g, b, alpha))


def _settings() -> Any:
    import ifcopenshell.geom

    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    s.set("apply-default-materials", False)
    s.set("no-normals", True)
    s.set("weld-vertices", True)
    return s


def triangulate(
    model: Any,
    products: list[Any],
    *,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_shape: Callable[[int, Mesh | None], None] | None = None,
) -> tuple[dict[int, Mesh], dict[int, str]]:
    """Meshes by step id for ``products`` that expect geometry, and a failure reason by step id.

    ``on_shape`` is told of every product the iterator finishes (its mesh, None when it has no triangles)
    as soon as it is finished, so a watcher keeps them if the iterator later stalls.
    """
    import ifcopenshell.geom
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    wanted = [p for p in products if expects_geometry(p)]
    meshes: dict[int, Mesh] = {}
    if not wanted:
        return meshes, {}
    wrapper.set_log_format_json()
    wrapper.get_log()  # drop earlier messages
    it = ifcopenshell.geom.iterator(
        _settings(), model, threads or multiprocessing.cpu_count(), include=wanted
    )
    started, last = time.monotonic(), time.monotonic()
    hang = os.environ.get(HANG_ENV)
    if it.initialize():
        while True:
            shape = it.get()
            if hang and shape.guid == hang:
                _hang()
            g = shape.geometry
            verts = np.frombuffer(g.verts_buffer, dtype="<f8").reshape(-1, 3).copy()
            faces = np.frombuffer(g.faces_buffer, dtype="<i4").reshape(-1, 3).astype(np.uint32)
            if verts.size and faces.size:
                meshes[shape.id] = Mesh(shape.id, verts, faces, _color(g))
            if on_shape:
                on_shape(shape.id, meshes.get(shape.id))
            if progress and time.monotonic() - last > 2.0:
                last = time.monotonic()
                progress(f"geometry {len(meshes)}/{len(wanted)} ({last - started:.0f} s)")
            if not it.next():
                break
    failed = [p for p in wanted if p.id() not in meshes]
    return meshes, _failure_reasons(failed, wrapper.get_log()) if failed else {}


def _hang() -> None:
    """The :data:`HANG_ENV` test hook: never return (the worker's geometry budget must end it)."""
    while True:
        time.sleep(3600)


def _failure_reasons(failed: list[Any], log: str) -> dict[int, str]:
    """Reason per failed product, from IfcOpenShell's JSON log (first error naming it or its shapes)."""
    errors: dict[int, str] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") != "error":
            continue
        for key in ("product", "instance"):
            m = _ID.match(str(entry.get(key, "")))
            if m:
                errors.setdefault(
                    int(m.group(1)),
                    f"{entry.get('code', '')} {entry.get('message', '')}".strip() + f" {entry.get(key)}",
                )
    out = {}
    for p in failed:
        ids = [p.id()]
        for rep in p.Representation.Representations or ():
            ids.append(rep.id())
            ids += [item.id() for item in rep.Items or ()]
        reason = next((errors[i] for i in ids if i in errors), None)
        out[p.id()] = reason or "IfcOpenShell produced no triangles for its body representation"
    return out


def place(
    meshes: dict[int, Mesh], georef: Georeference
) -> tuple[tuple[float, float, float], dict[int, PlacedMesh]]:
    """Model origin (storage CRS) and every mesh in storage form; one PROJ call for all vertices."""
    ox, oy, oh = (float(v[0]) for v in georef.to_storage([0.0], [0.0], [0.0]))
    if not meshes:
        return (ox, oy, oh), {}
    ids = list(meshes)
    counts = np.array([len(meshes[i].verts) for i in ids])
    world = georef.metres_to_storage(np.concatenate([meshes[i].verts for i in ids]))
    lo, hi = world.min(axis=0), world.max(axis=0)
    if np.abs(np.vstack([lo, hi]) - [ox, oy, oh]).max() > ORIGIN_MAX_M:
        ox, oy, oh = (float(np.round((a + b) / 2)) for a, b in zip(lo, hi, strict=True))
    origin = np.array([ox, oy, oh])
    placed: dict[int, PlacedMesh] = {}
    for i, part in zip(ids, np.split(world, np.cumsum(counts)[:-1]), strict=True):
        placed[i] = pack(part, meshes[i].faces, origin)
        placed[i].color = meshes[i].color
    return (ox, oy, oh), placed


def pack(world: np.ndarray, faces: np.ndarray, origin: np.ndarray) -> PlacedMesh:
    """Storage form of one mesh whose vertices ``world`` are absolute storage coordinates."""
    positions = np.ascontiguousarray(world - origin, dtype="<f4").tobytes()
    indices = np.ascontiguousarray(faces, dtype="<u4").tobytes()
    lo, hi = world.min(axis=0), world.max(axis=0)
    hull = shapely.convex_hull(shapely.multipoints(world[:, :2]))
    return PlacedMesh(
        positions=positions,
        indices=indices,
        bounds=(float(lo[0]), float(lo[1]), float(lo[2]), float(hi[0]), float(hi[1]), float(hi[2])),
        footprint=None if hull.is_empty else shapely.to_wkb(hull),
        geometry_hash=hashlib.sha256(positions + indices).hexdigest(),
        vertices=int(len(world)),
        triangles=int(len(faces)),
    )


def decode(positions: bytes, indices: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) float32 positions and (m, 3) uint32 triangles from the stored blobs."""
    return (
        np.frombuffer(positions, dtype="<f4").reshape(-1, 3),
        np.frombuffer(indices, dtype="<u4").reshape(-1, 3),
    )
