"""Outbox and sync against a real upstream subprocess: outages, slowness, 500s, 429s and a kill -9 of the sender.

The upstream (``upstream_server.py``) applies each message once per idempotency key and logs every request, so
the tests count lost (never applied), duplicated (applied twice) and out-of-order messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cim.linkage.config import parse_linkage_config
from cim.linkage.outbox import Outbox, enqueue
from cim.linkage.signing import SignatureError, remember_nonce, sign_request, verify_signature
from cim.linkage.sync import Sender, produce
from cim.store import DuckDBStore
from tests.linkage.linkage_support import REPO, free_port, get_json, ingest_district, post_json, upstream

SECRET = "s3cret-shared-with-the-province"
ME, UP = "370100", "370000"
STREAMS = ("services", "indicators", "changes")


def _config(port: int, **sync: float) -> dict:
    return {"platform": {"id": ME, "level": "city"},
            "sync": {"timeout_s": 0.5, "backoff_base_s": 0.05, "backoff_max_s": 0.4, "poll_s": 0.05, **sync},
            "upstream": [{"id": UP, "url": f"http://127.0.0.1:{port}/linkage/v1", "secret": SECRET}]}


def _toml(cfg: dict) -> str:
    s = cfg["sync"]
    u = cfg["upstream"][0]
    return (f'[platform]\nid = "{ME}"\nlevel = "city"\n\n[sync]\n'
            + "".join(f"{k} = {v}\n" for k, v in s.items())
            + f'\n[[upstream]]\nid = "{u["id"]}"\nurl = "{u["url"]}"\nsecret = "{u["secret"]}"\n')


def _fill(store: DuckDBStore, per_stream: int) -> None:
    with store.transaction() as con:
        for i in range(per_stream):
            for stream in STREAMS:
                enqueue(con, UP, stream, stream, {"n": i, "stream": stream, "pad": "x" * 200}, source=ME)


def _wait(predicate, deadline_s: float, what: str) -> None:  # noqa: ANN001
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _check_exactly_once(stats: dict, per_stream: int) -> None:
    assert stats["applied"] == stats["applied_distinct"] == per_stream * len(STREAMS)  # 0 lost, 0 applied twice
    for stream in STREAMS:
        assert stats["by_stream"][f"{UP}/{stream}"] == list(range(1, per_stream + 1))  # in order per stream


# -- signing ----------------------------------------------------------------------------------------------
def test_a_signature_covers_method_path_time_nonce_and_body() -> None:
    body = b'{"a":1}'
    h = sign_request(b"k", "POST", "/m", body, platform="p", now=1000.0)
    secret_of = {"p": b"k"}.get
    assert verify_signature(secret_of, "POST", "/m", h, body, now=1000.0) == "p"
    for args, reason in ((("POST", "/m", h, b'{"a":2}'), "bad_signature"), (("POST", "/x", h, body), "bad_signature"),
                         (("PUT", "/m", h, body), "bad_signature"),
                         (("POST", "/m", {**h, "X-CIM-Nonce": "other"}, body), "bad_signature"),
                         (("POST", "/m", {**h, "X-CIM-Platform": "q"}, body), "unknown_platform"),
                         (("POST", "/m", {}, body), "unsigned")):
        with pytest.raises(SignatureError) as err:
            verify_signature(secret_of, *args, now=1000.0)
        assert err.value.reason == reason
    with pytest.raises(SignatureError) as err:
        verify_signature(secret_of, "POST", "/m", h, body, now=1000.0 + 301)
    assert err.value.reason == "stale_timestamp"
    store = DuckDBStore(":memory:")
    with store.transaction() as con:
        remember_nonce(con, "p", h["X-CIM-Nonce"])
    with pytest.raises(SignatureError) as err, store.transaction() as con:
        remember_nonce(con, "p", h["X-CIM-Nonce"])
    assert err.value.status == 409


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    cfg = parse_linkage_config(_config(1, backoff_base_s=1.0, backoff_max_s=30.0))
    low = Sender(DuckDBStore(":memory:"), cfg, rng=lambda: 0.0)
    high = Sender(DuckDBStore(":memory:"), cfg, rng=lambda: 1.0)
    assert [low.backoff_s(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 15.0]
    assert [high.backoff_s(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 30.0]


def test_messages_are_numbered_per_stream_and_producers_cannot_enqueue_a_batch_twice() -> None:
    store = DuckDBStore(":memory:")
    _fill(store, 3)
    heads = Outbox(store).due()
    assert sorted((m.stream, m.seq) for m in heads) == [(s, 1) for s in sorted(STREAMS)]
    assert len({m.idempotency_key for m in Outbox(store).messages(limit=100)}) == 9
    with pytest.raises(Exception, match="moved on"), store.transaction() as con:
        enqueue(con, UP, "changes", "changes", {}, source=ME, position="c2", expect_position="c1")
    assert Outbox(store).pending_count() == 9  # the refused enqueue left nothing


def test_an_unknown_upstream_or_a_refusing_one_parks_the_message_and_blocks_only_its_stream() -> None:
    store = DuckDBStore(":memory:")
    with store.transaction() as con:
        enqueue(con, "nowhere", "indicators", "indicators", {}, source=ME)
        enqueue(con, UP, "indicators", "indicators", {"n": 1}, source=ME)
        enqueue(con, UP, "indicators", "indicators", {"n": 2}, source=ME)
        enqueue(con, UP, "changes", "changes", {"n": 1}, source=ME)
    from cim.linkage.http import Response

    seen: list[int] = []

    def transport(url: str, body: bytes, headers: dict, timeout: float) -> Response:
        import json

        msg = json.loads(body)
        seen.append(msg["seq"])
        return Response(422, text="bad payload") if msg["stream"] == "indicators" else Response(200)

    Sender(store, parse_linkage_config(_config(1)), transport=transport).send_due()
    box = {(m.target, m.stream, m.seq): m for m in Outbox(store).messages()}
    assert box[("nowhere", "indicators", 1)].status == "dead"
    assert "not configured" in box[("nowhere", "indicators", 1)].last_error
    assert box[(UP, "indicators", 1)].status == "dead" and box[(UP, "indicators", 1)].last_status == 422
    assert box[(UP, "indicators", 2)].status == "pending" and box[(UP, "indicators", 2)].attempts == 0
    assert box[(UP, "changes", 1)].status == "delivered"
    Outbox(store).retry(box[(UP, "indicators", 1)].id)
    assert [m.seq for m in Outbox(store).due() if m.stream == "indicators" and m.target == UP] == [1]


# -- against the real upstream ------------------------------------------------------------------------------
def test_sync_survives_an_outage_slowness_500s_and_429s_delivering_each_message_once_in_order(tmp_path: Path) -> None:
    port = free_port()
    cfg = parse_linkage_config(_config(port))
    store = DuckDBStore(tmp_path / "city.duckdb")
    per_stream = 8
    _fill(store, per_stream)
    stop = threading.Event()
    sender = threading.Thread(target=Sender(store, cfg).run, kwargs={"stop": stop}, daemon=True)
    sender.start()
    server = upstream(tmp_path, port, ME, SECRET)
    try:
        _wait(lambda: sum(m.attempts for m in Outbox(store).messages()) >= 6, 20, "failed attempts while down")
        down = Outbox(store).messages()
        assert all(m.status == "pending" for m in down) and any("refused" in (m.last_error or "").lower()
                                                                  or "Connection" in (m.last_error or "")
                                                                  for m in down)
        server.start()
        post_json(server.url + "/_control", {"script": ["error", "error", "429", "slow", "error"], "delay": 1.5,
                                             "retry_after": 1})
        _wait(lambda: Outbox(store).pending_count() == 0, 60, "every message delivered")
        stats = get_json(server.url + "/_stats")
    finally:
        stop.set()
        sender.join(10)
        server.stop()
    _check_exactly_once(stats, per_stream)
    outcomes = stats["outcomes"]
    assert outcomes["error500"] == 3 and outcomes["limited429"] == 1
    assert outcomes.get("duplicate", 0) >= 1  # the slow answer timed out: sent again, not applied again
    times = {}
    for key, outcome, at in stats["log"]:
        times.setdefault(key, []).append((outcome, at))
    limited = next(v for v in times.values() if any(o == "limited429" for o, _ in v))
    i = [o for o, _ in limited].index("limited429")
    assert limited[i + 1][1] - limited[i][1] >= 0.9  # Retry-After: 1 was honoured
    assert all(m.status == "delivered" for m in Outbox(store).messages(limit=1000))


def test_a_sync_process_killed_mid_batch_resumes_with_nothing_lost_and_nothing_applied_twice(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(port, timeout_s=5.0)
    (tmp_path / "linkage.toml").write_text(_toml(cfg), encoding="utf-8")
    db = tmp_path / "city.duckdb"
    store = DuckDBStore(db)
    per_stream = 60
    _fill(store, per_stream)
    store.close()
    server = upstream(tmp_path, port, ME, SECRET).start()
    post_json(server.url + "/_control", {"every_delay": 0.01})
    args = [sys.executable, "-c", "from cim.cli import main; main()", "linkage", "sync", "--store",
            f"duckdb:///{db}", "--linkage-file", str(tmp_path / "linkage.toml"), "--no-enqueue", "--until-idle"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        first = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait(lambda: get_json(server.url + "/_stats")["applied"] >= 40 or first.poll() is not None, 60,
              "the first sync to deliver some messages")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = get_json(server.url + "/_stats")["applied"]
        assert 0 < at_kill < per_stream * len(STREAMS), "the kill must land mid-batch"
        second = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        stats = get_json(server.url + "/_stats")
    finally:
        server.stop()
    _check_exactly_once(stats, per_stream)
    duplicates = stats["outcomes"].get("duplicate", 0)
    assert duplicates <= 1  # at most the message in flight at the kill was sent twice (and dropped upstream)
    store = DuckDBStore(db)
    assert Outbox(store).pending_count() == 0
    print(f"kill -9 test: {per_stream * len(STREAMS)} messages, applied {stats['applied']} "
          f"(distinct {stats['applied_distinct']}), {at_kill} before the kill, {duplicates} re-sent duplicates")


def test_produce_enqueues_indicators_and_each_change_page_once_then_only_what_is_new(tmp_path: Path) -> None:
    store = DuckDBStore(":memory:")
    ingest_district(tmp_path / "d", store, "jinan")
    cfg = parse_linkage_config({**_config(1), "sync": {"changes_page": 100}})
    services = {"platform": ME, "generated_at": "t1", "services": [{"id": "s", "health": {"status": "up"}}]}
    first = produce(store, cfg, services=services)
    n_pages = first[f"{UP}/changes"]
    assert first[f"{UP}/indicators"] == 1 and first[f"{UP}/services"] == 1 and n_pages == 3  # 237 entries / 100
    again = produce(store, cfg, services={**services, "generated_at": "t2",
                                          "services": [{"id": "s", "health": {"status": "down"}}]})
    assert f"{UP}/changes" not in again and f"{UP}/services" not in again  # health and time are not content
    pages = [m.payload for m in Outbox(store).messages(stream="changes", limit=100)]
    assert sum(p["entries"] for p in pages) == 1 + 119 + 117


def test_the_web_service_runs_the_sync_itself_and_shows_it_to_admins(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from cim.settings import Settings
    from tests.linkage.linkage_support import ADMIN_KEY, security_config

    port = free_port()
    server = upstream(tmp_path, port, ME, SECRET).start()
    store = DuckDBStore(":memory:")
    ingest_district(tmp_path / "d", store, "lixia")
    app = create_app(Settings(store="duckdb:///:memory:"), store=store, security=security_config())
    app.state.linkage_config = parse_linkage_config(
        {**_config(port), "sync": {**_config(port)["sync"], "in_service": True, "changes_page": 100}})
    admin = {"X-API-Key": ADMIN_KEY}
    try:
        with TestClient(app) as c:
            _wait(lambda: get_json(server.url + "/_stats")["applied"] >= 5, 30, "the worker's first delivery")
            _wait(lambda: Outbox(store).pending_count() == 0, 30, "the worker to deliver everything")
            streams = {s["stream"]: s for s in c.get("/api/linkage/outbox", headers=admin).json()["streams"]}
            assert streams["changes"]["delivered"] == 3 and streams["indicators"]["delivered"] == 1
            assert streams["services"]["delivered"] == 1
            page = c.get("/admin/linkage", headers=admin).text
            assert "370000" in page and "changes" in page
            now = c.post("/api/linkage/sync", headers=admin).json()  # on demand: a new snapshot, no new changes
            assert now["enqueued"] == {f"{UP}/indicators": 1}
        stats = get_json(server.url + "/_stats")
    finally:
        server.stop()
    assert stats["by_stream"][f"{UP}/changes"] == [1, 2, 3] and stats["applied"] == stats["applied_distinct"]
    kinds = [k for k in stats["by_stream"]]
    assert sorted(kinds) == sorted(f"{UP}/{s}" for s in STREAMS)
