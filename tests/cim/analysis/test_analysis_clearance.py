"""Clearance check (净距) on the sample district, verified against shapely computations of our own.

Own stores (never the shared ``district``): ``relaid`` is the sample delivery with the water network moved
22.0 m east and 21.9 m north (its N–S mains then run 2.0 m from the sewer trunks and 1.0 m from the heat
mains), ``own`` a plain copy into which structure features are inserted.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from cim.analysis.clearance import clearance_check, structure_clearance, structure_clearance_from_store
from cim.analysis.common import Frame
from cim.errors import InvalidInputError, NotFoundError, OutOfRegionError
from cim.pipes.clearance import load_table, vertical_class
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from converters.samples.district import SPECS

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")

SHIFT_E, SHIFT_N = 22.0, 21.9
#: A footprint across 千佛山路 (N–S street at E 502 150), mid-block.
STREET = "POLYGON ((502140 4058060, 502160 4058060, 502160 4058090, 502140 4058090, 502140 4058060))"
UTM = "EPSG:4548"


def _ingest(folder: Path) -> DuckDBStore:
    store = DuckDBStore(":memory:")
    ingest_survey([folder], store, SurveyOptions(), SETTINGS)
    return store


@pytest.fixture(scope="module")
def relaid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    folder = tmp_path_factory.mktemp("relaid") / "jinan_district"
    shutil.copytree(SAMPLE, folder)
    points = folder / "JSPOINT.csv"
    rows = list(csv.reader(io.StringIO(points.read_text(encoding="utf-8-sig"))))
    xi, yi = rows[0].index("X坐标"), rows[0].index("Y坐标")  # X = northing, Y = easting
    for r in rows[1:]:
        r[xi], r[yi] = f"{float(r[xi]) + SHIFT_N:.3f}", f"{float(r[yi]) + SHIFT_E:.3f}"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    points.write_text(buf.getvalue(), encoding="utf-8-sig")
    store = _ingest(folder)
    yield store
    store.close()


@pytest.fixture(scope="module")
def own() -> Iterator[DuckDBStore]:
    store = _ingest(SAMPLE)
    yield store
    store.close()


# ---------------------------------------------------------------------------------------------
# independent reference computations (shapely, row by row from the store)


def _rows(store: DuckDBStore, where: str = "TRUE") -> dict[str, Any]:
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT feature_id, category, subtype, burial, start_id, end_id, diameter_mm, width_mm, height_mm,
                       start_z, end_z, ST_AsText(geom) FROM pipe_segments
                WHERE version_to IS NULL AND {where} ORDER BY feature_id""").fetchall()
    finally:
        cur.close()
    cols = list(zip(*rows, strict=True))
    num = [np.array([np.nan if v is None else v for v in c], dtype=float) for c in cols[6:11]]
    d, w, h, z1, z2 = num
    return {"id": list(cols[0]), "cat": list(cols[1]), "sub": list(cols[2]), "burial": list(cols[3]),
            "a": list(cols[4]), "b": list(cols[5]), "d": d, "hw": np.where(np.isfinite(w), w, d) / 2000,
            "hh": np.where(np.isfinite(h), h, d) / 2000, "z1": z1, "z2": z2,
            "line": shapely.force_2d(shapely.from_wkt(list(cols[11])))}


def _parallel_reference(store: DuckDBStore, search: float) -> dict[tuple[str, str], dict[str, float]]:
    """Water × drain pairs running in parallel within ``search``: clearance and the §2.8 requirement."""
    js, ps = _rows(store, "category = 'JS'"), _rows(store, "category = 'PS'")
    la, lb = js["line"][:, None], ps["line"][None, :]
    ca, cb = shapely.get_coordinates(js["line"]).reshape(-1, 2, 2), shapely.get_coordinates(ps["line"]).reshape(-1, 2, 2)
    va, vb = ca[:, 1] - ca[:, 0], cb[:, 1] - cb[:, 0]
    cos = np.abs(va @ vb.T) / np.outer(np.hypot(*va.T), np.hypot(*vb.T))
    angle = np.degrees(np.arccos(np.clip(cos, 0, 1)))
    overlap = np.abs(shapely.line_locate_point(la, shapely.get_point(lb, 1))
                     - shapely.line_locate_point(la, shapely.get_point(lb, 0)))
    clear = shapely.distance(la, lb) - js["hw"][:, None] - ps["hw"][None, :]
    keep = (angle <= 20) & (overlap >= 1) & ~shapely.intersects(la, lb) & (clear < search)
    out = {}
    for i, j in zip(*np.nonzero(keep), strict=True):
        required = 1.0 if js["d"][i] <= 200 else 1.5  # domain brief §2.8, water ↔ sewer/storm
        out[(js["id"][i], ps["id"][j])] = {"clear": float(clear[i, j]), "required": required,
                                           "distance": float(shapely.distance(js["line"][i], ps["line"][j])),
                                           "ws_d": float(ps["d"][j]), "js_d": float(js["d"][i])}  # diameters
    return out


