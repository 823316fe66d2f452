"""Catalogue entries and file placement of real-scene assets.

Every asset lives in its own folder ``<assets root>/<dataset id>/<build id>/`` written completely before
the catalogue points at it (:func:`new_build_dir` then :func:`register`): a crash mid-conversion leaves
an unreferenced folder (still marked ``.building``), never a half-published asset. Publishing a build removes
the dataset's older published builds except the one it replaces. ``metadata["build"]`` names the current folder;
paths inside ``metadata`` (``tileset``, ``files``) are relative to it.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cim.crs import CRSLike, get_crs
from cim.errors import InvalidInputError, NotFoundError, OutOfRegionError
from cim.region import Region
from cim.settings import Settings
from cim.store import DatasetInfo, VersionInfo

#: File in a build folder while it is being written (removed when the build is published).
BUILDING_MARK = ".building"

#: Dataset kinds of real-scene assets (``raster`` carries ``metadata["role"]`` = ``dem`` or ``dom``).
REALSCENE_KINDS: tuple[str, ...] = ("pointcloud", "raster", "mesh", "tileset")

BBox3 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Extent:
    """Where an asset lies: its bbox in its own CRS, in lon/lat (CGCS2000 ≈ WGS 84 degrees) and in the
    storage CRS (``None`` where the storage CRS cannot hold it, e.g. far outside its zone)."""

    native: BBox3
    lonlat: tuple[float, float, float, float]
    storage: BBox3 | None

    def as_metadata(self) -> dict[str, Any]:
        return {"bbox_native": list(self.native), "bbox_lonlat": list(self.lonlat)}


def assets_root(settings: Settings, store_path: str | Path | None = None) -> Path:
    """The assets folder: ``settings.assets_dir``, else ``<store file>.assets`` beside the store.

    ``store_path`` is the open store's file (``store.path``); without it ``settings.store`` is used.
    """
    if settings.assets_dir is not None:
        return Path(settings.assets_dir)
    text = str(store_path or settings.store)
    if text.startswith("duckdb://"):
        text = text[len("duckdb://"):]
        text = text[1:] if text.startswith("/") else text
    if not text or text == ":memory:" or "://" in text:
        raise InvalidInputError("this store has no folder for real-scene assets: set CIM_ASSETS_DIR",
                                field="assets_dir")
    return Path(text + ".assets")


def locate(bbox: BBox3, crs: CRSLike, settings: Settings, *, file: str | None = None) -> Extent:
    """The asset's :class:`Extent`; raises :class:`OutOfRegionError` naming ``file`` when it lies outside
    the configured region (corners and edge midpoints are transformed, so rotated zones are covered)."""
    minx, miny, minz, maxx, maxy, maxz = (float(v) for v in bbox)
    if not all(np.isfinite([minx, miny, maxx, maxy])) or minx > maxx or miny > maxy:
        raise InvalidInputError(f"extent {bbox} is not a valid box", file=file)
    xs = np.array([minx, maxx, maxx, minx, (minx + maxx) / 2, maxx, (minx + maxx) / 2, minx, (minx + maxx) / 2])
    ys = np.array([miny, miny, maxy, maxy, miny, (miny + maxy) / 2, maxy, (miny + maxy) / 2, (miny + maxy) / 2])
    src = get_crs(crs)
    lon, lat = _to(src, "EPSG:4490", xs, ys)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise InvalidInputError(f"extent {bbox} cannot be placed on the earth in {src.name}", file=file)
    lonlat = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    region = Region(settings.region_name, settings.region_bbox)
    if not region.contains_lonlat(lon, lat).all():
        raise OutOfRegionError(
            f"the data lie at {lonlat[0]:.4f}–{lonlat[2]:.4f}°E, {lonlat[1]:.4f}–{lonlat[3]:.4f}°N, outside "
            f"{settings.region_name} {settings.region_bbox}: check the CRS (given or in the file)", file=file)
    sx, sy = _to(src, settings.storage_crs, xs, ys)
    storage = None
    if np.isfinite(sx).all() and np.isfinite(sy).all():
        storage = (float(sx.min()), float(sy.min()), minz, float(sx.max()), float(sy.max()), maxz)
    return Extent((minx, miny, minz, maxx, maxy, maxz), lonlat, storage)


def _to(src: Any, dst: CRSLike, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    t = Transformer.from_crs(src, get_crs(dst), always_xy=True)
    with np.errstate(all="ignore"):
        x, y = t.transform(xs, ys, errcheck=False)
    return np.asarray(x, dtype="f8"), np.asarray(y, dtype="f8")


def new_build_dir(settings: Settings, dataset_id: str, store_path: str | Path | None = None) -> Path:
    """A fresh, empty folder for one conversion of ``dataset_id`` (not yet referenced by the catalogue)."""
    DatasetInfo(dataset_id, "", "pointcloud", settings.storage_crs).validate()
    path = assets_root(settings, store_path) / dataset_id / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    (path / BUILDING_MARK).touch()
    return path


def register(store: Any, info: DatasetInfo, extent: Extent, build_dir: Path, *,
             sources: list[dict[str, Any]] | None = None, counts: dict[str, Any] | None = None,
             note: str | None = None) -> VersionInfo:
    """Publish a finished build: one store transaction points the catalogue at ``build_dir``.

    On failure the build folder is removed, so nothing is half-stored.
    """
    if info.kind not in REALSCENE_KINDS:
        raise InvalidInputError(f"kind {info.kind!r} is not a real-scene kind {REALSCENE_KINDS}")
    meta = {**info.metadata, **extent.as_metadata(), "build": build_dir.name}
    info = DatasetInfo(**{**info.__dict__, "metadata": meta})
    storage = extent.storage or (None,) * 6
    previous = _current_build(store, info.id)
    try:
        (build_dir / BUILDING_MARK).unlink(missing_ok=True)
        version = store.write_asset(info, extent=storage, sources=sources, counts=counts, note=note)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    _prune(build_dir, keep={build_dir.name, previous})
    return version


def _current_build(store: Any, dataset_id: str) -> str | None:
    from cim.store.duckdb_ import json_value

    try:
        row = store.get_dataset(dataset_id)
    except NotFoundError:
        return None
    return (json_value(row.get("metadata")) or {}).get("build")


def _prune(build_dir: Path, keep: set[str | None]) -> None:
    """Remove older builds of the dataset, keeping the new one and the one it replaced (readers may still be
    fetching its files)."""
    for old in build_dir.parent.iterdir():
        if old.is_dir() and old.name not in keep and not (old / BUILDING_MARK).exists():
            shutil.rmtree(old, ignore_errors=True)


def build_dir_of(settings: Settings, row: dict[str, Any], store_path: str | Path | None = None) -> Path:
    """The folder of a catalogued asset's current build (``row`` is a ``datasets`` row)."""
    from cim.store.duckdb_ import json_value

    meta = json_value(row.get("metadata")) or {}
    build = meta.get("build")
    if row.get("kind") not in REALSCENE_KINDS or not build:
        raise NotFoundError(f"dataset {row.get('id')!r} is not a real-scene asset")
    path = assets_root(settings, store_path) / str(row["id"]) / str(build)
    if not path.is_dir():
        raise NotFoundError(f"the files of dataset {row.get('id')!r} are missing ({path})")
    return path


def asset_rows(store: Any, kinds: tuple[str, ...] = REALSCENE_KINDS) -> list[dict[str, Any]]:
    """Catalogue rows of the real-scene assets of ``kinds``."""
    return [d for d in store.datasets() if d.get("kind") in kinds]
