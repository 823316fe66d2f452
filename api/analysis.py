"""``/api/analysis``: the pipe analyses over HTTP — a thin shell over :mod:`cim.analysis`.

Every analysis answers JSON by default; ``f=geojson`` gives the FeatureCollection the viewer draws (lon/lat
with ellipsoidal heights, each feature with a ``role``), ``download=true`` makes it a file download, and
analyses with printable output add ``f=html`` (excavation report) or ``f=svg``/``f=png`` (section and
profile charts). Geometries are GeoJSON in ``crs`` (default CRS84 lon/lat). Inputs with geometries are
POSTed as JSON; analyses addressed by ids are plain GETs, so a result has a link.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.security import scoped_services
from cim.analysis.clearance import clearance_check, structure_clearance
from cim.analysis.common import Frame
from cim.analysis.cover import cover_check
from cim.analysis.excavation import excavate
from cim.analysis.gas_risk import gas_adjacent_chambers
from cim.analysis.isolation import isolate
from cim.analysis.profile import long_profile
from cim.analysis.sections import cross_section
from cim.analysis.tracing import connectivity, pollution_sources, trace
from cim.errors import InvalidInputError
from cim.store import DuckDBStore

Format = Literal["json", "geojson", "html", "svg", "png"]
GeoJSONGeometry = dict[str, Any]

#: Media type and the result method that renders it, per output format.
RENDERERS: dict[str, tuple[str, str]] = {
    "json": ("application/json", "to_dict"),
    "geojson": ("application/geo+json", "to_geojson"),
    "html": ("text/html; charset=utf-8", "report_html"),
    "svg": ("image/svg+xml", "svg"),
    "png": ("image/png", "png"),
}
Fmt = Annotated[Format, Query(description="json, geojson; html/svg/png where the analysis has them")]
Download = Annotated[bool, Query(description="Send as a file download")]
EXTENSIONS = {"json": "json", "geojson": "geojson", "html": "html", "svg": "svg", "png": "png"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExcavationRequest(_Body):
    """A planned pit: polygon and depth below ground, or absolute bottom (and top) heights."""

    area: GeoJSONGeometry = Field(description="Polygon of the pit (GeoJSON geometry)")
    crs: str | None = Field(None, description="CRS of the polygon (default CRS84 lon/lat)")
    depth_m: float | None = Field(None, gt=0, le=100, description="Depth of the pit below the ground (m)")
    bottom_h: float | None = Field(None, description="Absolute bottom of the pit (1985 height, m)")
    top_h: float | None = Field(None, description="Absolute top of the pit (default: the ground)")
    safety_m: float | dict[str, float] | None = Field(
        None, description="Safety distance in metres, one number or per category code (default owner buffers)")
    dataset: str | None = None


class SectionRequest(_Body):
    """A drawn line for a cross-section."""

    line: GeoJSONGeometry = Field(description="LineString across the street (GeoJSON geometry)")
    crs: str | None = None
    dataset: str | None = None


class ClearanceRequest(_Body):
    """An area (optional) and the checks to run."""

    area: GeoJSONGeometry | None = None
    crs: str | None = None
    categories: list[str] | None = Field(None, description="Pipe category codes (JS, PS, RQ, ...)")
    checks: list[Literal["parallel", "crossing"]] = ["parallel", "crossing"]
    dataset: str | None = None


class StructureRequest(_Body):
    """A building, basement or foundation footprint and its bottom elevation."""

    footprint: GeoJSONGeometry
    crs: str | None = None
    bottom_h: float = Field(description="Bottom of the structure (1985 height, m)")
    top_h: float | None = None
    name: str = Field("structure", max_length=200)
    dataset: str | None = None


class CoverRequest(_Body):
    """An area (optional) and the road type the pipes run under."""

    area: GeoJSONGeometry | None = None
    crs: str | None = None
    road_type: str = "carriageway"
    dataset: str | None = None
    dem: str | None = Field(None, max_length=200, description="Catalogued DEM dataset id: report its ground beside "
                            "the survey's")
    ground_tolerance_m: float | None = Field(None, ge=0, le=100, description="DEM vs surveyed ground difference "
                                             "reported as a mismatch (default 0.3 m)")


def render(result: Any, f: str, *, name: str, download: bool = False) -> Response:
    """The response for ``result`` in format ``f`` (a 400 naming the formats this analysis has)."""
    media, method = RENDERERS[f]
    fn: Callable[[], Any] | None = getattr(result, method, None)
    if fn is None:
        have = [k for k, (_, m) in RENDERERS.items() if hasattr(result, m)]
        raise InvalidInputError(f"the {name} analysis has no {f!r} output (available: {', '.join(have)})", field="f")
    body = fn()
    if isinstance(body, dict | list):
        body = json.dumps(body, ensure_ascii=False)
    headers = {"Cache-Control": "no-store"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{name}.{EXTENSIONS[f]}"'
    if f == "html":
        return HTMLResponse(body, headers=headers)
    return Response(body, media_type=media, headers=headers)


class AnalysisServices(Protocol):
    """What the routes need from the application: the store, the spatial frame, owner contacts."""

    frame: Frame
    contacts: Mapping[str, Any] | None

    def store(self) -> DuckDBStore: ...


def analysis_services(request: Request) -> AnalysisServices:
    """The application's services as the caller may see them (its scoped store); a seam for tests."""
    return scoped_services(request)


