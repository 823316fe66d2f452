"""Core indicators of a CIM platform, computed by query from the store every time (never cached).

The document (``docs/linkage/indicators.schema.json``) holds counts and sums that add up across cities, so a
provincial platform sums city documents leaf by leaf (:func:`sum_indicators`); the two ratios
(``qc_findings_share``, ``availability``) are recomputed from the summed counts.

* pipes: current segments and their length (3D length, else the 2D length of the centre line) by CJJ 61
  category, material, age band (from the year built) and status (0 in use, 1 abandoned, 2 empty, 3 other);
  segments with QC findings in their dataset's current version, and findings by severity;
* points: current pipe points, manholes (appurtenances ending in 井, plus 人孔/手孔), valves (阀门 points) and
  valves registered on segments (``pipe_valves``), points by appurtenance;
* bim: models (current versions), their elements, submissions by stage and status;
* datasets by CIM category, data grade and kind; data volumes (rows, versions, store file size);
* services: calls in the last ``window_days`` from the audit log, by service family, 5xx errors, availability.

Example::

    doc = compute_indicators(store, platform="370100")
    doc["pipes"]["length_m_by_category"]["JS"]     # metres of water supply pipes
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

AGE_BANDS: tuple[tuple[str, int, int], ...] = (("0-9", 0, 9), ("10-19", 10, 19), ("20-29", 20, 29),
                                              ("30-49", 30, 49), ("50+", 50, 10_000))
#: Service families of the audit log's request paths (first match wins).
SERVICE_FAMILIES: tuple[tuple[str, str], ...] = (
    ("/ogc", "ogc-api"), ("/tiles/", "3d-tiles"), ("/api/analysis/", "analysis"), ("/api/bim/", "bim"),
    ("/api/realscene/", "realscene"), ("/api/linkage/", "linkage"), ("/api/", "api"),
)
#: Keys that are not summed across cities (ratios are recomputed; the window is the same everywhere).
NOT_SUMMED = frozenset({"qc_findings_share", "availability", "window_days", "as_of", "platform", "level",
                        "schema", "cities"})
MANHOLE_SQL = "(appurtenance LIKE '%井' OR appurtenance IN ('人孔', '手孔'))"
LENGTH_SQL = "coalesce(length_3d, ST_Length(geom))"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _by(cur: Any, sql: str, params: list[Any] | None = None, *, digits: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cur.execute(sql, params or []).fetchall():
        v = float(value or 0) if digits is not None else int(value or 0)
        out["unknown" if key is None or key == "" else str(key)] = round(v, digits) if digits is not None else v
    return dict(sorted(out.items()))


def _age_sql(year: int) -> str:
    age = f"({year} - TRY_CAST(substr(trim(year), 1, 4) AS INTEGER))"
    cases = " ".join(f"WHEN {age} BETWEEN {lo} AND {hi} THEN '{name}'" for name, lo, hi in AGE_BANDS)
    return f"CASE {cases} ELSE 'unknown' END"


def pipe_indicators(cur: Any, year: int) -> dict[str, Any]:
    """Segments, lengths by category/material/age band/status and the QC share."""
    cur_seg = "FROM pipe_segments WHERE version_to IS NULL"
    n, length = cur.execute(f"SELECT count(*), sum({LENGTH_SQL}) {cur_seg}").fetchone()
    with_findings = cur.execute(
        f"""SELECT count(*) {cur_seg} AND (dataset_id, feature_id) IN (
                SELECT (q.dataset_id, q.feature_id) FROM qc_findings q JOIN datasets d
                  ON d.id = q.dataset_id AND d.current_version = q.version WHERE q.feature_id IS NOT NULL)"""
    ).fetchone()[0]
    pipes = {
        "segments": int(n),
        "length_m": round(float(length or 0), 3),
        "length_m_by_category": _by(cur, f"SELECT category, sum({LENGTH_SQL}) {cur_seg} GROUP BY 1", digits=3),
        "length_m_by_material": _by(cur, f"SELECT material, sum({LENGTH_SQL}) {cur_seg} GROUP BY 1", digits=3),
        "length_m_by_age_band": _by(cur, f"SELECT {_age_sql(year)}, sum({LENGTH_SQL}) {cur_seg} GROUP BY 1",
                                    digits=3),
        "length_m_by_status": _by(cur, f"SELECT status, sum({LENGTH_SQL}) {cur_seg} GROUP BY 1", digits=3),
        "segments_with_qc_findings": int(with_findings),
        "qc_findings_by_severity": _by(cur, """SELECT q.severity, count(*) FROM qc_findings q JOIN datasets d
                                               ON d.id = q.dataset_id AND d.current_version = q.version GROUP BY 1"""),
    }
    pipes["qc_findings_share"] = round(pipes["segments_with_qc_findings"] / n, 6) if n else 0.0
    return pipes


def point_indicators(cur: Any) -> dict[str, Any]:
    """Pipe points, manholes, valves and points by appurtenance."""
    cur_pts = "FROM pipe_points WHERE version_to IS NULL"
    points, manholes, valves = cur.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {MANHOLE_SQL}), count(*) FILTER (WHERE appurtenance = '阀门') "
        f"{cur_pts}").fetchone()
    return {"points": int(points), "manholes": int(manholes), "valves": int(valves),
            "registered_valves": int(cur.execute("SELECT count(*) FROM pipe_valves").fetchone()[0]),
            "by_appurtenance": _by(cur, f"SELECT appurtenance, count(*) {cur_pts} AND appurtenance IS NOT NULL "
                                        "GROUP BY 1")}


def bim_indicators(cur: Any) -> dict[str, Any]:
    """Current BIM models and elements, submissions by stage and status."""
    current = "FROM bim_models m JOIN datasets d ON d.id = m.dataset_id AND d.current_version = m.version"
    by_stage: dict[str, dict[str, int]] = {}
    for stage, status, n in cur.execute("SELECT stage, status, count(*) FROM bim_submissions GROUP BY ALL "
                                        "ORDER BY ALL").fetchall():
        by_stage.setdefault(stage, {})[status] = int(n)
    return {
        "models": int(cur.execute(f"SELECT count(*) {current}").fetchone()[0]),
        "elements": int(cur.execute(
            "SELECT count(*) FROM bim_elements e JOIN datasets d ON d.id = e.dataset_id "
            "AND d.current_version = e.version").fetchone()[0]),
        "submissions": int(cur.execute("SELECT count(*) FROM bim_submissions").fetchone()[0]),
        "submissions_by_stage_status": by_stage,
    }


def dataset_indicators(cur: Any, store_path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Datasets by category, grade and kind; data volumes."""
    datasets = {
        "count": int(cur.execute("SELECT count(*) FROM datasets").fetchone()[0]),
        "by_category": _by(cur, "SELECT category, count(*) FROM datasets GROUP BY 1"),
        "by_grade": _by(cur, "SELECT grade, count(*) FROM datasets GROUP BY 1"),
        "by_kind": _by(cur, "SELECT kind, count(*) FROM datasets GROUP BY 1"),
    }
    volumes = {
        f"{t}_rows": int(cur.execute(f"SELECT count(*) FROM {t} WHERE version_to IS NULL").fetchone()[0])
        for t in ("pipe_points", "pipe_segments", "features")
    }
    volumes["bim_elements_rows"] = int(cur.execute("SELECT count(*) FROM bim_elements").fetchone()[0])
    volumes["dataset_versions"] = int(cur.execute("SELECT count(*) FROM dataset_versions").fetchone()[0])
    size = 0
    if store_path and store_path != ":memory:" and os.path.exists(store_path):
        size = os.path.getsize(store_path)
    volumes["store_bytes"] = int(size)
    return datasets, volumes


