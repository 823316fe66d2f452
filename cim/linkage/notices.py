"""Inbound supervision notices and tasks from upstream platforms (national/provincial → city).

A notice arrives as a signed ``POST /api/linkage/notices`` (:mod:`cim.linkage.signing`); :func:`receive`
checks the signature, the platform, the timestamp, the nonce and the body (``docs/linkage/notice.schema.json``)
and stores it — nonce and notice in one transaction, so a refused request leaves nothing behind. A notice id
already received with the same content is answered as a duplicate (the sender's retry); with other content
it is refused.

Example::

    notice = receive(store, config, "POST", "/api/linkage/notices", headers, body)
    list_notices(store)          # what admins see
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cim.errors import InvalidInputError, NotFoundError
from cim.linkage.config import LinkageConfig
from cim.linkage.outbox import utcnow
from cim.linkage.signing import SignatureError, remember_nonce, verify_signature

_COLS = ("platform", "notice_id", "kind", "title", "body", "severity", "issued_at", "due_at", "payload",
         "received_at", "acknowledged_at", "acknowledged_by")


class Notice(BaseModel):
    """A supervision notice, task or evaluation result."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    kind: Literal["notice", "task", "evaluation"]
    title: str = Field(min_length=1, max_length=500)
    body: str = Field("", max_length=20000)
    severity: Literal["info", "warning", "urgent"] = "info"
    issued_at: datetime | None = None
    due_at: datetime | None = None
    refs: list[str] = Field(default_factory=list, max_length=100, description="Datasets, services or URLs concerned")


class NoticeError(InvalidInputError):
    """A notice whose body cannot be accepted (400)."""


def _naive(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return (t - t.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]


def parse_notice(body: bytes) -> Notice:
    """The notice in ``body``; raises NoticeError naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NoticeError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NoticeError("the body must be a JSON object (docs/linkage/notice.schema.json)")
    try:
        return Notice.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise NoticeError(f"malformed notice: {problems}") from None


def receive(store: Any, config: LinkageConfig, method: str, path: str, headers: Mapping[str, str],
            body: bytes, *, now: float | None = None) -> tuple[str, Notice, bool]:
    """Verify and store one notice; returns ``(platform, notice, duplicate)``.

    Raises :class:`~cim.linkage.signing.SignatureError` (401/403/409) or :class:`NoticeError` (400).
    """
    platform = verify_signature(config.inbound_secret, method, path, headers, body, skew_s=config.sync.skew_s,
                                now=now)
    notice = parse_notice(body)
    nonce = headers.get("X-CIM-Nonce") or headers.get("x-cim-nonce") or ""
    payload = notice.model_dump(mode="json")
    with store.transaction() as con:
        remember_nonce(con, platform, nonce, skew_s=config.sync.skew_s)
        row = con.execute("SELECT payload FROM linkage_notices WHERE platform = ? AND notice_id = ?",
                          [platform, notice.id]).fetchone()
        if row is not None:
            if json.loads(row[0]) != payload:
                raise SignatureError(f"notice {notice.id!r} of {platform!r} was received before with other content",
                                     "conflicting_notice", 409, platform)
            return platform, notice, True
        con.execute(f"INSERT INTO linkage_notices ({', '.join(_COLS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                    [platform, notice.id, notice.kind, notice.title, notice.body, notice.severity,
                     _naive(notice.issued_at), _naive(notice.due_at), json.dumps(payload, ensure_ascii=False),
                     utcnow()])
    return platform, notice, False


def list_notices(store: Any, *, platform: str | None = None, open_only: bool = False,
                 limit: int = 200) -> list[dict[str, Any]]:
    """Received notices, newest first."""
    where, params = ["TRUE"], []
    if platform:
        where.append("platform = ?")
        params.append(platform)
    if open_only:
        where.append("acknowledged_at IS NULL")
    cur = store.read()
    try:
        rows = cur.execute(f"SELECT {', '.join(_COLS)} FROM linkage_notices WHERE {' AND '.join(where)} "
                           f"ORDER BY received_at DESC LIMIT {int(limit)}", params).fetchall()
    finally:
        cur.close()
    out = []
    for r in rows:
        d = dict(zip(_COLS, r, strict=True))
        d["payload"] = json.loads(d["payload"]) if isinstance(d["payload"], str) else d["payload"]
        out.append({k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in d.items()})
    return out


def acknowledge(store: Any, platform: str, notice_id: str, *, by: str) -> None:
    """Mark a notice as read by admin ``by``."""
    with store.transaction() as con:
        if not con.execute("SELECT 1 FROM linkage_notices WHERE platform = ? AND notice_id = ?",
                           [platform, notice_id]).fetchone():
            raise NotFoundError(f"no notice {notice_id!r} from {platform!r}")
        con.execute("UPDATE linkage_notices SET acknowledged_at = ?, acknowledged_by = ? "
                    "WHERE platform = ? AND notice_id = ?", [utcnow(), by, platform, notice_id])