def _crossing_reference(store: DuckDBStore) -> dict[tuple[str, str], dict[str, float]]:
    """Every crossing in plan (not at a shared point) with the vertical gap and the 4.1.14 value, if any."""
    s = _rows(store)
    cells = {(c.class_a, c.class_b): c.clearance_m for c in load_table()}
    i, j = shapely.STRtree(s["line"]).query(s["line"], predicate="intersects")
    out = {}
    for a, b in zip(i, j, strict=True):
        if a >= b or (s["cat"][a] == s["cat"][b] and {s["a"][a], s["b"][a]} & {s["a"][b], s["b"][b]}):
            continue
        p = shapely.intersection(s["line"][a], s["line"][b])
        if p.geom_type != "Point":
            continue
        za, zb = (s["z1"][k] + (s["z2"][k] - s["z1"][k]) * shapely.line_locate_point(s["line"][k], p, normalized=True)
                  for k in (a, b))
        cls = [vertical_class(s["cat"][k], s["sub"][k], s["burial"][k]) for k in (a, b)]
        out[(s["id"][a], s["id"][b])] = {"gap": abs(za - zb) - s["hh"][a] - s["hh"][b], "x": p.x, "y": p.y,
                                         "required": cells.get(tuple(cls), np.nan)}  # type: ignore[arg-type]
    return out


def _key(f: Any) -> tuple[str, str]:
    return (f.feature_id, f.other_id)


# ---------------------------------------------------------------------------------------------
# pipes against pipes


def test_clean_district_keeps_every_clearance(district: DuckDBStore, frame: Frame) -> None:
    """The sample is laid to the tables; connected segments (shared nodes) must not show up as findings."""
    res = clearance_check(district, frame, search_m=30)
    assert res.findings == []
    par, cr = res.summary["parallel"], res.summary["crossing"]
    assert par["checked"] > 500 and cr["checked"] > 400 and par["violations"] == cr["violations"] == 0
    assert "drain|drain" in cr["by_pair"]  # one network, with a 4.1.14 cell: checked
    assert par["same_network_without_cell"] > 0  # storm beside sewer: 4.1.9 has no drain/drain cell
    assert par["no_requirement"]["gas|industrial"] > 0  # the oxygen line: not counted silently
    # water vs drain: SPECS lays them 24 m apart; every parallel pair passes, at the reference clearance
    ref = _parallel_reference(district, 30)
    mains = [r["distance"] for r in ref.values() if min(r["ws_d"], r["js_d"]) >= 300]  # no gully/hydrant leads
    assert min(mains) == pytest.approx((SPECS["WS"].offset - SPECS["JS"].offset) / 1000)
    wd = par["by_pair"]["drain|water"]
    assert wd["pairs"] == len(ref) and wd["violations"] == 0
    assert wd["min_actual_m"] == pytest.approx(min(r["clear"] for r in ref.values()))
    assert wd["required_m"] == [1.0, 1.5]  # DN150 hydrant leads, DN300/400 mains


