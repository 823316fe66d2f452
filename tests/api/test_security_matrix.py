"""The auth matrix: every role × every endpoint family × every data grade is allowed, refused or coarsened —
never leaked. The app is ``create_app`` + ``secure_app`` with the routes' services overridden by
``scoped_services`` (the proposed ``get_services``/``analysis_services``), over four copies of the sample
district graded 一般 / 重要 / 核心 / 一般+secret, with feature ids prefixed G: / I: / C: / S:."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import SecurityServices
from cim.crs import CGCS2000_GEOGRAPHIC, transform_xy
from cim.security.config import parse_security_config
from cim.security.keys import hash_secret
from cim.security.policy import PUBLIC_GRID_M, Access
from cim.store import DuckDBStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cim" / "security"))
from graded import GRADED, SETTINGS, STORAGE, build_graded_store  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")

JWT_SECRET = "matrix-test-hs256-secret-0123456789abcdef"
ADMIN_KEY = "cim_ops." + "a" * 40
DATASETS = list(GRADED)
#: role → dataset → access; written out (not computed by the policy under test).
EXPECTED: dict[str, dict[str, Access]] = {
    "anonymous": {"general": Access.COARSE, "important": Access.NONE, "core": Access.NONE, "secret": Access.NONE},
    "public": {"general": Access.COARSE, "important": Access.NONE, "core": Access.NONE, "secret": Access.NONE},
    "planner": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.FULL},
    "reviewer": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.FULL},
    "platform": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.NONE},
    "admin": {"general": Access.FULL, "important": Access.FULL, "core": Access.FULL, "secret": Access.FULL},
}
ROLES = list(EXPECTED)


def build_app(store: DuckDBStore, tiles: Path, extra: dict[str, Any] | None = None) -> tuple[Any, SecurityServices]:
    """``create_app`` with this module's security settings (keys, a JWT issuer, audit, no rate limits)."""
    config = {
        "jwt": {"issuer": "https://sso.test", "audience": "cim", "hs256_secret": JWT_SECRET},
        "keys": [{"id": "ops", "name": "operations", "role": "admin", "hash": hash_secret("a" * 40)}],
        "audit": {"flush_seconds": 0.05},
        "limits": {"requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0},
        **(extra or {}),
    }
    app = create_app(SETTINGS, store=store, tiles_dir=tiles, buildings_tiles_dir=tiles.parent / "no-buildings",
                     security=parse_security_config(config))
    return app, app.state.security


def bearer(role: str, sub: str = "u1") -> dict[str, str]:
    token = jwt.encode({"iss": "https://sso.test", "aud": "cim", "sub": sub, "exp": int(time.time()) + 600,
                        "role": role}, JWT_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def graded() -> Iterator[DuckDBStore]:
    s = build_graded_store()
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sec-tiles")
    (root / "tiles").mkdir()
    (root / "tileset.json").write_text('{"asset": {"version": "1.1"}, "root": {}}', encoding="utf-8")
    (root / "tiles" / "0.glb").write_bytes(b"glTF" + bytes(16))
    (root.parent / "outside.json").write_text('{"secret": "outside the tileset"}', encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def client(graded: DuckDBStore, tiles: Path) -> Iterator[tuple[TestClient, SecurityServices]]:
    app, sec = build_app(graded, tiles)
    with TestClient(app) as c:
        yield c, sec


@pytest.fixture(scope="module")
def headers(client: tuple[TestClient, SecurityServices]) -> dict[str, dict[str, str]]:
    """Credentials per role: keys from the store, a JWT for the planner, the file's static key for the admin."""
    _, sec = client
    out = {"anonymous": {}, "admin": {"X-API-Key": ADMIN_KEY}, "planner": bearer("planner")}
    for role in ("public", "reviewer", "platform"):
        out[role] = {"X-API-Key": sec.keys.issue(f"{role} test key", role).key}
    return out


# -- helpers --------------------------------------------------------------------------------------------------
def assert_no_leak(role: str, text: str, asked: str | None = None) -> None:
    """No feature id or dataset id of a dataset ``role`` may not read appears in ``text`` (except the id the
    request itself named, echoed in a 404 that reads exactly as for an unknown id)."""
    for ds, (_, _, prefix) in GRADED.items():
        if EXPECTED[role][ds] is Access.NONE:
            assert f'"{prefix}' not in text, f"{role} got features of {ds}"
            if ds != asked:
                assert f'"{ds}"' not in text, f"{role} got the id of {ds}"


def on_grid(lon: list[float], lat: list[float], *, midpoints: bool = False) -> bool:
    """Whether every position is a grid cell centre (or, for segment midpoints, halfway between two)."""
    x, y = transform_xy(np.array(lon), np.array(lat), CGCS2000_GEOGRAPHIC, STORAGE)
    step, offset = (PUBLIC_GRID_M / 2, 0.0) if midpoints else (PUBLIC_GRID_M, PUBLIC_GRID_M / 2)

    def snapped(v: np.ndarray) -> bool:
        r = np.mod(v - offset, step)
        return bool(np.all(np.minimum(r, step - r) < 0.01))

    return snapped(x) and snapped(y)


def coordinates(geojson: dict[str, Any]) -> list[list[float]]:
    out: list[list[float]] = []

    def walk(c: Any) -> None:
        if c and isinstance(c[0], int | float):
            out.append(c)
        else:
            for item in c:
                walk(item)

    for f in geojson["features"]:
        walk(f["geometry"]["coordinates"])
    return out


def has_height(c: list[float]) -> bool:
    return len(c) > 2 and c[2] is not None and math.isfinite(c[2])


# -- open endpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_the_viewer_and_health_are_open_to_every_role(client: tuple[TestClient, SecurityServices],
                                                      headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    for path in ("/viewer", "/api/health", "/viewer/static/viewer.js"):
        assert c.get(path, headers=headers[role]).status_code == 200, path


# -- tiles -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_pipe_tiles_are_served_only_to_roles_that_read_every_pipe_dataset_in_full(
        client: tuple[TestClient, SecurityServices], headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    allowed = all(a is Access.FULL for a in EXPECTED[role].values())  # the store holds a 核心 dataset
    for path in ("/tiles/pipes/tileset.json", "/tiles/pipes/tiles/0.glb"):
        r = c.get(path, headers=headers[role])
        assert r.status_code == (200 if allowed else 403), (role, path)
        if not allowed:
            assert r.json()["error"] == "ForbiddenError" and "glTF" not in r.text and "asset" not in r.text
    assert c.head("/tiles/pipes/tileset.json", headers=headers[role]).status_code == (200 if allowed else 403)


# -- search ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ds", DATASETS)
def test_search_finds_readable_features_only_and_coarsens_them_for_the_public(
        client: tuple[TestClient, SecurityServices], headers: dict[str, dict[str, str]], role: str, ds: str) -> None:
    c, _ = client
    prefix = GRADED[ds][2]
    r = c.get("/api/pipes/search", params={"q": prefix, "limit": 200}, headers=headers[role])
    assert r.status_code == 200
    assert_no_leak(role, r.text)
    hits = r.json()
    access = EXPECTED[role][ds]
    if access is Access.NONE:
        assert hits == []
        return
    assert len(hits) == 200 and {h["dataset"] for h in hits} == {ds}
    heights = [h["height"] for h in hits]
    if access is Access.COARSE:
        assert heights == [None] * len(hits)
        assert on_grid([h["lon"] for h in hits], [h["lat"] for h in hits])
    else:
        assert all(h is not None for h in heights)
        assert not on_grid([h["lon"] for h in hits], [h["lat"] for h in hits])
    segments = c.get("/api/pipes/search", params={"q": prefix + "WS1-"}, headers=headers[role]).json()
    assert segments and {h["kind"] for h in segments} == {"segment"}
    lon, lat = [h["lon"] for h in segments], [h["lat"] for h in segments]
    assert on_grid(lon, lat, midpoints=True) is (access is Access.COARSE)


@pytest.mark.parametrize("role", ROLES)
def test_search_by_a_shared_point_code_returns_only_readable_datasets(
        client: tuple[TestClient, SecurityServices], headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    r = c.get("/api/pipes/search", params={"q": "GD1", "limit": 200}, headers=headers[role])
    readable = {ds for ds, a in EXPECTED[role].items() if a is not Access.NONE}
    assert {h["dataset"] for h in r.json()} == readable
    assert_no_leak(role, r.text)


# -- QC findings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ds", [*DATASETS, None])
def test_qc_findings_reach_full_readers_only(client: tuple[TestClient, SecurityServices],
                                             headers: dict[str, dict[str, str]], role: str, ds: str | None) -> None:
    c, _ = client
    r = c.get("/api/qc/findings", params={"dataset": ds} if ds else {}, headers=headers[role])
    assert r.status_code == 200
    assert_no_leak(role, r.text, asked=ds)
    got = {f["properties"]["dataset"] for f in r.json()["features"]}
    full = {d for d, a in EXPECTED[role].items() if a is Access.FULL}
    assert got == (full & {ds} if ds else full)
    if role in ("anonymous", "public"):
        assert "secret/path" not in r.text and "9.87" not in r.text


# -- analyses ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ds", DATASETS)
def test_analyses_are_refused_as_not_found_coarsened_or_full(
        client: tuple[TestClient, SecurityServices], headers: dict[str, dict[str, str]], role: str, ds: str) -> None:
    c, _ = client
    r = c.get("/api/analysis/connectivity", params={"dataset": ds, "f": "geojson"}, headers=headers[role])
    access = EXPECTED[role][ds]
    if access is Access.NONE:
        missing = c.get("/api/analysis/connectivity", params={"dataset": "no-such", "f": "geojson"},
                        headers=headers[role])
        assert r.status_code == missing.status_code == 404
        assert r.text.replace(ds, "X") == missing.text.replace("no-such", "X")  # indistinguishable
        return
    assert r.status_code == 200
    assert_no_leak(role, r.text)
    body = json.loads(r.text)
    coords = coordinates(body)
    assert coords and {f["properties"]["dataset"] for f in body["features"]} == {ds}
    if access is Access.COARSE:
        assert not any(has_height(p) for p in coords)
        assert on_grid([p[0] for p in coords], [p[1] for p in coords])
    else:
        assert any(has_height(p) for p in coords)


@pytest.fixture(scope="module")
def area(graded: DuckDBStore) -> dict[str, Any]:
    """A 200 m square (lon/lat) around a water point of the sample district."""
    x, y = graded.read().execute("SELECT x, y FROM pipe_points WHERE feature_id = 'G:WS1'").fetchone()
    xs, ys = np.array([x - 100, x + 100, x + 100, x - 100, x - 100]), np.array([y - 100, y - 100, y + 100, y + 100,
                                                                                  y - 100])
    lon, lat = transform_xy(xs, ys, STORAGE, CGCS2000_GEOGRAPHIC)
    return {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]]}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ds", DATASETS)
def test_posted_analyses_obey_the_rule_too(client: tuple[TestClient, SecurityServices],
                                           headers: dict[str, dict[str, str]], area: dict[str, Any], role: str,
                                           ds: str) -> None:
    c, _ = client
    r = c.post("/api/analysis/cover", params={"f": "geojson"}, json={"area": area, "dataset": ds},
               headers=headers[role])
    access = EXPECTED[role][ds]
    assert r.status_code == (404 if access is Access.NONE else 200)
    assert_no_leak(role, r.text, asked=ds)
    if access is Access.NONE:
        return
    body = json.loads(r.text)
    if access is Access.COARSE:  # no heights: nothing to check cover against, and nothing precise comes back
        assert body["features"] == [] and body["summary"]["ends_checked"] == 0
    else:
        assert body["summary"]["ends_checked"] > 0 and any(has_height(p) for p in coordinates(body))


@pytest.mark.parametrize("role", ROLES)
def test_an_analysis_without_a_dataset_sees_only_readable_ones(client: tuple[TestClient, SecurityServices],
                                                                headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    r = c.get("/api/analysis/trace", params={"start": "C:WS1"}, headers=headers[role])
    assert_no_leak(role, r.text, asked=None)
    assert r.status_code == (404 if EXPECTED[role]["core"] is Access.NONE else 200)
    if r.status_code == 200:
        assert r.json()["dataset"] == "core"


@pytest.mark.parametrize("role", ROLES)
def test_the_ground_surface_needs_heights_the_public_does_not_get(
        client: tuple[TestClient, SecurityServices], headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    r = c.get("/api/pipes/ground", params={"size": 5}, headers=headers[role])
    assert r.status_code == (404 if role in ("anonymous", "public") else 200)


# -- admin -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/admin/keys"), ("GET", "/api/admin/audit"),
                                              ("GET", "/api/admin/audit/verify"), ("POST", "/api/admin/keys"),
                                              ("DELETE", "/api/admin/keys/ops")])
def test_admin_endpoints_need_the_admin_role(client: tuple[TestClient, SecurityServices],
                                             headers: dict[str, dict[str, str]], role: str, method: str,
                                             path: str) -> None:
    c, _ = client
    body = {"name": "matrix", "role": "public"} if method == "POST" else None
    r = c.request(method, path, json=body, headers=headers[role])
    if role == "admin":
        assert r.status_code == (201 if method == "POST" else 403 if method == "DELETE" else 200)
        return  # (the file's key cannot be revoked through the API: 403)
    assert r.status_code == (401 if role == "anonymous" else 403)
    if role == "anonymous":
        assert "ApiKey" in r.headers["www-authenticate"] and "Bearer" in r.headers["www-authenticate"]
    assert "cim_" not in r.text and "secret_hash" not in r.text


# -- credentials -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/viewer", "/api/pipes/search?q=G", "/tiles/pipes/tileset.json"])
@pytest.mark.parametrize("creds", [
    {"X-API-Key": "cim_nosuch.0123456789abcdef0123456789"},
    {"X-API-Key": "garbage"},
    {"Authorization": "Bearer not.a.jwt"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer " + jwt.encode({"iss": "https://sso.test", "aud": "cim", "sub": "x", "role": "admin",
                                              "exp": 1}, JWT_SECRET)},
])
def test_bad_credentials_are_401_everywhere_never_a_silent_downgrade(client: tuple[TestClient, SecurityServices],
                                                                      path: str, creds: dict[str, str]) -> None:
    c, _ = client
    r = c.get(path, headers=creds)
    assert r.status_code == 401 and r.json()["error"] == "AuthenticationError"
    assert r.headers["www-authenticate"].startswith('Bearer realm="cim"')


