"""Outbound sync: fill the outbox from the store and deliver it to the upstream platforms.

:func:`produce` enqueues, per configured upstream and stream, what is new: the service registry when it
changed, an indicator snapshot, and change-feed pages from where the stream's cursor stands — each page
enqueued in the same transaction that advances the cursor.

:class:`Sender` delivers the outbox: the head of every stream is POSTed (signed, with its idempotency key) to
``<upstream url>/messages``; the next message of a stream goes only after the previous one is acknowledged
(2xx). Failures are retried with exponential backoff and jitter (``Retry-After`` of a 429/503 is honoured);
other 4xx answers park the message as ``dead``, which blocks its stream until an admin retries it. All state
lives in the store, so a killed sender resumes where it stopped: a message acknowledged by the upstream but
not yet marked here is sent again, and the upstream drops it by its idempotency key.

Example::

    produce(store, config)                 # enqueue what is new
    Sender(store, config).run(until_idle=True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cim.errors import InvalidInputError
from cim.linkage.changes import read_changes
from cim.linkage.config import LinkageConfig, UpstreamSection
from cim.linkage.http import Transport, http_post, retry_after_s
from cim.linkage.indicators import compute_indicators
from cim.linkage.outbox import Outbox, OutboxMessage, enqueue, stream_state, utcnow
from cim.linkage.province import Province
from cim.linkage.signing import sign_request

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
#: The longest ``Retry-After`` honoured as given (a longer one is cut to this).
MAX_RETRY_AFTER_S = 86400.0


_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _store_lock(store: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(store), threading.Lock())


@dataclass
class SyncStats:
    """What a :meth:`Sender.run` did."""

    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    elapsed_s: float = 0.0
    by_stream: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed_attempts": self.failed_attempts, "dead": self.dead,
                "elapsed_s": round(self.elapsed_s, 3), "by_stream": self.by_stream}


class Sender:
    """Delivers the outbox of ``store`` to the upstreams of ``config``."""

    def __init__(self, store: Any, config: LinkageConfig, *, transport: Transport = http_post,
                 rng: Callable[[], float] = random.random) -> None:
        self.store, self.config = store, config
        self.outbox = Outbox(store)
        self.transport, self.rng = transport, rng

    def backoff_s(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failure: ``base·2^(n-1)`` capped at the maximum, with equal jitter
        (half fixed, half random) so retrying senders spread out."""
        sync = self.config.sync
        delay = min(sync.backoff_max_s, sync.backoff_base_s * 2 ** max(0, attempts - 1))
        return delay / 2 + self.rng() * delay / 2

    def deliver(self, msg: OutboxMessage, upstream: UpstreamSection) -> bool:
        """One attempt at ``msg``; True when the upstream acknowledged it."""
        url = upstream.url + "/messages"
        body = json.dumps(msg.envelope(self.config.platform.id), ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": msg.idempotency_key,
                   **sign_request(upstream.secret_bytes(), "POST", urlsplit(url).path or "/", body,
                                  platform=self.config.platform.id)}
        resp = self.transport(url, body, headers, self.config.sync.timeout_s)
        if resp.status is not None and 200 <= resp.status < 300:
            self.outbox.mark_delivered(msg.id, resp.status)
            return True
        attempts = msg.attempts + 1
        error = resp.error or f"HTTP {resp.status}: {resp.text[:500]}"
        if resp.status is None or resp.status in RETRYABLE:
            wait = retry_after_s(resp.headers.get("retry-after"), time.time()) if resp.status in (429, 503) else None
            delay = min(wait, MAX_RETRY_AFTER_S) if wait is not None else self.backoff_s(attempts)
            self.outbox.mark_failed(msg.id, resp.status, error, retry_at=utcnow() + timedelta(seconds=delay))
            log.info("linkage: %s/%s #%d failed (%s); retry in %.1f s", msg.target, msg.stream, msg.seq, error,
                     delay)
        else:
            self.outbox.mark_failed(msg.id, resp.status, error, retry_at=None, dead=True)
            log.error("linkage: %s/%s #%d refused (%s): stream blocked until retried", msg.target, msg.stream,
                      msg.seq, error)
        return False

    def send_due(self) -> tuple[int, int, int]:
        """Deliver every stream as far as it goes now, one message per stream in turn (round robin, so a long
        backlog on one stream does not hold up the others); returns (delivered, failed attempts, dead).
        Senders of one store in one process take turns (the worker and an admin's "sync now")."""
        with _store_lock(self.store):
            return self._send_due()

    def _send_due(self) -> tuple[int, int, int]:
        upstreams = {u.id: u for u in self.config.upstream}
        delivered = failed = dead = 0
        heads = self.outbox.due()
        while heads:
            following: list[OutboxMessage] = []
            for msg in heads:
                upstream = upstreams.get(msg.target)
                if upstream is None:
                    self.outbox.mark_failed(msg.id, None, f"upstream platform {msg.target!r} is not configured",
                                            retry_at=None, dead=True)
                    dead += 1
                elif self.deliver(msg, upstream):
                    delivered += 1
                    nxt = self.outbox.next_in_stream(msg)
                    if nxt is not None:
                        following.append(nxt)
                else:
                    failed += 1
                    dead += self.outbox.get(msg.id).status == "dead"
            heads = following
        return delivered, failed, dead

    def run(self, stop: threading.Event | None = None, *, until_idle: bool = False,
            deadline_s: float | None = None) -> SyncStats:
        """Deliver until ``stop`` is set, ``deadline_s`` passes, or (``until_idle``) nothing is pending."""
        stop = stop or threading.Event()
        stats = SyncStats()
        start = time.monotonic()
        while not stop.is_set():
            before = self._delivered_by_stream()
            d, f, x = self.send_due()
            stats.delivered += d
            stats.failed_attempts += f
            stats.dead += x
            for key, n in self._delivered_by_stream().items():
                stats.by_stream[key] = stats.by_stream.get(key, 0) + n - before.get(key, 0)
            if until_idle and not self.outbox.due(utcnow() + timedelta(days=36500)):
                break
            if deadline_s is not None and time.monotonic() - start >= deadline_s:
                break
            wake = self.outbox.next_wake()
            wait = self.config.sync.poll_s
            if wake is not None:
                wait = min(wait, max(0.01, (wake - utcnow()).total_seconds()))
            stop.wait(wait)
        stats.elapsed_s = time.monotonic() - start
        return stats

    def _delivered_by_stream(self) -> dict[str, int]:
        cur = self.store.read()
        try:
            rows = cur.execute("SELECT target || '/' || stream, count(*) FROM linkage_outbox "
                               "WHERE status = 'delivered' GROUP BY ALL").fetchall()
        finally:
            cur.close()
        return {k: int(n) for k, n in rows}


