"""The small HTTP client of the linkage (standard library only): POST and GET with a timeout; connection
errors and timeouts come back as ``Response(status=None, error=...)`` instead of exceptions."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Response:
    """What a transport saw: HTTP status (None: no answer), headers, body text, and an error text."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    error: str | None = None


Transport = Callable[[str, bytes, dict[str, str], float], Response]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
    """POST ``body``; connection errors and timeouts come back as ``status=None``."""
    return request("POST", url, body, headers, timeout)


def http_get(url: str, headers: dict[str, str], timeout: float) -> Response:
    """GET ``url``; connection errors and timeouts come back as ``status=None``."""
    return request("GET", url, None, headers, timeout)


def request(method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> Response:
    """One HTTP request (answers of any status are returned, not raised)."""
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured http(s) URL
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                            resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()},
                        exc.read(65536).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return Response(None, error=f"{type(reason).__name__}: {reason}")


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds of a ``Retry-After`` header (delta seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
