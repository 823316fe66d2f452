"""HMAC-SHA256 request signatures between platforms, with a clock-skew window and replay refusal.

The signature covers, one per line (UTF-8)::

    CIM-HMAC-SHA256            (version tag)
    POST                       (method, upper case)
    /linkage/v1/messages       (path, as sent, without the query)
    1764052800                 (X-CIM-Timestamp: Unix seconds)
    0d3f...                    (X-CIM-Nonce: unique per request; outbound messages use their idempotency key)
    9f86d0...                  (hex SHA-256 of the body bytes; of b"" for a GET)

and travels as ``X-CIM-Signature: v1=<hex HMAC-SHA256(secret, canonical)>`` with ``X-CIM-Platform`` naming
the sender. A receiver refuses unknown platforms, bad signatures, timestamps outside ``skew_s`` and nonces it
has seen before (kept in ``linkage_nonces`` for twice the window, so a replay within the window fails and one
after it fails on the timestamp).

Example::

    headers = sign_request(b"secret", "POST", "/linkage/v1/messages", body, platform="370100")
    verify_signature(lambda p: b"secret" if p == "370100" else None, "POST", "/linkage/v1/messages",
                     headers, body)      # -> "370100"
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cim.errors import CIMError

VERSION = "CIM-HMAC-SHA256"
H_PLATFORM, H_TIMESTAMP, H_NONCE, H_SIGNATURE = "X-CIM-Platform", "X-CIM-Timestamp", "X-CIM-Nonce", "X-CIM-Signature"
DEFAULT_SKEW_S = 300.0


class SignatureError(CIMError):
    """A signed request that cannot be accepted; ``status`` is the HTTP status to answer and ``reason`` a
    short code (unsigned, unknown_platform, bad_signature, stale_timestamp, replayed_nonce)."""

    def __init__(self, message: str, reason: str, status: int = 401, platform: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.status, self.platform = reason, status, platform


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes the signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((VERSION, method.upper(), path, timestamp, nonce, digest)).encode()


def signature(secret: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """``v1=<hex>``: the HMAC-SHA256 of :func:`canonical` under ``secret``."""
    return "v1=" + hmac.new(secret, canonical(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def sign_request(secret: bytes, method: str, path: str, body: bytes, *, platform: str, nonce: str | None = None,
                 now: float | None = None) -> dict[str, str]:
    """The signature headers of one request (a fresh random nonce unless given)."""
    ts = str(int(now if now is not None else time.time()))
    nonce = nonce or secrets.token_hex(16)
    return {H_PLATFORM: platform, H_TIMESTAMP: ts, H_NONCE: nonce,
            H_SIGNATURE: signature(secret, method, path, ts, nonce, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value.strip() if isinstance(value, str) else None


def verify_signature(secret_of: Callable[[str], bytes | None], method: str, path: str,
                     headers: Mapping[str, str], body: bytes, *, skew_s: float = DEFAULT_SKEW_S,
                     now: float | None = None) -> str:
    """The sending platform of a correctly signed, fresh request; raises :class:`SignatureError`.

    The nonce is *not* checked here (that needs the store): call :func:`remember_nonce` after this.
    """
    platform, ts, nonce, sig = (_header(headers, h) for h in (H_PLATFORM, H_TIMESTAMP, H_NONCE, H_SIGNATURE))
    missing = [h for h, v in ((H_PLATFORM, platform), (H_TIMESTAMP, ts), (H_NONCE, nonce), (H_SIGNATURE, sig))
               if not v]
    if missing:
        raise SignatureError(f"unsigned request: missing header(s) {', '.join(missing)}", "unsigned",
                             platform=platform)
    assert platform and ts and nonce and sig
    secret = secret_of(platform)
    if secret is None:
        raise SignatureError(f"unknown platform {platform!r}: not configured as an inbound platform",
                             "unknown_platform", 403, platform)
    if len(nonce) > 200:
        raise SignatureError("the nonce is longer than 200 characters", "bad_nonce", 400, platform)
    expected = signature(secret, method, path, ts, nonce, body)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise SignatureError("bad signature: it does not match method, path, timestamp, nonce and body under "
                             f"the secret shared with {platform!r}", "bad_signature", 401, platform)
    try:
        sent = float(ts)
    except ValueError:
        raise SignatureError(f"{H_TIMESTAMP} must be Unix seconds, not {ts[:40]!r}", "stale_timestamp",
                             401, platform) from None
    current = now if now is not None else time.time()
    if abs(current - sent) > skew_s:
        raise SignatureError(f"stale timestamp: {current - sent:+.0f} s from our clock, outside ±{skew_s:.0f} s",
                             "stale_timestamp", 401, platform)
    return platform


def remember_nonce(con: Any, platform: str, nonce: str, *, skew_s: float = DEFAULT_SKEW_S,
                   now: datetime | None = None) -> None:
    """Record ``nonce`` of ``platform`` inside the caller's transaction ``con``; a nonce seen before raises
    :class:`SignatureError` (409). Nonces older than twice the window are dropped on the way."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    con.execute("DELETE FROM linkage_nonces WHERE seen_at < ?", [now - timedelta(seconds=2 * skew_s)])
    if con.execute("SELECT 1 FROM linkage_nonces WHERE platform = ? AND nonce = ?", [platform, nonce]).fetchone():
        raise SignatureError(f"replayed request: nonce {nonce[:40]!r} of {platform!r} was already used",
                             "replayed_nonce", 409, platform)
    con.execute("INSERT INTO linkage_nonces VALUES (?, ?, ?)", [platform, nonce, now])
