"""``/api/pointclouds``: a point cloud's catalogue facts and spatial queries on its points.

* ``GET /api/pointclouds/{id}``: the facts (extent, CRS, heights, point count, classification histogram,
  density, acquisition date, tileset link).
* ``GET /api/pointclouds/{id}/points``: the points in ``bbox`` (``minx,miny,maxx,maxy[,minz,maxz]`` in
  ``crs``, default CRS84 lon/lat) or ``near`` a pipe point (manhole id) within ``radius`` metres; ``zmin``/
  ``zmax`` (m, the cloud's height system), ``classes=2,6``; ``count_only=true`` counts; ``f=json`` (columns),
  ``geojson`` (points with ellipsoidal heights, the 3D Tiles frame), ``csv`` or ``las`` (a download in the
  cloud's own CRS); at most ``limit`` points come back, ``matched`` says how many there are.
* ``POST /api/pointclouds/{id}/points``: the same with a GeoJSON ``polygon`` in the body.

Authorised like every real-scene asset (:func:`api.realscene.asset_row`): callers without full access to the
dataset get 404. ``near`` reads the pipe point through the caller's scoped store.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.realscene import asset_dir, asset_row
from api.security import scoped_services
from cim.errors import InvalidInputError
from cim.realscene.points import MAX_LIMIT, PointIndex, Region, pipe_point
from cim.store.duckdb_ import json_value

Format = Literal["json", "geojson", "csv", "las"]
KIND = ("pointcloud",)
#: Catalogue metadata keys shown as a cloud's facts.
FACTS = ("las_version", "point_format", "point_count", "compressed", "copc", "scales", "offsets", "has_rgb",
         "has_intensity", "has_gps_time", "extra_dimensions", "crs_name", "crs_source", "horizontal_crs",
         "heights", "crs_notes", "classification", "classification_names", "density_per_m2", "occupied_area_m2",
         "density_cell_m", "acquisition_date", "acquisition_date_source", "intensity_max", "rgb_bits",
         "bbox_lonlat", "bbox_native", "bbox_points_native", "tiles", "tree_levels", "content", "placement_error_m")


class PolygonQuery(BaseModel):
    """Points in a polygon."""

    model_config = ConfigDict(extra="forbid")
    polygon: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (or a Feature of one)")
    crs: str | None = Field(None, description="CRS of the polygon and of x/y output (default CRS84)")
    zmin: float | None = Field(None, description="Lowest height (m, the cloud's height system)")
    zmax: float | None = Field(None, description="Highest height (m)")
    classes: list[int] | None = Field(None, description="ASPRS classes to keep, e.g. [2, 6]")
    count_only: bool = False
    f: Format = "json"
    limit: int = Field(100_000, ge=0, le=MAX_LIMIT)


def _classes(text: str | None) -> set[int] | None:
    if not text:
        return None
    try:
        return {int(v) for v in text.split(",") if v.strip()}
    except ValueError:
        raise InvalidInputError(f"classes must be comma-separated ASPRS codes, got {text!r}", field="classes") from None


def _bbox(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"bbox must be comma-separated numbers, got {text!r}", field="bbox") from None


def _answer(request: Request, did: str, index: PointIndex, region: Region, classes: set[int] | None,
            count_only: bool, f: str, crs: str | None, limit: int, extra: dict[str, Any]) -> Response:
    info = {"dataset": did, "region": region.description, **extra}
    if count_only:
        return Response(json.dumps({**info, "count": index.count(region, classes)}, ensure_ascii=False),
                        media_type="application/json")
    sel = index.select(region, classes, limit)
    headers = {"X-Points-Matched": str(sel.matched), "X-Points-Returned": str(sel.returned)}
    if f == "las":
        headers["Content-Disposition"] = f'attachment; filename="{did}-points.las"'
        return Response(index.to_las(sel), media_type="application/vnd.las", headers=headers)
    if f == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{did}-points.csv"'
        return Response(index.to_csv(sel, crs), media_type="text/csv; charset=utf-8", headers=headers)
    if f == "geojson":
        body = index.to_geojson(sel, request.app.state.services.geoid, **info)
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/geo+json", headers=headers)
    return Response(json.dumps(index.to_json(sel, crs, **info), ensure_ascii=False),
                    media_type="application/json", headers=headers)


def pointcloud_router() -> APIRouter:
    """The ``/api/pointclouds`` routes."""
    router = APIRouter(prefix="/api/pointclouds", tags=["point clouds"])

    @router.get("/{dataset}", operation_id="getPointCloud")
    def facts(dataset: str, request: Request) -> dict[str, Any]:
        row = asset_row(request, dataset, KIND)
        meta = json_value(row.get("metadata")) or {}
        return {"id": dataset, "title": row.get("title"), "version": row.get("current_version"),
                "grade": row.get("grade"), "source_crs": row.get("source_crs"),
                "vertical_crs": row.get("vertical_crs"), **{k: meta.get(k) for k in FACTS if k in meta},
                "links": {"tileset": f"/tiles/realscene/{dataset}/{meta.get('tileset', 'tileset.json')}",
                          "points": f"/api/pointclouds/{dataset}/points"}}

    @router.get("/{dataset}/points", operation_id="getPointCloudPoints")
    def points(
        dataset: str, request: Request,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy[,minz,maxz] in crs")] = None,
        crs: Annotated[str | None, Query(description="CRS of bbox and of x/y output (default CRS84)")] = None,
        near: Annotated[str | None, Query(description="Pipe point id (e.g. a manhole): points around it")] = None,
        near_dataset: Annotated[str | None, Query(description="Pipe dataset of `near` when ambiguous")] = None,
        radius: Annotated[float, Query(gt=0, le=10_000, description="Radius around `near` (m)")] = 5.0,
        zmin: Annotated[float | None, Query(description="Lowest height (m)")] = None,
        zmax: Annotated[float | None, Query(description="Highest height (m)")] = None,
        classes: Annotated[str | None, Query(description="ASPRS classes, e.g. 2,6")] = None,
        count_only: bool = False,
        f: Format = "json",
        limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100_000,
    ) -> Response:
        row = asset_row(request, dataset, KIND)
        index = PointIndex(asset_dir(request, row))
        extra: dict[str, Any] = {}
        if near:
            if bbox:
                raise InvalidInputError("give bbox or near, not both", field="near")
            store = scoped_services(request).store()
            x, y, h, pipe_ds = pipe_point(store, near, near_dataset)
            settings = request.app.state.services.settings
            region = index.circle(x, y, radius, settings.storage_crs, zmin=zmin, zmax=zmax, label=near)
            extra = {"near": {"point_id": near, "dataset": pipe_ds, "x": x, "y": y, "ground_h": h,
                              "crs": settings.storage_crs, "radius_m": radius}}
        elif bbox:
            region = index.region(bbox=_bbox(bbox), crs=crs, zmin=zmin, zmax=zmax)
        else:
            raise InvalidInputError("give bbox (or near=<pipe point id>), or POST a polygon", field="bbox")
        return _answer(request, dataset, index, region, _classes(classes), count_only, f, crs, limit, extra)

    @router.post("/{dataset}/points", operation_id="queryPointCloudPoints")
    def points_in_polygon(dataset: str, body: PolygonQuery, request: Request) -> Response:
        row = asset_row(request, dataset, KIND)
        index = PointIndex(asset_dir(request, row))
        region = index.region(polygon=body.polygon, crs=body.crs, zmin=body.zmin, zmax=body.zmax)
        return _answer(request, dataset, index, region, set(body.classes) if body.classes else None,
                       body.count_only, body.f, body.crs, body.limit, {})

    return router
