"""Security of the web service: who is calling, what it may read, limits, CORS and the audit trail.

``secure_app(app, settings)`` (call it in ``create_app``) installs, around every request:

1. a path guard (``..``, backslashes and NUL in the decoded path are refused with 400, before any route),
2. a per-address rate limit, then authentication — ``X-API-Key: cim_<id>.<secret>`` or
   ``Authorization: Bearer <JWT or API key>``; no credentials → the public role, bad credentials → 401 with
   ``WWW-Authenticate`` — then a per-caller rate limit (429 with ``Retry-After``),
3. the body size limit (413 on a declared ``Content-Length`` or once the streamed body passes it),
4. the tile gate: ``/tiles/pipes/`` (``/tiles/buildings/``) needs FULL access to every pipe (BIM) dataset,
   403 otherwise — tile geometry cannot be coarsened,
5. an audit entry for every request (:mod:`cim.security.audit`), and CORS from the security file.

Routes read the caller with :func:`get_principal` and limit a role with :func:`require_role`; the store
they are handed must be the caller's :class:`~cim.security.scope.ScopedStore`, which
:func:`scoped_services` provides in place of the application's ``Services``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import STATUS_CODES, error_body, status_for
from cim.analysis.common import PIPE_KINDS
from cim.errors import CIMError, InvalidInputError
from cim.security.audit import AuditEntry, AuditLog, outcome_of
from cim.security.config import SecurityConfig, SecurityConfigError, jwt_secret, load_security_config
from cim.security.keys import KEY_PREFIX, KeyStore, utcnow
from cim.security.limits import BodyCounter, RateLimitedError, RateLimiter, RequestTooLargeError
from cim.security.policy import ANONYMOUS, Access, AuthenticationError, ForbiddenError, Principal, Role
from cim.security.scope import ScopedStore, tileset_access
from cim.security.tokens import TokenVerifier
from cim.store import DuckDBStore

#: HTTP status of the security errors (add to ``api.errors.STATUS_CODES``; :func:`secure_app` also
#: registers handlers for them, with the ``WWW-Authenticate`` / ``Retry-After`` headers).
SECURITY_STATUS: dict[type[Exception], int] = {
    AuthenticationError: 401,
    ForbiddenError: 403,
    RequestTooLargeError: 413,
    RateLimitedError: 429,
    SecurityConfigError: 500,
}
#: Tilesets and the dataset kinds they are built from: served only to callers reading all of those in full.
TILE_GATES: dict[str, tuple[str, ...]] = {"/tiles/pipes/": PIPE_KINDS, "/tiles/buildings/": ("bim",)}
#: What a 3D view fetches by the hundred: tiles, imagery and terrain tiles, the viewer's scripts. They have
#: their own per-address budget (``limits.tile_requests_per_minute``) instead of the API's.
TILE_PREFIXES = ("/tiles/", "/cesium/", "/viewer/static/")
TILE_SERVICES = (("/api/imagery/", "/tiles/"), ("/api/terrain/", ".terrain"), ("/api/terrain/", "/layer.json"))


def is_tile_request(path: str) -> bool:
    """Is ``path`` one of the many small requests a viewer makes (see :data:`TILE_PREFIXES`)?"""
    return path.startswith(TILE_PREFIXES) or any(path.startswith(p) and s in path for p, s in TILE_SERVICES)


#: Static, non-data assets left out of the audit log (a viewer start loads hundreds of them).
AUDIT_SKIP = ("/cesium/", "/viewer/static/")
REALM = "cim"
#: Room for the multipart form around an uploaded file of ``max_upload_bytes``.
UPLOAD_SLACK = 1024**2
#: POST routes that only read (their inputs are too big for a query string).
READ_ONLY_POSTS = ("/api/analysis/",)


def _status(exc: Exception) -> int:
    return status_for(exc, {**STATUS_CODES, **SECURITY_STATUS})


def _header_text(text: str) -> str:
    return text.replace("\\", "").replace('"', "'").encode("ascii", "replace").decode("ascii")[:300]


def error_headers(exc: Exception) -> dict[str, str]:
    """``WWW-Authenticate`` for 401s (both schemes are offered), ``Retry-After`` for 429s."""
    if isinstance(exc, AuthenticationError):
        bearer = f'Bearer realm="{REALM}"'
        if exc.code:
            bearer += f', error="{exc.code}", error_description="{_header_text(str(exc))}"'
        return {"WWW-Authenticate": f'{bearer}, ApiKey realm="{REALM}", header="X-API-Key"'}
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return {}


def error_response(exc: Exception) -> JSONResponse:
    """The JSON error response of a security (or any service) error, with its headers."""
    return JSONResponse(error_body(exc), status_code=_status(exc), headers=error_headers(exc))


@dataclass
class SecurityServices:
    """What the security layer shares: config, keys, tokens, limiter, audit log and the store."""

    config: SecurityConfig
    store: Callable[[], DuckDBStore]
    keys: KeyStore
    tokens: TokenVerifier | None = None
    audit: AuditLog | None = None
    limiter: RateLimiter = field(default_factory=RateLimiter)
    max_upload_bytes: int = 2 * 1024**3
    tile_cache_s: float = 5.0
    _tile_sets: dict[tuple[str, ...], tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)

    # -- who is calling -----------------------------------------------------------------------------
    @property
    def anonymous(self) -> Principal:
        """Who a request without credentials is: the public, unless the security file names another role."""
        role = self.config.auth.anonymous_role
        return ANONYMOUS if role is Role.PUBLIC else Principal(id="anonymous", role=role, via="anonymous")

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller named by ``X-API-Key`` or ``Authorization`` (:attr:`anonymous` without either)."""
        api_key, auth = headers.get("x-api-key"), headers.get("authorization")
        if api_key and auth:
            raise AuthenticationError("send X-API-Key or Authorization, not both", code="invalid_request")
        if api_key:
            return self.keys.verify(api_key)
        if not auth:
            return self.anonymous
        scheme, _, credential = auth.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("bearer", "apikey") or not credential:
            raise AuthenticationError(f"unsupported Authorization scheme {scheme!r} (use Bearer)",
                                      code="invalid_request")
        if scheme.lower() == "apikey" or credential.startswith(KEY_PREFIX):
            return self.keys.verify(credential)
        if self.tokens is None:
            raise AuthenticationError("bearer tokens are not accepted by this service (no [jwt] configured)")
        return self.tokens.verify(credential)

    # -- limits -------------------------------------------------------------------------------------
    def rate_limit(self, principal: Principal, client_ip: str) -> None:
        """The per-caller bucket (anonymous callers share one per address)."""
        lim = self.config.limits
        if principal.via == "anonymous":
            self.limiter.check(f"anon:{client_ip}", lim.anonymous_requests_per_minute, lim.burst)
        else:
            per_minute = lim.roles.get(principal.role, lim.requests_per_minute)
            self.limiter.check(f"caller:{principal.id}", per_minute, lim.burst)

    def body_counter(self, path: str) -> BodyCounter:
        """The body limit of ``path``: upload routes get ``max_upload_bytes`` plus room for the form around the
        file (they check the file size themselves, with a more specific message), the rest ``max_body_bytes``."""
        lim = self.config.limits
        if path.startswith(lim.large_body_paths):
            return BodyCounter(self.max_upload_bytes + UPLOAD_SLACK, "CIM_MAX_UPLOAD_BYTES")
        return BodyCounter(lim.max_body_bytes, "[limits] max_body_bytes of the security file")

    # -- tiles --------------------------------------------------------------------------------------
    def check_tiles(self, principal: Principal, kinds: tuple[str, ...] = PIPE_KINDS) -> None:
        """Refuse a tileset built from datasets of ``kinds`` unless ``principal`` reads every one of them in
        full: tile geometry cannot be coarsened."""
        if principal.is_admin:
            return
        if tileset_access(principal, self._tiled_datasets(kinds)) is not Access.FULL:
            raise ForbiddenError(f"tiles carry precise positions; the {principal.role} role may not read "
                                 "every dataset in this tileset")

    def _tiled_datasets(self, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        now = time.monotonic()
        cached = self._tile_sets.get(kinds)
        if cached is None or now - cached[0] > self.tile_cache_s:
            cur = self.store().read()
            try:
                rows = cur.execute(f"SELECT id, grade, secret FROM datasets WHERE kind IN "
                                   f"({', '.join('?' * len(kinds))})", list(kinds)).fetchall()
            finally:
                cur.close()
            cached = self._tile_sets[kinds] = (now, [{"id": r[0], "grade": r[1], "secret": r[2]} for r in rows])
        return cached[1]

    def close(self) -> None:
        """Write the queued audit entries (call before the store closes)."""
        if self.audit is not None:
            self.audit.close()


# -- request plumbing ---------------------------------------------------------------------------------
def check_path(path: str) -> None:
    """Refuse paths that climb (``..``) or smuggle separators (backslash, NUL) — before any route sees them."""
    if "\x00" in path or "\\" in path or ".." in PurePosixPath(path).parts:
        raise InvalidInputError("the request path may not contain '..', backslashes or NUL", field="path")


def client_ip(scope: Scope, headers: Headers, trusted: Iterable[str]) -> str:
    """The peer address; behind a trusted proxy, the last untrusted address of ``X-Forwarded-For``."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    trusted = set(trusted)
    forwarded = headers.get("x-forwarded-for")
    if not forwarded or peer not in trusted:
        return peer
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if hop not in trusted:
            return hop
    return peer


DATASET_KEYS = ("dataset", "datasets", "pipes_dataset", "structures_dataset")
#: JSON request bodies up to this size are read back for the dataset ids they name.
AUDIT_BODY_BYTES = 64 * 1024


def _datasets_of(scope: Scope, body: bytes = b"") -> list[str]:
    """Dataset ids a request names: query parameters, a JSON body's top-level keys, and what the route set in
    ``request.state.audit_datasets``."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    found: list[Any] = [v for k in DATASET_KEYS for v in query.get(k, [])]
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in DATASET_KEYS:
                value = data.get(key)
                found += value if isinstance(value, list) else [value] if value else []
    found += list(scope.get("state", {}).get("audit_datasets", ()) or ())
    return sorted({d for v in found for d in str(v).split(",") if d})[:50]


@dataclass
class _Exchange:
    status: int | None = None
    bytes: int = 0
    started: bool = False
    error: Exception | None = None
    body: bytearray = field(default_factory=bytearray)  # the start of a JSON request body, for the audit


class SecurityMiddleware:
    """The ASGI layer doing path guard, rate limits, authentication, size limit, tile gate and audit."""

    def __init__(self, app: ASGIApp, security: SecurityServices) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sec = self.security
        started, ts = time.perf_counter(), utcnow()
        headers = Headers(scope=scope)
        ip = client_ip(scope, headers, sec.config.limits.trusted_proxies)
        scope.setdefault("state", {})
        ex = _Exchange()
        principal = ANONYMOUS
        try:
            try:
                principal = await self._admit(scope, headers, ip)
            except CIMError as exc:
                ex.error = exc
                await self._respond(send, ex, exc)
                return
            counter = sec.body_counter(scope["path"])
            try:
                counter.declared(headers.get("content-length"))
            except CIMError as exc:
                ex.error = exc
                await self._respond(send, ex, exc)
                return
            await self._forward(scope, receive, send, ex, counter, principal)
        finally:
            self._audit(scope, headers, ip, principal, ex, ts, started)

    async def _admit(self, scope: Scope, headers: Headers, ip: str) -> Principal:
        sec, lim = self.security, self.security.config.limits
        path = scope["path"]
        check_path(path)
        tile = is_tile_request(path)
        if tile:
            sec.limiter.check(f"tiles:{ip}", lim.tile_requests_per_minute)
        else:
            sec.limiter.check(f"ip:{ip}", lim.ip_requests_per_minute, lim.burst)
        if "x-api-key" in headers or "authorization" in headers:
            principal = await anyio.to_thread.run_sync(sec.authenticate, headers)
        else:
            principal = sec.anonymous
        scope["state"]["principal"] = principal
        auth = sec.config.auth
        if principal.via == "anonymous" and not auth.anonymous and not path.startswith(auth.open_paths):
            raise AuthenticationError("this service needs credentials (X-API-Key or a bearer token)", code=None)
        if not tile:
            sec.rate_limit(principal, ip)
        for prefix, kinds in TILE_GATES.items():
            if path.startswith(prefix):
                await anyio.to_thread.run_sync(sec.check_tiles, principal, kinds)
        return principal

    async def _forward(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange, counter: BodyCounter,
                       principal: Principal) -> None:
        suppressed = False

        keep = Headers(scope=scope).get("content-type", "").startswith("application/json")

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                counter.add(len(chunk))
                if keep and len(ex.body) + len(chunk) <= AUDIT_BODY_BYTES:
                    ex.body += chunk
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal suppressed
            if message["type"] == "http.response.start":
                if counter.exceeded:  # the app answered its failed read: answer 413 instead
                    suppressed = True
                    return
                ex.started, ex.status = True, message["status"]
                _harden(message, principal)
            elif message["type"] == "http.response.body":
                if suppressed:
                    return
                ex.bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except RequestTooLargeError as exc:
            ex.error = exc
            if not ex.started:
                await self._respond(send, ex, exc)
            return
        except Exception:
            ex.status = ex.status if ex.started else 500
            raise
        if counter.exceeded and not ex.started:
            exc = RequestTooLargeError(counter.limit, counter.setting)
            ex.error = exc
            await self._respond(send, ex, exc)

    async def _respond(self, send: Send, ex: _Exchange, exc: Exception) -> None:
        response = error_response(exc)
        ex.status, ex.bytes, ex.started = response.status_code, len(response.body), True

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response({"type": "http"}, no_body, send)

    def _audit(self, scope: Scope, headers: Headers, ip: str, principal: Principal, ex: _Exchange,
               ts: Any, started: float) -> None:
        log = self.security.audit
        path = scope["path"]
        if log is None or path.startswith(AUDIT_SKIP):
            return
        state = scope.get("state", {})
        method = scope["method"]
        detail = dict(state.get("audit_detail") or {})
        if ex.error is not None:
            detail["error"] = error_body(ex.error)
        if log.closed:  # a request racing the shutdown: nothing to write to any more
            return
        log.record(AuditEntry(
            ts=ts, principal=principal.id, role=principal.role.value, via=principal.via, method=method,
            path=path[:2000], query=scope.get("query_string", b"").decode("latin-1")[:2000] or None,
            datasets=_datasets_of(scope, bytes(ex.body)), status=ex.status, bytes=ex.bytes, client_ip=ip,
            user_agent=(headers.get("user-agent") or "")[:500] or None,
            duration_ms=round((time.perf_counter() - started) * 1000, 3), outcome=outcome_of(ex.status),
            action=state.get("audit_action") or _action(method, path),
            detail=detail or None,
        ))


def _action(method: str, path: str) -> str:
    """``read`` for safe methods and POSTed queries (analyses), else ``change`` (a route may say more)."""
    return "read" if method in ("GET", "HEAD", "OPTIONS") or path.startswith(READ_ONLY_POSTS) else "change"


def _harden(message: Message, principal: Principal) -> None:
    """``nosniff`` everywhere; answers to an authenticated caller are private to it (no shared caching)."""
    headers = MutableHeaders(raw=message.setdefault("headers", []))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if principal.via != "anonymous":
        cache = headers.get("cache-control")
        if cache is None:
            headers["Cache-Control"] = "private"
        elif "private" not in cache and "no-store" not in cache:
            headers["Cache-Control"] = f"{cache}, private"
        headers.append("Vary", "Authorization, X-API-Key")


# -- FastAPI dependencies -----------------------------------------------------------------------------
def get_principal(request: Request) -> Principal:
    """The caller (set by the middleware; authenticated here when it is not installed: ANONYMOUS by default)."""
    principal = request.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal):
        return principal
    sec: SecurityServices | None = getattr(request.app.state, "security", None)
    return ANONYMOUS if sec is None else sec.authenticate(request.headers)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: Role | str) -> Callable[[Principal], Principal]:
    """A dependency admitting the given roles (and admins); anonymous callers get 401, others 403."""
    allowed = frozenset(Role(r) for r in roles) | {Role.ADMIN}

    def dependency(principal: PrincipalDep) -> Principal:
        if principal.role in allowed:
            return principal
        if principal.via == "anonymous":
            raise AuthenticationError("this needs credentials (X-API-Key or a bearer token)", code=None)
        raise ForbiddenError(f"the {principal.role} role may not do this (needs {', '.join(sorted(allowed))})")

    dependency.__name__ = f"require_{'_'.join(sorted(allowed))}"
    return dependency


