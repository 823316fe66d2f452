"""A GeoTIFF DEM or orthophoto into the real-scene catalogue: a Cloud-Optimized GeoTIFF in a fresh build folder.

Steps: check the file and read its facts (:mod:`converters.raster.geotiff`) → role (``dem``/``dom``, given or
from the bands) and, for a DEM, its vertical datum (from a compound CRS, given, else 1985 heights assumed) →
extent and region check → the COG copy (the file as it is when it already is a COG and needs no CRS;
otherwise GDAL's COG driver, lossless DEFLATE so served pixels equal the source) → one catalogue
transaction (``kind="raster"``, ``metadata["role"]``, ``metadata["file"]``). Any failure removes the
build folder: nothing is half-stored.

Example::

    result = ingest_raster(Path("dem.tif"), store, settings, RasterOptions(dataset_id="dem", role="dem"))
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.errors import InvalidInputError
from cim.realscene.catalogue import Extent, locate, new_build_dir, register
from cim.realscene.elevation import VERTICAL_DATUMS, normalise_datum
from cim.settings import Settings
from cim.store import DatasetInfo
from converters.raster.geotiff import RasterFacts, choose_role, dem_range, read_facts


@dataclass
class RasterOptions:
    """How to ingest one raster."""

    dataset_id: str | None = None
    title: str | None = None
    role: str | None = None
    crs: str | None = None
    vertical_datum: str | None = None
    grade: str = "重要"


@dataclass
class RasterResult:
    """What an ingest stored."""

    dataset_id: str
    version: int
    role: str
    facts: RasterFacts
    lonlat: tuple[float, float, float, float]
    build_dir: Path
    metadata: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _vertical(facts: RasterFacts, given: str | None, notes: list[str]) -> tuple[str, str]:
    """(datum key, where it came from) for a DEM."""
    if facts.vertical_epsg is not None:
        in_file = normalise_datum(facts.vertical_epsg)
        if given is not None and normalise_datum(given) != in_file:
            raise InvalidInputError(f"the file's CRS says heights are {in_file} but --vertical-datum {given} was "
                                    "given", file=str(facts.path), field="vertical_datum")
        return in_file, "file"
    if given is not None:
        return normalise_datum(given), "given"
    notes.append("the file names no vertical datum: heights taken as 1985 national heights (EPSG:5737); "
                 "give --vertical-datum otherwise")
    return "EPSG:5737", "assumed"


def _write_cog(facts: RasterFacts, role: str, out: Path) -> str:
    """The COG copy at ``out``; returns how it was made (``copied`` or ``converted``)."""
    import rasterio
    from rasterio.shutil import copy as rio_copy

    if facts.is_cog and not facts.crs_given:
        shutil.copy2(facts.path, out)
        return "copied"
    options: dict[str, Any] = {"driver": "COG", "compress": "DEFLATE", "blocksize": 256, "overviews": "AUTO",
                               "bigtiff": "IF_SAFER", "num_threads": "2"}
    if role == "dem":
        options.update(predictor="3" if facts.dtypes[0].startswith("float") else "2", resampling="BILINEAR")
    else:
        options.update(predictor="2", resampling="AVERAGE")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        if facts.crs_given:  # write the given CRS into a staging copy, then make the COG from it
            staged = out.with_suffix(".staged.tif")
            rio_copy(str(facts.path), str(staged), driver="GTiff")
            with rasterio.open(staged, "r+") as dst:
                dst.crs = rasterio.crs.CRS.from_wkt(facts.crs_wkt)
            rio_copy(str(staged), str(out), **options)
            staged.unlink()
        else:
            rio_copy(str(facts.path), str(out), **options)
    return "converted"


def ingest_raster(path: str | Path, store: Any, settings: Settings,
                  options: RasterOptions | None = None) -> RasterResult:
    """Check, copy as a COG and catalogue one GeoTIFF (see the module docstring)."""
    from rasterio.errors import RasterioError

    options = options or RasterOptions()
    path = Path(path)
    t0 = time.perf_counter()
    facts = read_facts(path, options.crs)
    role = choose_role(facts, options.role)
    dataset_id = options.dataset_id or path.stem
    DatasetInfo(dataset_id, "", "raster", settings.storage_crs, grade=options.grade).validate()
    notes = list(facts.notes)
    meta: dict[str, Any] = {"role": role, **facts.as_metadata()}
    zmin = zmax = 0.0
    vertical = None
    if role == "dem":
        datum, datum_from = _vertical(facts, options.vertical_datum, notes)
        zmin, zmax, valid = dem_range(path, facts.nodata)
        vertical = datum if datum.startswith("EPSG:") else None
        meta.update(vertical_datum=datum, vertical_datum_from=datum_from,
                    vertical_datum_name=VERTICAL_DATUMS[datum], height_range=[zmin, zmax], valid_cells=valid)
    elif options.vertical_datum is not None:
        raise InvalidInputError("--vertical-datum applies to DEMs only", field="vertical_datum")
    extent: Extent = locate((*facts.bounds[:2], zmin, *facts.bounds[2:], zmax), facts.crs_wkt, settings,
                            file=str(path))
    build = new_build_dir(settings, dataset_id, getattr(store, "path", None))
    name = f"{role}.tif"
    try:
        made = _write_cog(facts, role, build / name)
    except RasterioError as exc:
        shutil.rmtree(build, ignore_errors=True)
        raise InvalidInputError(f"cannot be copied as a Cloud-Optimized GeoTIFF (truncated or corrupt?): {exc}",
                                file=str(path)) from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    size = (build / name).stat().st_size
    meta.update(file=name, cog=made, bytes=size)
    info = DatasetInfo(dataset_id, options.title or dataset_id, "raster", settings.storage_crs,
                       source_crs=facts.crs_name, vertical_crs=vertical, category="时空基础数据", grade=options.grade,
                       metadata=meta)
    counts = {"width": facts.width, "height": facts.height, "bands": facts.count, "bytes": size,
              "total_s": round(time.perf_counter() - t0, 2)}
    note = f"{role.upper()} {facts.width}×{facts.height} {facts.dtypes[0]}, cells {facts.res[0]:g}, {made} as COG"
    version = register(store, info, extent, build, sources=[{"path": str(path), "format": "GeoTIFF",
                                                            "bytes": path.stat().st_size}],
                       counts=counts, note=note)
    return RasterResult(dataset_id, version.version, role, facts, extent.lonlat, build,
                        {**meta, **extent.as_metadata(), "build": build.name}, notes)
