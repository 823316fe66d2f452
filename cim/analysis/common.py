"""What every pipe analysis shares: the spatial frame, user geometries, dataset choice and GeoJSON output.

Analyses are plain functions over the store (no HTTP). They take geometries from users in any CRS
PROJ knows (GeoJSON's default is CRS84 lon/lat), work in the storage CRS (metres, 1985 heights), and
hand results back as JSON-ready dicts and GeoJSON whose positions are CGCS2000 lon/lat with
ellipsoidal heights (1985 height + geoid) — the frame of the 3D Tiles, so the viewer can draw them.

Example::

    frame = Frame.from_settings(get_settings())
    pit = read_geometry({"type": "Polygon", "coordinates": [...]}, "CRS84", frame)
    fc = feature_collection([Located(pit_3d, {"role": "excavation"})], frame)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from cim.crs import get_crs, to_lonlat, transform_xy
from cim.errors import CRSError, InvalidInputError, NotFoundError, OutOfRegionError
from cim.heights import GeoidModel, get_geoid, to_ellipsoidal
from cim.region import Region, diagnose
from cim.settings import Settings
from cim.store import DuckDBStore

CRS84 = "OGC:CRS84"

#: Geometry types accepted by name, by analysis input kind.
POLYGONAL = ("Polygon", "MultiPolygon")
LINEAR = ("LineString",)


@dataclass(frozen=True)
class Frame:
    """The deployment's spatial frame: storage CRS, geoid and region (for input checks)."""

    storage_crs: str
    geoid: GeoidModel
    region: Region

    @classmethod
    def from_settings(cls, settings: Settings, geoid: GeoidModel | None = None) -> Frame:
        """The frame of ``settings`` (geoid loaded unless given)."""
        return cls(settings.storage_crs, geoid or get_geoid(settings.geoid, settings.geoid_path),
                   Region(settings.region_name, tuple(settings.region_bbox)))

    def place(self, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Storage easting/northing + 1985 heights → lon, lat, ellipsoidal height (NaN stays NaN)."""
        x, y, h = (np.asarray(v, dtype="f8") for v in (x, y, h))
        if not len(x):
            return x, y, h
        lon, lat = to_lonlat(x, y, self.storage_crs)
        return lon, lat, to_ellipsoidal(self.geoid, lon, lat, h)


def read_geometry(
    geometry: dict[str, Any] | str | BaseGeometry,
    crs: str | None,
    frame: Frame,
    *,
    kinds: Sequence[str] = POLYGONAL,
    field_name: str = "geometry",
) -> BaseGeometry:
    """A user geometry (GeoJSON dict/text or WKT) in ``crs`` (default CRS84) as a 2D shapely geometry in the
    storage CRS.

    Raises:
        InvalidInputError: not parseable, wrong type, empty, not finite, or an invalid polygon.
        CRSError: ``crs`` is unknown.
        OutOfRegionError: a vertex lies outside the region; the message names the likely mistake (a polygon
            given in the wrong CRS, swapped axes, a missing zone prefix).
    """
    geom = _parse(geometry, field_name)
    if geom.geom_type not in kinds:
        raise InvalidInputError(f"{field_name} must be a {' or '.join(kinds)}, got a {geom.geom_type}",
                                field=field_name)
    if geom.is_empty:
        raise InvalidInputError(f"{field_name} is empty", field=field_name)
    xy = shapely.get_coordinates(geom)
    if not np.isfinite(xy).all():
        raise InvalidInputError(f"{field_name} has coordinates that are not finite numbers", field=field_name)
    crs_text = crs or CRS84
    try:
        get_crs(crs_text)
    except CRSError as exc:
        raise CRSError(f"{field_name}: {exc}", field="crs", value=crs_text) from None
    if get_crs(crs_text).is_geographic and (np.abs(xy) > 360).any():
        raise OutOfRegionError(
            f"{field_name} has coordinates like ({xy[0, 0]:.6g}, {xy[0, 1]:.6g}), which are metres, not degrees "
            f"of {crs_text}: give the CRS they are in (e.g. crs={frame.storage_crs}) or lon/lat",
            field=field_name)
    inside = frame.region.contains(xy[:, 0], xy[:, 1], crs_text)
    if not inside.all():
        x, y = xy[int(np.argmin(inside))]
        raise OutOfRegionError(
            f"{field_name} vertex ({x:.6g}, {y:.6g}) in {crs_text} is outside {frame.region.name}: "
            f"{diagnose(float(x), float(y), crs_text, frame.region)}",
            field=field_name,
        )
    out = shapely.transform(geom, lambda c: np.column_stack(transform_xy(c[:, 0], c[:, 1], crs_text,
                                                                          frame.storage_crs)))
    out = shapely.force_2d(out)
    if not out.is_valid:
        raise InvalidInputError(f"{field_name} is not a valid {out.geom_type}: "
                                f"{shapely.is_valid_reason(out)}", field=field_name)
    return out


def _parse(geometry: dict[str, Any] | str | BaseGeometry, field_name: str) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        return geometry
    try:
        if isinstance(geometry, str):
            text = geometry.strip()
            if text.startswith("{"):
                geometry = json.loads(text)
            else:
                return shapely.from_wkt(text)
        if isinstance(geometry, dict) and geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        return shapely.geometry.shape(geometry)
    except Exception as exc:  # noqa: BLE001 - shapely/json raise many types for bad input
        raise InvalidInputError(f"{field_name} is not a GeoJSON geometry or WKT: {exc}", field=field_name) from None


#: Dataset kinds that hold a pipe network.
PIPE_KINDS = ("pipe_survey", "water_model", "drainage_model")


def pipe_datasets(store: DuckDBStore) -> list[str]:
    """Ids of the datasets holding a pipe network (from the catalogue: no scan of the feature tables)."""
    cur = store.read()
    try:
        return [r[0] for r in cur.execute(
            f"SELECT id FROM datasets WHERE kind IN ({', '.join('?' * len(PIPE_KINDS))}) ORDER BY id",
            list(PIPE_KINDS)).fetchall()]
    finally:
        cur.close()


def pick_dataset(store: DuckDBStore, dataset: str | None) -> str:
    """``dataset`` checked to exist, or the only pipe dataset in the store.

    Raises:
        NotFoundError: the dataset does not exist, or the store holds no pipe network.
        InvalidInputError: no dataset named and several hold pipes.
    """
    if dataset:
        store.get_dataset(dataset)
        return dataset
    ids = pipe_datasets(store)
    if not ids:
        raise NotFoundError("the store holds no pipe network: ingest a survey first")
    if len(ids) > 1:
        raise InvalidInputError(f"several datasets hold pipes ({', '.join(ids)}): name one", field="dataset")
    return ids[0]


@dataclass
class Located:
    """A result item: a geometry in the storage CRS (Z = 1985 height, or 2D) and its properties."""

    geometry: BaseGeometry
    properties: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


def to_lonlat_geometry(geom: BaseGeometry, frame: Frame) -> dict[str, Any]:
    """GeoJSON geometry of ``geom`` (storage CRS) in lon/lat (+ ellipsoidal height when every vertex has a
    finite Z; otherwise 2D, since GeoJSON has no "unknown height")."""
    has_z = bool(shapely.has_z(geom)) and bool(np.isfinite(shapely.get_coordinates(geom, include_z=True)[:, 2]).all())

    def move(c: np.ndarray) -> np.ndarray:
        z = c[:, 2] if has_z else np.full(len(c), np.nan)
        lon, lat, h = frame.place(c[:, 0], c[:, 1], z)
        lon, lat, h = np.round(lon, 9), np.round(lat, 9), np.round(h, 3)
        return np.column_stack([lon, lat, h]) if has_z else np.column_stack([lon, lat])

    return shapely.geometry.mapping(shapely.transform(geom, move, include_z=has_z))


def feature_collection(items: Iterable[Located], frame: Frame, **members: Any) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (lon/lat/ellipsoidal h) of ``items``; ``members`` are added at top level."""
    features = []
    for i, item in enumerate(items):
        features.append({"type": "Feature", "id": item.id if item.id is not None else str(i),
                         "geometry": to_lonlat_geometry(item.geometry, frame),
                         "properties": clean(item.properties)})
    return {"type": "FeatureCollection", "features": features, **members}


def clean(value: Any) -> Any:
    """``value`` made JSON-safe: NaN/inf → None, numpy scalars → Python, tuples → lists; floats keep 9 decimals
    (float noise gone; degrees keep sub-millimetre precision, so lon/lat may pass through here)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else None
    return value
