"""``/api/linkage``: linkage with provincial and national CIM platforms — a thin shell over :mod:`cim.linkage`.

For upstream platforms (role ``platform``, or admin): ``GET status``, ``indicators``, ``changes``,
``services`` and ``crosswalk``. Inbound: ``POST notices``, signed with the shared secret of a configured
``[[inbound]]`` platform (no API key needed; when ``[auth] anonymous = false`` add ``/api/linkage/notices`` to
``open_paths`` — the signature is the credential). Admins: the outbox, sync now, notices, crosswalk edits,
provincial city polls, and the page ``/admin/linkage``. The contract is ``docs/linkage.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

import cim
from api.errors import error_body
from api.linkage_html import linkage_page
from api.security import require_role
from cim.errors import InvalidInputError
from cim.linkage.changes import COLLECTIONS, read_changes
from cim.linkage.config import LinkageConfig, load_linkage_config
from cim.linkage.crosswalk import Link, find_external, find_ours, link, unlink
from cim.linkage.indicators import compute_indicators
from cim.linkage.notices import acknowledge, list_notices, receive
from cim.linkage.outbox import Outbox, utcnow
from cim.linkage.province import Province
from cim.linkage.registry import service_registry
from cim.linkage.signing import SignatureError
from cim.linkage.sync import Sender, produce
from cim.linkage.worker import LinkageWorker
from cim.security.policy import Access, Principal, Role, dataset_access

PREFIX = "/api/linkage"
Platform = Annotated[Principal, Depends(require_role(Role.PLATFORM))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
STARTED = datetime.now()


@dataclass
class Linkage:
    """What the linkage routes use: the config, the application's store and settings."""

    config: LinkageConfig
    services: Any
    tiles_dir: Path | None = None

    @property
    def store(self) -> Any:
        return self.services.store()

    def registry(self, base_url: str) -> dict[str, Any]:
        svc = self.services
        return service_registry(
            self.store, svc.settings, platform=self.config.platform.id,
            base_url=self.config.platform.base_url or base_url,
            tiles_dir=self.tiles_dir,
            buildings_tiles_dir=getattr(svc, "buildings_tiles_dir", None))


def linkage_config(app: FastAPI) -> LinkageConfig:
    """The application's linkage config (``app.state.linkage_config``, else loaded from the settings once)."""
    cfg = getattr(app.state, "linkage_config", None)
    if cfg is None:
        cfg = app.state.linkage_config = load_linkage_config(app.state.services.settings)
    return cfg


def get_linkage(request: Request) -> Linkage:
    app = request.app
    return Linkage(linkage_config(app), app.state.services, getattr(app.state, "linkage_tiles_dir", None))


Lk = Annotated[Linkage, Depends(get_linkage)]


class LinkBody(BaseModel):
    """Crosswalk entries to store."""

    model_config = ConfigDict(extra="forbid")

    links: list[dict[str, str]] = Field(min_length=1, max_length=10000)
    replace: bool = False


def _visible(store: Any, principal: Principal) -> set[str] | None:
    if principal.is_admin:
        return None
    return {d["id"] for d in store.datasets()
            if dataset_access(principal, d.get("grade"), bool(d.get("secret"))) is Access.FULL}


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def linkage_router() -> APIRouter:
    """The ``/api/linkage`` routes."""
    router = APIRouter(prefix=PREFIX, tags=["linkage"])
    _upstream_routes(router)
    _inbound_routes(router)
    _admin_routes(router)
    return router


