"""Inbound notices and tasks from upstream platforms: signed ones are accepted and shown to admins; unsigned,
forged, stale, replayed, unknown-platform and malformed ones are refused with clear errors and audited."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cim.linkage.config import parse_linkage_config
from cim.linkage.signing import sign_request
from cim.settings import Settings
from cim.store import DuckDBStore
from tests.linkage.linkage_support import ADMIN_KEY, PLATFORM_KEY, security_config

SECRET = b"province-notice-secret"
PATH = "/api/linkage/notices"
ADMIN = {"X-API-Key": ADMIN_KEY}
NOTICE = {"id": "SD-2026-017", "kind": "task", "title": "核查历下区燃气管线数据", "body": "请于月底前补测。",
          "severity": "warning", "due_at": "2026-12-31T00:00:00Z", "refs": ["jinan"]}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app(Settings(store="duckdb:///:memory:"), store=DuckDBStore(":memory:"), security=security_config())
    app.state.linkage_config = parse_linkage_config({
        "platform": {"id": "370100", "level": "city"},
        "inbound": [{"id": "370000", "name": "山东省 CIM 平台", "secret": SECRET.decode()}]})
    with TestClient(app) as c:
        yield c


def _send(c: TestClient, body: bytes, *, platform: str = "370000", secret: bytes = SECRET, now: float | None = None,
          nonce: str | None = None, headers: dict[str, str] | None = None) -> Any:
    signed = sign_request(secret, "POST", PATH, body, platform=platform, now=now, nonce=nonce)
    return c.post(PATH, content=body, headers={"Content-Type": "application/json", **signed, **(headers or {})})


def _audit(c: TestClient) -> list[dict[str, Any]]:
    return c.get("/api/admin/audit", params={"action": "linkage.notice", "limit": 100}, headers=ADMIN).json()["rows"]


def test_a_signed_notice_is_accepted_listed_for_admins_and_acknowledged(client: TestClient) -> None:
    body = json.dumps(NOTICE, ensure_ascii=False).encode()
    r = _send(client, body)
    assert r.status_code == 201, r.text
    assert r.json() == {"platform": "370000", "id": "SD-2026-017", "status": "accepted"}
    again = _send(client, body)  # the sender's retry with a fresh nonce: same notice, not stored twice
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    listed = client.get(PATH, headers=ADMIN).json()["notices"]
    assert [(n["platform"], n["notice_id"], n["kind"], n["severity"]) for n in listed] == [
        ("370000", "SD-2026-017", "task", "warning")]
    assert listed[0]["title"] == NOTICE["title"] and listed[0]["due_at"].startswith("2026-12-31T00:00:00")
    assert client.get(PATH, headers={"X-API-Key": PLATFORM_KEY}).status_code == 403  # admins only
    assert client.get(PATH).status_code == 401
    page = client.get("/admin/linkage", headers=ADMIN)
    assert page.status_code == 200 and "核查历下区燃气管线数据" in page.text
    assert client.post(f"{PATH}/370000/SD-2026-017/ack", headers=ADMIN).status_code == 200
    assert client.get(PATH, params={"open_only": True}, headers=ADMIN).json()["notices"] == []


@pytest.mark.parametrize(("case", "status", "reason", "message"), [
    ("unsigned", 401, "unsigned", "missing header"),
    ("bad_signature", 401, "bad_signature", "bad signature"),
    ("stale", 401, "stale_timestamp", "stale timestamp"),
    ("replayed", 409, "replayed_nonce", "replayed request"),
    ("unknown_platform", 403, "unknown_platform", "unknown platform"),
    ("malformed_json", 400, "malformed", "not JSON"),
    ("malformed_notice", 400, "malformed", "malformed notice"),
])
def test_bad_notices_are_refused_with_clear_errors_and_audited(client: TestClient, case: str, status: int,
                                                               reason: str, message: str) -> None:
    notice = {**NOTICE, "id": f"N-{case}"}
    body = json.dumps(notice).encode()
    if case == "unsigned":
        r = client.post(PATH, content=body, headers={"Content-Type": "application/json"})
    elif case == "bad_signature":
        r = _send(client, body, secret=b"not-the-shared-secret")
    elif case == "stale":
        r = _send(client, body, now=time.time() - 3600)
    elif case == "replayed":
        first = _send(client, body, nonce="nonce-used-twice")
        assert first.status_code == 201
        r = _send(client, json.dumps({**notice, "id": "N-replayed-2"}).encode(), nonce="nonce-used-twice")
    elif case == "unknown_platform":
        r = _send(client, body, platform="440000", secret=SECRET)
    elif case == "malformed_json":
        r = _send(client, b'{"id": "N-bad", "kind": ')
    else:
        r = _send(client, json.dumps({"id": "N-x", "kind": "gossip", "extra": 1}).encode())
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason and message in r.json()["detail"]
    stored = {n["notice_id"] for n in client.get(PATH, headers=ADMIN).json()["notices"]}
    assert "N-replayed-2" not in stored and f"N-{case}" not in stored - {"N-replayed"}
    rows = [a for a in _audit(client) if a["status"] == status and (a["detail"] or {}).get("refused") == reason]
    assert rows, f"no audit entry for {case}"
    assert rows[0]["path"] == PATH and rows[0]["outcome"] in ("denied", "invalid")
