"""Excavation analysis on the sample district: expected hits derived independently with shapely on the
stored geometries, R-tree plans, input errors, contacts and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from cim.analysis.contacts import OwnerContact, load_contacts
from cim.analysis.excavation import (
    APPURTENANCE_RADIUS_M,
    CHAMBER_RADIUS_M,
    NO_CONTACT,
    POINTS_SQL,
    SEGMENTS_SQL,
    excavate,
)
from cim.errors import InvalidInputError, NotFoundError, OutOfRegionError
from cim.pipes.dictionaries import resolve_point_type

DS = "jinan_district"
#: Around the crossing of 千佛山路 (x ≈ 502150) and 文化东路 (y ≈ 4058150): every network passes here.
CROSSING = shapely.Polygon([(502138, 4058155), (502155, 4058138), (502172, 4058155), (502155, 4058172)])
#: A 3 m wide strip across 历山路 between manholes: no appurtenance within it.
STRIP = shapely.box(501975, 4058075, 502030, 4058078)
TO_LONLAT = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)


def lonlat(polygon: shapely.Polygon) -> dict:
    return shapely.geometry.mapping(shapely.transform(polygon, lambda c: np.column_stack(
        TO_LONLAT.transform(c[:, 0], c[:, 1]))))


def stored_segments(store) -> list[tuple]:
    return store.read().execute(
        """SELECT feature_id, ST_AsWKB(geom), diameter_mm, width_mm, height_mm, start_z, end_z, category
           FROM pipe_segments WHERE version_to IS NULL AND dataset_id = ?""", [DS]).fetchall()


def expected_segment_hits(store, polygon: shapely.Polygon, bottom: float, top: float) -> set[str]:
    """Segments whose solid (sampled every 2 cm along the centre-line; round sections as their bounding
    square) enters the prism."""
    out = set()
    for fid, wkb, d, w, h, z1, z2, _ in stored_segments(store):
        line = shapely.from_wkb(bytes(wkb))
        if line.distance(polygon) > 5:  # no section is 10 m wide: skip sampling far segments
            continue
        half_w = d / 2000 if d is not None else w / 2000
        half_h = d / 2000 if d is not None else h / 2000
        (x1, y1), (x2, y2) = shapely.get_coordinates(line)
        n = int(np.ceil(line.length / 0.02)) + 1
        t = np.linspace(0, 1, n)
        xs, ys, zs = x1 + t * (x2 - x1), y1 + t * (y2 - y1), z1 + t * (z2 - z1)
        near = shapely.distance(polygon, shapely.points(xs, ys)) <= half_w
        if (near & (zs - half_h <= top) & (zs + half_h >= bottom)).any():
            out.add(fid)
    return out


def test_pit_over_crossing_hits_the_pipes_there(district, frame):
    result = excavate(district, frame, area=lonlat(CROSSING), depth_m=3.0)
    pit = result.pit
    grounds = [r[0] for r in district.read().execute(
        "SELECT ground_h FROM pipe_points WHERE x BETWEEN 502090 AND 502220 AND y BETWEEN 4058090 AND 4058220"
    ).fetchall()]
    assert min(grounds) <= pit.ground_h <= max(grounds)
    assert pit.top_h - pit.bottom_h == pytest.approx(3.0)
    hits = {i.feature_id for i in result.hits if i.item == "segment"}
    expected = expected_segment_hits(district, CROSSING, pit.bottom_h, pit.top_h)
    assert hits == expected
    assert {fid.split("-")[0][:2] for fid in hits} >= {"GD", "RL", "RQ"}
    assert all(i.clearance_m <= 0 for i in result.hits)
    points = district.read().execute(
        "SELECT feature_id, x, y, appurtenance FROM pipe_points WHERE appurtenance IS NOT NULL AND dataset_id = ?",
        [DS]).fetchall()
    radius = [CHAMBER_RADIUS_M if resolve_point_type(a).is_chamber else APPURTENANCE_RADIUS_M for _, _, _, a in points]
    expected_points = {p[0] for p, r in zip(points, radius, strict=True)
                       if shapely.distance(CROSSING, shapely.Point(p[1], p[2])) <= r}
    assert expected_points and {i.feature_id for i in result.hits if i.item == "point"} == expected_points
    for item in result.near:
        assert 0 < item.clearance_m <= item.safety_m


def test_bottom_below_everything_hits_by_plan_alone(district, frame):
    result = excavate(district, frame, area=CROSSING, crs="EPSG:4548", bottom_h=40.0, top_h=90.0)
    expected = set()
    for fid, wkb, d, w, _, _, _, _ in stored_segments(district):
        half = d / 2000 if d is not None else w / 2000
        if shapely.from_wkb(bytes(wkb)).buffer(half).intersects(CROSSING):
            expected.add(fid)
    assert {i.feature_id for i in result.hits if i.item == "segment"} == expected
    assert result.pit.ground_source == "given top_h"


def test_shallow_pit_hits_nothing_but_reports_near(district, frame):
    covers = district.read().execute(
        "SELECT min(least(start_depth, end_depth)) FROM pipe_segments WHERE dataset_id = ?", [DS]).fetchone()[0]
    assert covers == pytest.approx(0.5)
    result = excavate(district, frame, area=STRIP, crs="EPSG:4548", depth_m=0.3)
    assert result.hits == []
    near = {i.feature_id: i for i in result.near}
    assert {"DH21-DH22", "GD21-GD22", "RQ21-RQ22"} <= set(near)
    assert near["DH21-DH22"].clearance_m == pytest.approx(0.2, abs=0.1)  # 0.5 m cover − 0.3 m pit
    assert near["RQ21-RQ22"].safety_m == 5.0
    assert excavate(district, frame, area=STRIP, crs="EPSG:4548", depth_m=0.3, safety_m=0.0).items == []
    gas = excavate(district, frame, area=STRIP, crs="EPSG:4548", depth_m=0.3, safety_m={"燃气": 1.0})
    assert "RQ21-RQ22" not in {i.feature_id for i in gas.near} and gas.safety_m["RQ"] == 1.0


def test_candidate_queries_use_the_rtree(district):
    params = {"minx": 502100.0, "miny": 4058100.0, "maxx": 502200.0, "maxy": 4058200.0, "dataset": DS}
    for sql in (SEGMENTS_SQL, POINTS_SQL):
        plan = "\n".join(row[1] for row in district.read().execute("EXPLAIN " + sql, params).fetchall())
        assert "RTREE_INDEX_SCAN" in plan, plan


def test_polygon_in_metres_without_crs_is_out_of_region(district, frame):
    with pytest.raises(OutOfRegionError, match="metres"):
        excavate(district, frame, area=shapely.geometry.mapping(CROSSING), depth_m=2.0)


@pytest.mark.parametrize(("kwargs", "field", "match"), [
    ({"depth_m": 2.0, "bottom_h": 70.0}, "depth_m", "exactly one"),
    ({}, "depth_m", "exactly one"),
    ({"depth_m": 0.0}, "depth_m", "positive"),
    ({"depth_m": -1.0}, "depth_m", "positive"),
    ({"depth_m": float("nan")}, "depth_m", "finite"),
    ({"bottom_h": 72.0, "top_h": 71.0}, "bottom_h", "below top_h"),
    ({"bottom_h": 90.0}, "bottom_h", "not below the pit top"),
    ({"depth_m": 2.0, "top_h": 75.0}, "top_h", "goes with bottom_h"),
    ({"depth_m": 2.0, "safety_m": {"XYZ": 1.0}}, "safety_m", "unknown pipe category"),
    ({"depth_m": 2.0, "safety_m": -1.0}, "safety_m", "in \\[0, 50\\]"),
    ({"depth_m": 2.0, "safety_m": {"RQ": 500}}, "safety_m", "in \\[0, 50\\]"),
])
def test_bad_heights_and_safety(district, frame, kwargs, field, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        excavate(district, frame, area=CROSSING, crs="EPSG:4548", **kwargs)
    assert info.value.field == field


def test_area_limits_ground_and_dataset(district, frame):
    with pytest.raises(InvalidInputError, match="more than") as info:
        excavate(district, frame, area=shapely.box(500000, 4056000, 502000, 4058000), crs="EPSG:4548", depth_m=2)
    assert info.value.field == "area"
    far = shapely.box(510000, 4060000, 510020, 4060020)
    with pytest.raises(InvalidInputError, match="give bottom_h"):
        excavate(district, frame, area=far, crs="EPSG:4548", depth_m=2.0)
    assert excavate(district, frame, area=far, crs="EPSG:4548", bottom_h=60, top_h=70).items == []
    with pytest.raises(NotFoundError):
        excavate(district, frame, area=CROSSING, crs="EPSG:4548", depth_m=2.0, dataset="nope")
    with pytest.raises(InvalidInputError, match="Polygon"):
        excavate(district, frame, area="LINESTRING (0 0, 1 1)", crs="EPSG:4548", depth_m=2.0)


def test_result_dict_geojson_and_contacts(district, frame):
    gas = OwnerContact("济南港华燃气", "管网运行部 <抢修>", "0531-12345678", "ops@example.cn")
    result = excavate(district, frame, area=CROSSING, crs="EPSG:4548", depth_m=3.0, contacts={gas.owner: gas})
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["summary"]["hits"] == len(data["hits"]) and data["summary"]["by_category"]["RQ"]["hit"] >= 1
    by_owner = {c["owner"]: c for c in data["contacts"]}
    assert by_owner["济南港华燃气"]["phone"] == "0531-12345678" and by_owner["济南港华燃气"]["note"] is None
    assert by_owner["国网济南供电公司"]["note"] == NO_CONTACT
    fc = result.to_geojson()
    json.dumps(fc, allow_nan=False)
    roles = [f["properties"]["role"] for f in fc["features"]]
    assert roles[0] == "excavation" and {"hit", "near", "chamber"} <= set(roles)
    top = fc["features"][0]["geometry"]["coordinates"][0][0]
    assert 110 < top[0] < 125 and 34 < top[1] < 39 and len(top) == 3  # lon/lat/ellipsoidal height
    for f in fc["features"][1:]:
        assert {"role", "feature_id", "dataset", "category"} <= set(f["properties"])
    page = result.report_html()
    for owner in data["summary"]["by_owner"]:
        assert owner in page
    assert "管网运行部 &lt;抢修&gt;" in page and "<抢修>" not in page
    assert NO_CONTACT in page and all(i.feature_id in page for i in result.items)


def test_contacts_csv_round_trip_and_errors(tmp_path: Path):
    zh = tmp_path / "owners_gbk.csv"
    zh.write_bytes("权属单位,联系部门,联系电话,邮箱\n济南港华燃气,管网运行部,0531-1234,a@b.cn\n济南水务集团,,,\n"
                   .encode("gb18030"))
    contacts = load_contacts(zh)
    assert contacts["济南港华燃气"] == OwnerContact("济南港华燃气", "管网运行部", "0531-1234", "a@b.cn")
    assert contacts["济南水务集团"] == OwnerContact("济南水务集团")
    en = tmp_path / "owners.csv"
    en.write_text("\ufeffOwner,Phone\n国网济南供电公司,95598\n", encoding="utf-8")
    assert load_contacts(en)["国网济南供电公司"].phone == "95598"
    broken = tmp_path / "broken.csv"
    broken.write_text("owner,phone\nA,1\n,2\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        load_contacts(broken)
    assert (info.value.row, info.value.field, info.value.file) == (3, "owner", str(broken))
    twice = tmp_path / "twice.csv"
    twice.write_text("owner\nA\nA\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="twice"):
        load_contacts(twice)
    odd = tmp_path / "odd.csv"
    odd.write_text("owner,fax\nA,1\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="unknown column 'fax'"):
        load_contacts(odd)
    with pytest.raises(NotFoundError):
        load_contacts(tmp_path / "missing.csv")