def _store(svc: Annotated[AnalysisServices, Depends(analysis_services)]) -> DuckDBStore:
    return svc.store()


def _frame(svc: Annotated[AnalysisServices, Depends(analysis_services)]) -> Frame:
    return svc.frame


def _contacts(svc: Annotated[AnalysisServices, Depends(analysis_services)]) -> Mapping[str, Any] | None:
    return svc.contacts


def _dem_ground(svc: AnalysisServices, store: DuckDBStore, dem: str | None) -> Any:
    """The catalogued DEM ``dem`` as a ground model (None without one); 404 when the caller may not read it."""
    if not dem:
        return None
    from cim.analysis.ground import catalogued_dem

    return catalogued_dem(store, dem, getattr(svc, "settings", None))


SvcDep = Annotated[AnalysisServices, Depends(analysis_services)]
StoreDep = Annotated[DuckDBStore, Depends(_store)]
FrameDep = Annotated[Frame, Depends(_frame)]
ContactsDep = Annotated[Mapping[str, Any] | None, Depends(_contacts)]


def analysis_router() -> APIRouter:
    """The analysis routes under ``/api/analysis``."""
    router = APIRouter(prefix="/api/analysis", tags=["analysis"])
    _spatial_routes(router)
    _network_routes(router)
    return router


def _spatial_routes(router: APIRouter) -> None:
    """Analyses of places: excavation, sections, profiles, clearance, cover."""

    @router.post("/excavation", operation_id="analyseExcavation")
    def excavation(body: ExcavationRequest, store: StoreDep, frame: FrameDep, contacts: ContactsDep,
                   f: Fmt = "json", download: Download = False) -> Response:
        result = excavate(store, frame, area=body.area, crs=body.crs, depth_m=body.depth_m, bottom_h=body.bottom_h,
                          top_h=body.top_h, safety_m=body.safety_m, dataset=body.dataset,
                          contacts=contacts)
        return render(result, f, name="excavation", download=download)

    @router.post("/cross-section", operation_id="analyseCrossSection")
    def section(body: SectionRequest, store: StoreDep, frame: FrameDep, f: Fmt = "json",
                download: Download = False) -> Response:
        result = cross_section(store, frame, line=body.line, crs=body.crs, dataset=body.dataset)
        return render(result, f, name="cross-section", download=download)

    @router.get("/long-profile", operation_id="analyseLongProfile")
    def profile(svc: SvcDep, store: StoreDep, frame: FrameDep,
                segments: Annotated[list[str] | None, Query(description="Ordered segment ids of a run")] = None,
                start: Annotated[str | None, Query(max_length=200, description="Start point id")] = None,
                end: Annotated[str | None, Query(max_length=200, description="End point id")] = None,
                dataset: str | None = None,
                dem: Annotated[str | None, Query(max_length=200, description="Catalogued DEM dataset id")] = None,
                ground_tolerance_m: Annotated[float | None, Query(ge=0, le=100)] = None,
                f: Fmt = "json", download: Download = False) -> Response:
        result = long_profile(store, frame, segments=segments or None, start=start, end=end, dataset=dataset,
                              ground=_dem_ground(svc, store, dem), ground_tolerance=ground_tolerance_m)
        return render(result, f, name="long-profile", download=download)

    @router.post("/clearance", operation_id="analyseClearance")
    def clearance(body: ClearanceRequest, store: StoreDep, frame: FrameDep, f: Fmt = "json",
                  download: Download = False) -> Response:
        result = clearance_check(store, frame, dataset=body.dataset, area=body.area, crs=body.crs,
                                 categories=body.categories, checks=tuple(body.checks))
        return render(result, f, name="clearance", download=download)

    @router.post("/structure-clearance", operation_id="analyseStructureClearance")
    def structure(body: StructureRequest, store: StoreDep, frame: FrameDep, f: Fmt = "json",
                  download: Download = False) -> Response:
        result = structure_clearance(store, frame, footprint=body.footprint, crs=body.crs, bottom_h=body.bottom_h,
                                     top_h=body.top_h, name=body.name, dataset=body.dataset)
        return render(result, f, name="structure-clearance", download=download)

    @router.post("/cover", operation_id="analyseCover")
    def cover(body: CoverRequest, svc: SvcDep, store: StoreDep, frame: FrameDep, f: Fmt = "json",
              download: Download = False) -> Response:
        result = cover_check(store, frame, dataset=body.dataset, area=body.area, crs=body.crs,
                             road_type=body.road_type, ground=_dem_ground(svc, store, body.dem),
                             ground_tolerance=body.ground_tolerance_m)
        return render(result, f, name="cover", download=download)


