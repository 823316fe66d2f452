"""The web service: the planners' viewer, the pipe tileset, search and QC findings — a thin shell over ``cim``.

Example::

    app = create_app(Settings(store="duckdb:///out/cim.duckdb"), tiles_dir=Path("out/tiles/pipes"))
    # uvicorn.run(app, host="127.0.0.1", port=8000); open http://127.0.0.1:8000/viewer

Routes: ``/viewer`` (+ ``/viewer/static/``), ``/cesium/`` (CesiumJS from ``node_modules``),
``/tiles/pipes/{path}``, ``/api/pipes/search``, ``/api/pipes/ground``, ``/api/qc/findings``, ``/api/health``,
and the pipe analyses under ``/api/analysis/`` (:mod:`api.analysis`).
Positions leave the service as CGCS2000 lon/lat with ellipsoidal heights (1985 height + geoid), as the tiles.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

import cim
from api.analysis import analysis_router
from api.bim import bim_router
from api.errors import AssetsMissingError, add_exception_handlers
from api.imagery import imagery_router
from api.linkage import install_linkage
from api.ogc import ogc_router, ogc_store
from api.pointcloud import pointcloud_router
from api.realscene import realscene_router
from api.security import ScopedServices, scoped_services, secure_app
from api.terrain import terrain_router
from cim.analysis.common import Frame
from cim.analysis.contacts import OwnerContact, load_contacts
from cim.errors import InvalidInputError, NotFoundError
from cim.heights import GeoidModel, get_geoid
from cim.pipes.queries import ground_grid, qc_findings_geojson, search_features
from cim.security.config import SecurityConfig
from cim.settings import Settings, get_settings
from cim.store import DuckDBStore, open_store

REPO = Path(__file__).resolve().parents[1]
VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
CESIUM_DIR = REPO / "node_modules" / "cesium" / "Build" / "Cesium"
DEFAULT_TILES = Path("out/tiles/pipes")
DEFAULT_BUILDINGS_TILES = Path("out/tiles/buildings")
MEDIA_TYPES = {".json": "application/json", ".glb": "model/gltf-binary"}


@dataclass
class Services:
    """What the routes share: settings, the store (opened on first use unless given) and the geoid."""

    settings: Settings
    given_store: DuckDBStore | None = None
    buildings_tiles_dir: Path = DEFAULT_BUILDINGS_TILES
    tiles_lock: threading.Lock = field(default_factory=threading.Lock)
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

    @cached_property
    def frame(self) -> Frame:
        """Storage CRS, geoid and region: the frame analyses read inputs in and write results out."""
        return Frame.from_settings(self.settings, self.geoid)

    @cached_property
    def contacts(self) -> dict[str, OwnerContact] | None:
        """Owner contacts from ``settings.owner_contacts_file`` (None when not configured)."""
        path = self.settings.owner_contacts_file
        return load_contacts(path) if path else None

    def close(self) -> None:
        """Close a store this object opened (never one it was given)."""
        with self._lock:
            while self._opened:
                self._opened.pop().close()


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


def tiles_router(tiles_dir: Path, prefix: str = "/tiles/pipes", operation: str = "TilesetFile") -> APIRouter:
    """Static 3D Tiles from ``tiles_dir``: JSON and GLB media types, strong ETags, 304 on ``If-None-Match``."""
    router = APIRouter(tags=["tiles"])

    @router.head(prefix + "/{path:path}", operation_id=f"head{operation}")
    @router.get(prefix + "/{path:path}", operation_id=f"get{operation}")
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


def get_services(request: Request) -> ScopedServices:
    """The application's :class:`Services` as the caller may see them: ``store()`` is the caller's
    :class:`~cim.security.scope.ScopedStore` (a seam: override with ``app.dependency_overrides``)."""
    return scoped_services(request)


Svc = Annotated[ScopedServices, Depends(get_services)]


def scoped_store(request: Request) -> DuckDBStore:
    """The caller's scoped store (what the OGC API routes read)."""
    return scoped_services(request).store()


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
               cesium_dir: Path | None = None, buildings_tiles_dir: Path | None = None,
               security: SecurityConfig | None = None) -> FastAPI:
    """The FastAPI application. ``store`` is used as given (and left open); without one, ``settings.store``
    is opened on first use and closed at shutdown. ``tiles_dir`` defaults to ``out/tiles/pipes``,
    ``buildings_tiles_dir`` (the BIM models' tileset) to ``out/tiles/buildings``. ``security`` (default: from
    ``settings.security_file``) configures keys, tokens, roles, limits, audit and CORS (:mod:`api.security`)."""
    services = Services(settings or get_settings(), store, Path(buildings_tiles_dir or DEFAULT_BUILDINGS_TILES))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(title="CIM 3D spatial data service", version=cim.__version__, lifespan=lifespan)
    app.state.services = services
    add_exception_handlers(app)
    app.include_router(viewer_router())
    app.include_router(tiles_router(Path(tiles_dir or DEFAULT_TILES)))
    app.include_router(tiles_router(services.buildings_tiles_dir, "/tiles/buildings", "BuildingsTilesetFile"))
    app.include_router(data_router())
    app.include_router(analysis_router())
    app.include_router(bim_router())
    app.include_router(ogc_router())
    app.include_router(realscene_router())
    app.include_router(pointcloud_router())
    app.include_router(imagery_router())
    app.include_router(terrain_router())
    install_linkage(app, tiles_dir=Path(tiles_dir or DEFAULT_TILES))
    app.dependency_overrides[ogc_store] = scoped_store
    _mount_static(app, VIEWER_DIR, Path(cesium_dir or CESIUM_DIR))
    secure_app(app, services.settings, config=security)  # last: it wraps the app and its lifespan
    return app