def test_an_api_key_works_as_a_bearer_credential_but_not_together_with_x_api_key(
        client: tuple[TestClient, SecurityServices]) -> None:
    c, _ = client
    assert c.get("/api/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    both = c.get("/api/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-API-Key": ADMIN_KEY})
    assert both.status_code == 401 and "not both" in both.json()["detail"]


def test_tiles_open_up_when_every_pipe_dataset_is_readable(graded: DuckDBStore, tiles: Path,
                                                           client: tuple[TestClient, SecurityServices],
                                                           headers: dict[str, dict[str, str]]) -> None:
    c, sec = client
    sec.tile_cache_s = 0
    with graded.transaction() as con:
        con.execute("UPDATE datasets SET grade = '重要' WHERE id = 'core'")
    try:
        assert c.get("/tiles/pipes/tileset.json", headers=headers["planner"]).status_code == 200
        assert c.get("/tiles/pipes/tileset.json", headers=headers["platform"]).status_code == 403  # secret data
        assert c.get("/tiles/pipes/tileset.json").status_code == 403  # the public: never tiles
    finally:
        with graded.transaction() as con:
            con.execute("UPDATE datasets SET grade = '核心' WHERE id = 'core'")
    assert c.get("/tiles/pipes/tileset.json", headers=headers["planner"]).status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_ogc_features_obey_the_rule(client: tuple[TestClient, SecurityServices],
                                    headers: dict[str, dict[str, str]], role: str) -> None:
    c, _ = client
    r = c.get("/ogc/collections/pipe-points/items", params={"limit": 10000}, headers=headers[role])
    assert r.status_code == 200, r.text
    assert_no_leak(role, r.text)
    features = r.json()["features"]
    readable = {ds for ds, level in EXPECTED[role].items() if level is not Access.NONE}
    assert (len(features) > 0) == bool(readable)
    if role in ("anonymous", "public"):
        pts = coordinates(r.json())
        assert pts and not any(has_height(p) for p in pts)
        assert on_grid([p[0] for p in pts], [p[1] for p in pts])
