"""The durable outbox: messages to upstream platforms, kept in the store until delivered.

A message belongs to a *stream* of one *target* (upstream platform) and has a place ``seq`` in it; the sender
delivers a stream strictly in ``seq`` order (the next message waits until the one before is delivered), while
streams are independent. Every message gets an idempotency key when it is enqueued, so a receiver applies
it once however often a crash or timeout makes us send it again.

:func:`enqueue` writes inside the caller's transaction, so a message and the event it reports (and the
producer's position, e.g. the change-feed cursor) commit or roll back together.

Example::

    with store.transaction() as con:
        enqueue(con, "370000", "indicators", "indicators", {"pipes": {...}}, source="370100")
    Outbox(store).due()          # -> [OutboxMessage(...)]: the head of every stream that may be sent now
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cim.errors import InvalidInputError, NotFoundError

_COLUMNS = ("id", "target", "stream", "seq", "kind", "idempotency_key", "payload", "created_at", "status",
            "attempts", "next_attempt_at", "last_status", "last_error", "delivered_at")


def utcnow() -> datetime:
    """Naive UTC now (the store's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message."""

    id: int
    target: str
    stream: str
    seq: int
    kind: str
    idempotency_key: str
    payload: Any
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: tuple) -> OutboxMessage:
        d = dict(zip(_COLUMNS, row, strict=True))
        if isinstance(d["payload"], str):
            d["payload"] = json.loads(d["payload"])
        return cls(**d)

    def envelope(self, source: str) -> dict[str, Any]:
        """The message as sent: the envelope of ``docs/linkage/message.schema.json``."""
        return {"schema": "cim-linkage/message/1", "id": self.idempotency_key, "source": source,
                "target": self.target, "stream": self.stream, "seq": self.seq, "kind": self.kind,
                "created_at": self.created_at.isoformat() + "Z", "payload": self.payload}

    def to_dict(self, *, with_payload: bool = False) -> dict[str, Any]:
        out = {k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        if not with_payload:
            out.pop("payload")
        return out


def enqueue(con: Any, target: str, stream: str, kind: str, payload: Any, *, source: str,
            position: str | None = None, expect_position: str | None | bool = False,
            digest: str | None = None) -> OutboxMessage:
    """Append a message to ``(target, stream)`` within the caller's transaction ``con``.

    ``position`` / ``digest`` update the stream's producer state in the same transaction; with
    ``expect_position`` (not False) the enqueue fails unless the stored position equals it, so two producers
    cannot enqueue the same change batch twice.
    """
    if not target or not stream or not kind:
        raise InvalidInputError("a message needs a target, a stream and a kind")
    now = utcnow()
    row = con.execute("SELECT next_seq, position FROM linkage_streams WHERE target = ? AND stream = ?",
                      [target, stream]).fetchone()
    if expect_position is not False and (row[1] if row else None) != expect_position:
        raise InvalidInputError(f"stream {target}/{stream} moved on while this batch was prepared; try again")
    seq = int(row[0]) if row else 1
    if row:
        con.execute("UPDATE linkage_streams SET next_seq = ?, position = coalesce(?, position), "
                    "digest = coalesce(?, digest), updated_at = ? WHERE target = ? AND stream = ?",
                    [seq + 1, position, digest, now, target, stream])
    else:
        con.execute("INSERT INTO linkage_streams VALUES (?, ?, ?, ?, ?, ?)",
                    [target, stream, seq + 1, position, digest, now])
    key = f"{source}.{target}.{stream}.{seq}.{secrets.token_hex(6)}"
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    new_id = con.execute(
        "INSERT INTO linkage_outbox (target, stream, seq, kind, idempotency_key, payload, created_at, status, "
        "attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0) RETURNING id",
        [target, stream, seq, kind, key, text, now],
    ).fetchone()[0]
    return OutboxMessage(int(new_id), target, stream, seq, kind, key, payload, now, "pending", 0, None, None,
                         None, None)


def stream_state(con: Any, target: str, stream: str) -> tuple[str | None, str | None]:
    """``(position, digest)`` of a stream's producer (``(None, None)`` before its first message)."""
    row = con.execute("SELECT position, digest FROM linkage_streams WHERE target = ? AND stream = ?",
                      [target, stream]).fetchone()
    return (row[0], row[1]) if row else (None, None)


class Outbox:
    """Reading and updating the outbox of one store (every update is its own short transaction)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _rows(self, sql: str, params: list[Any]) -> list[OutboxMessage]:
        cur = self.store.read()
        try:
            return [OutboxMessage.from_row(r) for r in cur.execute(sql, params).fetchall()]
        finally:
            cur.close()

    def due(self, now: datetime | None = None) -> list[OutboxMessage]:
        """The head (lowest undelivered ``seq``) of every stream, when it is pending and due; a dead head
        blocks its stream until :meth:`retry`."""
        cols = ", ".join(f"o.{c}" for c in _COLUMNS)
        return self._rows(
            f"""SELECT {cols} FROM linkage_outbox o
                JOIN (SELECT target, stream, min(seq) AS seq FROM linkage_outbox WHERE status <> 'delivered'
                      GROUP BY target, stream) h
                  ON h.target = o.target AND h.stream = o.stream AND h.seq = o.seq
                WHERE o.status = 'pending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)
                ORDER BY o.next_attempt_at NULLS FIRST, o.id""",
            [now or utcnow()],
        )

    def next_in_stream(self, msg: OutboxMessage) -> OutboxMessage | None:
        """The message after ``msg`` in its stream, when it is pending and due."""
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM linkage_outbox WHERE target = ? AND stream = ? "
                          "AND seq = ? AND status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)",
                          [msg.target, msg.stream, msg.seq + 1, utcnow()])
        return rows[0] if rows else None

    def next_wake(self) -> datetime | None:
        """When the earliest waiting stream head becomes due (None: nothing pending)."""
        cur = self.store.read()
        try:
            row = cur.execute(
                """SELECT min(coalesce(o.next_attempt_at, o.created_at)) FROM linkage_outbox o
                   JOIN (SELECT target, stream, min(seq) AS seq FROM linkage_outbox WHERE status <> 'delivered'
                         GROUP BY target, stream) h
                     ON h.target = o.target AND h.stream = o.stream AND h.seq = o.seq
                   WHERE o.status = 'pending'""").fetchone()
        finally:
            cur.close()
        return row[0] if row else None

    def pending_count(self) -> int:
        """Messages not delivered yet (pending or dead)."""
        cur = self.store.read()
        try:
            return int(cur.execute("SELECT count(*) FROM linkage_outbox WHERE status <> 'delivered'").fetchone()[0])
        finally:
            cur.close()

    def mark_delivered(self, message_id: int, status: int) -> None:
        with self.store.transaction() as con:
            con.execute("UPDATE linkage_outbox SET status = 'delivered', delivered_at = ?, last_status = ?, "
                        "attempts = attempts + 1, last_error = NULL WHERE id = ?", [utcnow(), status, message_id])

    def mark_failed(self, message_id: int, status: int | None, error: str, *, retry_at: datetime | None,
                    dead: bool = False) -> None:
        """Record a failed attempt: retried at ``retry_at``, or ``dead`` (needs :meth:`retry`)."""
        with self.store.transaction() as con:
            con.execute("UPDATE linkage_outbox SET status = ?, attempts = attempts + 1, last_status = ?, "
                        "last_error = ?, next_attempt_at = ? WHERE id = ? AND status <> 'delivered'",
                        ["dead" if dead else "pending", status, error[:2000], retry_at, message_id])

    def retry(self, message_id: int) -> OutboxMessage:
        """Put a dead (or waiting) message back to pending, due now."""
        with self.store.transaction() as con:
            row = con.execute("SELECT status FROM linkage_outbox WHERE id = ?", [message_id]).fetchone()
            if row is None:
                raise NotFoundError(f"outbox message {message_id} does not exist")
            if row[0] == "delivered":
                raise InvalidInputError(f"outbox message {message_id} was delivered already")
            con.execute("UPDATE linkage_outbox SET status = 'pending', next_attempt_at = NULL WHERE id = ?",
                        [message_id])
        return self.get(message_id)

    def get(self, message_id: int) -> OutboxMessage:
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM linkage_outbox WHERE id = ?", [message_id])
        if not rows:
            raise NotFoundError(f"outbox message {message_id} does not exist")
        return rows[0]

    def messages(self, *, target: str | None = None, stream: str | None = None, status: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[OutboxMessage]:
        """Messages, newest first, filtered."""
        where, params = [], []
        for col, value in (("target", target), ("stream", stream), ("status", status)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM linkage_outbox"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY id DESC LIMIT {int(limit)} OFFSET {int(offset)}")
        return self._rows(sql, params)

    def summary(self) -> list[dict[str, Any]]:
        """Per stream: counts by status, last delivered seq, head and its last error."""
        cur = self.store.read()
        try:
            rows = cur.execute(
                """SELECT s.target, s.stream, s.next_seq - 1 AS enqueued, s.position,
                     count(*) FILTER (WHERE o.status = 'delivered') AS delivered,
                     count(*) FILTER (WHERE o.status = 'pending') AS pending,
                     count(*) FILTER (WHERE o.status = 'dead') AS dead,
                     max(o.delivered_at) AS last_delivered_at,
                     min(o.seq) FILTER (WHERE o.status <> 'delivered') AS head_seq,
                     arg_min(o.last_error, o.seq) FILTER (WHERE o.status <> 'delivered') AS head_error,
                     arg_min(o.next_attempt_at, o.seq) FILTER (WHERE o.status <> 'delivered') AS head_next_attempt,
                     sum(o.attempts) AS attempts
                   FROM linkage_streams s LEFT JOIN linkage_outbox o ON o.target = s.target AND o.stream = s.stream
                   GROUP BY ALL ORDER BY s.target, s.stream""").fetchall()
            names = [d[0] for d in cur.description]
        finally:
            cur.close()
        out = []
        for r in rows:
            d = dict(zip(names, r, strict=True))
            out.append({k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in d.items()})
        return out

    def purge_delivered(self, before: datetime) -> int:
        """Delete delivered messages older than ``before`` (streams keep their ``next_seq``)."""
        with self.store.transaction() as con:
            n = con.execute("SELECT count(*) FROM linkage_outbox WHERE status = 'delivered' AND delivered_at < ?",
                            [before]).fetchone()[0]
            con.execute("DELETE FROM linkage_outbox WHERE status = 'delivered' AND delivered_at < ?", [before])
        return int(n)
