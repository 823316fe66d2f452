"""Gas-adjacent chambers on the sample district, checked against distances computed with shapely on the
stored geometries."""

from __future__ import annotations

import json

import pytest
import shapely

from cim.analysis.gas_risk import gas_adjacent_chambers, pressure_class
from cim.errors import InvalidInputError, OutOfRegionError
from cim.pipes.dictionaries import resolve_point_type

DS = "jinan_district"


def wall_distances(store) -> dict[str, float]:
    """Chamber (other utilities) feature id → plan distance from its centre to the nearest gas pipe wall."""
    cur = store.read()
    gas = cur.execute("""SELECT ST_AsWKB(geom), diameter_mm FROM pipe_segments
                         WHERE category = 'RQ' AND version_to IS NULL AND dataset_id = ?""", [DS]).fetchall()
    lines = [(shapely.from_wkb(bytes(w)), d / 2000) for w, d in gas]
    out = {}
    for fid, x, y, app, cat in cur.execute(
            "SELECT feature_id, x, y, appurtenance, category FROM pipe_points WHERE version_to IS NULL").fetchall():
        if app and resolve_point_type(app).is_chamber and cat != "RQ":
            p = shapely.Point(x, y)
            out[fid] = min(max(p.distance(line) - r, 0.0) for line, r in lines)
    return out


def test_ranks_chambers_near_gas_and_none_farther(district, frame):
    result = gas_adjacent_chambers(district, frame, distance_m=5.0)
    truth = wall_distances(district)
    within = {fid for fid, d in truth.items() if d <= 5.0}
    got = {e.feature_id: e for e in result.entries}
    assert got and set(got) == within
    for fid, entry in got.items():
        assert entry.distance_m == pytest.approx(truth[fid], abs=1e-6) and entry.distance_m <= 5.0
        assert entry.category != "RQ" and entry.gas_segment.startswith("RQ")
        assert entry.pressure_class == "中压"
    assert [e.rank for e in result.entries] == list(range(1, len(result.entries) + 1))
    scores = [e.score for e in result.entries]
    assert scores == sorted(scores, reverse=True)
    manhole = next(e for e in result.entries if e.appurtenance == "人孔")
    handhole = next(e for e in result.entries if e.appurtenance == "手孔" and e.distance_m == manhole.distance_m)
    assert manhole.score > handhole.score  # enclosed manholes rank above handholes at the same distance


def test_distance_area_limit(district, frame):
    everything = gas_adjacent_chambers(district, frame, distance_m=5.0)
    closer = gas_adjacent_chambers(district, frame, distance_m=3.0)
    assert 0 < len(closer.entries) < len(everything.entries)
    assert all(e.distance_m <= 3.0 for e in closer.entries)
    area = shapely.box(501950, 4057950, 502200, 4058200)
    local = gas_adjacent_chambers(district, frame, area=area, crs="EPSG:4548")
    assert local.entries and {e.feature_id for e in local.entries} < {e.feature_id for e in everything.entries}
    assert all(area.covers(e.geometry) for e in local.entries)
    top = gas_adjacent_chambers(district, frame, limit=3)
    assert [e.feature_id for e in top.entries] == [e.feature_id for e in everything.entries[:3]]
    assert top.candidates == len(everything.entries)
    assert set(top.gas_mains) == {e.gas_segment for e in top.entries}


def test_geojson_and_dict(district, frame):
    result = gas_adjacent_chambers(district, frame, limit=5)
    fc = result.to_geojson()
    json.dumps(fc, allow_nan=False)
    roles = {f["properties"]["role"] for f in fc["features"]}
    assert roles == {"chamber", "gas_main"}
    for f in fc["features"]:
        assert {"role", "feature_id", "dataset", "category"} <= set(f["properties"])
    data = result.to_dict()
    assert data["chambers"][0]["rank"] == 1 and data["chambers"][0]["gas_segment"]


@pytest.mark.parametrize(("text", "name"), [
    ("低压", "低压"), ("中压", "中压"), ("中压A", "中压A"), ("中压 b", "中压B"), ("次高压B", "次高压B"),
    ("高压A", "高压A"), ("0.3MPa", "中压A"), ("0.2MPa", "中压B"), ("300kPa", "中压A"), ("0.005MPa", "低压"),
    ("1.0MPa", "次高压A"), (None, None), ("未知", None),
])
def test_pressure_class(text, name):
    assert pressure_class(text)[0] == name


def test_pressure_weights_increase():
    names = ["低压", "中压B", "中压A", "次高压B", "次高压A", "高压B", "高压A"]
    weights = [pressure_class(n)[1] for n in names]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)


def test_bad_inputs(district, frame):
    for bad in (0, -1, 1000, float("nan")):
        with pytest.raises(InvalidInputError, match="distance_m"):
            gas_adjacent_chambers(district, frame, distance_m=bad)
    with pytest.raises(InvalidInputError, match="limit"):
        gas_adjacent_chambers(district, frame, limit=0)
    with pytest.raises(OutOfRegionError):
        gas_adjacent_chambers(district, frame, area=shapely.box(501950, 4057950, 502200, 4058200))
