"""The web service: the planners' viewer, the pipe tileset, search and QC findings — a thin shell over ``cim``.

Example::

    app = create_app(Settings(store="duckdb:///out/cim.duckdb"), tiles_dir=Path("out/tiles/pipes"))
    # uvicorn.run(app, host="127.0.0.1", port=8000); open http://127.0.0.1:8000/viewer

Routes: ``/viewer`` (+ ``/viewer/static/``), ``/cesium/`` (CesiumJS from ``node_modules``),
``/tiles/pipes/{path}``, ``/api/pipes/search``, ``/api/pipes/ground``, ``/api/qc/findings``, ``/api/health``.
Positions leave the service as CGCS2000 lon/lat with ellipsoidal heights (1985 height + geoid), as the tiles.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from scipy.spatial import cKDTree

import cim
from api.errors import AssetsMissingError, add_exception_handlers
from cim.crs import to_lonlat
from cim.errors import InvalidInputError, NotFoundError
from cim.heights import GeoidModel, get_geoid, to_ellipsoidal
from cim.settings import Settings, get_settings
from cim.store import DuckDBStore, open_store

REPO = Path(__file__).resolve().parents[1]
VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
CESIUM_DIR = REPO / "node_modules" / "cesium" / "Build" / "Cesium"
DEFAULT_TILES = Path("out/tiles/pipes")
MEDIA_TYPES = {".json": "application/json", ".glb": "model/gltf-binary"}


@dataclass
class Services:
    """What the routes share: settings, the store (opened on first use unless given) and the geoid."""

    settings: Settings
    given_store: DuckDBStore | None = None
    _opened: list[DuckDBStore] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> DuckDBStore:
        """The store: the one given to :func:`create_app`, else ``settings.store`` opened once."""
        if self.given_store is not None:
            return self.given_store
        with self._lock:  # requests run in a thread pool: open it once
            if not self._opened:
                self._opened.append(open_store(self.settings.store))
            return self._opened[0]

    @cached_property
    def geoid(self) -> GeoidModel:
        """The configured geoid model (loaded once)."""
        return get_geoid(self.settings.geoid, self.settings.geoid_path)

    def close(self) -> None:
        """Close a store this object opened (never one it was given)."""
        with self._lock:
            while self._opened:
                self._opened.pop().close()


# -- queries (plain functions over the store: no HTTP here) -------------------------------------------------
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
def viewer_router(viewer_dir: Path = VIEWER_DIR) -> APIRouter:
    """``GET /viewer``: the CesiumJS page (its scripts are mounted under ``/viewer/static/``)."""
    router = APIRouter(tags=["viewer"])

    @router.get("/viewer", response_class=HTMLResponse, operation_id="getViewer")
    def viewer() -> HTMLResponse:
        return HTMLResponse((viewer_dir / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-cache"})

    @router.get("/", include_in_schema=False)
    def landing() -> RedirectResponse:
        return RedirectResponse("/viewer")

    return router


def _file_in(root: Path, path: str) -> Path:
    """``root/path`` when it is a file inside ``root``; refuses absolute paths and ``..``."""
    parts = Path(path).parts
    if path.startswith(("/", "\\")) or ".." in parts or "\\" in path:
        raise InvalidInputError(f"tile path {path!r} leaves the tileset folder")
    file = (root / path).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file() or file.suffix not in MEDIA_TYPES:
        raise NotFoundError(f"no tileset file {path!r}")
    return file


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def tiles_router(tiles_dir: Path, prefix: str = "/tiles/pipes") -> APIRouter:
    """Static 3D Tiles from ``tiles_dir``: JSON and GLB media types, strong ETags, 304 on ``If-None-Match``."""
    router = APIRouter(tags=["tiles"])

    @router.api_route(prefix + "/{path:path}", methods=["GET", "HEAD"], operation_id="getTilesetFile")
    def tileset_file(path: str, request: Request) -> Response:
        if not tiles_dir.is_dir():
            raise AssetsMissingError(f"the tileset folder {tiles_dir} does not exist: run `cim demo` or `cim tiles`")
        file = _file_in(tiles_dir, path)
        st = file.stat()
        headers = {"ETag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"', "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return FileResponse(file, media_type=MEDIA_TYPES[file.suffix], headers=headers)

    return router


def get_services(request: Request) -> Services:
    """The application's shared :class:`Services` (a seam: override with ``app.dependency_overrides``)."""
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]


def data_router() -> APIRouter:
    """``/api``: feature search for fly-to, the ground surface, QC findings, health."""
    router = APIRouter(prefix="/api", tags=["api"])

    @router.get("/pipes/search", operation_id="searchPipes")
    def search(svc: Svc, q: Annotated[str, Query(max_length=200, description="feature or point id, or its start")],
               limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
        return search_features(svc.store(), q, storage_crs=svc.settings.storage_crs, geoid=svc.geoid, limit=limit)

    @router.get("/pipes/ground", operation_id="getGround")
    def ground(svc: Svc, size: Annotated[int, Query(ge=2, le=257)] = 33) -> dict[str, Any]:
        return ground_grid(svc.store(), storage_crs=svc.settings.storage_crs, geoid=svc.geoid, size=size)

    @router.get("/qc/findings", operation_id="getQCFindings")
    def findings(svc: Svc, dataset: str | None = None) -> Response:
        body = qc_findings_geojson(svc.store(), storage_crs=svc.settings.storage_crs, geoid=svc.geoid,
                                   dataset=dataset)
        return _json(body, "application/geo+json")

    @router.get("/health", operation_id="getHealth")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": cim.__version__}

    return router


def _json(body: Any, media_type: str) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), media_type=media_type)


def _mount_static(app: FastAPI, viewer_dir: Path, cesium_dir: Path) -> None:
    app.mount("/viewer/static", StaticFiles(directory=viewer_dir), name="viewer-static")
    if (cesium_dir / "Cesium.js").is_file():
        app.mount("/cesium", StaticFiles(directory=cesium_dir), name="cesium")
        return

    @app.get("/cesium/{path:path}", include_in_schema=False)
    def cesium_missing(path: str) -> Response:
        raise AssetsMissingError(f"CesiumJS is not installed ({cesium_dir} is missing): run "
                                 "`npm ci --ignore-scripts` in the repository root")


def create_app(settings: Settings | None = None, *, store: DuckDBStore | None = None, tiles_dir: Path | None = None,
               cesium_dir: Path | None = None) -> FastAPI:
    """The FastAPI application. ``store`` is used as given (and left open); without one, ``settings.store``
    is opened on first use and closed at shutdown. ``tiles_dir`` defaults to ``out/tiles/pipes``."""
    services = Services(settings or get_settings(), store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(title="CIM 3D spatial data service", version=cim.__version__, lifespan=lifespan)
    app.state.services = services
    add_exception_handlers(app)
    app.include_router(viewer_router())
    app.include_router(tiles_router(Path(tiles_dir or DEFAULT_TILES)))
    app.include_router(data_router())
    _mount_static(app, VIEWER_DIR, Path(cesium_dir or CESIUM_DIR))
    return app
