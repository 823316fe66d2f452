"""Provincial mode: the same service aggregating the city platforms configured as ``[[city]]``.

:meth:`Province.poll` visits every city: its running state (``GET /api/linkage/status``: up, ``degraded``
when it answers but refuses us, ``down`` when it does not answer or fails with 5xx, with latency), its indicator
document (``GET /api/linkage/indicators``) and its change feed (``GET /api/linkage/changes`` from where the last
pull stopped, page by page until caught up). What a poll learns about a city is written in one transaction,
cursor included, so an interrupted poll resumes without losing or repeating change pages.

:meth:`Province.indicators` sums the latest indicator document of every city (:func:`sum_indicators`) — the
provincial core indicators — and lists each city's state next to it.

Example::

    province = Province(store, config)
    province.poll()
    province.indicators()["pipes"]["length_m"]       # metres of pipes in all cities
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from cim.linkage.config import CitySection, LinkageConfig
from cim.linkage.http import Response, http_get
from cim.linkage.indicators import sum_indicators
from cim.linkage.outbox import utcnow

Getter = Callable[[str, dict[str, str], float], Response]
_CITY_COLS = ("city", "name", "url", "status", "checked_at", "latency_ms", "last_ok_at", "last_error", "info",
              "changes_cursor", "changes_pulled")


@dataclass
class CityPoll:
    """What one poll of one city found."""

    city: str
    status: str
    latency_ms: float | None = None
    error: str | None = None
    info: dict[str, Any] | None = None
    indicators: dict[str, Any] | None = None
    change_pages: list[dict[str, Any]] | None = None
    cursor: str | None = None


class Province:
    """Aggregation and monitoring of the cities of ``config`` into ``store``."""

    def __init__(self, store: Any, config: LinkageConfig, *, get: Getter = http_get, page: int = 500,
                 max_pages: int = 200) -> None:
        self.store, self.config, self.get = store, config, get
        self.page, self.max_pages = page, max_pages

    def _get(self, city: CitySection, path: str) -> tuple[Response, dict[str, Any] | None]:
        headers = {"Accept": "application/json"}
        key = city.key()
        if key:
            headers["X-API-Key"] = key
        resp = self.get(city.url + path, headers, self.config.sync.timeout_s)
        doc = None
        if resp.status == 200:
            try:
                doc = json.loads(resp.text)
            except ValueError:
                doc = None
        return resp, doc

    def poll_city(self, city: CitySection, cursor: str | None) -> CityPoll:
        """Status, indicators and new change pages of one city (nothing written yet)."""
        started = time.perf_counter()
        resp, info = self._get(city, "/api/linkage/status")
        latency = round((time.perf_counter() - started) * 1000, 2)
        if resp.status is None or resp.status >= 500:
            return CityPoll(city.id, "down", latency, resp.error or f"HTTP {resp.status}: {resp.text[:200]}")
        if resp.status != 200 or info is None:
            return CityPoll(city.id, "degraded", latency, f"HTTP {resp.status}: {resp.text[:200]}")
        poll = CityPoll(city.id, "up", latency, info=info, change_pages=[], cursor=cursor)
        resp, poll.indicators = self._get(city, "/api/linkage/indicators")
        if poll.indicators is None:
            poll.status, poll.error = "degraded", f"indicators: HTTP {resp.status} {resp.error or resp.text[:200]}"
            return poll
        for _ in range(self.max_pages):
            query = {"limit": self.page, **({"cursor": poll.cursor} if poll.cursor else {})}
            resp, page = self._get(city, "/api/linkage/changes?" + urlencode(query))
            if page is None:
                poll.status, poll.error = "degraded", f"changes: HTTP {resp.status} {resp.error or resp.text[:200]}"
                break
            if page.get("entries"):
                poll.change_pages.append(page)  # type: ignore[union-attr]
            poll.cursor = page.get("next_cursor") or poll.cursor
            if page.get("complete"):
                break
        return poll

    def poll(self) -> list[CityPoll]:
        """Visit every configured city and record what was found."""
        results = []
        for city in self.config.city:
            state = self._state(city.id)
            poll = self.poll_city(city, state.get("changes_cursor") if state else None)
            self._record(city, poll, state)
            results.append(poll)
        return results

    def _state(self, city: str) -> dict[str, Any] | None:
        cur = self.store.read()
        try:
            row = cur.execute(f"SELECT {', '.join(_CITY_COLS)} FROM linkage_cities WHERE city = ?", [city]).fetchone()
        finally:
            cur.close()
        return dict(zip(_CITY_COLS, row, strict=True)) if row else None

    def _record(self, city: CitySection, poll: CityPoll, state: dict[str, Any] | None) -> None:
        now = utcnow()
        pulled = sum(int(p.get("entries", 0)) for p in poll.change_pages or [])
        with self.store.transaction() as con:
            if state is None:
                con.execute("INSERT INTO linkage_cities (city, name, url, status, changes_pulled) VALUES (?, ?, ?, "
                            "'unknown', 0)", [city.id, city.name, city.url])
            con.execute(
                """UPDATE linkage_cities SET name = ?, url = ?, status = ?, checked_at = ?, latency_ms = ?,
                   last_ok_at = CASE WHEN ? = 'up' THEN ? ELSE last_ok_at END, last_error = ?,
                   info = coalesce(?, info), changes_cursor = coalesce(?, changes_cursor),
                   changes_pulled = changes_pulled + ? WHERE city = ?""",
                [city.name, city.url, poll.status, now, poll.latency_ms, poll.status, now, poll.error,
                 json.dumps(poll.info, ensure_ascii=False) if poll.info else None, poll.cursor, pulled, city.id])
            if poll.indicators is not None:
                con.execute("INSERT INTO linkage_city_pulls VALUES (?, 'indicators', ?, NULL, NULL, ?)",
                            [city.id, now, json.dumps(poll.indicators, ensure_ascii=False)])
            for page in poll.change_pages or []:
                con.execute("INSERT INTO linkage_city_pulls VALUES (?, 'changes', ?, ?, ?, ?)",
                            [city.id, now, page.get("dataset"), page.get("version"),
                             json.dumps(page, ensure_ascii=False)])

    def cities(self) -> list[dict[str, Any]]:
        """Every configured city with its last known running state (``unknown`` before the first poll)."""
        out = []
        for city in self.config.city:
            state = self._state(city.id) or {"city": city.id, "name": city.name, "url": city.url,
                                             "status": "unknown", "changes_pulled": 0}
            state = {k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in state.items()}
            if isinstance(state.get("info"), str):
                state["info"] = json.loads(state["info"])
            out.append(state)
        return out

    def latest_indicators(self) -> dict[str, dict[str, Any]]:
        """The most recent indicator document pulled from each city."""
        cur = self.store.read()
        try:
            rows = cur.execute(
                """SELECT city, arg_max(document, pulled_at) FROM linkage_city_pulls WHERE kind = 'indicators'
                   GROUP BY city ORDER BY city""").fetchall()
        finally:
            cur.close()
        return {c: json.loads(d) if isinstance(d, str) else d for c, d in rows}

    def indicators(self) -> dict[str, Any]:
        """The provincial indicators: the sum of every city's latest document, with each city's state."""
        latest = self.latest_indicators()
        configured = [c.id for c in self.config.city]
        doc = sum_indicators([latest[c] for c in configured if c in latest], platform=self.config.platform.id)
        states = {c["city"]: c for c in self.cities()}
        doc["cities"] = [{"platform": c, "status": states[c]["status"], "as_of": latest.get(c, {}).get("as_of"),
                          "checked_at": states[c].get("checked_at")} for c in configured]
        return doc

    def change_pages(self, city: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Change pages pulled from ``city``, oldest first."""
        cur = self.store.read()
        try:
            rows = cur.execute("SELECT document FROM linkage_city_pulls WHERE city = ? AND kind = 'changes' "
                               f"ORDER BY rowid LIMIT {int(limit)}", [city]).fetchall()
        finally:
            cur.close()
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
