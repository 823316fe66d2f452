"""``/api/admin``: API keys (issue, list, revoke) and the audit log (query, export, verify) — admins only.

A key's secret is in the response to its ``POST`` and nowhere else, ever. Audit exports stream
``f=csv`` or ``f=jsonl`` as a download; ``f=json`` (default) is one page, newest first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.security import SecurityServices, require_role
from cim.errors import InvalidInputError
from cim.security.audit import MAX_PAGE, AuditFilter, AuditLog
from cim.security.keys import utcnow
from cim.security.policy import Principal, Role

NO_STORE = {"Cache-Control": "no-store"}


class KeyRequest(BaseModel):
    """A key to issue: who it is for, its role, and optionally when it expires."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key")
    role: Role
    expires_at: datetime | None = Field(None, description="UTC expiry (naive = UTC)")
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Alternative to expires_at")
    note: str | None = Field(None, max_length=500)


def _security(request: Request) -> SecurityServices:
    return request.app.state.security


Security = Annotated[SecurityServices, Depends(_security)]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


def _audit_log(sec: SecurityServices) -> AuditLog:
    if sec.audit is None:
        raise InvalidInputError("the audit log is disabled in the security file ([audit] enabled = false)")
    return sec.audit


def admin_router() -> APIRouter:
    """The admin routes (every one needs the admin role)."""
    router = APIRouter(prefix="/api/admin", tags=["admin"])

    @router.post("/keys", status_code=201, operation_id="issueApiKey")
    def issue_key(body: KeyRequest, request: Request, sec: Security, admin: Admin) -> JSONResponse:
        if body.expires_at and body.expires_in_days:
            raise InvalidInputError("give expires_at or expires_in_days, not both", field="expires_at")
        expires = _utc(body.expires_at)
        if body.expires_in_days:
            expires = utcnow() + timedelta(days=body.expires_in_days)
        issued = sec.keys.issue(body.name, body.role, expires_at=expires, created_by=admin.id, note=body.note)
        request.state.audit_action = "key.issue"
        request.state.audit_detail = {"key_id": issued.record.id, "role": body.role.value, "name": body.name}
        return JSONResponse({**issued.record.to_dict(), "key": issued.key,
                             "warning": "store this key now: it is not shown again"},
                            status_code=201, headers=NO_STORE)

    @router.get("/keys", operation_id="listApiKeys")
    def list_keys(sec: Security, admin: Admin, include_revoked: bool = True) -> dict[str, Any]:
        now = utcnow()
        return {"keys": [k.to_dict(now) for k in sec.keys.list(include_revoked=include_revoked)]}

    @router.get("/keys/{key_id}", operation_id="getApiKey")
    def get_key(key_id: str, sec: Security, admin: Admin) -> dict[str, Any]:
        return sec.keys.get(key_id).to_dict()

    @router.delete("/keys/{key_id}", operation_id="revokeApiKey")
    def revoke_key(key_id: str, request: Request, sec: Security, admin: Admin) -> dict[str, Any]:
        record = sec.keys.revoke(key_id, by=admin.id)
        request.state.audit_action = "key.revoke"
        request.state.audit_detail = {"key_id": key_id}
        return record.to_dict()

    @router.get("/audit", operation_id="queryAuditLog")
    def audit(
        sec: Security, admin: Admin,
        since: datetime | None = None, until: datetime | None = None,
        principal: Annotated[str | None, Query(max_length=200)] = None,
        role: Role | None = None,
        method: Annotated[str | None, Query(max_length=10)] = None,
        path: Annotated[str | None, Query(max_length=500, description="Path prefix")] = None,
        status: Annotated[int | None, Query(ge=100, le=599)] = None,
        outcome: Literal["ok", "denied", "limited", "not_found", "invalid", "error"] | None = None,
        dataset: Annotated[str | None, Query(max_length=200)] = None,
        action: Annotated[str | None, Query(max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        f: Literal["json", "csv", "jsonl"] = "json",
    ) -> Response:
        log = _audit_log(sec)
        log.flush()
        filters = AuditFilter(since=_utc(since), until=_utc(until), principal=principal,
                              role=role.value if role else None, method=method, path_prefix=path, status=status,
                              outcome=outcome, dataset=dataset, action=action)
        if f == "json":
            page = log.query(filters, limit=limit, offset=offset)
            return JSONResponse({"total": page.total, "limit": limit, "offset": offset, "rows": page.rows},
                                headers=NO_STORE)
        media = "text/csv; charset=utf-8" if f == "csv" else "application/x-ndjson"
        name = f"audit-{utcnow():%Y%m%dT%H%M%S}.{f}"
        return StreamingResponse(log.export(f, filters), media_type=media,
                                 headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})

    @router.get("/audit/verify", operation_id="verifyAuditLog")
    def verify(sec: Security, admin: Admin) -> dict[str, Any]:
        log = _audit_log(sec)
        log.flush()
        check = log.verify()
        return {"ok": check.ok, "checked": check.checked, "first_bad_seq": check.first_bad_seq}

    return router


def _utc(value: datetime | None) -> datetime | None:
    """Naive UTC (the store's convention) of a query timestamp; naive input is taken as UTC."""
    if value is None or value.tzinfo is None:
        return value
    return value.replace(tzinfo=None) - (value.utcoffset() or timedelta())
