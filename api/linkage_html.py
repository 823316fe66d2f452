"""The admin page of the platform linkage (``/admin/linkage``): plain, self-contained, every value escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from cim.linkage.config import LinkageConfig

_STYLE = """body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;
vertical-align:top;font-size:.9rem}th{background:#f3f3f3}.up{color:#070}.down,.dead{color:#b00}
.degraded,.pending{color:#a60}code{font-size:.8rem}"""


def _cell(v: Any) -> str:
    if isinstance(v, dict | list):
        return f"<code>{escape(json.dumps(v, ensure_ascii=False)[:500])}</code>"
    if v is None:
        return ""
    text = escape(str(v))
    return f'<span class="{text}">{text}</span>' if text in ("up", "down", "degraded", "dead", "pending") else text


def _table(title: str, rows: list[dict[str, Any]], cols: tuple[str, ...], empty: str) -> str:
    if not rows:
        return f"<h2>{escape(title)}</h2><p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def linkage_page(config: LinkageConfig, streams: list[dict[str, Any]], messages: list[dict[str, Any]],
                 notices: list[dict[str, Any]], cities: list[dict[str, Any]]) -> str:
    """The page: this platform, upstreams, outbox streams and recent messages, notices, cities."""
    p = config.platform
    ups = [{"id": u.id, "name": u.name, "url": u.url, "streams": ", ".join(u.streams)} for u in config.upstream]
    inbound = [{"id": i.id, "name": i.name} for i in config.inbound]
    parts = [
        f"<p>Platform <b>{escape(p.id)}</b> {escape(p.name)} — level <b>{escape(p.level)}</b>; "
        f"worker in service: {escape(str(config.sync.in_service))}</p>",
        _table("上级平台 Upstream platforms", ups, ("id", "name", "url", "streams"), "none configured"),
        _table("同步流 Outbox streams", streams,
               ("target", "stream", "enqueued", "delivered", "pending", "dead", "head_seq", "head_error",
                "head_next_attempt", "last_delivered_at"), "nothing enqueued yet"),
        _table("最近消息 Recent messages", messages,
               ("id", "target", "stream", "seq", "kind", "status", "attempts", "last_status", "last_error",
                "created_at", "delivered_at"), "no messages"),
        _table("督办通知 Notices and tasks", notices,
               ("received_at", "platform", "notice_id", "kind", "severity", "title", "due_at", "acknowledged_at",
                "acknowledged_by"), "no notices received"),
        _table("可接收平台 Inbound platforms", inbound, ("id", "name"), "none configured"),
        _table("下级城市 Cities (provincial mode)", cities,
               ("city", "name", "url", "status", "checked_at", "latency_ms", "last_ok_at", "last_error",
                "changes_pulled"), "no cities configured"),
    ]
    title = "平台联动 Platform linkage"
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{''.join(parts)}</body></html>")
