"""The append-only audit log: who read or changed what, when, from where, and with what result.

:meth:`AuditLog.record` only queues an entry (microseconds, never blocks a request on the store); a
background thread appends queued entries in batches — every ``flush_records`` entries or ``flush_seconds``
after the first waiting one — on its own cursor. :meth:`AuditLog.close` (the application's shutdown)
writes what is left. Rows are chained by SHA-256 (each ``row_hash`` covers the row and the previous hash),
so :meth:`AuditLog.verify` finds an edited or removed row. There is no update or delete API: only
:meth:`AuditLog.purge` drops rows older than the retention, which cannot be set below
:data:`MIN_RETENTION_DAYS` (Cybersecurity Law art. 21: network logs kept at least six months).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cim.errors import InvalidInputError
from cim.security.keys import utcnow

if TYPE_CHECKING:
    from cim.store import DuckDBStore

log = logging.getLogger(__name__)

MIN_RETENTION_DAYS = 180
PURGE_EVERY = timedelta(hours=24)
MAX_PAGE = 1000


def outcome_of(status: int | None) -> str:
    """``ok``, ``denied`` (401/403), ``limited`` (413/429), ``not_found``, ``invalid`` (other 4xx) or ``error``."""
    if status is None or status >= 500:
        return "error"
    if status in (401, 403):
        return "denied"
    if status in (413, 429):
        return "limited"
    if status == 404:
        return "not_found"
    return "invalid" if status >= 400 else "ok"


@dataclass
class AuditEntry:
    """One request (or one change) as the audit log keeps it."""

    ts: datetime
    principal: str | None = None
    role: str | None = None
    via: str | None = None
    method: str | None = None
    path: str | None = None
    query: str | None = None
    datasets: list[str] = field(default_factory=list)
    status: int | None = None
    bytes: int | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    duration_ms: float | None = None
    outcome: str | None = None
    action: str | None = None
    detail: dict[str, Any] | None = None


_ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))
COLUMNS: tuple[str, ...] = ("seq", *_ENTRY_FIELDS, "prev_hash", "row_hash")
_ARROW = pa.schema([
    ("seq", pa.int64()), ("ts", pa.timestamp("us")), ("principal", pa.string()), ("role", pa.string()),
    ("via", pa.string()), ("method", pa.string()), ("path", pa.string()), ("query", pa.string()),
    ("datasets", pa.list_(pa.string())), ("status", pa.int32()), ("bytes", pa.int64()), ("client_ip", pa.string()),
    ("user_agent", pa.string()), ("duration_ms", pa.float64()), ("outcome", pa.string()), ("action", pa.string()),
    ("detail", pa.string()), ("prev_hash", pa.string()), ("row_hash", pa.string()),
])


def _detail_text(detail: Any) -> str | None:
    if detail is None:
        return None
    if isinstance(detail, str):
        detail = json.loads(detail)
    return json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's values (``detail`` as canonical JSON)."""
    values = [row["seq"], *(row[name] for name in _ENTRY_FIELDS)]
    values = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    values[_ENTRY_FIELDS.index("detail") + 1] = _detail_text(row["detail"])
    payload = json.dumps([prev_hash, *values], ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class AuditFilter:
    """What :meth:`AuditLog.query` and :meth:`AuditLog.export` select (all optional, combined with AND)."""

    since: datetime | None = None
    until: datetime | None = None
    principal: str | None = None
    role: str | None = None
    method: str | None = None
    path_prefix: str | None = None
    status: int | None = None
    outcome: str | None = None
    dataset: str | None = None
    action: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        parts, params = [], {}
        simple = {"principal": "principal", "role": "role", "method": "method", "status": "status",
                  "outcome": "outcome", "action": "action"}
        for attr, column in simple.items():
            value = getattr(self, attr)
            if value is not None:
                parts.append(f"{column} = ${attr}")
                params[attr] = value.upper() if attr == "method" else value
        if self.since is not None:
            parts.append("ts >= $since")
            params["since"] = self.since
        if self.until is not None:
            parts.append("ts < $until")
            params["until"] = self.until
        if self.path_prefix:
            parts.append("starts_with(path, $path_prefix)")
            params["path_prefix"] = self.path_prefix
        if self.dataset:
            parts.append("list_contains(datasets, $dataset)")
            params["dataset"] = self.dataset
        return (" WHERE " + " AND ".join(parts) if parts else ""), params


@dataclass(frozen=True)
class AuditPage:
    """One page of a query, newest first, with the number of rows matching overall."""

    total: int
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class ChainCheck:
    """Result of :meth:`AuditLog.verify`."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class AuditLog:
    """The audit log of one store; ``store`` may be a callable returning it (opened on first use)."""

    def __init__(self, store: DuckDBStore | Callable[[], DuckDBStore], *, retention_days: int = 365,
                 flush_records: int = 200, flush_seconds: float = 1.0, max_queue: int = 100_000,
                 clock: Callable[[], datetime] = utcnow) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            raise InvalidInputError(f"audit retention of {retention_days} days is below the legal minimum of "
                                    f"{MIN_RETENTION_DAYS} days (Cybersecurity Law art. 21)", field="retention_days")
        self._store = store if callable(store) else (lambda: store)
        self.retention = timedelta(days=retention_days)
        self.flush_records = max(1, flush_records)
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing ------------------------------------------------------------------------------------
    def record(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for writing (returns at once; an entry is dropped and counted only if the queue
        stays full for a second, i.e. the store cannot keep up)."""
        if self._closed:
            raise RuntimeError("the audit log is closed")
        if entry.ts.tzinfo is not None:
            entry.ts = entry.ts.astimezone(UTC).replace(tzinfo=None)
        self._ensure_thread()
        try:
            self._queue.put(entry, timeout=1.0)
        except queue.Full:
            self.dropped += 1
            log.error("audit queue full: entry for %s %s dropped (%d so far)", entry.method, entry.path, self.dropped)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every entry queued before this call is in the store; False on timeout."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer (call at shutdown, before the store closes)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cim-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        writer = _Writer(self._store)
        last_purge = None
        stop = False
        while not stop:
            batch, markers, stop = self._collect()
            writer.write(batch)
            for marker in markers:
                marker.done.set()
            now = self.clock()
            if last_purge is None or now - last_purge >= PURGE_EVERY:
                last_purge = now
                writer.purge(now - self.retention)
        writer.close()

    def _collect(self) -> tuple[list[AuditEntry], list[_Flush], bool]:
        """The next batch: entries until ``flush_records`` or ``flush_seconds`` after the first, a flush
        request, or the stop (which also takes everything queued before it)."""
        batch: list[AuditEntry] = []
        markers: list[_Flush] = []
        try:
            item = self._queue.get(timeout=60.0)
        except queue.Empty:
            return batch, markers, False
        deadline = time.monotonic() + self.flush_seconds
        while True:
            if item is _STOP:
                return batch + self._drain(markers), markers, True
            if isinstance(item, _Flush):
                markers.append(item)
                return batch, markers, False
            batch.append(item)
            if len(batch) >= self.flush_records:
                return batch, markers, False
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch, markers, False

    def _drain(self, markers: list[_Flush]) -> list[AuditEntry]:
        entries = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return entries
            if isinstance(item, _Flush):
                markers.append(item)
            elif isinstance(item, AuditEntry):
                entries.append(item)

    # -- retention ----------------------------------------------------------------------------------
    def purge(self, now: datetime | None = None) -> int:
        """Delete rows older than the retention (the only delete there is); returns how many."""
        cutoff = (now or self.clock()) - self.retention
        cur = self._store().read()
        try:
            return _delete_before(cur, cutoff)
        finally:
            cur.close()

    # -- reading ------------------------------------------------------------------------------------
    def query(self, filters: AuditFilter | None = None, *, limit: int = 100, offset: int = 0) -> AuditPage:
        """Matching rows, newest first, ``limit`` (≤ 1000) from ``offset``."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInputError(f"limit must be 1..{MAX_PAGE} and offset ≥ 0", field="limit")
        where, params = (filters or AuditFilter()).where()
        cur = self._store().read()
        try:
            total = int(cur.execute(f"SELECT count(*) FROM audit_log{where}", params).fetchone()[0])
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log{where} ORDER BY seq DESC "
                        f"LIMIT {int(limit)} OFFSET {int(offset)}", params)
            rows = [_row_dict(r) for r in cur.fetchall()]
        finally:
            cur.close()
        return AuditPage(total, rows)

    def export(self, fmt: str, filters: AuditFilter | None = None, *, chunk: int = 5000) -> Iterator[str]:
        """Matching rows, oldest first, as ``csv`` (with a header) or ``jsonl`` text chunks."""
        if fmt not in ("csv", "jsonl"):
            raise InvalidInputError(f"export format {fmt!r} is not csv or jsonl", field="f")
        where, params = (filters or AuditFilter()).where()
        cur = self._store().read()
        try:
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log{where} ORDER BY seq", params)
            if fmt == "csv":
                yield _csv([list(COLUMNS)])
            while rows := cur.fetchmany(chunk):
                dicts = [_row_dict(r) for r in rows]
                if fmt == "jsonl":
                    yield "".join(json.dumps(d, ensure_ascii=False, default=str) + "\n" for d in dicts)
                else:
                    yield _csv([[_csv_cell(d[c]) for c in COLUMNS] for d in dicts])
        finally:
            cur.close()

    def verify(self) -> ChainCheck:
        """Recompute the hash chain over the kept rows (the first kept row's ``prev_hash`` is trusted)."""
        cur = self._store().read()
        try:
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq")
            prev: str | None = None
            checked = 0
            while rows := cur.fetchmany(5000):
                for r in rows:
                    d = dict(zip(COLUMNS, r, strict=True))
                    if prev is not None and d["prev_hash"] != prev:
                        return ChainCheck(False, checked, d["seq"])
                    if row_hash(d["prev_hash"], d) != d["row_hash"]:
                        return ChainCheck(False, checked, d["seq"])
                    prev = d["row_hash"]
                    checked += 1
        finally:
            cur.close()
        return ChainCheck(True, checked)


class _Writer:
    """The writer thread's cursor (opened on first write), sequence and chain head."""

    def __init__(self, store: Callable[[], DuckDBStore]) -> None:
        self.store = store
        self.cur: Any = None
        self.seq, self.head = 0, ""
        self.pending: list[AuditEntry] = []

    def _open(self) -> Any:
        if self.cur is None:
            cur = self.store().read()
            row = cur.execute("SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            self.seq, self.head = (int(row[0]), row[1]) if row else (0, "")
            self.cur = cur
        return self.cur

    def write(self, batch: list[AuditEntry]) -> None:
        batch = self.pending + batch
        if not batch:
            return
        try:
            self._open()
        except Exception:  # noqa: BLE001 - the store cannot be opened yet: keep the rows
            log.exception("audit log: store unavailable; %d entries kept for the next attempt", len(batch))
            self.pending = batch[-100_000:]
            return
        seq, head = self.seq, self.head
        rows = []
        for entry in batch:
            seq += 1
            row = {"seq": seq, **{name: getattr(entry, name) for name in _ENTRY_FIELDS}}
            row["detail"] = _detail_text(row["detail"])
            row["datasets"] = list(row["datasets"] or [])
            row["prev_hash"], row["row_hash"] = head, row_hash(head, row)
            head = row["row_hash"]
            rows.append(row)
        table = pa.Table.from_pylist(rows, schema=_ARROW)
        try:
            self.cur.register("_audit_batch", table)
            try:
                self.cur.execute(f"INSERT INTO audit_log ({', '.join(COLUMNS)}) "
                                 f"SELECT {', '.join(COLUMNS)} FROM _audit_batch")
            finally:
                self.cur.unregister("_audit_batch")
        except Exception:  # noqa: BLE001 - the store may be busy or gone: keep the rows for the next try
            log.exception("audit log write failed; %d entries kept for the next attempt", len(batch))
            self.pending = batch[-100_000:]
            return
        self.pending = []
        self.seq, self.head = seq, head

    def purge(self, cutoff: datetime) -> None:
        if self.cur is None:
            return
        try:
            removed = _delete_before(self.cur, cutoff)
        except Exception:  # noqa: BLE001 - retried at the next purge
            log.exception("audit log purge failed")
            return
        if removed:
            log.info("audit log: purged %d rows older than %s", removed, cutoff.isoformat())

    def close(self) -> None:
        if self.cur is None:
            return
        try:
            self.cur.close()
        except Exception:  # noqa: BLE001 - the store may already be closed
            pass


def _delete_before(cur: Any, cutoff: datetime) -> int:
    n = int(cur.execute("SELECT count(*) FROM audit_log WHERE ts < ?", [cutoff]).fetchone()[0])
    if n:
        cur.execute("DELETE FROM audit_log WHERE ts < ?", [cutoff])
    return n


def _row_dict(row: tuple) -> dict[str, Any]:
    d = dict(zip(COLUMNS, row, strict=True))
    d["ts"] = d["ts"].isoformat() + "Z" if isinstance(d["ts"], datetime) else d["ts"]
    d["detail"] = json.loads(d["detail"]) if isinstance(d["detail"], str) else d["detail"]
    return d


def _csv_cell(value: Any) -> Any:
    """A CSV cell; text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) gets a leading ``'``."""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
