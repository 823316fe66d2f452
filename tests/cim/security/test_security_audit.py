"""The audit log (batched background writes, flush at close, query/paging, CSV/JSONL export, hash chain,
retention ≥ 180 days) and the request limits (token buckets, body size)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta

import pytest

from cim.errors import InvalidInputError
from cim.security.audit import AuditEntry, AuditFilter, AuditLog, outcome_of
from cim.security.keys import utcnow
from cim.security.limits import BodyCounter, RateLimitedError, RateLimiter, RequestTooLargeError
from cim.store import DuckDBStore

T0 = utcnow().replace(microsecond=0) - timedelta(days=1)  # inside the retention


def _entry(i: int, **kw: object) -> AuditEntry:
    base = dict(ts=T0 + timedelta(minutes=i), principal=f"key:k{i % 3}", role="planner", via="api_key",
                method="GET", path=f"/api/pipes/search/{i}", query=f"q=GD{i}", datasets=["general"],
                status=200, bytes=100 + i, client_ip="10.0.0.7", user_agent="pytest", duration_ms=1.5,
                outcome="ok", action="read")
    base.update(kw)
    return AuditEntry(**base)  # type: ignore[arg-type]


def _count(store: DuckDBStore) -> int:
    return store.read().execute("SELECT count(*) FROM audit_log").fetchone()[0]


def test_records_are_written_in_the_background_and_flushed_on_close(store: DuckDBStore) -> None:
    log = AuditLog(store, flush_records=1000, flush_seconds=30)  # neither limit is reached by itself
    t = time.perf_counter()
    for i in range(50):
        log.record(_entry(i))
    assert (time.perf_counter() - t) / 50 < 0.005  # recording does not wait for the store
    assert _count(store) == 0  # still queued
    log.close()
    assert _count(store) == 50
    with pytest.raises(RuntimeError):
        log.record(_entry(99))


def test_a_batch_is_written_after_n_records_or_the_interval(store: DuckDBStore) -> None:
    log = AuditLog(store, flush_records=5, flush_seconds=0.2)
    for i in range(5):
        log.record(_entry(i))
    deadline = time.monotonic() + 5
    while _count(store) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _count(store) == 5
    log.record(_entry(6))  # alone: written after flush_seconds
    deadline = time.monotonic() + 5
    while _count(store) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _count(store) == 6
    log.close()


def test_query_filters_pages_newest_first(store: DuckDBStore) -> None:
    log = AuditLog(store)
    for i in range(30):
        log.record(_entry(i, status=403 if i % 10 == 0 else 200, outcome=outcome_of(403 if i % 10 == 0 else 200),
                          datasets=["core"] if i == 20 else ["general"]))
    assert log.flush()
    page = log.query(limit=10)
    assert page.total == 30 and [r["path"] for r in page.rows][:2] == ["/api/pipes/search/29", "/api/pipes/search/28"]
    assert log.query(limit=10, offset=25).rows[-1]["path"] == "/api/pipes/search/0"
    denied = log.query(AuditFilter(outcome="denied"))
    assert denied.total == 3 and all(r["status"] == 403 for r in denied.rows)
    assert log.query(AuditFilter(dataset="core")).rows[0]["path"] == "/api/pipes/search/20"
    window = log.query(AuditFilter(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=8)))
    assert window.total == 3
    assert log.query(AuditFilter(principal="key:k1", method="get")).total == 10
    with pytest.raises(InvalidInputError):
        log.query(limit=5000)
    log.close()


def test_exports_as_csv_and_json_lines(store: DuckDBStore) -> None:
    log = AuditLog(store)
    for i in range(3):
        log.record(_entry(i, user_agent="=HYPERLINK(\"http://x\")" if i == 1 else "pytest",
                          detail={"key_id": "abc"} if i == 2 else None))
    log.flush()
    rows = list(csv.DictReader(io.StringIO("".join(log.export("csv")))))
    assert [r["seq"] for r in rows] == ["1", "2", "3"] and rows[0]["datasets"] == "general"
    assert rows[1]["user_agent"].startswith("'=")  # no formula runs when a spreadsheet opens the export
    lines = "".join(log.export("jsonl", AuditFilter(path_prefix="/api/pipes/search/2"))).splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["detail"] == {"key_id": "abc"}
    with pytest.raises(InvalidInputError):
        list(log.export("xml"))
    log.close()


def test_the_hash_chain_reveals_edited_and_deleted_rows(store: DuckDBStore) -> None:
    log = AuditLog(store)
    for i in range(6):
        log.record(_entry(i, detail={"n": i, "名": "测试"}))
    log.flush()
    assert log.verify().ok and log.verify().checked == 6
    store.read().execute("UPDATE audit_log SET status = 200, principal = 'someone-else' WHERE seq = 3")
    check = log.verify()
    assert not check.ok and check.first_bad_seq == 3
    store.read().execute("DELETE FROM audit_log WHERE seq = 3")
    assert log.verify().first_bad_seq == 4  # the gap breaks the chain
    log.close()


def test_the_chain_continues_across_restarts(store: DuckDBStore) -> None:
    first = AuditLog(store)
    first.record(_entry(1))
    first.close()
    second = AuditLog(store)
    second.record(_entry(2))
    second.close()
    rows = store.read().execute("SELECT seq, prev_hash, row_hash FROM audit_log ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [1, 2] and rows[1][1] == rows[0][2]
    assert AuditLog(store).verify().ok


def test_retention_has_a_six_month_floor_and_purges_only_older_rows(store: DuckDBStore) -> None:
    with pytest.raises(InvalidInputError, match="180 days"):
        AuditLog(store, retention_days=90)
    log = AuditLog(store, retention_days=180, clock=lambda: datetime(2024, 1, 2))  # the writer purges nothing
    log.record(_entry(0, ts=datetime(2024, 1, 1)))
    log.record(_entry(1, ts=datetime(2025, 1, 1)))
    log.flush()
    assert log.purge(now=datetime(2024, 6, 28)) == 0  # 179 days later: kept
    assert log.purge(now=datetime(2025, 3, 1)) == 1
    assert [r["ts"][:10] for r in log.query().rows] == ["2025-01-01"]
    assert log.verify().ok  # the first kept row starts the chain
    log.close()


def test_aware_timestamps_are_stored_as_utc(store: DuckDBStore) -> None:
    from datetime import timezone

    log = AuditLog(store)
    local = (T0 + timedelta(hours=8)).replace(tzinfo=timezone(timedelta(hours=8)))
    log.record(_entry(0, ts=local))
    log.close()
    assert store.read().execute("SELECT ts FROM audit_log").fetchone()[0] == T0


@pytest.mark.parametrize(("status", "outcome"), [(200, "ok"), (304, "ok"), (401, "denied"), (403, "denied"),
                                                 (404, "not_found"), (413, "limited"), (429, "limited"),
                                                 (422, "invalid"), (500, "error"), (None, "error")])
def test_outcomes(status: int | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


# -- limits -------------------------------------------------------------------------------------------------
def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert all(limiter.hit("a", per_minute=60, burst=3).allowed for _ in range(3))
    refused = limiter.hit("a", per_minute=60, burst=3)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1.0)
    assert limiter.hit("b", per_minute=60, burst=3).allowed  # buckets are per caller
    now[0] = 1.0
    assert limiter.hit("a", per_minute=60, burst=3).allowed
    assert not limiter.hit("a", per_minute=60, burst=3).allowed
    with pytest.raises(RateLimitedError, match="60 requests a minute") as err:
        limiter.check("a", per_minute=60, burst=3)
    assert err.value.retry_after_s > 0
    assert all(limiter.hit("c", per_minute=0).allowed for _ in range(1000))  # 0 = unlimited


def test_idle_buckets_are_pruned() -> None:
    now = [0.0]
    limiter = RateLimiter(max_keys=10, clock=lambda: now[0])
    for i in range(10):
        limiter.hit(f"k{i}", per_minute=60)
    now[0] = 3600.0
    limiter.hit("new", per_minute=60)
    assert len(limiter._buckets) <= 10


def test_body_counter_refuses_declared_and_streamed_excess() -> None:
    counter = BodyCounter(100)
    counter.declared("100")
    with pytest.raises(RequestTooLargeError, match="100 bytes"):
        BodyCounter(100).declared("101")
    with pytest.raises(InvalidInputError):
        BodyCounter(100).declared("lots")
    counter.add(60)
    with pytest.raises(RequestTooLargeError):
        counter.add(41)
    assert counter.exceeded
