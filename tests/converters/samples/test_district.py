"""The synthetic Jinan district: delivery format, survey conventions, clean geometry, injected defects."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from cim.pipes.fields import default_mapping, map_columns
from cim.qc.catalogue import RULES
from converters.samples.district import blocks_for_segments, count_district, generate_district

REPO = Path(__file__).resolve().parents[3]
ENCODINGS = {"JS": "utf-8-sig", "YS": "gbk", "WS": "gbk"}
MAJOR = {"JS": "JS", "YS": "PS", "WS": "PS", "RQ": "RQ", "RL": "RL", "GD": "DL", "TX": "TX", "GY": "GY", "QT": "QT"}
REQUIRED = {
    "point": {"point_id", "map_no", "feature", "appurtenance", "code", "x", "y", "ground_h", "road",
              "survey_unit", "survey_date"},
    "line": {"start_id", "end_id", "start_depth", "end_depth", "start_h", "end_h", "size", "material", "burial",
             "protect", "owner", "year", "road", "status"},
}

Row = dict[str, str | None]


def read_table(path: Path) -> tuple[list[str], list[Row]]:
    """Header and rows (canonical field names) of one delivered CSV, decoded as delivered."""
    kind = "point" if "POINT" in path.stem.upper() else "line"
    with path.open(encoding=ENCODINGS.get(path.name[:2], "utf-8"), newline="") as fh:
        rows = list(csv.reader(fh))
    mapping = map_columns(rows[0], kind, default_mapping())
    index = {canonical: rows[0].index(column) for column, canonical in mapping.items()}
    return rows[0], [{c: (r[i] or None) for c, i in index.items()} | {"_row": str(n + 2)}
                     for n, r in enumerate(rows[1:])]


def load(out: Path) -> dict[str, tuple[dict[str, Row], list[Row]]]:
    """Per network prefix: points by 物探点号 and the line rows."""
    data = {}
    for path in sorted(out.glob("*POINT.csv")):
        prefix = path.name[:2]
        _, points = read_table(path)
        _, lines = read_table(path.with_name(f"{prefix}LINE.csv"))
        data[prefix] = ({p["point_id"]: p for p in points}, lines)  # type: ignore[misc]
    return data


def section(size: str) -> float:
    """Height of a section in metres: 'DN300' / '300' → 0.3, '600×400' / '400X300' / '3000*2800' → height."""
    return float(re.split(r"[×X*]", size.replace("DN", ""))[-1]) / 1000


def mm(text: str | None) -> int:
    return int(Decimal(text) * 1000)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate_district(out)
    return out


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate_district(out, dirty=True)
    return out


def test_a_seed_gives_identical_files_and_another_seed_other_heights(tmp_path: Path) -> None:
    first = generate_district(tmp_path / "a", blocks_x=2, blocks_y=2, seed=7)
    generate_district(tmp_path / "b", blocks_x=2, blocks_y=2, seed=7)
    generate_district(tmp_path / "c", blocks_x=2, blocks_y=2, seed=8)
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "JSPOINT.csv").read_bytes() != (tmp_path / "c" / "JSPOINT.csv").read_bytes()


def test_files_are_named_and_encoded_as_contractors_deliver_them(clean: Path) -> None:
    names = sorted(p.name for p in clean.iterdir())
    assert names == sorted(f"{p}{k}.csv" for p in MAJOR for k in ("POINT", "LINE"))
    assert (clean / "JSPOINT.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    for name in ("YSPOINT.csv", "YSLINE.csv", "WSPOINT.csv", "WSLINE.csv"):
        raw = (clean / name).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        assert "物探点号" in raw.decode("gbk") or "起点" in raw.decode("gbk")
    for name in ("RQPOINT.csv", "RLLINE.csv", "GDLINE.csv", "TXPOINT.csv", "GYLINE.csv", "QTLINE.csv"):
        (clean / name).read_bytes().decode("utf-8")
    header, _ = read_table(clean / "RQPOINT.csv")
    assert header[:5] == ["EXP_NO", "MAP_NO", "FEATURE", "SUBSID", "CODE"]
    header, _ = read_table(clean / "RQLINE.csv")
    assert {"S_POINT", "E_POINT", "S_DEEP", "E_DEEP", "S_H", "E_H", "D_S", "MATERIAL", "EMBED"} <= set(header)


def test_every_header_is_understood_by_the_alias_table(clean: Path) -> None:
    for path in clean.glob("*.csv"):
        kind = "point" if "POINT" in path.stem else "line"
        header, rows = read_table(path)
        mapped = map_columns(header, kind, default_mapping())
        assert len(mapped) == len(header), (path.name, set(header) - set(mapped))
        assert REQUIRED[kind] <= set(mapped.values()), (path.name, REQUIRED[kind] - set(mapped.values()))
        assert rows and all(r[c] for r in rows for c in ("road", "survey_date")), path.name


def test_x_is_the_northing_and_y_the_easting_in_epsg_4548(clean: Path) -> None:
    for points, _ in load(clean).values():
        x = np.array([float(p["x"]) for p in points.values()])  # type: ignore[arg-type]
        y = np.array([float(p["y"]) for p in points.values()])  # type: ignore[arg-type]
        assert ((x > 4.05e6) & (x < 4.06e6)).all()
        assert ((y > 5.0e5) & (y < 5.1e5)).all()
        assert all(re.fullmatch(r"\d+\.\d{3}", p["x"] or "") for p in points.values())


def test_ground_minus_depth_is_the_recorded_elevation_at_every_line_end(clean: Path) -> None:
    checked = 0
    for points, lines in load(clean).values():
        for line in lines:
            for end in ("start", "end"):
                ground = mm(points[line[f"{end}_id"]]["ground_h"])  # type: ignore[index]
                assert ground - mm(line[f"{end}_depth"]) == mm(line[f"{end}_h"]), line
                checked += 1
    assert checked > 1_500


def test_gravity_networks_fall_along_the_flow_with_growing_diameters(clean: Path) -> None:
    data = load(clean)
    for prefix in ("YS", "WS"):
        points, lines = data[prefix]
        incoming: dict[str, list[float]] = defaultdict(list)
        outgoing: dict[str, list[float]] = defaultdict(list)
        for line in lines:
            a, b = points[line["start_id"]], points[line["end_id"]]  # type: ignore[index]
            length = np.hypot(float(a["x"]) - float(b["x"]), float(a["y"]) - float(b["y"]))  # type: ignore[arg-type]
            diameter = section(line["size"])  # type: ignore[arg-type]
            slope = (float(line["start_h"]) - float(line["end_h"])) / length  # type: ignore[arg-type]
            assert slope >= max(0.9 / (diameter * 1000), 0.003 if diameter <= 0.3 else 0.0), line
            for end in ("start_depth", "end_depth"):
                assert 1.5 <= float(line[end]) <= 5.0, line  # type: ignore[arg-type]
            outgoing[line["start_id"]].append(diameter)  # type: ignore[index]
            incoming[line["end_id"]].append(diameter)  # type: ignore[index]
        for pid, sizes in outgoing.items():
            assert min(sizes) >= max(incoming.get(pid, [0.0])), pid
        assert max(max(v) for v in outgoing.values()) >= (1.0 if prefix == "YS" else 0.8)
        outfalls = [p for p in points.values() if p["feature"] == "出水口" or p["appurtenance"] == "排放口"]
        assert len(outfalls) == 5 and all(pid not in outgoing for pid in (p["point_id"] for p in outfalls))


def _crossings(data: dict[str, tuple[dict[str, Row], list[Row]]]) -> list[tuple[str, str, float, bool]]:
    """Every plan crossing of an N–S with an E–W segment: (network, network, vertical gap, shares a node)."""
    segs = []
    for prefix, (points, lines) in data.items():
        for line in lines:
            if line["start_id"] not in points or line["end_id"] not in points:
                continue  # dirty data: a dangling or missing end
            a, b = points[line["start_id"]], points[line["end_id"]]  # type: ignore[index]
            segs.append((prefix, line["start_id"], line["end_id"], float(a["y"]), float(a["x"]), float(b["y"]),  # type: ignore[arg-type]
                         float(b["x"]), float(line["start_h"]), float(line["end_h"]), section(line["size"])))  # type: ignore[arg-type]
    ns = [s for s in segs if s[3] == s[5]]
    ew = [s for s in segs if s[4] == s[6]]
    assert len(ns) + len(ew) == len(segs)
    e = np.array([s[3] for s in ns])
    lo = np.array([min(s[4], s[6]) for s in ns])
    hi = np.array([max(s[4], s[6]) for s in ns])
    out = []
    for h in ew:
        west, east = sorted((h[3], h[5]))
        for k in np.flatnonzero((e >= west) & (e <= east) & (lo <= h[4]) & (hi >= h[4])):
            v = ns[k]
            zv = v[7] + (h[4] - v[4]) / (v[6] - v[4]) * (v[8] - v[7])
            zh = h[7] + (v[3] - h[3]) / (h[5] - h[3]) * (h[8] - h[7])
            spans = [(z, z + s[9]) if MAJOR[s[0]] == "PS" else (z - s[9], z) for s, z in ((v, zv), (h, zh))]
            gap = max(spans[1][0] - spans[0][1], spans[0][0] - spans[1][1])
            out.append((v[0], h[0], gap, bool({v[1], v[2]} & {h[1], h[2]})))
    return out


def _required_gap(a: str, b: str) -> float:
    """GB 50289-2016 Table 4.1.14 with duct banks as protected."""
    pair = {MAJOR[a], MAJOR[b]}
    if pair == {"JS", "PS"}:
        return 0.40
    if ("DL" in pair and "RQ" not in pair) or ("TX" in pair and pair & {"TX", "DL", "RL"}):
        return 0.25
    return 0.15


def test_crossings_keep_vertical_clearance_and_same_network_lines_meet_only_at_nodes(clean: Path) -> None:
    crossings = _crossings(load(clean))
    assert len(crossings) > 400
    pairs = set()
    for a, b, gap, shared in crossings:
        if a == b:
            assert shared, (a, gap)
        else:
            assert gap >= _required_gap(a, b) + 0.03, (a, b, gap)
            pairs.add(frozenset((a, b)))
    assert len(pairs) >= 30  # nearly every pair of networks crosses somewhere


def test_points_are_coded_and_featured_consistently_and_all_used(clean: Path) -> None:
    valence = {"三通": 3, "四通": 4, "直线点": 2, "弯头": 2, "预留口": 1}
    for points, lines in load(clean).values():
        degree = Counter(line[end] for line in lines for end in ("start_id", "end_id"))
        for pid, p in points.items():
            assert degree[pid] >= 1, pid
            assert bool(p["feature"]) != bool(p["appurtenance"]), pid
            assert p["map_no"] == pid and re.fullmatch(r"[A-Z]{2}\d+", pid), pid
            if p["feature"] in valence:
                assert degree[pid] == valence[p["feature"]], (pid, p["feature"], degree[pid])
            code = p["code"] or ""
            assert re.fullmatch(r"5\d{7}", code) and code[4] == "2", pid
            assert code[5] == ("1" if p["feature"] else "2"), pid
        for line in lines:
            assert re.fullmatch(r"5\d{3}1000", line.get("code") or "5" + "0" * 3 + "1000"), line
            assert line["start_id"] != line["end_id"]
    points, _ = load(clean)["YS"]
    assert {p["code"][:4] for p in points.values()} == {"5201"}  # type: ignore[index]


def test_a_dirty_district_lists_an_injected_defect_for_every_rule(dirty: Path) -> None:
    defects = json.loads((dirty / "defects.json").read_text(encoding="utf-8"))
    assert {r.id for r in RULES} <= set(defects)
    for rule, entries in defects.items():
        for entry in entries:
            path = dirty / entry["file"]
            header, rows = read_table(path)
            if rule == "header":
                assert entry["row"] == 1 and len(set(header)) < len(header)
                continue
            row = rows[entry["row"] - 2]
            if "POINT" in entry["file"]:
                assert row["point_id"] == entry["feature_id"], (rule, entry)
            else:
                assert f"{row['start_id'] or ''}-{row['end_id'] or ''}" == entry["feature_id"], (rule, entry)


def _row(out: Path, defects: dict[str, list[dict[str, object]]], rule: str) -> Row:
    entry = defects[rule][0]
    return read_table(out / str(entry["file"]))[1][int(entry["row"]) - 2]  # type: ignore[call-overload]


def test_dirty_rows_carry_the_defects_they_are_listed_for(dirty: Path) -> None:
    defects = json.loads((dirty / "defects.json").read_text(encoding="utf-8"))
    data = load(dirty)
    assert _row(dirty, defects, "numeric")["start_depth"].endswith("米")  # type: ignore[union-attr]
    swapped = _row(dirty, defects, "crs_region")
    assert float(swapped["x"]) < 1e6 < float(swapped["y"])  # type: ignore[arg-type]
    line = _row(dirty, defects, "zero_length")
    assert line["start_id"] == line["end_id"]
    line = _row(dirty, defects, "reversed_slope")
    assert mm(line["end_h"]) - mm(line["start_h"]) == 300
    line = _row(dirty, defects, "dictionary_value")
    assert (line["material"], line["burial"]) == ("塑料钢", "XX")
    line = _row(dirty, defects, "elevation_identity")
    ground = data["WS"][0][line["start_id"]]["ground_h"]  # type: ignore[index]
    assert mm(ground) - mm(line["start_depth"]) - mm(line["start_h"]) == -200
    line = _row(dirty, defects, "long_segment")
    a, b = (data["TX"][0][line[k]] for k in ("start_id", "end_id"))  # type: ignore[index]
    assert abs(float(a["x"]) - float(b["x"])) == pytest.approx(120.0)  # type: ignore[arg-type]
    gaps = [gap for x, y, gap, _ in _crossings({k: data[k] for k in ("RQ", "YS")}) if x != y]
    assert min(gaps) == pytest.approx(0.05, abs=0.0011)


def test_single_layout_puts_all_networks_in_two_files_with_a_category_column(tmp_path: Path) -> None:
    summary = generate_district(tmp_path, blocks_x=2, blocks_y=2, layout="single")
    assert summary.files == ("pipe_lines.csv", "pipe_points.csv")
    _, points = read_table(tmp_path / "pipe_points.csv")
    _, lines = read_table(tmp_path / "pipe_lines.csv")
    assert len(points) == summary.total_points and len(lines) == summary.total_lines
    assert {p["category"] for p in points} == {"JS", "YS", "WS", "RQ", "RL", "GD", "DH", "XX", "GY", "QT"}
    assert len({p["point_id"] for p in points}) == len(points)


def test_counts_formula_matches_what_is_written(tmp_path: Path) -> None:
    for bx, by in ((1, 1), (4, 3), (2, 9)):  # 9 blocks north–south: two gravity catchments
        summary = generate_district(tmp_path / f"{bx}x{by}", blocks_x=bx, blocks_y=by, layout="single")
        assert count_district(bx, by) == (summary.total_points, summary.total_lines)


def test_blocks_for_a_million_segments_give_about_a_million() -> None:
    bx, by = blocks_for_segments(1_000_000)
    points, segments = count_district(bx, by)
    assert abs(segments - 1_000_000) < 10_000
    assert 0.8e6 < points < 1.2e6 and abs(bx - by) <= 2
    assert count_district(*blocks_for_segments(50_000))[1] == pytest.approx(50_000, rel=0.03)


def test_a_medium_district_is_written_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    summary = generate_district(tmp_path, blocks_x=20, blocks_y=20, layout="single")
    assert time.perf_counter() - started < 10
    assert summary.total_lines == count_district(20, 20)[1] > 20_000
    w, s, e, n = summary.bbox
    assert (w, s) == pytest.approx((501_966.5, 4_057_982.0)) and e - w > 3_000 and n - s > 3_000


@pytest.mark.parametrize(("folder", "dirty_flag"), [("jinan_district", False), ("jinan_district_dirty", True)])
def test_committed_samples_are_what_the_generator_writes(tmp_path: Path, folder: str, dirty_flag: bool) -> None:
    committed = REPO / "sample_data" / folder
    summary = generate_district(tmp_path, dirty=dirty_flag)
    assert sorted(p.name for p in committed.iterdir() if p.name != "dataset.toml") == sorted(summary.files)
    for name in summary.files:
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), name
