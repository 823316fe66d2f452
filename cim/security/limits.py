"""Request limits: token-bucket rate limiting per caller and request-body size limits (no HTTP here).

A bucket holds ``burst`` tokens and refills at ``per_minute / 60`` tokens a second; each request takes
one. Buckets are keyed by the caller (``key:<id>``, ``jwt:<sub>``, or ``ip:<address>`` for anonymous
requests) and idle full buckets are dropped, so memory stays bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cim.errors import CIMError, InvalidInputError


class RateLimitedError(CIMError):
    """Too many requests from one caller: HTTP 429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTooLargeError(CIMError):
    """A request body over the limit (declared or streamed): HTTP 413; ``setting`` names what sets the limit."""

    def __init__(self, limit: int, setting: str | None = None) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes" + (f" ({setting})" if setting else ""))
        self.limit, self.setting = limit, setting


@dataclass(frozen=True)
class Decision:
    """The answer for one request: allowed, or when to try again."""

    allowed: bool
    retry_after_s: float = 0.0
    remaining: int = 0


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Thread-safe token buckets, one per key; ``per_minute <= 0`` disables limiting."""

    def __init__(self, *, max_keys: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, per_minute: float, burst: int | None = None) -> Decision:
        """Take one token from ``key``'s bucket (``burst`` defaults to a tenth of a minute's allowance, ≥ 5)."""
        if per_minute <= 0:
            return Decision(True, remaining=-1)
        capacity = float(burst if burst is not None else max(5, math.ceil(per_minute / 10)))
        rate = per_minute / 60.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._prune(now, rate, capacity)
                bucket = self._buckets[key] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(True, remaining=int(bucket.tokens))
            return Decision(False, retry_after_s=(1.0 - bucket.tokens) / rate)

    def check(self, key: str, per_minute: float, burst: int | None = None) -> None:
        """:meth:`hit`, raising :class:`RateLimitedError` when the bucket is empty."""
        decision = self.hit(key, per_minute, burst)
        if not decision.allowed:
            raise RateLimitedError(
                f"rate limit of {per_minute:g} requests a minute exceeded; retry in {decision.retry_after_s:.1f} s",
                decision.retry_after_s)

    def _prune(self, now: float, rate: float, capacity: float) -> None:
        """Drop buckets that have refilled (they hold no state worth keeping); else the oldest half."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= capacity]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].at)[: len(self._buckets) // 2]:
                del self._buckets[k]


class BodyCounter:
    """Counts streamed body bytes against ``limit``; :meth:`add` raises :class:`RequestTooLargeError` past it."""

    def __init__(self, limit: int, setting: str | None = None) -> None:
        self.limit, self.setting = limit, setting
        self.seen = 0
        self.exceeded = False

    def declared(self, content_length: str | None) -> None:
        """Refuse a declared ``Content-Length`` over the limit before reading anything."""
        if content_length is None:
            return
        try:
            size = int(content_length)
        except ValueError:
            raise InvalidInputError(f"Content-Length {content_length!r} is not a number") from None
        if size > self.limit:
            self.exceeded = True
            raise RequestTooLargeError(self.limit, self.setting)

    def add(self, n: int) -> None:
        self.seen += n
        if self.seen > self.limit:
            self.exceeded = True
            raise RequestTooLargeError(self.limit, self.setting)