def _network_routes(router: APIRouter) -> None:
    """Analyses of the network graph: isolation, connectivity, tracing, gas-adjacent chambers."""

    @router.get("/isolation", operation_id="analyseIsolation")
    def isolation(store: StoreDep, frame: FrameDep,
                  segment: Annotated[str, Query(max_length=200, description="The failed segment (feature or line id)")],
                  failed_valve: Annotated[list[str] | None, Query(description="Valves that fail to close")] = None,
                  dataset: str | None = None, f: Fmt = "json", download: Download = False) -> Response:
        result = isolate(store, frame, segment=segment, dataset=dataset, failed_valves=tuple(failed_valve or ()))
        return render(result, f, name="isolation", download=download)

    @router.get("/connectivity", operation_id="analyseConnectivity")
    def connected(store: StoreDep, frame: FrameDep, dataset: str | None = None,
                  category: Annotated[str | None, Query(max_length=8)] = None, f: Fmt = "json",
                  download: Download = False) -> Response:
        result = connectivity(store, frame, dataset=dataset, category=category)
        return render(result, f, name="connectivity", download=download)

    @router.get("/trace", operation_id="analyseTrace")
    def tracing(store: StoreDep, frame: FrameDep,
                start: Annotated[str, Query(max_length=200, description="Point or segment id to trace from")],
                direction: Literal["upstream", "downstream"] = "downstream", dataset: str | None = None,
                f: Fmt = "json", download: Download = False) -> Response:
        result = trace(store, frame, start=start, direction=direction, dataset=dataset)
        return render(result, f, name=f"trace-{direction}", download=download)

    @router.get("/pollution-sources", operation_id="analysePollutionSources")
    def pollution(store: StoreDep, frame: FrameDep,
                  at: Annotated[str, Query(max_length=200, description="Point or segment where pollution is found")],
                  dataset: str | None = None, f: Fmt = "json", download: Download = False) -> Response:
        result = pollution_sources(store, frame, at=at, dataset=dataset)
        return render(result, f, name="pollution-sources", download=download)

    @router.get("/gas-risk", operation_id="analyseGasAdjacentChambers")
    def gas_risk(store: StoreDep, frame: FrameDep,
                 distance_m: Annotated[float, Query(gt=0, le=50, description="Search distance from gas mains")] = 5.0,
                 limit: Annotated[int | None, Query(ge=1, le=100_000)] = None, dataset: str | None = None,
                 f: Fmt = "json", download: Download = False) -> Response:
        result = gas_adjacent_chambers(store, frame, distance_m=distance_m, dataset=dataset, limit=limit)
        return render(result, f, name="gas-risk", download=download)
