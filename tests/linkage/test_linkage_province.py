"""Provincial mode end to end: a provincial instance aggregates two city instances (uvicorn subprocesses with
their own stores and generated districts): summed indicators, pulled change feeds, a stopped city shown as down,
and a restarted city's new changes pulled from where the last pull stopped."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cim.linkage.config import parse_linkage_config
from cim.linkage.indicators import NOT_SUMMED
from cim.linkage.province import Province
from cim.settings import Settings
from cim.store import DuckDBStore
from tests.linkage.linkage_support import (
    ADMIN_KEY,
    HERE,
    PLATFORM_KEY,
    Server,
    free_port,
    get_json,
    ingest_district,
    security_config,
    security_toml,
)

ADMIN = {"X-API-Key": ADMIN_KEY}
PLATFORM = {"X-API-Key": PLATFORM_KEY}
CITIES = {"370100": ("济南", (1, 1), 1), "370200": ("青岛", (2, 1), 2)}
SECTIONS = ("pipes", "points", "bim", "datasets", "volumes")


def _city(tmp: Path, city: str, port: int) -> Server:
    folder = tmp / city
    (folder / "linkage.toml").write_text(f'[platform]\nid = "{city}"\nlevel = "city"\nname = "{CITIES[city][0]}"\n',
                                         encoding="utf-8")
    return Server([sys.executable, str(HERE / "city_server.py"), str(port), str(folder / "cim.duckdb"),
                   str(tmp / "security.toml"), str(folder / "linkage.toml")], port, "/api/health",
                  log=folder / "server.log")


def _walk_total(url: str) -> int:
    total, cursor = 0, None
    while True:
        page = get_json(url + "/api/linkage/changes?f=ids&limit=1000" + (f"&cursor={cursor}" if cursor else ""),
                        PLATFORM)
        total += page["entries"]
        cursor = page["next_cursor"]
        if page["complete"]:
            return total


def _assert_sum(total: Any, parts: list[Any], key: str = "") -> None:
    if isinstance(total, dict):
        for k, v in total.items():
            if k not in NOT_SUMMED:
                _assert_sum(v, [p.get(k, {} if isinstance(v, dict) else 0) for p in parts], f"{key}.{k}")
    elif isinstance(total, int | float) and not isinstance(total, bool):
        assert total == pytest.approx(sum(parts), abs=1e-3), key


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("province")
    (tmp / "security.toml").write_text(security_toml(), encoding="utf-8")
    servers = {}
    for city, (_, blocks, seed) in CITIES.items():
        store = DuckDBStore(tmp / city / "cim.duckdb")
        ingest_district(tmp / city / "survey", store, f"pipes-{city}", blocks=blocks, seed=seed)
        store.close()
        servers[city] = _city(tmp, city, free_port())
    try:
        for s in servers.values():
            s.start()
        store = DuckDBStore(":memory:")
        app = create_app(Settings(store="duckdb:///:memory:"), store=store, security=security_config())
        app.state.linkage_config = parse_linkage_config({
            "platform": {"id": "370000", "level": "province", "name": "山东省 CIM 平台"},
            "sync": {"timeout_s": 5},
            "city": [{"id": c, "name": CITIES[c][0], "url": s.url, "api_key": PLATFORM_KEY}
                     for c, s in servers.items()]})
        with TestClient(app) as client:
            yield {"tmp": tmp, "servers": servers, "client": client, "store": store,
                   "config": app.state.linkage_config}
    finally:
        for s in servers.values():
            s.stop()


def test_the_province_sums_the_cities_indicators_and_pulls_their_change_feeds(world: Any) -> None:
    c, servers = world["client"], world["servers"]
    polled = c.post("/api/linkage/province/poll", headers=ADMIN).json()["cities"]
    assert {p["city"]: p["status"] for p in polled} == {"370100": "up", "370200": "up"}
    province = c.get("/api/linkage/indicators", headers=PLATFORM).json()
    assert province["level"] == "province" and province["platform"] == "370000"
    assert [(x["platform"], x["status"]) for x in province["cities"]] == [("370100", "up"), ("370200", "up")]
    direct = {city: get_json(s.url + "/api/linkage/indicators", PLATFORM) for city, s in servers.items()}
    assert all(d["pipes"]["segments"] > 100 for d in direct.values())
    for section in SECTIONS:  # counts of the data itself (service calls move with every request)
        _assert_sum(province[section], [d[section] for d in direct.values()], section)
    pulled = Province(world["store"], world["config"]).latest_indicators()
    _assert_sum(province["services"], [pulled[city]["services"] for city in CITIES], "services")
    segments = sum(d["pipes"]["segments"] for d in direct.values())
    assert province["pipes"]["segments"] == segments
    assert province["pipes"]["qc_findings_share"] == pytest.approx(
        sum(d["pipes"]["segments_with_qc_findings"] for d in direct.values()) / segments)
    states = {x["city"]: x for x in c.get("/api/linkage/province/cities", headers=PLATFORM).json()["cities"]}
    for city, s in servers.items():
        pages = Province(world["store"], world["config"]).change_pages(city)
        assert sum(p["entries"] for p in pages) == states[city]["changes_pulled"] == _walk_total(s.url)
        assert states[city]["info"]["platform"] == city and states[city]["latency_ms"] > 0


def test_a_stopped_city_shows_as_down_and_its_new_changes_are_pulled_after_restart(world: Any) -> None:
    c, servers, tmp = world["client"], world["servers"], world["tmp"]
    c.post("/api/linkage/province/poll", headers=ADMIN)
    before = {x["city"]: x for x in c.get("/api/linkage/province/cities", headers=PLATFORM).json()["cities"]}
    servers["370100"].stop()
    polled = {p["city"]: p for p in c.post("/api/linkage/province/poll", headers=ADMIN).json()["cities"]}
    assert polled["370100"]["status"] == "down" and polled["370100"]["error"]
    assert polled["370200"]["status"] == "up"
    states = {x["city"]: x for x in c.get("/api/linkage/province/cities", headers=PLATFORM).json()["cities"]}
    assert states["370100"]["status"] == "down" and states["370100"]["last_ok_at"] == before["370100"]["last_ok_at"]
    page = c.get("/admin/linkage", headers=ADMIN).text
    assert 'class="down">down' in page and "济南" in page
    province = c.get("/api/linkage/indicators", headers=PLATFORM).json()
    assert {x["platform"]: x["status"] for x in province["cities"]} == {"370100": "down", "370200": "up"}
    # while it is down the city gets a new survey version; after the restart only that version is pulled
    store = DuckDBStore(tmp / "370100" / "cim.duckdb")
    version = ingest_district(tmp / "370100" / "survey2", store, "pipes-370100", blocks=(1, 1), seed=7)
    store.close()
    changed = sum(n for t in ("pipe_points", "pipe_segments") for k, n in version.counts[t].items()
                  if k in ("added", "modified", "deleted")) + 1  # + the dataset record
    servers["370100"].start()
    polled = {p["city"]: p for p in c.post("/api/linkage/province/poll", headers=ADMIN).json()["cities"]}
    assert polled["370100"]["status"] == "up" and polled["370100"]["change_pages"] == 1
    after = {x["city"]: x for x in c.get("/api/linkage/province/cities", headers=PLATFORM).json()["cities"]}
    assert after["370100"]["changes_pulled"] - before["370100"]["changes_pulled"] == changed
    assert after["370200"]["changes_pulled"] == before["370200"]["changes_pulled"]  # nothing new there


def test_a_city_refusing_us_is_degraded_and_a_province_pushes_its_cities_sum_upstream() -> None:
    import json as _json

    from cim.linkage.http import Response
    from cim.linkage.outbox import Outbox
    from cim.linkage.sync import produce

    docs = {"A": {"schema": "cim-linkage/indicators/1", "platform": "A", "as_of": "2026-11-25T08:00:00Z",
                  "pipes": {"segments": 3, "length_m": 10.0}},
            "B": {"schema": "cim-linkage/indicators/1", "platform": "B", "as_of": "2026-11-25T08:00:00Z",
                  "pipes": {"segments": 4, "length_m": 5.5}}}

    def get(url: str, headers: dict, timeout: float) -> Response:
        city = url.split("//")[1].split(".")[0].upper()
        if city == "C":
            return Response(401, text='{"error": "AuthenticationError"}')
        if url.endswith("/status"):
            return Response(200, text=_json.dumps({"platform": city}))
        if url.endswith("/indicators"):
            return Response(200, text=_json.dumps(docs[city]))
        return Response(200, text=_json.dumps({"entries": 0, "next_cursor": "c", "complete": True}))

    cfg = parse_linkage_config({
        "platform": {"id": "370000", "level": "province"},
        "city": [{"id": c, "url": f"http://{c.lower()}.example"} for c in "ABC"],
        "upstream": [{"id": "100000", "url": "http://national.example/linkage/v1", "secret": "s",
                      "streams": ["indicators"]}]})
    store = DuckDBStore(":memory:")
    polls = {p.city: p for p in Province(store, cfg, get=get).poll()}
    assert polls["C"].status == "degraded" and "401" in polls["C"].error
    assert polls["A"].status == polls["B"].status == "up"
    produce(store, cfg)
    (msg,) = Outbox(store).messages(stream="indicators")
    assert msg.payload["level"] == "province" and msg.payload["pipes"] == {"segments": 7, "length_m": 15.5,
                                                                                "qc_findings_share": 0.0}
    assert [(c["platform"], c["status"]) for c in msg.payload["cities"]] == [("A", "up"), ("B", "up"),
                                                                             ("C", "degraded")]
