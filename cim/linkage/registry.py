"""The service registry: every service this platform publishes, with metadata, health and call counts.

Services are OGC API – Features collections (from the store catalogue, :mod:`cim.features.collections`), 3D Tiles
tilesets (pipes, buildings, each real-scene asset) and the analyses under ``/api/analysis``. Health is checked
when the document is built: a collection answers a one-row query (``up``, ``empty`` or ``down``), a tileset
has its ``tileset.json`` (``up``/``missing``), an analysis is ``up`` when the store answers and holds pipe data
(``empty`` otherwise). Call counts come from the audit log (requests under the service's path, 5xx errors,
last call) over ``window_days``.

The document (``docs/linkage/services.schema.json``) is what an upstream platform registers.

Example::

    doc = service_registry(store, settings, platform="370100", base_url="https://cim.jinan.example")
    [s["id"] for s in doc["services"]][:2]        # -> ['collection:pipe-segments', 'collection:pipe-points']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cim.features.collections import PIPE_KINDS, registry
from cim.linkage.outbox import utcnow
from cim.realscene.catalogue import REALSCENE_KINDS, build_dir_of


@dataclass(frozen=True)
class Analysis:
    """One published analysis: operation id, method, path, title."""

    operation: str
    method: str
    path: str
    title: str


#: The analyses under /api/analysis (a test checks this table against the web service's routes).
ANALYSES: tuple[Analysis, ...] = (
    Analysis("analyseExcavation", "POST", "/api/analysis/excavation", "开挖分析 excavation: pipes in a planned pit"),
    Analysis("analyseCrossSection", "POST", "/api/analysis/cross-section", "横断面 cross-section along a line"),
    Analysis("analyseLongProfile", "GET", "/api/analysis/long-profile", "纵断面 long profile along a pipe run"),
    Analysis("analyseClearance", "POST", "/api/analysis/clearance", "净距检查 clearance between pipes"),
    Analysis("analyseStructureClearance", "POST", "/api/analysis/structure-clearance",
             "构筑物净距 clearance between pipes and structures"),
    Analysis("analyseCover", "POST", "/api/analysis/cover", "覆土检查 cover depth check"),
    Analysis("analyseIsolation", "GET", "/api/analysis/isolation", "关阀分析 valve isolation"),
    Analysis("analyseConnectivity", "GET", "/api/analysis/connectivity", "连通分析 connectivity"),
    Analysis("analyseTrace", "GET", "/api/analysis/trace", "追踪分析 up/downstream trace"),
    Analysis("analysePollutionSources", "GET", "/api/analysis/pollution-sources", "污染溯源 pollution sources"),
    Analysis("analyseGasAdjacentChambers", "GET", "/api/analysis/gas-risk", "燃气相邻井室 gas risk chambers"),
)
_PREFIX_RE = r"^(/ogc/collections/[^/]+|/tiles/realscene/[^/]+|/tiles/[^/]+|/api/analysis/[^/]+)"


def _calls(cur: Any, since: datetime) -> dict[str, dict[str, Any]]:
    rows = cur.execute(
        f"""SELECT regexp_extract(path, '{_PREFIX_RE}', 1) AS p, count(*), count(*) FILTER (WHERE status >= 500),
                   max(ts) FROM audit_log WHERE ts >= ? GROUP BY 1""", [since]).fetchall()
    return {p: {"total": int(n), "errors": int(e), "last_at": t.isoformat() + "Z" if t else None}
            for p, n, e, t in rows if p}


def _collection_health(cur: Any, source: Any) -> dict[str, Any]:
    if source is None:  # the records catalogue: it answers when the catalogue does
        table, where = "datasets", "TRUE"
    else:
        table, where = source.table, source.where
        if source.versioning == "rows":
            where += " AND version_to IS NULL"
    started = datetime.now()
    try:
        hit = cur.execute(f"SELECT 1 FROM {table} WHERE {where} LIMIT 1", list(source.params if source else ())
                          ).fetchone()
    except Exception as exc:  # noqa: BLE001 - a failing service is reported, not raised
        return {"status": "down", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    ms = (datetime.now() - started).total_seconds() * 1000
    return {"status": "up" if hit else "empty", "latency_ms": round(ms, 2)}


def _tileset_health(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"status": "unknown", "detail": "no tileset folder known to this process"}
    return {"status": "up"} if (path / "tileset.json").is_file() else {
        "status": "missing", "detail": f"{path / 'tileset.json'} does not exist"}


def service_registry(store: Any, settings: Any, *, platform: str = "local", base_url: str = "",
                     tiles_dir: Path | None = None, buildings_tiles_dir: Path | None = None,
                     window_days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """The registry document: collections, tilesets and analyses with health and call counts."""
    now = now or utcnow()
    _, view = registry(store, settings.storage_crs)
    cur = store.read()
    try:
        calls = _calls(cur, now - timedelta(days=window_days))
        services: list[dict[str, Any]] = []
        for c in view.collections.values():
            path = f"/ogc/collections/{c.id}"
            services.append({
                "id": f"collection:{c.id}", "type": "ogc-api-features" if c.item_type == "feature" else "ogc-api-records",
                "title": c.title, "description": c.description, "href": base_url + path,
                "protocol": "OGC API - Features 1.0" if c.item_type == "feature" else "OGC API - Records 1.0",
                "keywords": list(c.keywords), "datasets": view.registry.member_datasets(c, list(view.visible)),
                "health": _collection_health(cur, c.source), "calls": calls.get(path, _no_calls()),
            })
        has_pipes = bool(cur.execute(
            f"SELECT count(*) FROM datasets WHERE kind IN ({', '.join('?' * len(PIPE_KINDS))})",
            list(PIPE_KINDS)).fetchone()[0])
        rs_rows = cur.execute(
            f"SELECT id, title, kind, metadata FROM datasets WHERE kind IN ({', '.join('?' * len(REALSCENE_KINDS))}) "
            "ORDER BY id", list(REALSCENE_KINDS)).fetchall()
    finally:
        cur.close()
    for name, title, folder in (("pipes", "地下管线三维 3D pipes", tiles_dir),
                                ("buildings", "BIM 建筑 3D buildings", buildings_tiles_dir)):
        path = f"/tiles/{name}"
        services.append({"id": f"tileset:{name}", "type": "3d-tiles", "title": title,
                         "href": f"{base_url}{path}/tileset.json", "protocol": "OGC 3D Tiles 1.1",
                         "health": _tileset_health(folder), "calls": calls.get(path, _no_calls())})
    for dataset_id, title, kind, meta in rs_rows:
        path = f"/tiles/realscene/{dataset_id}"
        try:
            folder = build_dir_of(settings, {"id": dataset_id, "kind": kind, "metadata": meta},
                                  getattr(store, "path", None))
        except Exception:  # noqa: BLE001 - a catalogue entry without a build folder
            folder = None
        services.append({"id": f"tileset:realscene:{dataset_id}", "type": "3d-tiles", "title": f"{title} ({kind})",
                         "href": f"{base_url}{path}/tileset.json", "protocol": "OGC 3D Tiles 1.1",
                         "datasets": [dataset_id], "health": _tileset_health(folder),
                         "calls": calls.get(path, _no_calls())})
    for a in ANALYSES:
        services.append({"id": f"analysis:{a.operation}", "type": "analysis", "title": a.title,
                         "href": base_url + a.path, "method": a.method, "protocol": "HTTP JSON / GeoJSON",
                         "health": {"status": "up" if has_pipes else "empty"},
                         "calls": calls.get(a.path, _no_calls())})
    return {"schema": "cim-linkage/services/1", "platform": platform, "base_url": base_url,
            "generated_at": now.isoformat() + "Z", "window_days": window_days, "services": services}


def _no_calls() -> dict[str, Any]:
    return {"total": 0, "errors": 0, "last_at": None}
