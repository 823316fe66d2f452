"""Queries over the stored pipe network for clients: search by id, QC findings with positions, ground grid.

Plain functions over the store (no HTTP): the API serves them, the CLI or a notebook can call them. Positions
leave as CGCS2000 lon/lat with ellipsoidal heights (1985 height + geoid), the frame of the 3D Tiles.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from cim.crs import to_lonlat
from cim.errors import InvalidInputError, NotFoundError
from cim.heights import GeoidModel, to_ellipsoidal
from cim.store import DuckDBStore


def _place(x: np.ndarray, y: np.ndarray, h: np.ndarray, storage_crs: str, geoid: GeoidModel
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Storage easting/northing + 1985 heights → lon, lat, ellipsoidal height (NaN where unknown)."""
    x, y, h = (np.asarray(v, dtype="f8") for v in (x, y, h))
    if not len(x):
        return x, y, h
    lon, lat = to_lonlat(x, y, storage_crs)
    return lon, lat, to_ellipsoidal(geoid, lon, lat, h)


def _num(v: float) -> float | None:
    return round(float(v), 9 if abs(v) < 360 else 3) if math.isfinite(v) else None


#: Current features with a representative position: points at their cover, segments at their midpoint.
_LOCATED = """
    SELECT dataset_id, feature_id, point_id AS code, 'point' AS kind, category, x, y, ground_h AS h
    FROM pipe_points WHERE version_to IS NULL
    UNION ALL
    SELECT dataset_id, feature_id, line_id, 'segment', category,
           (ST_X(ST_StartPoint(geom)) + ST_X(ST_EndPoint(geom))) / 2,
           (ST_Y(ST_StartPoint(geom)) + ST_Y(ST_EndPoint(geom))) / 2, (start_z + end_z) / 2
    FROM pipe_segments WHERE version_to IS NULL"""


def search_features(store: DuckDBStore, q: str, *, storage_crs: str, geoid: GeoidModel, limit: int = 20
                    ) -> list[dict[str, Any]]:
    """Current pipe points and segments whose feature id or point/line id equals or starts with ``q``
    (case-insensitive), exact matches first, each with lon/lat/ellipsoidal height for a fly-to."""
    q = q.strip()
    if not q:
        raise InvalidInputError("the search needs an id (or the start of one)", field="q")
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT * FROM ({_LOCATED}) WHERE starts_with(upper(feature_id), upper($q))
                   OR starts_with(upper(coalesce(code, '')), upper($q))
                ORDER BY (upper(feature_id) = upper($q) OR upper(coalesce(code, '')) = upper($q)) DESC,
                         length(feature_id), feature_id LIMIT $n""",
            {"q": q, "n": limit},
        ).fetchall()
    finally:
        cur.close()
    lon, lat, h = _place(np.array([r[5] for r in rows]), np.array([r[6] for r in rows]),
                         np.array([np.nan if r[7] is None else r[7] for r in rows]), storage_crs, geoid)
    return [{"id": r[1], "dataset": r[0], "kind": r[3], "category": r[4], "lon": _num(lon[i]),
             "lat": _num(lat[i]), "height": _num(h[i])} for i, r in enumerate(rows)]


def qc_findings_geojson(store: DuckDBStore, *, storage_crs: str, geoid: GeoidModel,
                        dataset: str | None = None) -> dict[str, Any]:
    """QC findings of each dataset's current version, located at the feature they name (GeoJSON, lon/lat/h)."""
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT f.dataset_id, f.rule_id, f.severity, f.message, f.feature_id, f.field, f.value,
                       f.file, f.row, loc.kind, loc.category, loc.x, loc.y, loc.h
                FROM qc_findings f
                JOIN datasets d ON d.id = f.dataset_id AND d.current_version = f.version
                JOIN ({_LOCATED}) loc ON loc.dataset_id = f.dataset_id AND loc.feature_id = f.feature_id
                WHERE CAST($ds AS VARCHAR) IS NULL OR f.dataset_id = $ds
                ORDER BY f.dataset_id, f.severity, f.rule_id, f.feature_id""",
            {"ds": dataset},
        ).fetchall()
    finally:
        cur.close()
    lon, lat, h = _place(np.array([r[11] for r in rows]), np.array([r[12] for r in rows]),
                         np.array([np.nan if r[13] is None else r[13] for r in rows]), storage_crs, geoid)
    features = []
    for i, r in enumerate(rows):
        coords = [_num(lon[i]), _num(lat[i])] + ([_num(h[i])] if math.isfinite(h[i]) else [])
        features.append({
            "type": "Feature", "id": f"{r[0]}/{r[1]}/{r[4]}/{i}",
            "geometry": {"type": "Point", "coordinates": coords},
            "properties": {"rule_id": r[1], "severity": r[2], "message": r[3], "feature_id": r[4], "field": r[5],
                           "value": r[6], "file": r[7], "row": r[8], "kind": r[9], "category": r[10],
                           "dataset": r[0]},
        })
    return {"type": "FeatureCollection", "features": features}


def ground_grid(store: DuckDBStore, *, storage_crs: str, geoid: GeoidModel, size: int = 33) -> dict[str, Any]:
    """The surveyed ground as a ``size``×``size`` grid of ellipsoidal heights over the pipe points' ``extent``
    (plus a 10 % margin), inverse-distance weighted from the 8 nearest points' ground elevations; rows run
    north to south, columns west to east (heightmap order)."""
    cur = store.read()
    try:
        x, y, h = (cur.execute(
            "SELECT x, y, ground_h FROM pipe_points WHERE version_to IS NULL AND isfinite(ground_h)"
            " AND isfinite(x) AND isfinite(y)").fetchnumpy()[c] for c in ("x", "y", "ground_h"))
    finally:
        cur.close()
    if not len(x):
        raise NotFoundError("the store holds no pipe points with a ground elevation")
    lon, lat, hh = _place(x, y, h, storage_crs, geoid)
    pad_lon = max((lon.max() - lon.min()) * 0.1, 2e-4)
    pad_lat = max((lat.max() - lat.min()) * 0.1, 2e-4)
    west, east = lon.min() - pad_lon, lon.max() + pad_lon
    south, north = lat.min() - pad_lat, lat.max() + pad_lat
    k = math.cos(math.radians(float(lat.mean())))  # degrees of longitude are shorter: compare in "lat degrees"
    gx, gy = np.meshgrid(np.linspace(west, east, size), np.linspace(north, south, size))
    dist, idx = cKDTree(np.column_stack([lon * k, lat])).query(
        np.column_stack([gx.ravel() * k, gy.ravel()]), k=min(8, len(lon)))
    dist, idx = dist.reshape(len(gx.ravel()), -1), idx.reshape(len(gx.ravel()), -1)
    w = 1.0 / np.maximum(dist, 1e-9) ** 2
    grid = (w * hh[idx]).sum(axis=1) / w.sum(axis=1)
    return {"west": float(west), "south": float(south), "east": float(east), "north": float(north),
            "extent": [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())],
            "width": size, "height": size, "heights": [round(float(v), 3) for v in grid],
            "min": round(float(hh.min()), 3), "max": round(float(hh.max()), 3), "geoid": geoid.name}


# -- routers (factories with injectable seams) ---------------------------------------------------------------
