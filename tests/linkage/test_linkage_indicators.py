"""Core indicators equal counts made independently (numpy over the raw rows) on the same store, and a sum of
city documents equals the city documents added up."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cim.linkage.indicators import AGE_BANDS, compute_indicators, sum_indicators
from cim.security.audit import AuditEntry, AuditLog
from cim.store import DuckDBStore
from cim.store.duckdb_ import DatasetInfo
from tests.linkage.linkage_support import ingest_district

NOW = datetime(2026, 11, 25, 8, 0, 0)


def _break_depths(folder: Path, rows: int) -> None:
    """Make ``rows`` lines contradict 地面高程 − 埋深 = 高程 (QC errors on those segments)."""
    path = folder / "pipe_lines.csv"
    table = list(csv.reader(path.open(encoding="utf-8")))
    i = table[0].index("起点埋深")
    for r in table[1:rows + 1]:
        r[i] = f"{float(r[i]) + 0.7:.3f}"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(table)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DuckDBStore:
    tmp = tmp_path_factory.mktemp("indicators")
    s = DuckDBStore(":memory:")
    ingest_district(tmp / "a", s, "lixia", seed=1)
    shutil.rmtree(tmp / "a")
    from converters.samples.district import generate_district

    generate_district(tmp / "b", blocks_x=2, blocks_y=1, seed=2, layout="single")
    _break_depths(tmp / "b", 6)
    from cim.settings import Settings
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    ingest_survey([tmp / "b"], s, SurveyOptions(crs_in="EPSG:4548", dataset_id="shizhong", keep_errors=True),
                  Settings(store="duckdb:///:memory:"))
    # a BIM model in two versions (only the current one counts), submissions, valves, audit entries
    info = DatasetInfo("tower", "tower", "bim", "EPSG:4548", category="工程建设项目数据", grade="一般")
    s.write_asset(info, extent=(None,) * 6)
    s.write_asset(info, extent=(None,) * 6)
    with s.transaction() as con:
        for version, n in ((1, 3), (2, 2)):
            con.execute("INSERT INTO bim_models (dataset_id, version, file_sha256, created_at) VALUES (?, ?, 'x', ?)",
                        ["tower", version, NOW])
            for g in range(n):
                con.execute("INSERT INTO bim_elements (dataset_id, version, global_id, ifc_class) VALUES (?, ?, ?, "
                            "'IfcWall')", ["tower", version, f"G{g}"])
        for i, (stage, status) in enumerate([("drawing_review", "passed"), ("drawing_review", "failed"),
                                             ("drawing_review", "passed"), ("handover", "accepted")]):
            con.execute("INSERT INTO bim_submissions (id, project, stage, dataset_id, version, file_sha256, status, "
                        "submitted_at) VALUES (?, 'p', ?, 'tower', 1, 'x', ?, ?)", [f"S{i}", stage, status, NOW])
        for i in range(4):
            con.execute("INSERT INTO pipe_valves VALUES ('lixia', ?, 'JS1-JS5', 'JS1', TRUE, 'test', ?)", [f"V{i}", NOW])
    log = AuditLog(s)
    for path, status, age in (("/ogc/collections/pipe-segments/items", 200, 1), ("/ogc/collections", 200, 2),
                              ("/tiles/pipes/tileset.json", 200, 3), ("/api/analysis/trace", 500, 4),
                              ("/api/analysis/trace", 400, 5), ("/ogc/collections", 503, 40)):
        log.record(AuditEntry(ts=NOW - timedelta(days=age), method="GET", path=path, status=status))
    log.close()
    return s


def _arrays(s: DuckDBStore, sql: str) -> dict[str, np.ndarray]:
    table = s.read().execute(sql).to_arrow_table()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _group_sum(keys: np.ndarray, values: np.ndarray) -> dict[str, float]:
    labels = np.array(["unknown" if k is None or k == "" else str(k) for k in keys], dtype=object)
    uniq, inv = np.unique(labels, return_inverse=True)
    return {str(k): float(v) for k, v in zip(uniq, np.bincount(inv, weights=values), strict=True)}


def test_pipe_indicators_equal_independent_numpy_counts(store: DuckDBStore) -> None:
    doc = compute_indicators(store, platform="370100", now=NOW)
    seg = _arrays(store, "SELECT dataset_id, feature_id, category, material, year, status, length_3d, "
                         "ST_Length(geom) AS l2 FROM pipe_segments WHERE version_to IS NULL")
    l3 = np.array([np.nan if v is None else v for v in seg["length_3d"]], dtype="f8")
    length = np.where(np.isnan(l3), seg["l2"].astype("f8"), l3)
    pipes = doc["pipes"]
    assert pipes["segments"] == len(length) > 100
    assert pipes["length_m"] == pytest.approx(length.sum(), abs=1e-3)
    for key, column in (("length_m_by_category", "category"), ("length_m_by_material", "material"),
                        ("length_m_by_status", "status")):
        expected = _group_sum(seg[column], length)
        assert pipes[key] == pytest.approx(expected, abs=1e-3), key
    years = np.array([int(y[:4]) if y and y[:4].isdigit() else -1 for y in seg["year"]])
    bands = np.array(["unknown"] * len(years), dtype=object)
    for name, lo, hi in AGE_BANDS:
        bands[(years >= 0) & (NOW.year - years >= lo) & (NOW.year - years <= hi)] = name
    assert pipes["length_m_by_age_band"] == pytest.approx(_group_sum(bands, length), abs=1e-3)
    current = dict(store.read().execute("SELECT id, current_version FROM datasets").fetchall())
    flagged = {(d, f) for d, v, f in store.read().execute("SELECT dataset_id, version, feature_id FROM qc_findings")
               .fetchall() if f is not None and current[d] == v}
    with_findings = sum((d, f) in flagged for d, f in zip(seg["dataset_id"], seg["feature_id"], strict=True))
    assert pipes["segments_with_qc_findings"] == with_findings == 6
    assert pipes["qc_findings_share"] == pytest.approx(with_findings / len(length), abs=1e-6)


def test_point_bim_dataset_and_service_indicators_equal_independent_counts(store: DuckDBStore) -> None:
    doc = compute_indicators(store, platform="370100", now=NOW)
    pts = _arrays(store, "SELECT appurtenance FROM pipe_points WHERE version_to IS NULL")
    app = [a for a in pts["appurtenance"] if a]
    assert doc["points"]["points"] == len(pts["appurtenance"])
    assert doc["points"]["manholes"] == sum(a.endswith("井") or a in ("人孔", "手孔") for a in app) > 0
    assert doc["points"]["valves"] == sum(a == "阀门" for a in app) > 0
    assert doc["points"]["registered_valves"] == 4
    assert doc["points"]["by_appurtenance"] == {k: app.count(k) for k in set(app)}
    assert doc["bim"] == {"models": 1, "elements": 2, "submissions": 4, "submissions_by_stage_status": {
        "drawing_review": {"failed": 1, "passed": 2}, "handover": {"accepted": 1}}}
    ds = store.datasets()
    assert doc["datasets"]["count"] == 3
    assert doc["datasets"]["by_grade"] == {g: sum(d["grade"] == g for d in ds) for g in {d["grade"] for d in ds}}
    assert doc["datasets"]["by_category"] == {"工程建设项目数据": 1, "时空基础数据": 2}
    assert doc["volumes"]["pipe_segments_rows"] == doc["pipes"]["segments"]
    assert doc["volumes"]["dataset_versions"] == len(store.read().execute("SELECT * FROM dataset_versions").fetchall())
    services = doc["services"]  # the 40-day-old 503 lies outside the 30-day window
    assert services["calls"] == 5 and services["errors"] == 1 and services["availability"] == pytest.approx(0.8)
    assert services["calls_by_service"] == {"3d-tiles": 1, "analysis": 2, "ogc-api": 2}
    wide = compute_indicators(store, now=NOW, window_days=60)["services"]
    assert wide["calls"] == 6 and wide["errors"] == 2


def test_indicators_are_computed_afresh_not_cached(store: DuckDBStore) -> None:
    before = compute_indicators(store, now=NOW)["bim"]["submissions"]
    with store.transaction() as con:
        con.execute("INSERT INTO bim_submissions (id, project, stage, dataset_id, version, file_sha256, status, "
                    "submitted_at) VALUES ('S-new', 'p', 'handover', 'tower', 1, 'x', 'submitted', ?)", [NOW])
    try:
        assert compute_indicators(store, now=NOW)["bim"]["submissions"] == before + 1
    finally:
        with store.transaction() as con:
            con.execute("DELETE FROM bim_submissions WHERE id = 'S-new'")


def test_a_provincial_sum_adds_every_count_and_recomputes_the_ratios() -> None:
    a = {"platform": "A", "as_of": "2026-11-25T08:00:00Z",
         "pipes": {"segments": 10, "length_m": 100.5, "segments_with_qc_findings": 1, "qc_findings_share": 0.1,
                   "length_m_by_category": {"JS": 100.5}},
         "services": {"window_days": 30, "calls": 10, "errors": 1, "availability": 0.9}}
    b = {"platform": "B", "as_of": "2026-11-25T09:00:00Z",
         "pipes": {"segments": 30, "length_m": 200.25, "segments_with_qc_findings": 9, "qc_findings_share": 0.3,
                   "length_m_by_category": {"JS": 50.0, "YS": 150.25}},
         "services": {"window_days": 30, "calls": 30, "errors": 0, "availability": 1.0}}
    total = sum_indicators([a, b], platform="370000")
    assert total["pipes"] == {"segments": 40, "length_m": 300.75, "segments_with_qc_findings": 10,
                              "qc_findings_share": 0.25, "length_m_by_category": {"JS": 150.5, "YS": 150.25}}
    assert total["services"] == {"window_days": 30, "calls": 40, "errors": 1, "availability": 0.975}
    assert total["as_of"] == "2026-11-25T09:00:00Z" and [c["platform"] for c in total["cities"]] == ["A", "B"]
    json.dumps(total)  # plain JSON


def test_indicator_time_defaults_to_now() -> None:
    doc = compute_indicators(DuckDBStore(":memory:"))
    as_of = datetime.fromisoformat(doc["as_of"].rstrip("Z")).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - as_of).total_seconds()) < 60
    assert doc["pipes"]["segments"] == 0 and doc["pipes"]["qc_findings_share"] == 0.0
