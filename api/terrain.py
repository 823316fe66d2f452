"""Terrain (DEM rasters) on the web: Cesium quantized-mesh tiles and the ground elevation service.

``GET /api/terrain/{id}/layer.json`` and ``/api/terrain/{id}/{z}/{x}/{y}.terrain`` serve
:mod:`tiles.terrain` (ellipsoidal heights; ``octvertexnormals`` when the ``Accept`` header asks for it), so
``new Cesium.CesiumTerrainProvider.fromUrl("/api/terrain/{id}/")`` puts buildings and pipes on real ground.
``GET /api/terrain/{id}/elevation?points=lon,lat;lon,lat&crs=`` samples heights at points;
``POST /api/terrain/{id}/elevation`` with a GeoJSON LineString and a spacing gives a profile. Elevations are
1985 national heights (:mod:`cim.realscene.elevation`), ``null`` off the DEM or on nodata.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.realscene import asset_dir, asset_row
from cim.errors import InvalidInputError, NotFoundError
from cim.realscene.elevation import DEM, VERTICAL_DATUMS, dem_row_meta, normalise_datum, parse_points
from tiles.terrain import MEDIA_TYPE, TerrainSource, valid_tile

_SOURCES: dict[tuple[str, str], TerrainSource] = {}
_LOCK = threading.Lock()
Method = Literal["bilinear", "nearest"]


def _dem(request: Request, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The authorised DEM row and its metadata (404 for other rasters)."""
    row = asset_row(request, dataset, ("raster",))
    try:
        return row, dem_row_meta(row)
    except NotFoundError:
        raise NotFoundError(f"dataset {dataset!r} is not a DEM (terrain) raster") from None


def terrain_source(request: Request, dataset: str) -> TerrainSource:
    """The tile source of the DEM's current build (one per build, kept while the service runs)."""
    row, meta = _dem(request, dataset)
    key = (dataset, str(meta.get("build")))
    with _LOCK:
        source = _SOURCES.get(key)
    if source is None:
        folder = asset_dir(request, row)
        source = TerrainSource(folder / str(meta.get("file", "dem.tif")), normalise_datum(meta.get("vertical_datum")),
                               request.app.state.services.geoid, name=str(row.get("title") or dataset))
        with _LOCK:
            for old in [k for k in _SOURCES if k[0] == dataset]:
                del _SOURCES[old]
            _SOURCES[key] = source
    return source


def _elevation(request: Request, dataset: str) -> DEM:
    row, meta = _dem(request, dataset)
    services = request.app.state.services
    return DEM(asset_dir(request, row) / str(meta.get("file", "dem.tif")), dataset,
               normalise_datum(meta.get("vertical_datum")), services.geoid, services.settings.storage_crs)


class ProfileRequest(BaseModel):
    """A line to sample the ground along."""

    model_config = ConfigDict(extra="forbid")
    line: dict[str, Any] = Field(description="GeoJSON LineString (geometry or Feature)")
    crs: str | None = Field(None, description="CRS of the line (default CGCS2000 lon/lat)")
    spacing: float = Field(10.0, gt=0, le=10_000, description="Distance between stations (m, geodesic)")
    method: Method = "bilinear"


def _line_coords(line: dict[str, Any]) -> list[list[float]]:
    geom = line.get("geometry") if line.get("type") == "Feature" else line
    if not isinstance(geom, dict) or geom.get("type") != "LineString":
        raise InvalidInputError("line must be a GeoJSON LineString (or a Feature with one)", field="line")
    coords = geom.get("coordinates")
    if not isinstance(coords, list) or len(coords) < 2:
        raise InvalidInputError("a LineString needs at least two positions", field="line")
    try:
        return [[float(c[0]), float(c[1])] for c in coords]
    except (TypeError, ValueError, IndexError):
        raise InvalidInputError("LineString positions must be [x, y] numbers", field="line") from None


def _h(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 3)


def terrain_router() -> APIRouter:
    """The ``/api/terrain`` routes."""
    router = APIRouter(prefix="/api/terrain", tags=["terrain"])

    @router.get("/{dataset}/layer.json", operation_id="getTerrainLayer")
    def layer(dataset: str, request: Request) -> dict[str, Any]:
        row, meta = _dem(request, dataset)
        return terrain_source(request, dataset).layer_json(version=f"{row.get('current_version')}")

    @router.get("/{dataset}/{z}/{x}/{y}.terrain", operation_id="getTerrainTile",
                responses={200: {"content": {MEDIA_TYPE: {}}}})
    def tile(dataset: str, z: int, x: int, y: int, request: Request) -> Response:
        source = terrain_source(request, dataset)
        if not valid_tile(z, x, y):
            raise NotFoundError(f"no geographic-scheme tile {z}/{x}/{y}")
        normals = "octvertexnormals" in request.headers.get("accept", "")
        body = source.tile(z, x, y, normals=normals)
        return Response(body, media_type=MEDIA_TYPE, headers={"Cache-Control": "public, max-age=86400",
                                                              "Vary": "Accept"})

    @router.get("/{dataset}/elevation", operation_id="getElevation")
    def elevation(dataset: str, request: Request,
                  points: Annotated[str, Query(max_length=200_000, description="x,y;x,y (lon,lat by default)")],
                  crs: Annotated[str | None, Query(max_length=2000, description="CRS of the points")] = None,
                  method: Method = "bilinear") -> dict[str, Any]:
        dem = _elevation(request, dataset)
        xs, ys = parse_points(points)
        h = dem.sample(xs, ys, crs or "EPSG:4490", method)
        return {"dataset": dataset, "crs": crs or "EPSG:4490", "height_system": "EPSG:5737",
                "dem_vertical_datum": VERTICAL_DATUMS[dem.vertical_datum], "method": method,
                "points": [{"x": float(x), "y": float(y), "h": _h(v)} for x, y, v in zip(xs, ys, h, strict=True)]}

    @router.post("/{dataset}/elevation", operation_id="getElevationProfile")
    def profile(dataset: str, body: ProfileRequest, request: Request) -> dict[str, Any]:
        dem = _elevation(request, dataset)
        stations = dem.profile(_line_coords(body.line), body.crs or "EPSG:4490", body.spacing, body.method)
        known = [s["h"] for s in stations if s["h"] is not None]
        return {"dataset": dataset, "crs": body.crs or "EPSG:4490", "height_system": "EPSG:5737",
                "dem_vertical_datum": VERTICAL_DATUMS[dem.vertical_datum], "spacing": body.spacing,
                "method": body.method, "length": stations[-1]["distance"],
                "summary": {"stations": len(stations), "known": len(known),
                            "min_h": min(known) if known else None, "max_h": max(known) if known else None},
                "stations": stations}

    return router