# -- producing ------------------------------------------------------------------------------------------
def _digest(doc: Any) -> str:
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def produce(store: Any, config: LinkageConfig, *, services: dict[str, Any] | None = None,
            streams: tuple[str, ...] | None = None, max_pages: int = 1000,
            now: datetime | None = None) -> dict[str, int]:
    """Enqueue what is new for every upstream; returns messages enqueued per ``target/stream``.

    ``services`` is the registry document (:func:`cim.linkage.registry.service_registry`); it is enqueued
    when its content (without times, health and call counts) changed since the last one sent.
    """
    out: dict[str, int] = {}
    source = config.platform.id
    for up in config.upstream:
        wanted = [s for s in up.streams if streams is None or s in streams]
        if "services" in wanted and services is not None:
            stable = {k: v for k, v in services.items() if k not in ("generated_at",)}
            stable["services"] = [{k: v for k, v in s.items() if k not in ("health", "calls")}
                                  for s in services.get("services", [])]
            digest = _digest(stable)
            with store.transaction() as con:
                if stream_state(con, up.id, "services")[1] != digest:
                    enqueue(con, up.id, "services", "services", services, source=source, digest=digest)
                    out[f"{up.id}/services"] = 1
        if "indicators" in wanted:
            if config.platform.level == "province" and config.city:  # a province reports its cities' sum
                doc = Province(store, config).indicators()
            else:
                doc = compute_indicators(store, platform=source, level=config.platform.level, now=now)
            with store.transaction() as con:
                enqueue(con, up.id, "indicators", "indicators", doc, source=source)
            out[f"{up.id}/indicators"] = 1
        if "changes" in wanted:
            n = _produce_changes(store, up.id, source, config.sync.changes_page, max_pages)
            if n:
                out[f"{up.id}/changes"] = n
    return out


def _produce_changes(store: Any, target: str, source: str, page: int, max_pages: int) -> int:
    cur = store.read()
    try:
        position = stream_state(cur, target, "changes")[0]
    finally:
        cur.close()
    n = 0
    for _ in range(max_pages):
        result = read_changes(store, cursor=position, limit=page, as_features=True)
        if not result.has_entries:
            if result.next_cursor != position:  # versions without entries: move the cursor on quietly
                with store.transaction() as con:
                    if stream_state(con, target, "changes")[0] != position:
                        raise InvalidInputError("the changes stream moved on while it was read; try again")
                    con.execute("UPDATE linkage_streams SET position = ?, updated_at = ? "
                                "WHERE target = ? AND stream = 'changes'", [result.next_cursor, utcnow(), target])
                    if con.execute("SELECT count(*) FROM linkage_streams WHERE target = ? AND stream = 'changes'",
                                   [target]).fetchone()[0] == 0:
                        con.execute("INSERT INTO linkage_streams VALUES (?, 'changes', 1, ?, NULL, ?)",
                                    [target, result.next_cursor, utcnow()])
            return n
        with store.transaction() as con:
            enqueue(con, target, "changes", "changes", result.to_dict(), source=source,
                    position=result.next_cursor, expect_position=position)
        n += 1
        position = result.next_cursor
        if result.complete:
            return n
    return n