def test_relaid_water_passes_or_fails_by_sewer_size(relaid: DuckDBStore, frame: Frame) -> None:
    res = clearance_check(relaid, frame, categories=["JS", "PS"], checks=["parallel"])
    ref = _parallel_reference(relaid, res.parameters["search_m"])
    expected = {k for k, r in ref.items() if r["clear"] < r["required"]}
    found = {_key(f): f for f in res.findings}
    assert set(found) == expected
    # N–S mains 2.0 m from the sewer trunks (SPECS offsets + the shift): only DN800 sewers (0.15 + 0.4 m) fail
    gap = (SPECS["WS"].offset - SPECS["JS"].offset) / 1000 - SHIFT_E
    fails = [ref[k] for k in expected]
    passes = [r for k, r in ref.items() if k not in expected and r["distance"] == pytest.approx(gap)]
    assert fails and passes
    assert all(r["distance"] == pytest.approx(gap) and r["ws_d"] == 800 for r in fails)
    assert all(r["ws_d"] <= 600 for r in passes)
    f = found[next(iter(expected))]
    r = ref[_key(f)]
    assert f.actual_m == pytest.approx(r["clear"]) and f.required_m == 1.5
    assert f.deficit_m == pytest.approx(1.5 - r["clear"])
    assert f.cell.cell.label() == "water(d>200) ↔ drain" and f.cell.confidence == "H" and "S7" in f.cell.cell.source
    assert f.severity == "info"  # 0.05 m short: within survey accuracy
    a, b = (shapely.force_2d(shapely.from_wkt(t)) for t in _wkt(relaid, _key(f)))
    assert shapely.Point(f.location[:2]).distance(a) == pytest.approx(r["distance"] / 2, abs=1e-6)
    assert shapely.Point(f.location[:2]).distance(b) == pytest.approx(r["distance"] / 2, abs=1e-6)
    assert set(res.summary["parallel"]["by_pair"]) == {"drain|water"}
    assert res.summary["parallel"]["by_pair"]["drain|water"]["violations"] == len(expected)


def _wkt(store: DuckDBStore, ids: tuple[str, str]) -> list[str]:
    cur = store.read()
    try:
        return [cur.execute("SELECT ST_AsText(geom) FROM pipe_segments WHERE feature_id = ? AND version_to IS NULL",
                            [i]).fetchone()[0] for i in ids]
    finally:
        cur.close()


def test_relaid_water_beside_heat_is_a_warning(relaid: DuckDBStore, frame: Frame) -> None:
    res = clearance_check(relaid, frame, categories=["JS", "RL"], checks=("parallel",))
    hw = res.summary["parallel"]["by_pair"]["heat|water"]
    assert hw["violations"] > 0 and hw["warn"] == hw["violations"]
    js, rl = SPECS["JS"].offset / 1000, SPECS["RL"].offset / 1000
    centres = min(abs(rl - js - SHIFT_E), abs(rl - js - SHIFT_N))  # E–W mains: 0.9 m apart
    assert hw["min_actual_m"] == pytest.approx(centres - 0.2 - 0.15)  # DN400 water, DN300 heat


def test_crossings_match_shapely(relaid: DuckDBStore, frame: Frame) -> None:
    res = clearance_check(relaid, frame, checks=("crossing",))
    assert "parallel" not in res.summary and {f.check for f in res.findings} == {"crossing"}
    ref = _crossing_reference(relaid)
    checked = {k: r for k, r in ref.items() if np.isfinite(r["required"])}
    assert res.summary["crossing"]["checked"] == len(checked)
    expected = {k for k, r in checked.items() if r["gap"] < r["required"] - 1e-9}
    found = {tuple(sorted(_key(f))): f for f in res.findings}
    assert expected and set(found) == {tuple(sorted(k)) for k in expected}
    for k in expected:
        f, r = found[tuple(sorted(k))], ref[k]
        assert f.actual_m == pytest.approx(r["gap"], abs=1e-9) and f.required_m == r["required"]
        assert f.location[:2] == pytest.approx((r["x"], r["y"]), abs=1e-6)
    no_req = sum(1 for r in ref.values() if not np.isfinite(r["required"]))
    summ = res.summary["crossing"]
    assert sum(summ["no_requirement"].values()) + summ["same_network_without_cell"] == no_req > 0


def test_filters_and_validation(relaid: DuckDBStore, frame: Frame) -> None:
    area = shapely.box(502120, 4058000, 502200, 4058160)
    full = clearance_check(relaid, frame)
    part = clearance_check(relaid, frame, area=shapely.to_wkt(area), crs=UTM)
    assert 0 < part.summary["segments"] < full.summary["segments"]
    assert part.findings and all(shapely.Point(f.location[:2]).distance(area) < 60 for f in part.findings)
    only = clearance_check(relaid, frame, categories=["js", "RQ"])
    assert only.findings and {f.category for f in only.findings} | {f.other_category for f in only.findings} \
        == {"JS", "RQ"}
    with pytest.raises(InvalidInputError, match="checks"):
        clearance_check(relaid, frame, checks=("nearby",))
    with pytest.raises(InvalidInputError, match="XX"):
        clearance_check(relaid, frame, categories=["XX"])
    with pytest.raises(NotFoundError):
        clearance_check(relaid, frame, dataset="nope")
    lonlat = {"type": "Polygon", "coordinates": [[[117.02, 36.66], [117.03, 36.66], [117.03, 36.67], [117.02, 36.66]]]}
    with pytest.raises(OutOfRegionError):
        clearance_check(relaid, frame, area=lonlat, crs=UTM)