def service_indicators(cur: Any, now: datetime, window_days: int) -> dict[str, Any]:
    """Calls in the window from the audit log, by service family; 5xx errors; availability."""
    family = "CASE " + " ".join(f"WHEN starts_with(path, '{p}') THEN '{name}'" for p, name in SERVICE_FAMILIES)
    family += " ELSE 'other' END"
    since = now - timedelta(days=window_days)
    rows = cur.execute(f"SELECT {family}, count(*), count(*) FILTER (WHERE status >= 500) FROM audit_log "
                       "WHERE ts >= ? GROUP BY 1 ORDER BY 1", [since]).fetchall()
    calls = sum(int(r[1]) for r in rows)
    errors = sum(int(r[2]) for r in rows)
    return {"window_days": window_days, "calls": calls, "errors": errors,
            "availability": round(1 - errors / calls, 6) if calls else 1.0,
            "calls_by_service": {r[0]: int(r[1]) for r in rows},
            "errors_by_service": {r[0]: int(r[2]) for r in rows if r[2]}}


def compute_indicators(store: Any, *, platform: str = "local", level: str = "city", now: datetime | None = None,
                       window_days: int = 30) -> dict[str, Any]:
    """The indicator document of ``store`` now (every number by query)."""
    now = now or _utcnow()
    cur = store.read()
    try:
        datasets, volumes = dataset_indicators(cur, getattr(store, "path", None))
        return {
            "schema": "cim-linkage/indicators/1", "platform": platform, "level": level,
            "as_of": now.isoformat() + "Z",
            "pipes": pipe_indicators(cur, now.year), "points": point_indicators(cur), "bim": bim_indicators(cur),
            "datasets": datasets, "volumes": volumes, "services": service_indicators(cur, now, window_days),
        }
    finally:
        cur.close()


def _add(a: Any, b: Any, key: str = "") -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: (_add(a[k], b[k], k) if k in a and k in b else (a[k] if k in a else b[k]))
                for k in sorted(set(a) | set(b))}
    if key in NOT_SUMMED:
        return a
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return round(a + b, 3)
    return a


def sum_indicators(docs: Iterable[dict[str, Any]], *, platform: str, level: str = "province") -> dict[str, Any]:
    """The sum of several platforms' indicator documents (ratios recomputed, ``cities`` lists the parts)."""
    docs = list(docs)
    total: dict[str, Any] = {}
    for doc in docs:
        total = _add(total, {k: v for k, v in doc.items() if k not in NOT_SUMMED}) if total else \
            {k: v for k, v in doc.items() if k not in NOT_SUMMED}
    pipes = total.get("pipes", {})
    if pipes:
        n = pipes.get("segments", 0)
        pipes["qc_findings_share"] = round(pipes.get("segments_with_qc_findings", 0) / n, 6) if n else 0.0
    services = total.get("services", {})
    if services:
        calls = services.get("calls", 0)
        services["availability"] = round(1 - services.get("errors", 0) / calls, 6) if calls else 1.0
        services["window_days"] = max((d.get("services", {}).get("window_days", 0) for d in docs), default=0)
    as_of = max((d.get("as_of", "") for d in docs), default="")
    return {"schema": "cim-linkage/indicators/1", "platform": platform, "level": level, "as_of": as_of or None,
            "cities": [{"platform": d.get("platform"), "as_of": d.get("as_of")} for d in docs], **total}
