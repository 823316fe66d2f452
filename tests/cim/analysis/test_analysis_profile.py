"""Long profiles: a clean storm run of the sample district, a tiny store with defects, charts and input errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from cim.analysis.common import Frame
from cim.analysis.profile import LongProfile, long_profile, min_slope
from cim.errors import InvalidInputError, NotFoundError
from cim.store import DatasetInfo, DuckDBStore

Table = Callable[[list[dict[str, Any]]], pa.Table]


def longest_storm_run(district: DuckDBStore) -> tuple[list[str], str, str]:
    """The longest run of storm segments followed in their digitised direction (start → end) from a head manhole
    (one no segment flows into) to the outfall (one no segment leaves): (segment ids, head, outfall)."""
    cur = district.read()
    rows = cur.execute("""SELECT feature_id, start_id, end_id FROM pipe_segments
                          WHERE version_to IS NULL AND kind = 'gravity' AND subtype = 'YS'
                          ORDER BY feature_id""").fetchall()
    leaving: dict[str, list[tuple[str, str]]] = {}
    for fid, a, b in rows:
        leaving.setdefault(a, []).append((fid, b))
    heads = sorted({a for _, a, _ in rows} - {b for _, _, b in rows})
    runs = []
    stack = [([], head, head) for head in heads]
    while stack:  # every branch (a ridge manhole drains both ways)
        path, head, node = stack.pop()
        if node not in leaving:
            runs.append((path, head, node))
        for fid, nxt in leaving.get(node, []):
            stack.append(([*path, fid], head, nxt))
    return max(runs, key=lambda r: (len(r[0]), r[1], r[2]))


@pytest.fixture(scope="module")
def storm(district: DuckDBStore, frame: Frame) -> tuple[LongProfile, list[str]]:
    path, head, outfall = longest_storm_run(district)
    return long_profile(district, frame, start=head, end=outfall), path


def test_clean_storm_run_from_head_to_outfall(storm: tuple[LongProfile, list[str]], district: DuckDBStore) -> None:
    prof, path = storm
    assert [s.feature_id for s in prof.segments] == path and len(path) >= 5
    stations = [n.station for n in prof.nodes]
    assert stations[0] == 0 and all(b > a for a, b in zip(stations, stations[1:], strict=False))
    assert prof.length == pytest.approx(sum(s.length_m for s in prof.segments))
    assert prof.direction == "downstream"
    assert not any(s.reversed_slope or s.under_min_slope or s.diameter_decrease for s in prof.segments)
    assert all(s.slope_permille > 0 for s in prof.segments)
    inverts = [s.invert_from for s in prof.segments] + [prof.segments[-1].invert_to]
    assert inverts == sorted(inverts, reverse=True)
    # inverts, crowns and grounds are the recorded ones
    cur = district.read()
    first = cur.execute("SELECT start_h, end_h, diameter_mm FROM pipe_segments WHERE feature_id = ? "
                        "AND version_to IS NULL", [path[0]]).fetchone()
    s0 = prof.segments[0]
    assert (s0.invert_from, s0.invert_to) == pytest.approx(first[:2])
    assert s0.crown_from - s0.invert_from == pytest.approx(first[2] / 1000)
    g = cur.execute("SELECT ground_h FROM pipe_points WHERE point_id = ? AND version_to IS NULL",
                    [prof.nodes[0].point_id]).fetchone()[0]
    assert prof.nodes[0].ground == pytest.approx(g) and prof.nodes[0].ground_from == "surveyed point"


def test_segment_list_gives_the_same_run_and_either_direction(storm: tuple[LongProfile, list[str]],
                                                               district: DuckDBStore, frame: Frame) -> None:
    prof, path = storm
    same = long_profile(district, frame, segments=path)
    assert [(s.feature_id, s.from_id) for s in same.segments] == [(s.feature_id, s.from_id) for s in prof.segments]
    back = long_profile(district, frame, segments=path[::-1])
    assert back.direction == "upstream" and back.nodes[0].point_id == prof.nodes[-1].point_id
    assert not any(s.flags for s in back.segments)  # judged along the flow, not along the drawing
    assert all(s.slope_permille < 0 for s in back.segments)


def test_profile_errors_name_the_problem(storm: tuple[LongProfile, list[str]], district: DuckDBStore,
                                        frame: Frame) -> None:
    _, path = storm
    with pytest.raises(InvalidInputError, match=f"{path[0]} and {path[2]} are not connected"):
        long_profile(district, frame, segments=[path[0], path[2]])
    with pytest.raises(InvalidInputError, match="not gravity: JS21-JS22"):
        long_profile(district, frame, segments=[path[0], "JS21-JS22"])
    with pytest.raises(NotFoundError, match="NOPE"):
        long_profile(district, frame, segments=[path[0], "NOPE"])
    with pytest.raises(NotFoundError, match="no gravity path"):
        long_profile(district, frame, start="YS1", end="WS1")  # storm and sewer networks do not meet
    with pytest.raises(NotFoundError, match="JS1 is not on a gravity segment"):
        long_profile(district, frame, start="JS1", end="YS1")
    with pytest.raises(InvalidInputError):
        long_profile(district, frame, start="YS1")


def test_profile_outputs(storm: tuple[LongProfile, list[str]]) -> None:
    prof, path = storm
    d = prof.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["summary"]["from"] == prof.nodes[0].point_id and d["summary"]["reversed_slope"] == 0
    gj = prof.to_geojson()
    json.dumps(gj, allow_nan=False)
    assert [f["properties"]["feature_id"] for f in gj["features"] if f["properties"]["role"] == "profile_segment"] \
        == path
    root = ET.fromstring(prof.svg())
    ids = {el.get("id") for el in root.iter()}
    assert {f"segment-{fid}" for fid in path} <= ids
    assert prof.png().startswith(b"\x89PNG\r\n\x1a\n")


# -- a tiny drainage run with defects ----------------------------------------------------------------------

def tiny_store(store: DuckDBStore, point_table: Table, segment_table: Table) -> DuckDBStore:
    """P1 → P2 → P3 → P4 (50 m each, storm DN400 → DN300 → DN300): S1 falls 2‰ (< 2.25‰ for DN400), S2 rises
    0.2 m (倒坡) and shrinks, S3 is digitised P4 → P3 with flow_dir 反向 and falls from P3 to P4 (fine)."""
    xs = {"P1": 502000.0, "P2": 502050.0, "P3": 502100.0, "P4": 502150.0}
    ground = {"P1": 72.0, "P2": 72.0, "P3": 72.0, "P4": 71.9}
    points = [{"feature_id": p, "point_id": p, "category": "PS", "subtype": "YS", "x": x, "y": 4058000.0,
               "ground_h": ground[p]} for p, x in xs.items()]

    def seg(fid: str, a: str, b: str, d: float, ha: float, hb: float, **kw: Any) -> dict[str, Any]:
        return {"feature_id": fid, "start_id": a, "end_id": b, "category": "PS", "subtype": "YS",
                "kind": "gravity", "shape": "circular", "diameter_mm": d, "material": "T",
                "start_h": ha, "end_h": hb, "start_depth": ground[a] - ha, "end_depth": ground[b] - hb,
                "start_z": ha + d / 2000, "end_z": hb + d / 2000,
                "x1": xs[a], "y1": 4058000.0, "x2": xs[b], "y2": 4058000.0, **kw}

    segments = [seg("S1", "P1", "P2", 400, 70.2, 70.1), seg("S2", "P2", "P3", 300, 70.1, 70.3),
                seg("S3", "P4", "P3", 300, 69.9, 70.2, flow_dir="反向")]
    store.write_pipe_network(DatasetInfo(id="tiny", title="tiny", kind="pipe_survey", storage_crs="EPSG:4548"),
                             point_table(points), segment_table(segments))
    return store


def test_reversed_slope_and_other_defects_are_flagged(store: DuckDBStore, point_table: Table,
                                                      segment_table: Table, frame: Frame) -> None:
    tiny_store(store, point_table, segment_table)
    prof = long_profile(store, frame, start="P1", end="P4")
    by_id = {s.feature_id: s for s in prof.segments}
    assert [s.feature_id for s in prof.segments] == ["S1", "S2", "S3"]
    assert by_id["S1"].flags == ["under_min_slope"]
    assert by_id["S1"].slope_permille == pytest.approx(2.0) and by_id["S1"].min_slope_permille == pytest.approx(2.25)
    assert by_id["S2"].reversed_slope and by_id["S2"].diameter_decrease and not by_id["S2"].under_min_slope
    assert by_id["S2"].slope_permille == pytest.approx(-4.0)
    assert by_id["S3"].flags == [] and by_id["S3"].along_flow and not by_id["S3"].forward
    assert prof.direction == "downstream"
    assert prof.to_dict()["summary"]["reversed_slope"] == 1
    svg = prof.svg()
    group = next(el for el in ET.fromstring(svg).iter() if el.get("id") == "segment-S2")
    assert "#d62728" in ET.tostring(group, encoding="unicode")  # the reversed segment is drawn in red
    good = next(el for el in ET.fromstring(svg).iter() if el.get("id") == "segment-S1")
    assert "#d62728" not in ET.tostring(good, encoding="unicode")


def test_min_slope_table() -> None:
    assert min_slope(300) == 0.003 and min_slope(300, "PE") == 0.002
    assert min_slope(200) == 0.01 and min_slope(1000) == pytest.approx(0.0009)
    assert min_slope(None) is None
