"""Cover check: the minimum table, the clean sample district, and a tiny store with shallow and overhead pipes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import box

from cim.analysis.common import Frame
from cim.analysis.cover import CoverResult, cover_check, load_min_cover
from cim.errors import InvalidInputError
from cim.store import DatasetInfo, DuckDBStore

Table = Callable[[list[dict[str, Any]]], pa.Table]


def test_min_cover_table_carries_provenance() -> None:
    rows = load_min_cover()
    cells = {(r.category, r.road_type): r for r in rows}
    assert len(cells) == len(rows)  # no duplicate cell
    assert all(r.confidence in ("H", "M", "L") and r.source for r in rows)
    assert cells[("PS", "carriageway")].min_cover_m == 0.7 and cells[("PS", "footway")].min_cover_m == 0.6
    assert cells[("RQ", "carriageway")].min_cover_m == 0.9 and cells[("RQ", "footway")].min_cover_m == 0.6
    assert cells[("PS", "carriageway")].confidence == "H" and "GB 50014" in cells[("PS", "carriageway")].source


def test_clean_sample_meets_the_footway_minima(district: DuckDBStore, frame: Frame) -> None:
    res = cover_check(district, frame, road_type="footway")
    assert res.findings == [] and res.above_ground == [] and res.unknown == []
    assert res.checked + res.not_in_soil == 2 * district.count("pipe_segments")
    json.dumps(res.to_dict(), allow_nan=False)


def test_telecom_ducts_are_too_shallow_under_a_carriageway(district: DuckDBStore, frame: Frame) -> None:
    cur = district.read()
    # the claim, checked on the recorded depths: every category but telecom (0.5 m to the duct top) clears
    # the carriageway minimum, gravity depths counted to the invert (minus the pipe and a D/10 wall each side)
    depth = dict(cur.execute(
        """SELECT category, min(least(start_depth, end_depth)
                  - CASE WHEN kind = 'gravity' THEN 1.2 * coalesce(height_mm, diameter_mm) / 1000 ELSE 0 END)
           FROM pipe_segments WHERE version_to IS NULL AND category <> 'QT' GROUP BY 1""").fetchall())
    table = {r.category: r.min_cover_m for r in load_min_cover() if r.road_type == "carriageway"}
    assert {c for c, d in depth.items() if d < table[c]} == {"TX"}
    telecom = {r[0] for r in cur.execute("SELECT feature_id FROM pipe_segments WHERE version_to IS NULL "
                                         "AND category = 'TX'").fetchall()}

    res = cover_check(district, frame)  # carriageway by default
    assert {f.feature_id for f in res.findings} == telecom
    assert len(res.findings) == 2 * len(telecom)  # both ends
    f = res.findings[0]
    assert (f.cover, f.required, f.deficit) == pytest.approx((0.5, 0.7, 0.2))
    assert f.category == "TX" and f.dataset == "jinan_district" and f.end in ("start", "end")
    gj = res.to_geojson()
    json.dumps(gj, allow_nan=False)
    props = gj["features"][0]["properties"]
    assert props["role"] == "cover_deficit" and props["feature_id"] in telecom and props["category"] == "TX"


def test_area_limits_the_check(district: DuckDBStore, frame: Frame) -> None:
    area = box(501960, 4058040, 502040, 4058100)  # a stretch of 历山路
    res = cover_check(district, frame, area=area.wkt, crs="EPSG:4548")
    cur = district.read()
    inside = {fid for fid, wkt in cur.execute(
        "SELECT feature_id, ST_AsText(geom) FROM pipe_segments WHERE version_to IS NULL AND category = 'TX'"
    ).fetchall() if shapely.from_wkt(wkt).intersects(area)}
    assert inside and {f.feature_id for f in res.findings} == inside
    with pytest.raises(InvalidInputError, match="road_type"):
        cover_check(district, frame, road_type="motorway")


# -- a tiny store with shallow, overhead and tunnel pipes ---------------------------------------------------

GROUND = 72.0


def tiny_store(store: DuckDBStore, point_table: Table, segment_table: Table) -> DuckDBStore:
    """Five segments, each between its own two points (ground 72.0), 10 m long, 5 m apart."""
    specs = [  # id, category, kind, shape, D or (W, H), material, burial, recorded depth
        ("G1", "RQ", "pressure", "circular", 200, "PE", "ZM", 0.5),  # 0.5 m to the top
        ("D1", "PS", "gravity", "circular", 300, "T", "ZM", 1.0),  # invert 1.0 m: top 0.36 m higher
        ("T1", "TX", "duct", "rect", (300, 200), "PVC", "GK", 0.8),
        ("E1", "DL", "duct", "rect", (200, 200), "TZ", "SJ", -2.0),  # 上架: 2 m above ground
        ("Z1", "QT", "pressure", "rect", (2000, 2000), "T", "ZH", 3.0),  # utility tunnel
    ]
    points, segments = [], []
    for i, (fid, cat, kind, shape, size, material, burial, depth) in enumerate(specs):
        x, y = 502000.0 + 5 * i, 4058200.0
        a, b = f"{fid}a", f"{fid}b"
        points += [{"feature_id": p, "point_id": p, "category": cat, "x": x, "y": y + dy, "ground_h": GROUND}
                   for p, dy in ((a, 0.0), (b, 10.0))]
        w, h = (size, size) if shape == "circular" else size
        h_rec = GROUND - depth
        z = h_rec + h / 2000 if kind == "gravity" else h_rec - h / 2000
        segments.append({
            "feature_id": fid, "start_id": a, "end_id": b, "category": cat, "kind": kind, "shape": shape,
            "diameter_mm": float(w) if shape == "circular" else None,
            "width_mm": float(w) if shape == "rect" else None, "height_mm": float(h) if shape == "rect" else None,
            "material": material, "burial": burial, "start_depth": depth, "end_depth": depth,
            "start_h": h_rec, "end_h": h_rec, "start_z": z, "end_z": z, "x1": x, "y1": y, "x2": x, "y2": y + 10})
    store.write_pipe_network(DatasetInfo(id="tiny", title="tiny", kind="pipe_survey", storage_crs="EPSG:4548"),
                             point_table(points), segment_table(segments))
    return store


def by_id(ends: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in ends:
        out.setdefault(e.feature_id, []).append(e)
    return out


def test_shallow_pipes_are_flagged_with_their_deficit(store: DuckDBStore, point_table: Table,
                                                      segment_table: Table, frame: Frame) -> None:
    tiny_store(store, point_table, segment_table)
    res = cover_check(store, frame, road_type="carriageway")
    found = by_id(res.findings)
    assert set(found) == {"G1", "D1"}
    assert [e.deficit for e in found["G1"]] == pytest.approx([0.4, 0.4])  # gas: 0.9 required, 0.5 there
    d1 = found["D1"][0]
    assert d1.cover == pytest.approx(1.0 - 0.3 * 1.2) and d1.deficit == pytest.approx(0.7 - 0.64)
    assert {e.feature_id for e in res.above_ground} == {"E1"} and res.not_in_soil == 2
    assert res.checked == 6  # G1, D1, T1 at both ends
    footway = cover_check(store, frame, road_type="footway")
    assert set(by_id(footway.findings)) == {"G1"}  # 0.64 m of cover clears the footway's 0.6 m for drains
    assert footway.findings[0].deficit == pytest.approx(0.1)


def test_a_dem_disagreeing_with_the_survey_is_reported(store: DuckDBStore, point_table: Table,
                                                       segment_table: Table, frame: Frame,
                                                       tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from cim.analysis.ground import RasterGround

    tiny_store(store, point_table, segment_table)

    def dem(name: str, height: float) -> RasterGround:
        transform = pytest.importorskip("affine").Affine(1.0, 0.0, 501990.0, 0.0, -1.0, 4058220.0)
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=60, height=40, count=1, dtype="float32",
                           crs="EPSG:4548", transform=transform) as dst:
            dst.write(np.full((40, 60), height, dtype="float32"), 1)
        return RasterGround(path)

    close = cover_check(store, frame, ground=dem("close.tif", GROUND + 0.1))
    assert close.mismatches == [] and close.ground_name == "DEM close.tif"
    assert close.findings and all(e.cover_model == pytest.approx(e.cover + 0.1, abs=1e-4) for e in close.findings)
    raised = cover_check(store, frame, ground=dem("raised.tif", GROUND + 0.5))
    assert {e.feature_id for e in raised.mismatches} == {"G1", "D1", "T1"}
    g1 = by_id(raised.mismatches)["G1"][0]
    assert (g1.ground, g1.ground_model, g1.cover, g1.cover_model) == pytest.approx((72.0, 72.5, 0.5, 1.0), abs=1e-4)
    assert {e.feature_id for e in raised.findings} == {"G1", "D1"}  # the surveyed ground decides
    roles = {f["properties"]["role"] for f in raised.to_geojson()["features"]}
    assert roles == {"cover_deficit", "above_ground", "ground_mismatch"}


def test_result_dict_is_json(store: DuckDBStore, point_table: Table, segment_table: Table, frame: Frame) -> None:
    tiny_store(store, point_table, segment_table)
    res: CoverResult = cover_check(store, frame)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["summary"]["below_minimum"] == 4 and d["summary"]["segments_below_minimum"] == 2
    assert d["summary"]["above_ground"] == 2 and d["summary"]["not_in_soil"] == 2
    assert {m["category"] for m in d["minimums"]} >= {"PS", "RQ", "JS", "DL", "TX"}
