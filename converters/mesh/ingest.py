"""Photogrammetry meshes (OSGB productions, OBJ, PLY) into a real-scene asset: a 3D Tiles 1.1 tileset.

Steps: georeference (``metadata.xml`` or given) → read the source into a mesh package in a staging
folder → extent and region check (nothing is created for data outside the region) → the mesh tiler
(``python -m tiles.mesh``, a separate process: converters and tiles meet only in files) writes
``tileset.json`` and ``tiles/*.glb`` into a fresh build folder → one catalogue transaction publishes it
(``kind="mesh"``, ``metadata["tileset"] = "tileset.json"``). Any failure removes the build folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from cim.errors import CIMError, CRSMissingError, InvalidInputError, UnsupportedError
from cim.realscene.catalogue import locate, new_build_dir, register
from cim.settings import Settings
from cim.store import DatasetInfo
from converters.mesh.metadata_xml import Georef, georef_from_args, parse_metadata_xml
from converters.mesh.model import MeshNode, PackageWriter
from converters.mesh.obj import read_obj
from converters.mesh.osgb import OsgbStats, read_tile, tile_roots
from converters.mesh.ply import read_ply


@dataclass
class MeshOptions:
    """How to ingest one mesh source."""

    dataset_id: str | None = None
    title: str | None = None
    grade: str = "重要"
    metadata: Path | None = None
    crs: str | None = None
    origin: str | None = None
    timeout_s: float = 1800.0


@dataclass
class MeshResult:
    """What an ingest stored."""

    dataset_id: str
    version: int
    counts: dict[str, Any]
    lonlat: tuple[float, float, float, float]
    notes: list[str] = field(default_factory=list)
    build_dir: Path | None = None


def source_format(path: Path) -> str:
    """``osgb`` (a production folder or a single .osgb), ``obj`` or ``ply``."""
    if path.is_dir():
        return "osgb"
    suffix = path.suffix.lower()
    if suffix in (".osgb", ".obj", ".ply"):
        return suffix[1:]
    if not path.exists():
        raise InvalidInputError("does not exist", file=str(path))
    raise UnsupportedError(f"{path.name}: not an OSGB production folder, .osgb, .obj or .ply file")


def georef_for(path: Path, options: MeshOptions) -> Georef:
    """The georeference: ``--metadata``, else ``--crs``/``--origin``, else a ``metadata.xml`` beside the data."""
    if options.metadata is not None:
        if options.crs:
            raise InvalidInputError("give either --metadata or --crs/--origin, not both", field="crs")
        return parse_metadata_xml(options.metadata)
    if options.crs:
        return georef_from_args(options.crs, options.origin)
    if options.origin:
        raise CRSMissingError("--origin needs --crs", field="crs")
    candidates = [path / "metadata.xml"] if path.is_dir() else [path.parent / "metadata.xml"]
    if path.suffix.lower() == ".osgb" and len(path.parents) > 2:  # <production>/Data/<Tile>/<file>.osgb
        candidates.append(path.parents[2] / "metadata.xml")
    for candidate in candidates:
        if candidate.is_file():
            return parse_metadata_xml(candidate)
    raise CRSMissingError("no georeference: no metadata.xml beside the data; give --metadata, or --crs "
                          "and --origin x,y,z", file=str(path))


def _read(path: Path, fmt: str, writer: PackageWriter, staging: Path, timeout_s: float) -> tuple[list[dict],
                                                                                                dict[str, Any]]:
    """Read the source into the package; return the root entries and format counts."""
    if fmt == "osgb":
        stats = OsgbStats()
        tiles = [(path.stem, path)] if path.is_file() else list(tile_roots(path))
        roots = []
        depth = 0
        for _, root_file in tiles:
            tree = read_tile(root_file, staging / "osgconv", stats, timeout_s=timeout_s,
                             sink=lambda part, f=root_file: writer.add_part(part, f.name, clamp=True))
            depth = max(depth, tree.depth())
            roots.append(writer.add_tree(tree, clamp=True))
            shutil.rmtree(staging / "osgconv", ignore_errors=True)
        counts = {"osgb_files": stats.files, "lod_nodes": stats.nodes, "lod_depth": depth,
                  "tiles_in_production": len(tiles), "missing_child_files": len(stats.missing_children)}
        return roots, counts
    parts = read_obj(path, convert_dir=staging / "converted") if fmt == "obj" else read_ply(path)
    if not parts:
        raise InvalidInputError("the mesh has no triangles", file=str(path))
    node = MeshNode(path.stem, parts)
    return [writer.add_tree(node)], {"lod_nodes": 1, "lod_depth": 1}


def _extent_crs(georef: Georef) -> CRS:
    if georef.enu is not None:  # the tangent plane at the ENU origin: orthographic on the ellipsoid
        lat, lon = georef.enu
        return CRS.from_proj4(f"+proj=ortho +lat_0={lat} +lon_0={lon} +ellps=GRS80 +units=m +no_defs")
    assert georef.crs is not None
    return georef.crs


def ingest_mesh(path: str | Path, store: Any, settings: Settings, options: MeshOptions | None = None) -> MeshResult:
    """Convert a mesh source into a catalogued 3D Tiles tileset (see the module docstring)."""
    options = options or MeshOptions()
    path = Path(path)
    fmt = source_format(path)
    georef = georef_for(path, options)
    dataset_id = options.dataset_id or path.stem
    DatasetInfo(dataset_id, "", "mesh", settings.storage_crs, grade=options.grade).validate()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cim-mesh-") as tmp:
        staging = Path(tmp)
        writer = PackageWriter(staging / "package")
        roots, counts = _read(path, fmt, writer, staging, options.timeout_s)
        if not np.isfinite(writer.bbox_min).all():
            raise InvalidInputError("the mesh has no vertices", file=str(path))
        origin = np.asarray(georef.origin, dtype="f8")
        native = (*(writer.bbox_min + origin), *(writer.bbox_max + origin))
        extent = locate(native, _extent_crs(georef), settings, file=str(path))
        writer.finish(roots, {
            "crs": georef.crs.to_wkt() if georef.crs is not None else None,
            "enu": list(georef.enu) if georef.enu else None, "origin": list(georef.origin),
            "geoid": settings.geoid, "geoid_path": str(settings.geoid_path) if settings.geoid_path else None,
            "bbox_local": [*map(float, writer.bbox_min), *map(float, writer.bbox_max)]})
        t_read = time.perf_counter() - t0
        build = new_build_dir(settings, dataset_id, getattr(store, "path", None))
        try:
            summary = _tile(staging / "package", build, options.timeout_s)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        counts.update(vertices=writer.vertices, triangles=writer.triangles, textures=writer.textures,
                      tiles=summary["tiles"], tileset_depth=summary["depth"], bytes=summary["bytes"],
                      read_s=round(t_read, 2), total_s=round(time.perf_counter() - t0, 2))
    info = DatasetInfo(
        dataset_id, options.title or dataset_id, "mesh", settings.storage_crs,
        source_crs=georef.crs.to_wkt() if georef.crs is not None else georef.describe(),
        vertical_crs=settings.vertical_crs, category="时空基础数据", grade=options.grade,
        metadata={"tileset": "tileset.json", "format": fmt, "srs": georef.describe(),
                  "srs_origin": list(georef.origin), "georef_source": georef.source,
                  "centre_lonlat": summary["lonlat"], "notes": georef.notes,
                  "geoid": settings.geoid})
    note = f"{fmt} mesh, {counts['lod_nodes']} LOD nodes, {counts['tiles']} tiles"
    version = register(store, info, extent, build, sources=[{"path": str(path), "format": fmt}], counts=counts,
                       note=note)
    notes = list(georef.notes)
    if counts.get("missing_child_files"):
        notes.append(f"{counts['missing_child_files']} PagedLOD child files are not in the production: "
                     "their parents are leaves")
    return MeshResult(dataset_id, version.version, counts, extent.lonlat, notes, build)


def _tile(package: Path, build: Path, timeout_s: float) -> dict[str, Any]:
    """Run the mesh tiler on the package, writing into ``build``."""
    try:
        done = subprocess.run([sys.executable, "-m", "tiles.mesh", str(package), str(build)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise CIMError(f"the mesh tiler did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise InvalidInputError(f"the mesh tiler failed: {lines[-1] if lines else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])
