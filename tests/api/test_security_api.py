"""The security layer over HTTP: key issue/revoke by admins, the audit trail of every request (query, export,
chain check, flushed at shutdown), rate and size limits, path traversal, CORS and closed-by-default mode."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import SecurityServices
from cim.security.config import parse_security_config
from cim.store import DuckDBStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_security_matrix import ADMIN_KEY, bearer, build_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cim" / "security"))
from graded import SETTINGS, build_graded_store  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def graded() -> Iterator[DuckDBStore]:
    s = build_graded_store()
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api-tiles") / "tiles"
    root.mkdir()
    (root / "tileset.json").write_text('{"asset": {"version": "1.1"}}', encoding="utf-8")
    (root.parent / "outside.json").write_text('{"secret": "outside the tileset"}', encoding="utf-8")
    return root


@pytest.fixture
def app_client(graded: DuckDBStore, tiles: Path, request: pytest.FixtureRequest
               ) -> Iterator[tuple[TestClient, SecurityServices]]:
    extra = getattr(request, "param", None)
    app, sec = build_app(graded, tiles, extra)
    with TestClient(app) as c:
        yield c, sec


def _audit(c: TestClient, **params: object) -> list[dict]:
    r = c.get("/api/admin/audit", params={"limit": 1000, **params}, headers=ADMIN)
    assert r.status_code == 200
    return r.json()["rows"]


# -- keys ----------------------------------------------------------------------------------------------------
def test_admins_issue_list_and_revoke_keys_and_the_secret_is_shown_once(
        app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    r = c.post("/api/admin/keys", json={"name": "district office", "role": "reviewer", "expires_in_days": 30},
               headers=ADMIN)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    issued = r.json()
    key, key_id = issued["key"], issued["id"]
    assert key.startswith(f"cim_{key_id}.") and issued["role"] == "reviewer" and issued["expires_at"]
    assert issued["created_by"] == "key:ops" and "not shown again" in issued["warning"]
    assert c.get("/api/admin/keys", headers={"X-API-Key": key}).status_code == 403  # a reviewer is no admin
    assert c.get("/api/pipes/search", params={"q": "I:"}, headers={"X-API-Key": key}).json()  # reads 重要
    listed = c.get("/api/admin/keys", headers=ADMIN).json()["keys"]
    assert key_id in {k["id"] for k in listed} and key.split(".", 1)[1] not in json.dumps(listed)
    assert c.get(f"/api/admin/keys/{key_id}", headers=ADMIN).json()["last_used_at"]
    revoked = c.delete(f"/api/admin/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    after = c.get("/api/pipes/search", params={"q": "I:"}, headers={"X-API-Key": key})
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    assert c.delete("/api/admin/keys/nosuch", headers=ADMIN).status_code == 404
    bad = c.post("/api/admin/keys", json={"name": "x", "role": "root"}, headers=ADMIN)
    assert bad.status_code == 422


# -- audit ---------------------------------------------------------------------------------------------------
def test_every_request_is_audited_with_who_what_when_where_and_result(
        app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    planner = bearer("planner", sub="wang.li")
    c.get("/api/analysis/connectivity", params={"dataset": "important"}, headers={**planner, "User-Agent": "qgis"})
    c.get("/api/analysis/connectivity", params={"dataset": "core"}, headers=planner)
    c.get("/tiles/pipes/tileset.json")
    c.get("/api/pipes/search", params={"q": "G"}, headers={"X-API-Key": "cim_nosuch.0123456789abcdef01234"})
    c.get("/cesium/Cesium.js")  # static assets are not data: not logged
    c.post("/api/analysis/cover", json={"dataset": "secret"}, headers={**planner, "User-Agent": "posted"})
    rows = _audit(c, principal="jwt:wang.li")
    assert len(rows) == 3
    posted = [r for r in rows if r["user_agent"] == "posted"][0]
    assert posted["datasets"] == ["secret"] and posted["action"] == "read" and posted["method"] == "POST"
    ok, hidden = sorted([r for r in rows if r is not posted], key=lambda r: r["status"])
    assert ok["role"] == "planner" and ok["via"] == "jwt" and ok["method"] == "GET"
    assert ok["path"] == "/api/analysis/connectivity" and ok["query"] == "dataset=important"
    assert ok["datasets"] == ["important"] and ok["outcome"] == "ok" and ok["bytes"] > 0
    assert ok["user_agent"] == "qgis" and ok["client_ip"] and ok["duration_ms"] > 0 and ok["ts"].endswith("Z")
    assert hidden["status"] == 404 and hidden["datasets"] == ["core"] and hidden["outcome"] == "not_found"
    tiles = _audit(c, path="/tiles/pipes/")[0]
    assert tiles["status"] == 403 and tiles["outcome"] == "denied" and tiles["principal"] == "anonymous"
    bad = _audit(c, outcome="denied", path="/api/pipes/search")[0]
    assert bad["status"] == 401 and bad["detail"]["error"]["error"] == "AuthenticationError"
    assert not _audit(c, path="/cesium/")


def test_changes_are_audited_with_their_action(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    key_id = c.post("/api/admin/keys", json={"name": "temp", "role": "public"}, headers=ADMIN).json()["id"]
    c.delete(f"/api/admin/keys/{key_id}", headers=ADMIN)
    issue, revoke = _audit(c, action="key.issue"), _audit(c, action="key.revoke")
    assert issue[0]["detail"]["key_id"] == key_id and issue[0]["method"] == "POST" and issue[0]["status"] == 201
    assert revoke[0]["detail"] == {"key_id": key_id} and revoke[0]["principal"] == "key:ops"
    assert "cim_" not in json.dumps(issue)  # the secret never reaches the log


def test_the_audit_log_exports_as_csv_and_json_lines_and_its_chain_verifies(
        app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    c.get("/api/health", headers={"User-Agent": "exporter-test"})
    r = c.get("/api/admin/audit", params={"f": "csv", "path": "/api/health"}, headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and ".csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and "exporter-test" in {row["user_agent"] for row in rows} and "row_hash" in rows[0]
    r = c.get("/api/admin/audit", params={"f": "jsonl", "path": "/api/health"}, headers=ADMIN)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert all(json.loads(line)["path"] == "/api/health" for line in r.text.splitlines())
    check = c.get("/api/admin/audit/verify", headers=ADMIN).json()
    assert check["ok"] and check["checked"] > 0
    assert c.get("/api/admin/audit", params={"f": "xml"}, headers=ADMIN).status_code == 422


def test_queued_audit_entries_are_written_at_shutdown(graded: DuckDBStore, tiles: Path) -> None:
    app, sec = build_app(graded, tiles, {"audit": {"flush_seconds": 60, "flush_records": 100_000}})
    before = graded.read().execute("SELECT count(*) FROM audit_log WHERE user_agent = 'shutdown-test'").fetchone()[0]
    with TestClient(app) as c:
        for _ in range(3):
            c.get("/api/health", headers={"User-Agent": "shutdown-test"})
    after = graded.read().execute("SELECT count(*) FROM audit_log WHERE user_agent = 'shutdown-test'").fetchone()[0]
    assert after - before == 3


# -- limits --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("app_client", [{"limits": {"anonymous_requests_per_minute": 60, "burst": 3,
                                                    "requests_per_minute": 0, "ip_requests_per_minute": 0}}],
                         indirect=True)
def test_rate_limits_answer_429_with_retry_after_per_caller(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    codes = [c.get("/api/health").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.get("/api/health")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "RateLimitedError" and "60 requests a minute" in r.json()["detail"]
    assert c.get("/api/health", headers=ADMIN).status_code == 200  # another caller, another bucket
    assert _audit(c, outcome="limited")[0]["status"] == 429


@pytest.mark.parametrize("app_client", [{"limits": {"max_body_bytes": 2000, "requests_per_minute": 0,
                                                    "anonymous_requests_per_minute": 0,
                                                    "ip_requests_per_minute": 0}}], indirect=True)
def test_request_bodies_over_the_limit_are_refused_with_413(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    big = {"area": {"type": "Polygon", "coordinates": [[[117.0, 36.6]] * 400]}, "dataset": "general"}
    r = c.post("/api/analysis/cover", json=big)
    assert r.status_code == 413 and r.json()["error"] == "RequestTooLargeError" and "2000 bytes" in r.text
    assert "max_body_bytes" in r.json()["detail"]  # says what to change

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed body is counted
        for _ in range(10):
            yield b" " * 500

    r = c.post("/api/analysis/cover", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    small = c.post("/api/analysis/cover", json={"dataset": "general"})
    assert small.status_code == 200


def test_building_tiles_are_gated_by_the_bim_datasets(graded: DuckDBStore,
                                                      app_client: tuple[TestClient, SecurityServices]) -> None:
    c, sec = app_client
    sec.tile_cache_s = 0
    assert c.get("/tiles/buildings/tileset.json").status_code in (404, 503)  # no BIM data: not refused (no tiles)
    with graded.transaction() as con:
        con.execute("INSERT INTO datasets SELECT * REPLACE ('tower' AS id, 'bim' AS kind, '重要' AS grade) "
                    "FROM datasets WHERE id = 'general'")
    try:
        r = c.get("/tiles/buildings/tileset.json")
        assert r.status_code == 403 and "tiles carry precise positions" in r.json()["detail"]
        assert c.get("/tiles/buildings/tileset.json", headers=bearer("reviewer")).status_code in (404, 503)
    finally:
        with graded.transaction() as con:
            con.execute("DELETE FROM datasets WHERE id = 'tower'")


# -- paths, CORS, closed mode, caching -------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/tiles/pipes/../outside.json", "/tiles/pipes/..%2Foutside.json",
                                  "/tiles/pipes/%2e%2e/outside.json", "/tiles/pipes/..%5Coutside.json",
                                  "/viewer/static/..%2F..%2Fapp.py", "/tiles/pipes/tileset.json%00.glb"])
@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_no_path_traversal_for_anyone(app_client: tuple[TestClient, SecurityServices], path: str, who: str) -> None:
    c, _ = app_client
    r = c.get(path, headers=ADMIN if who == "admin" else {})
    assert r.status_code in (400, 403, 404), r.status_code
    assert "outside the tileset" not in r.text and "create_app" not in r.text


@pytest.mark.parametrize("app_client", [{"cors": {"origins": ["https://cim.jinan.example"]}}], indirect=True)
def test_cors_follows_the_configured_origins(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    pre = c.options("/api/pipes/search", headers={"Origin": "https://cim.jinan.example",
                                                  "Access-Control-Request-Method": "GET",
                                                  "Access-Control-Request-Headers": "X-API-Key"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://cim.jinan.example"
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    other = c.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = c.get("/api/admin/keys", headers={"Origin": "https://cim.jinan.example"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://cim.jinan.example"


def test_no_cors_headers_without_configured_origins(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    assert "access-control-allow-origin" not in c.get("/api/health", headers={"Origin": "https://a.example"}).headers


@pytest.mark.parametrize("app_client", [{"auth": {"anonymous": False}}], indirect=True)
def test_a_closed_deployment_refuses_anonymous_data_requests(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    assert c.get("/viewer").status_code == 200 and c.get("/api/health").status_code == 200
    r = c.get("/api/pipes/search", params={"q": "G"})
    assert r.status_code == 401 and "needs credentials" in r.json()["detail"]
    assert c.get("/api/pipes/search", params={"q": "G"}, headers=bearer("public")).status_code == 200


@pytest.mark.parametrize("app_client", [{"auth": {"anonymous_role": "planner"}}], indirect=True)
def test_an_intranet_deployment_may_give_anonymous_callers_another_role(
        app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    assert {h["dataset"] for h in c.get("/api/pipes/search", params={"q": "GD1"}).json()} == \
        {"general", "important", "secret"}
    assert c.get("/api/admin/keys").status_code == 401  # still nobody in particular
    with pytest.raises(Exception, match="never be admins"):
        parse_security_config({"auth": {"anonymous_role": "admin"}})


def test_answers_to_authenticated_callers_are_private(app_client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = app_client
    r = c.get("/tiles/pipes/tileset.json", headers=ADMIN)
    assert r.status_code == 200 and "private" in r.headers["cache-control"] and "no-cache" in r.headers["cache-control"]
    assert "X-API-Key" in r.headers["vary"] and r.headers["x-content-type-options"] == "nosniff"
    assert "private" not in c.get("/api/health").headers.get("cache-control", "")


def test_secure_app_reads_the_security_file_from_settings(graded: DuckDBStore, tiles: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "security.toml"
    file.write_text("[audit]\nretention_days = 30\n", encoding="utf-8")
    monkeypatch.setenv("CIM_SECURITY_FILE", str(file))
    from cim.security.config import SecurityConfigError

    with pytest.raises(SecurityConfigError, match="180 days"):  # refused at startup, not at the first request
        create_app(SETTINGS, store=graded, tiles_dir=tiles)
    file.write_text("[limits]\nmax_body_bytes = 10\n", encoding="utf-8")
    sec = create_app(SETTINGS, store=graded, tiles_dir=tiles).state.security
    assert sec.config.limits.max_body_bytes == 10 and sec.config.source == file
    assert parse_security_config({}).limits.max_body_bytes > 10
