"""One LAS/LAZ file into the store: checked, converted to 3D Tiles with a query copy, then catalogued.

Example::

    result = ingest_pointcloud(Path("scan.laz"), store, settings, PointCloudOptions(dataset_id="scan"))
    result.metadata["density_per_m2"], result.version

Order of work: header checks and CRS (:mod:`converters.pointcloud.las`) → region check
(:func:`cim.realscene.catalogue.locate`) → conversion into a fresh build folder by the point-cloud tiler
(``python -m tiles.pointcloud JOB.json``, a separate process with its own worker pool: converters and tiles
meet only in files) → one store transaction (:func:`cim.realscene.catalogue.register`). A refusal or a failure
at any step leaves no catalogue row and no build folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.errors import CIMError, InvalidInputError
from cim.realscene.catalogue import locate, new_build_dir, register
from cim.settings import Settings
from cim.store import DatasetInfo
from converters.pointcloud.las import LasFacts, ResolvedCRS, gps_date, open_las, resolve_crs

#: Exit status of the tiler for refused input (``tiles.pointcloud.EXIT_INVALID_INPUT``).
TILER_INVALID_INPUT = 3

#: ASPRS classes (LAS 1.4 R15, table 17) by code, for reports.
ASPRS_CLASSES = {0: "never classified", 1: "unclassified", 2: "ground", 3: "low vegetation",
                 4: "medium vegetation", 5: "high vegetation", 6: "building", 7: "low point (noise)",
                 8: "model key-point", 9: "water", 10: "rail", 11: "road surface", 12: "overlap",
                 13: "wire – guard", 14: "wire – conductor", 15: "transmission tower", 16: "wire-structure connector",
                 17: "bridge deck", 18: "high noise"}


@dataclass(frozen=True)
class PointCloudOptions:
    """How to catalogue one file: id (default: the file name), title, CRS (overrides the file's), grade."""

    dataset_id: str | None = None
    title: str | None = None
    crs: str | None = None
    grade: str = "重要"
    secret: bool = False
    category: str = "时空基础数据"
    tiler: dict[str, Any] = field(default_factory=dict)  # tiles.pointcloud.TilerOptions fields
    timeout_s: float = 6 * 3600


@dataclass(frozen=True)
class PointCloudIngest:
    """What an ingest stored."""

    dataset_id: str
    version: int
    build_dir: Path
    metadata: dict[str, Any]
    tiles: dict[str, Any]  # the tiler's result (tiles.pointcloud.result_dict)


def default_id(path: Path) -> str:
    """A dataset id from a file name: ``Autzen Trim.laz`` → ``autzen_trim``."""
    stem = path.name.split(".")[0]
    return re.sub(r"[^0-9A-Za-z_\-\u4e00-\u9fff]+", "_", stem).strip("_").lower() or "pointcloud"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def facts_metadata(facts: LasFacts, crs: ResolvedCRS, tiles: dict[str, Any], content: str = "glb") -> dict[str, Any]:
    """The catalogue's ``metadata`` of a converted cloud (``tiles``: the tiler's result)."""
    acquired, source = None, None
    if tiles.get("gps_time"):
        d = gps_date(tiles["gps_time"][0], facts.adjusted_gps_time)
        if d is not None:
            acquired, source = d.isoformat(), "adjusted standard GPS time of the first point"
    if acquired is None and facts.creation_date is not None:
        acquired, source = facts.creation_date.isoformat(), "LAS header file creation date"
    classes = {int(k): int(v) for k, v in tiles["classes"].items()}
    return {
        **facts.as_metadata(), **crs.as_metadata(),
        "tileset": "tileset.json", "points_index": "points/index.json", "content": content,
        "tiles": tiles["tiles"], "tree_levels": tiles["levels"], "tiles_bytes": tiles["bytes"],
        "classification": {str(k): v for k, v in sorted(classes.items())},
        "classification_names": {str(k): ASPRS_CLASSES.get(k, "user-defined" if k >= 64 else "reserved")
                                 for k in sorted(classes)},
        "density_per_m2": float(f"{tiles['density']:.4g}"), "occupied_area_m2": round(tiles["occupied_m2"], 1),
        "density_cell_m": round(tiles["occupancy_cell_m"], 3),
        "acquisition_date": acquired, "acquisition_date_source": source,
        "intensity_max": tiles["intensity_max"], "rgb_bits": 16 if tiles["rgb_max"] > 255 else 8,
        "bbox_points_native": list(tiles["native_bounds"]),
        "gps_time": list(tiles["gps_time"]) if tiles.get("gps_time") else None,
        "placement_error_m": round(tiles["placement_error_m"], 5),
        "conversion_seconds": round(tiles["seconds"], 2),
    }


def run_tiler(job: dict[str, Any], work: Path, *, timeout_s: float = 6 * 3600, progress: Any = None,
              file: str | None = None) -> dict[str, Any]:
    """Run ``python -m tiles.pointcloud`` on ``job``; its result. Refused input raises
    :class:`InvalidInputError` with the tiler's message, other failures :class:`CIMError`."""
    job_file = work / ".job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "tiles.pointcloud", str(job_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last: list[str] = []
    try:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line.startswith("progress: ") and progress is not None:
                progress(line[len("progress: "):])
            elif line:
                last.append(line)
        out = proc.stdout.read()
        code = proc.wait(timeout=timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        job_file.unlink(missing_ok=True)
    if code == 0:
        return json.loads(out.strip().splitlines()[-1])
    message = last[-1] if last else f"exit status {code}"
    message = message[len("error: "):] if message.startswith("error: ") else message
    if code == TILER_INVALID_INPUT:
        message = message.split(": ", 1)[1] if file and message.startswith(f"file {file}: ") else message
        raise InvalidInputError(message, file=file)
    raise CIMError(f"the point-cloud tiler failed on {file}: {message}")


def ingest_pointcloud(path: str | Path, store: Any, settings: Settings,
                      options: PointCloudOptions | None = None, *, progress: Any = None) -> PointCloudIngest:
    """Check, convert and catalogue one LAS/LAZ file as a new version of a ``pointcloud`` dataset.

    Raises:
        InvalidInputError: a bad file (with its name and the problem), a missing CRS
            (:class:`~cim.errors.CRSMissingError`), data outside the region
            (:class:`~cim.errors.OutOfRegionError`); nothing is stored then.
    """
    options = options or PointCloudOptions()
    path = Path(path)
    facts = open_las(path)
    crs = resolve_crs(facts, options.crs)
    dataset_id = options.dataset_id or default_id(path)
    DatasetInfo(dataset_id, "", "pointcloud", settings.storage_crs, grade=options.grade).validate()
    native = (*facts.mins, *facts.maxs)
    extent = locate((native[0], native[1], native[2], native[3], native[4], native[5]), crs.horizontal, settings,
                    file=path.name)
    store_path = getattr(store, "path", None)
    build = new_build_dir(settings, dataset_id, store_path)
    try:
        job = {"source": {"path": str(path.resolve()), "crs_wkt": crs.horizontal.to_wkt(),
                          "z_to_metres": crs.z_to_metres, "ellipsoidal": crs.ellipsoidal, "geoid": settings.geoid,
                          "geoid_path": str(settings.geoid_path) if settings.geoid_path else None,
                          "units_per_metre": crs.units_per_metre},
               "out": str(build), "options": dict(options.tiler)}
        tiles = run_tiler(job, build, timeout_s=options.timeout_s, progress=progress, file=path.name)
        meta = facts_metadata(facts, crs, tiles, options.tiler.get("content", "glb"))
        lo, hi = tiles["native_bounds"][:3], tiles["native_bounds"][3:]
        if extent.storage is not None:  # heights in the storage extent: metres of the cloud's height system
            s = extent.storage
            extent = dataclasses.replace(extent, storage=(s[0], s[1], lo[2] * crs.z_to_metres, s[3], s[4],
                                                          hi[2] * crs.z_to_metres))
        info = DatasetInfo(
            dataset_id, options.title or path.name, "pointcloud", settings.storage_crs,
            source_crs=crs.crs.to_string() if crs.crs.to_epsg() else crs.crs.name,
            vertical_crs=crs.vertical_name or (settings.vertical_crs if _is_cgcs2000(crs) else None),
            category=options.category, grade=options.grade, secret=options.secret,
            provenance={"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path),
                        "software": facts.software or None},
            metadata=meta)
        version = register(store, info, extent, build,
                           sources=[{"file": path.name, "sha256": info.provenance["sha256"]}],
                           counts={"points": tiles["points"], "tiles": tiles["tiles"]})
    except BaseException:
        _discard(build)
        raise
    meta = {**meta, **extent.as_metadata(), "build": build.name}  # as the catalogue holds it
    return PointCloudIngest(dataset_id, version.version, build, meta, tiles)


def _is_cgcs2000(crs: ResolvedCRS) -> bool:
    """A CGCS2000 cloud without a vertical CRS carries 1985 national heights (the store's convention)."""
    datum = crs.horizontal.datum
    return datum is not None and "china 2000" in datum.name.lower()


def _discard(build: Path) -> None:
    """Remove a build folder, and its dataset folder when nothing else is in it."""
    shutil.rmtree(build, ignore_errors=True)
    try:
        build.parent.rmdir()
    except OSError:
        pass


def inspect(path: str | Path, crs: str | None = None) -> dict[str, Any]:
    """The header facts and resolved CRS of a file, without converting it (``cim pointcloud info``)."""
    facts = open_las(path)
    meta = facts.as_metadata()
    try:
        meta.update(resolve_crs(facts, crs).as_metadata())
    except InvalidInputError as exc:
        meta["crs_error"] = str(exc)
    meta["bbox_header"] = [*facts.mins, *facts.maxs]
    return meta