class ScopedServices:
    """The application's services as one caller sees them: ``store()`` is its :class:`ScopedStore`;
    everything else (settings, geoid, frame, contacts) is shared. ``writable_store(*roles)`` hands the
    real store to routes that write, after a role check."""

    def __init__(self, services: Any, principal: Principal) -> None:
        self._services = services
        self.principal = principal
        self._scoped: ScopedStore | None = None

    def store(self) -> ScopedStore:
        if self._scoped is None:
            self._scoped = ScopedStore(self._services.store(), self.principal)
        return self._scoped

    def writable_store(self, *roles: Role | str) -> DuckDBStore:
        require_role(*roles)(self.principal)
        return self._services.store()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services, name)


def scoped_services(request: Request) -> ScopedServices:
    """``request.app.state.services`` limited to the caller — what ``get_services``/``analysis_services``
    should return (see :func:`secure_app`)."""
    return ScopedServices(request.app.state.services, get_principal(request))


# -- installation -------------------------------------------------------------------------------------
def secure_app(app: FastAPI, settings: Any = None, *, config: SecurityConfig | None = None,
               keys: KeyStore | None = None) -> SecurityServices:
    """Install authentication, limits, the tile gate, audit, CORS, error handlers and ``/api/admin`` on
    ``app`` (from ``create_app``: its ``app.state.services`` provides the store). The audit log is flushed
    at shutdown, before the application's own shutdown closes the store."""
    from api.admin import admin_router

    settings = settings if settings is not None else app.state.services.settings
    cfg = config or load_security_config(settings)

    def store() -> DuckDBStore:
        return app.state.services.store()

    audit = None
    if cfg.audit.enabled:
        audit = AuditLog(store, retention_days=cfg.audit.retention_days, flush_records=cfg.audit.flush_records,
                         flush_seconds=cfg.audit.flush_seconds)
    sec = SecurityServices(
        config=cfg, store=store, keys=keys or KeyStore(store, cfg.static_keys()),
        tokens=cfg.token_verifier(jwt_secret(settings)), audit=audit,
        max_upload_bytes=int(getattr(settings, "max_upload_bytes", 2 * 1024**3)),
    )
    app.state.security = sec
    app.add_middleware(SecurityMiddleware, security=sec)
    if cfg.cors.origins:  # outermost, so refusals carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors.origins), allow_methods=list(cfg.cors.methods),
                           allow_headers=list(cfg.cors.headers), allow_credentials=cfg.cors.allow_credentials,
                           expose_headers=["Retry-After", "WWW-Authenticate", "Content-Disposition", "ETag"],
                           max_age=cfg.cors.max_age)

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    for cls in SECURITY_STATUS:
        app.add_exception_handler(cls, handler)
    app.include_router(admin_router())
    _flush_at_shutdown(app, sec)
    return sec


def _flush_at_shutdown(app: FastAPI, sec: SecurityServices) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await anyio.to_thread.run_sync(sec.close)

    app.router.lifespan_context = lifespan