def test_result_serialises(relaid: DuckDBStore, frame: Frame) -> None:
    res = clearance_check(relaid, frame)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert len(d["findings"]) == len(res.findings) and d["summary"]["findings"]["warn"] > 0
    first = d["findings"][0]
    assert first["severity"] == "warn" and first["cell"]["source"] and first["dataset"] == "jinan_district"
    assert 116.9 < first["lon"] < 117.2 and 36.5 < first["lat"] < 36.8
    fc = json.loads(json.dumps(res.to_geojson(), allow_nan=False))
    roles = {f["properties"]["role"] for f in fc["features"]}
    assert roles == {"finding", "measure"}
    point = next(f for f in fc["features"] if f["properties"]["role"] == "finding")
    assert {"feature_id", "dataset", "category", "required_m", "actual_m", "deficit_m"} <= set(point["properties"])
    assert len(point["geometry"]["coordinates"]) == 3


# ---------------------------------------------------------------------------------------------
# a structure against the pipes


def _contact_reference(store: DuckDBStore, footprint: shapely.Polygon) -> dict[str, tuple[float, float]]:
    """Pipes whose outer wall reaches into the footprint: their highest top and lowest bottom inside it."""
    s = _rows(store)
    out = {}
    for k, line in enumerate(s["line"]):
        if line.distance(footprint) >= s["hw"][k]:
            continue
        part = line.intersection(footprint.buffer(s["hw"][k]))
        t = np.array([line.project(shapely.Point(c)) / line.length for c in shapely.get_coordinates(part)])
        z = s["z1"][k] + (s["z2"][k] - s["z1"][k]) * t
        out[s["id"][k]] = (float(z.max() + s["hh"][k]), float(z.min() - s["hh"][k]))
    return out


@pytest.mark.parametrize("bottom_h", [60.0, 72.0])
def test_structure_over_a_street_clashes_with_the_pipes_under_it(district: DuckDBStore, frame: Frame,
                                                                  bottom_h: float) -> None:
    res = structure_clearance(district, frame, footprint=STREET, crs=UTM, bottom_h=bottom_h, name="basement")
    span = _contact_reference(district, shapely.from_wkt(STREET))
    assert len(span) >= 3
    clashes = {f.feature_id: f for f in res.findings if f.check == "clash"}
    under = {f.feature_id: f for f in res.findings if f.check == "under"}
    assert set(clashes) == {k for k, (top, _) in span.items() if top > bottom_h}
    assert set(under) == {k for k, (top, _) in span.items() if top <= bottom_h}
    for fid, f in clashes.items():  # overlap of the pipe's height range with the structure's (up to the ground)
        top, bottom = span[fid]
        assert f.details["vertical_overlap_m"] == pytest.approx(top - max(bottom, bottom_h), abs=1e-6)
        assert f.severity == "warn" and f.other_id == "basement" and f.actual_m == 0.0
    for fid, f in under.items():
        assert f.details["vertical_gap_m"] == pytest.approx(bottom_h - span[fid][0], abs=1e-6)
    if bottom_h == 72.0:
        assert clashes and under  # the duct bank and gas reach above 72 m, the heat main passes under
    # the sewer beside the footprint: 2.5 m required (building ↔ sewer/storm, [H])
    near = [f for f in res.findings if f.check == "structure" and f.category == "PS"]
    assert near and all(f.required_m == 2.5 and f.actual_m < 2.5 for f in near)
    fc = res.to_geojson()
    footprint = [f for f in fc["features"] if f["properties"]["role"] == "structure"]
    assert len(footprint) == 1 and footprint[0]["properties"]["bottom_h"] == bottom_h


