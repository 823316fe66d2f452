"""A stand-in upstream (provincial) platform for the sync tests, run as a real uvicorn subprocess.

``python upstream_server.py PORT STATE_FILE SENDER_ID SECRET`` serves:

* ``POST /linkage/v1/messages`` — verifies the HMAC signature (sender, secret, clock window, nonce never seen),
  then applies the message once per idempotency key (a repeat is answered ``200 duplicate`` and counted, not
  applied). Every request is logged. State lives in SQLite (``STATE_FILE``), so a restarted server keeps it.
* ``POST /_control`` — ``{"script": ["error", "429", "slow", ...], "delay": s, "retry_after": s,
  "every_delay": s}``: each signed message request takes the next mode of the script (``ok`` once it is
  empty): ``error`` answers 500 (not applied), ``429`` answers 429 with ``Retry-After`` (not applied), ``slow``
  applies the message but answers only after ``delay`` seconds; ``every_delay`` slows every answer.
* ``GET /_stats`` — applied/received counts by outcome, per stream the applied seqs in order, and the log.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cim.linkage.signing import SignatureError, verify_signature  # noqa: E402


def make_app(state: Path, sender: str, secret: bytes) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()
    db = sqlite3.connect(state, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("""
        CREATE TABLE IF NOT EXISTS received (n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, stream TEXT, seq INT,
                                             outcome TEXT, at REAL);
        CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY, stream TEXT, seq INT, kind TEXT, n INT);
        CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY);
    """)
    control: dict[str, Any] = {"script": [], "delay": 0.0, "retry_after": 1, "every_delay": 0.0}

    def log(key: str | None, stream: str | None, seq: int | None, outcome: str) -> None:
        db.execute("INSERT INTO received (key, stream, seq, outcome, at) VALUES (?, ?, ?, ?, ?)",
                   (key, stream, seq, outcome, time.time()))

    @app.post("/_control")
    def set_control(body: dict[str, Any]) -> dict[str, Any]:
        with lock:
            control.update({**body, "script": list(body.get("script", control["script"]))})
            return dict(control)

    @app.get("/_stats")
    def stats() -> dict[str, Any]:
        with lock:
            outcomes = dict(db.execute("SELECT outcome, count(*) FROM received GROUP BY outcome").fetchall())
            by_stream: dict[str, list[int]] = {}
            for stream, seq in db.execute("SELECT stream, seq FROM applied ORDER BY n").fetchall():
                by_stream.setdefault(stream, []).append(seq)
            keys = db.execute("SELECT count(DISTINCT key), count(*) FROM applied").fetchone()
            log_rows = db.execute("SELECT key, outcome, at FROM received ORDER BY n").fetchall()
        return {"applied": keys[1], "applied_distinct": keys[0], "received": sum(outcomes.values()),
                "outcomes": outcomes, "by_stream": by_stream, "log": log_rows}

    @app.post("/linkage/v1/messages")
    async def messages(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify_signature(lambda p: secret if p == sender else None, "POST", request.url.path,
                             request.headers, body)
        except SignatureError as exc:
            with lock:
                log(None, None, None, f"refused:{exc.reason}")
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        msg = json.loads(body)
        key, stream, seq = msg["id"], f"{msg['target']}/{msg['stream']}", int(msg["seq"])
        if request.headers.get("idempotency-key") != key:
            return JSONResponse({"error": "Idempotency-Key differs from the message id"}, status_code=400)
        with lock:
            nonce = request.headers["x-cim-nonce"]
            if db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone():
                log(key, stream, seq, "refused:replay")
                return JSONResponse({"error": "replayed nonce"}, status_code=409)
            db.execute("INSERT INTO nonces VALUES (?)", (nonce,))
            mode = control["script"].pop(0) if control["script"] else "ok"
            if mode == "error":
                log(key, stream, seq, "error500")
                return JSONResponse({"error": "injected failure"}, status_code=500)
            if mode == "429":
                log(key, stream, seq, "limited429")
                return JSONResponse({"error": "slow down"}, status_code=429,
                                    headers={"Retry-After": str(control["retry_after"])})
            if db.execute("SELECT 1 FROM applied WHERE key = ?", (key,)).fetchone():
                log(key, stream, seq, "duplicate")
                return JSONResponse({"status": "duplicate", "id": key})
            n = db.execute("SELECT count(*) FROM applied").fetchone()[0]
            db.execute("INSERT INTO applied VALUES (?, ?, ?, ?, ?)", (key, stream, seq, msg["kind"], n + 1))
            log(key, stream, seq, "applied")
            delay = float(control["delay"]) if mode == "slow" else 0.0
            base_delay = float(control.get("every_delay", 0.0))
        if delay or base_delay:
            await asyncio.sleep(delay + base_delay)
        return JSONResponse({"status": "applied", "id": key})

    return app


if __name__ == "__main__":
    port, state_file, sender_id, secret_text = sys.argv[1:5]
    uvicorn.run(make_app(Path(state_file), sender_id, secret_text.encode()), host="127.0.0.1", port=int(port),
                log_level="warning")
