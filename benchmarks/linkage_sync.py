"""Benchmark: outbound sync throughput — messages enqueued in a file store, delivered signed over loopback to the
stand-in upstream (``tests/linkage/upstream_server.py``, a uvicorn subprocess applying each message once).

Reports enqueue rate, delivery rate (messages/s, every message one signed POST plus its outbox update) and the
upstream's applied / duplicate counts. Baseline: the same signed messages POSTed straight to the upstream
without the outbox (no store reads or writes), so the difference is what durability and ordering cost.

Usage: python benchmarks/linkage_sync.py [--messages 1000] [--streams 3] [--payload-bytes 2000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cim.linkage.config import parse_linkage_config  # noqa: E402
from cim.linkage.http import http_post  # noqa: E402
from cim.linkage.outbox import enqueue  # noqa: E402
from cim.linkage.signing import sign_request  # noqa: E402
from cim.linkage.sync import Sender  # noqa: E402
from cim.store import DuckDBStore  # noqa: E402
from tests.linkage.linkage_support import free_port, get_json, upstream  # noqa: E402

SECRET = "benchmark-secret"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--payload-bytes", type=int, default=2000)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="linkage-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = upstream(work, port, "370100", SECRET).start()
    cfg = parse_linkage_config({"platform": {"id": "370100", "level": "city"},
                                "upstream": [{"id": "370000", "url": f"{server.url}/linkage/v1", "secret": SECRET}]})
    try:
        store = DuckDBStore(work / "bench.duckdb")
        pad = "x" * args.payload_bytes
        t0 = time.perf_counter()
        with store.transaction() as con:
            for i in range(args.messages):
                enqueue(con, "370000", f"s{i % args.streams}", "indicators", {"n": i, "pad": pad}, source="370100")
        t_enqueue = time.perf_counter() - t0
        stats = Sender(store, cfg).run(until_idle=True)
        up = get_json(server.url + "/_stats")
        n_bare = min(args.messages, 500)
        path = "/linkage/v1/messages"
        t1 = time.perf_counter()
        for i in range(n_bare):  # baseline: the same signed messages straight to the upstream, no outbox
            msg = {"schema": "cim-linkage/message/1", "id": f"bare-{i}", "source": "370100", "target": "370000",
                   "stream": "baseline", "seq": i + 1, "kind": "indicators", "created_at": "2026-01-01T00:00:00Z",
                   "payload": {"n": i, "pad": pad}}
            body = json.dumps(msg).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": msg["id"],
                       **sign_request(SECRET.encode(), "POST", path, body, platform="370100")}
            assert http_post(server.url + path, body, headers, 10.0).status == 200
        t_bare = (time.perf_counter() - t1) / n_bare
    finally:
        server.stop()
    print(json.dumps({
        "messages": args.messages, "streams": args.streams, "payload_bytes": args.payload_bytes,
        "enqueue_per_s": round(args.messages / t_enqueue, 1),
        "delivered": stats.delivered, "deliver_s": round(stats.elapsed_s, 2),
        "deliver_per_s": round(stats.delivered / stats.elapsed_s, 1) if stats.elapsed_s else None,
        "baseline_direct_post_per_s": round(1 / t_bare, 1),
        "upstream_applied": up["applied"], "upstream_distinct": up["applied_distinct"],
        "upstream_duplicates": up["outcomes"].get("duplicate", 0),
    }, indent=2))


if __name__ == "__main__":
    main()
