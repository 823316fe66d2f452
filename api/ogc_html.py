"""HTML views of the OGC API resources (``f=html`` or ``Accept: text/html``): plain, self-contained pages.

Every value is escaped; pages load nothing from outside (no scripts, fonts or maps), so they work offline.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

_STYLE = """body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;
vertical-align:top;font-size:.9rem}th{background:#f3f3f3}code{font-size:.85rem}nav a{margin-right:1rem}
.geom{max-width:40rem;overflow-wrap:anywhere;font-family:monospace;font-size:.8rem}"""


def _page(title: str, body: str, links: list[dict[str, Any]] | None = None) -> str:
    nav = ""
    if links:
        nav = "<nav>" + "".join(
            f'<a href="{escape(str(lk["href"]))}" rel="{escape(str(lk.get("rel", "")))}">'
            f'{escape(str(lk.get("title") or lk.get("rel")))}</a>'
            for lk in links if lk.get("type") in ("text/html", None) or lk.get("rel") in ("next", "prev")) + "</nav>"
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{nav}{body}</body></html>")


def _value(v: Any) -> str:
    if isinstance(v, dict | list):
        return f"<code>{escape(json.dumps(v, ensure_ascii=False)[:2000])}</code>"
    if v is None:
        return ""
    return escape(str(v))


def _links_table(links: list[dict[str, Any]]) -> str:
    rows = "".join(f'<tr><td>{escape(str(lk.get("rel", "")))}</td><td>{escape(str(lk.get("type", "")))}</td>'
                   f'<td><a href="{escape(str(lk["href"]))}">{escape(str(lk.get("title") or lk["href"]))}</a></td></tr>'
                   for lk in links)
    return f"<h2>Links</h2><table><tr><th>rel</th><th>type</th><th>href</th></tr>{rows}</table>"


def landing(body: dict[str, Any]) -> str:
    """The landing page."""
    return _page(body["title"], f"<p>{escape(body.get('description', ''))}</p>" + _links_table(body["links"]))


def conformance(body: dict[str, Any]) -> str:
    """The conformance declaration."""
    items = "".join(f"<li><code>{escape(c)}</code></li>" for c in body["conformsTo"])
    return _page("Conformance", f"<ul>{items}</ul>")


def collections(body: dict[str, Any]) -> str:
    """The list of collections."""
    rows = "".join(
        f'<tr><td><a href="{escape(_html_href(c, "self"))}">{escape(c["id"])}</a></td><td>{escape(c["title"])}</td>'
        f'<td>{escape(c.get("itemType", ""))}</td><td>{escape(c.get("description", ""))}</td></tr>'
        for c in body["collections"])
    return _page("Collections", f"<table><tr><th>id</th><th>title</th><th>item type</th><th>description</th></tr>"
                                f"{rows}</table>", body["links"])


def collection(body: dict[str, Any]) -> str:
    """One collection."""
    fields = "".join(f"<tr><th>{escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in body.items()
                     if k not in ("links", "id", "title"))
    return _page(body["title"], f"<p><code>{escape(body['id'])}</code></p><table>{fields}</table>"
                 + _links_table(body["links"]), body["links"])


def items(body: dict[str, Any], title: str, item_base: str = "") -> str:
    """A page of features or records as a table (id, properties, geometry); ids link to ``item_base/<id>``."""
    feats = body.get("features", [])
    names: list[str] = []
    for f in feats:
        names += [k for k in (f.get("properties") or {}) if k not in names]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = "".join(
        f'<tr><td><a href="{escape(_item_href(item_base, f))}">{escape(str(f.get("id")))}</a></td>'
        + "".join(f"<td>{_value((f.get('properties') or {}).get(n))}</td>" for n in names)
        + f'<td class="geom">{_value(f.get("geometry"))}</td></tr>' for f in feats)
    counts = f"<p>numberReturned: {body.get('numberReturned')}"
    if "numberMatched" in body:
        counts += f", numberMatched: {body['numberMatched']}"
    return _page(title, counts + f"</p><table><tr><th>id</th>{head}<th>geometry</th></tr>{rows}</table>"
                 + _links_table(body.get("links", [])), body.get("links", []))


def item(body: dict[str, Any]) -> str:
    """One feature or record."""
    props = "".join(f"<tr><th>{escape(k)}</th><td>{_value(v)}</td></tr>"
                    for k, v in (body.get("properties") or {}).items())
    return _page(f"{body.get('id')}", f"<table>{props}<tr><th>geometry</th><td class='geom'>"
                 f"{_value(body.get('geometry'))}</td></tr></table>" + _links_table(body.get("links", [])),
                 body.get("links", []))


def queryables(body: dict[str, Any]) -> str:
    """The queryables of a collection."""
    rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(str(v.get('title', '')))}</td>"
                   f"<td>{escape(str(v.get('type', v.get('format', ''))))}</td></tr>"
                   for k, v in body["properties"].items())
    return _page(body.get("title", "Queryables"), f"<table><tr><th>name</th><th>title</th><th>type</th></tr>{rows}"
                                                  "</table>")


def _item_href(base: str, feature: dict[str, Any]) -> str:
    return f"{base}/{quote(str(feature.get('id')), safe=':$')}?f=html"


def _html_href(obj: dict[str, Any], rel: str) -> str:
    for lk in obj.get("links", []):
        if lk.get("rel") == rel:
            href = str(lk["href"])
            return href + ("&" if "?" in href else "?") + "f=html"
    return "#"