def _upstream_routes(router: APIRouter) -> None:
    """What upstream platforms read."""

    @router.get("/status", operation_id="getLinkageStatus")
    def status(lk: Lk, caller: Platform) -> dict[str, Any]:
        cur = lk.store.read()
        try:
            datasets = int(cur.execute("SELECT count(*) FROM datasets").fetchone()[0])
        finally:
            cur.close()
        p = lk.config.platform
        return {"schema": "cim-linkage/status/1", "platform": p.id, "name": p.name, "level": p.level,
                "version": cim.__version__, "time": utcnow().isoformat() + "Z",
                "uptime_s": round((datetime.now() - STARTED).total_seconds(), 1), "store": "ok",
                "datasets": datasets, "outbox_pending": Outbox(lk.store).pending_count(),
                "cities": len(lk.config.city)}

    @router.get("/indicators", operation_id="getLinkageIndicators")
    def indicators(lk: Lk, caller: Platform,
                   scope: Literal["auto", "local", "province"] = "auto",
                   window_days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict[str, Any]:
        if scope == "province" or (scope == "auto" and lk.config.platform.level == "province" and lk.config.city):
            return Province(lk.store, lk.config).indicators()
        return compute_indicators(lk.store, platform=lk.config.platform.id, window_days=window_days,
                                  level=lk.config.platform.level)

    @router.get("/changes", operation_id="getLinkageChanges")
    def changes(lk: Lk, caller: Platform,
                cursor: Annotated[str | None, Query(max_length=2000)] = None,
                since: datetime | None = None,
                dataset: Annotated[str | None, Query(max_length=200)] = None,
                since_version: Annotated[int | None, Query(ge=0)] = None,
                collections: Annotated[str | None, Query(description=f"comma list of {', '.join(COLLECTIONS)}")] = None,
                limit: Annotated[int, Query(ge=1, le=10000)] = 500,
                f: Literal["features", "ids"] = "features") -> dict[str, Any]:
        cols = tuple(c.strip() for c in collections.split(",") if c.strip()) if collections else None
        page = read_changes(lk.store, cursor=cursor, since=since, dataset=dataset, since_version=since_version,
                            collections=cols, limit=limit, as_features=f == "features",
                            visible=_visible(lk.store, caller))
        return page.to_dict()

    @router.get("/services", operation_id="getLinkageServices")
    def services(lk: Lk, caller: Platform, request: Request) -> dict[str, Any]:
        return lk.registry(_base_url(request))

    @router.get("/crosswalk", operation_id="getLinkageCrosswalk")
    def crosswalk(lk: Lk, caller: Platform,
                  platform: Annotated[str | None, Query(max_length=200)] = None,
                  scheme: Annotated[str | None, Query(max_length=200)] = None,
                  external_id: Annotated[str | None, Query(max_length=200)] = None,
                  dataset: Annotated[str | None, Query(max_length=200)] = None,
                  feature_id: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        if platform:
            return {"links": find_ours(lk.store, platform, scheme, external_id)}
        if dataset:
            return {"links": find_external(lk.store, dataset, feature_id)}
        raise InvalidInputError("give platform (and scheme, external_id) or dataset (and feature_id)",
                                field="platform")


def _inbound_routes(router: APIRouter) -> None:
    """Signed notices and tasks from upstream platforms."""

    @router.post("/notices", operation_id="receiveLinkageNotice", status_code=201,
                 responses={400: {"description": "malformed notice"}, 401: {"description": "unsigned or bad "
                            "signature, stale timestamp"}, 403: {"description": "unknown platform"},
                            409: {"description": "replayed nonce or conflicting notice"}})
    async def notice(request: Request) -> JSONResponse:
        lk = get_linkage(request)
        body = await request.body()
        request.state.audit_action = "linkage.notice"
        try:
            platform, note, duplicate = await anyio.to_thread.run_sync(
                lambda: receive(lk.store, lk.config, request.method, request.url.path, request.headers, body))
        except SignatureError as exc:
            request.state.audit_detail = {"refused": exc.reason, "platform": exc.platform, "error": error_body(exc)}
            return JSONResponse({**error_body(exc), "reason": exc.reason}, status_code=exc.status)
        except InvalidInputError as exc:
            request.state.audit_detail = {"refused": "malformed", "error": error_body(exc)}
            return JSONResponse({**error_body(exc), "reason": "malformed"}, status_code=400)
        request.state.audit_detail = {"platform": platform, "notice": note.id, "kind": note.kind,
                                      "duplicate": duplicate}
        return JSONResponse({"platform": platform, "id": note.id, "status": "duplicate" if duplicate else "accepted"},
                            status_code=200 if duplicate else 201)


def _admin_routes(router: APIRouter) -> None:
    """Admins: notices, outbox, sync, crosswalk edits, provincial polls."""

    @router.get("/notices", operation_id="listLinkageNotices")
    def notices(lk: Lk, admin: Admin, open_only: bool = False,
                platform: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        return {"notices": list_notices(lk.store, platform=platform, open_only=open_only)}

    @router.post("/notices/{platform}/{notice_id}/ack", operation_id="acknowledgeLinkageNotice")
    def ack(platform: str, notice_id: str, lk: Lk, admin: Admin, request: Request) -> dict[str, Any]:
        acknowledge(lk.store, platform, notice_id, by=admin.id)
        request.state.audit_action = "linkage.notice.ack"
        return {"platform": platform, "id": notice_id, "acknowledged_by": admin.id}

    @router.get("/outbox", operation_id="getLinkageOutbox")
    def outbox(lk: Lk, admin: Admin, status: Literal["pending", "delivered", "dead"] | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        box = Outbox(lk.store)
        return {"streams": box.summary(), "messages": [m.to_dict() for m in box.messages(status=status, limit=limit)]}

    @router.post("/outbox/{message_id}/retry", operation_id="retryLinkageMessage")
    def retry(message_id: int, lk: Lk, admin: Admin, request: Request) -> dict[str, Any]:
        request.state.audit_action = "linkage.outbox.retry"
        return Outbox(lk.store).retry(message_id).to_dict()

    @router.post("/sync", operation_id="syncLinkageNow")
    def sync_now(lk: Lk, admin: Admin, request: Request, send: bool = True) -> dict[str, Any]:
        request.state.audit_action = "linkage.sync"
        enqueued = produce(lk.store, lk.config, services=lk.registry(""))  # as the worker: base_url or relative
        delivered, failed, dead = Sender(lk.store, lk.config).send_due() if send else (0, 0, 0)
        return {"enqueued": enqueued, "delivered": delivered, "failed_attempts": failed, "dead": dead}

    @router.post("/crosswalk", operation_id="putLinkageCrosswalk")
    def put_links(body: LinkBody, lk: Lk, admin: Admin, request: Request) -> dict[str, Any]:
        try:
            links = [Link(**item) for item in body.links]
        except TypeError as exc:
            raise InvalidInputError(f"a link has unknown or missing fields: {exc}", field="links") from None
        request.state.audit_action = "linkage.crosswalk"
        return {"written": link(lk.store, links, created_by=admin.id, replace=body.replace)}

    @router.delete("/crosswalk/{platform}/{scheme}/{external_id}", operation_id="deleteLinkageCrosswalk")
    def delete_link(platform: str, scheme: str, external_id: str, lk: Lk, admin: Admin) -> dict[str, Any]:
        unlink(lk.store, platform, scheme, external_id)
        return {"deleted": [platform, scheme, external_id]}

    @router.get("/province/cities", operation_id="getLinkageCities")
    def cities(lk: Lk, caller: Platform) -> dict[str, Any]:
        return {"cities": Province(lk.store, lk.config).cities()}

    @router.post("/province/poll", operation_id="pollLinkageCities")
    def poll(lk: Lk, admin: Admin, request: Request) -> dict[str, Any]:
        request.state.audit_action = "linkage.province.poll"
        results = Province(lk.store, lk.config).poll()
        return {"cities": [{"city": r.city, "status": r.status, "latency_ms": r.latency_ms, "error": r.error,
                            "change_pages": len(r.change_pages or [])} for r in results]}


def linkage_html_router() -> APIRouter:
    """``GET /admin/linkage``: the sync status page for admins."""
    router = APIRouter(tags=["linkage"])

    @router.get("/admin/linkage", response_class=HTMLResponse, operation_id="getLinkageAdminPage")
    def page(lk: Lk, admin: Admin) -> HTMLResponse:
        province = Province(lk.store, lk.config)
        return HTMLResponse(linkage_page(lk.config, Outbox(lk.store).summary(),
                                         [m.to_dict() for m in Outbox(lk.store).messages(limit=50)],
                                         list_notices(lk.store, limit=100), province.cities()),
                            headers={"Cache-Control": "no-store"})

    return router


def install_linkage(app: FastAPI, *, tiles_dir: Path | None = None) -> None:
    """Add the linkage routes and, with ``[sync] in_service``, run the linkage worker during the app's life.
    ``tiles_dir`` is the pipe tileset folder the service registry checks."""
    app.state.linkage_tiles_dir = tiles_dir
    app.include_router(linkage_router())
    app.include_router(linkage_html_router())
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            cfg = linkage_config(app)
            worker = None
            if cfg.sync.in_service:
                lk = Linkage(cfg, app.state.services, tiles_dir)
                base = cfg.platform.base_url or ""
                worker = LinkageWorker(lk.services.store, cfg, services=lambda: lk.registry(base))
                worker.start()
                app.state.linkage_worker = worker
            try:
                yield state
            finally:
                if worker is not None:
                    await anyio.to_thread.run_sync(worker.stop)

    app.router.lifespan_context = lifespan