def test_structure_10_m_from_the_nearest_pipe_keeps_clear(district: DuckDBStore, frame: Frame) -> None:
    s = _rows(district)

    def placed(dx: float) -> tuple[shapely.Polygon, np.ndarray]:
        box = shapely.box(502040 - dx, 4058060, 502070 - dx, 4058090)  # mid-block, moved towards 历山路
        return box, shapely.distance(box, s["line"]) - np.nan_to_num(s["hw"])

    lo, hi = 0.0, 20.0  # bisect the shift that leaves exactly 10 m to the nearest outer wall
    assert placed(lo)[1].min() > 10 > placed(hi)[1].min()
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if placed(mid)[1].min() > 10 else (lo, mid)
    box, clear = placed(lo)
    assert float(clear.min()) == pytest.approx(10.0)
    res = structure_clearance(district, frame, footprint=box.wkt, crs=UTM, bottom_h=60.0)
    assert res.findings == []
    summ = res.summary["structures"][0]
    assert summ["pipes_checked"] == int(((clear < 13.5) & ~np.isin(s["cat"], ["GY", "QT"])).sum()) > 0
    assert min(e["min_actual_m"] for e in summ["by_class"].values()) == pytest.approx(10.0)
    assert res.parameters["largest_building_clearance_m"] == 13.5


def test_structure_in_the_wrong_crs(district: DuckDBStore, frame: Frame) -> None:
    with pytest.raises(OutOfRegionError, match="metres"):
        structure_clearance(district, frame, footprint=STREET, bottom_h=60.0)  # metres read as lon/lat
    with pytest.raises(OutOfRegionError):
        structure_clearance(district, frame, footprint=STREET, crs="EPSG:4547", bottom_h=60.0)  # wrong zone
    with pytest.raises(InvalidInputError, match="top_h"):
        structure_clearance(district, frame, footprint=STREET, crs=UTM, bottom_h=60.0, top_h=50.0)


def test_structures_from_the_store(own: DuckDBStore, frame: Frame) -> None:
    with own.transaction() as con:
        con.execute("""INSERT INTO datasets (id, title, kind, storage_crs, grade, current_version, created_at, updated_at)
                       VALUES ('bim_model', 'test model', 'bim', 'EPSG:4548', '一般', 1, now(), now())""")
        rows = [
            ("B1", "building", STREET, '{"min_z": 72.0, "max_z": 80.0, "name": "教学楼"}'),
            ("B2", "building", "POLYGON Z ((502040 4058060 65, 502070 4058060 65, 502070 4058090 65, "
                               "502040 4058090 65, 502040 4058060 65))", "{}"),
            ("L1", "building", "LINESTRING (502040 4058060, 502070 4058060)", "{}"),
            ("S1", "site", "POLYGON ((502000 4058000, 502010 4058000, 502010 4058010, 502000 4058000))", "{}"),
        ]
        con.executemany("""INSERT INTO features (dataset_id, collection, feature_id, version_from, geom, attrs)
                           VALUES ('bim_model', ?, ?, 1, ST_GeomFromText(?::VARCHAR), ?::JSON)""",
                        [(c, f, g, a) for f, c, g, a in rows])
    res = structure_clearance_from_store(own, frame, structures_dataset="bim_model", collection="building")
    assert [s.feature_id for s in res.structures] == ["B1", "B2"]
    assert res.structures[0].name == "教学楼" and res.structures[1].bottom_h == 65.0
    assert res.structures[1].top_h is None
    assert res.summary["skipped"] == [{"feature_id": "L1", "reason": "geometry is a LINESTRING, not a polygon"}]
    direct = structure_clearance(own, frame, footprint=STREET, crs=UTM, bottom_h=72.0, top_h=80.0)
    assert {(f.check, f.feature_id) for f in res.findings if f.other_id == "B1"} == \
        {(f.check, f.feature_id) for f in direct.findings}
    assert not [f for f in res.findings if f.other_id == "B2"]  # B2 stands clear of the street
    fc = res.to_geojson()
    b1 = next(f for f in fc["features"] if f["properties"]["role"] == "structure")
    assert {"feature_id": "B1", "dataset": "bim_model", "category": "building"}.items() <= b1["properties"].items()
    clash = next(f for f in fc["features"] if f["properties"].get("check") == "clash")
    assert clash["properties"]["other_dataset"] == "bim_model" and clash["properties"]["other_feature_id"] == "B1"
    with pytest.raises(NotFoundError, match="polygonal"):
        structure_clearance_from_store(own, frame, structures_dataset="bim_model", collection="nothing")
    with pytest.raises(NotFoundError):
        structure_clearance_from_store(own, frame, structures_dataset="absent")
