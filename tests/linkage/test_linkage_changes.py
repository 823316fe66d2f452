"""The change feed over two ingests of a district (rows added, modified, removed): paged with small pages and
resumed from cursors it gives exactly the changes, once each; the crosswalk survives the re-ingest."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from cim.errors import InvalidInputError
from cim.linkage.changes import read_changes
from cim.linkage.crosswalk import Link, find_external, find_ours, link, unlink
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.linkage.linkage_support import ingest_district

TABLES = {"pipe-points": "pipe_points", "pipe-segments": "pipe_segments"}


def _rewrite(path: Path, edit) -> None:  # noqa: ANN001
    rows = list(csv.reader(path.open(encoding="utf-8")))
    rows = [rows[0], *edit(rows[0], rows[1:])]
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _snapshot(store: DuckDBStore) -> dict[str, dict[str, str]]:
    return {c: dict(store.read().execute(f"SELECT feature_id, row_hash FROM {t} WHERE version_to IS NULL").fetchall())
            for c, t in TABLES.items()}


def _expected(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> set[tuple[str, str, str]]:
    out = set()
    for c in TABLES:
        b, a = before[c], after[c]
        out |= {(c, "added", f) for f in a.keys() - b.keys()}
        out |= {(c, "deleted", f) for f in b.keys() - a.keys()}
        out |= {(c, "modified", f) for f in a.keys() & b.keys() if a[f] != b[f]}
    return out


def _walk(store: DuckDBStore, cursor: str | None = None, **kw) -> tuple[list, str, int]:  # noqa: ANN003
    """Every entry from ``cursor`` (or the start given by ``kw``), in pages of 7 read with fresh calls."""
    entries, pages = [], 0
    page = read_changes(store, cursor=cursor, limit=7, **kw)
    while True:
        pages += 1
        assert page.entries <= 7
        for coll, groups in page.collections.items():
            for change, items in groups.items():
                entries += [(page.version, coll, change, i if isinstance(i, str) else i["id"]) for i in items]
        if page.complete:
            return entries, page.next_cursor, pages
        page = read_changes(store, cursor=page.next_cursor, limit=7, as_features=kw.get("as_features", True))


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("changes")
    store = DuckDBStore(":memory:")
    v1 = ingest_district(tmp / "v1", store, "lixia")
    snap1 = _snapshot(store)
    mid = read_changes(store, limit=10_000, as_features=False)  # caught up after v1
    assert mid.complete and mid.version == 1
    links = [Link("370000", "sd-pipe", "SD-A", "lixia", "JS1-JS5"),   # modified in v2
             Link("370000", "sd-pipe", "SD-B", "lixia", "YS1-YS5"),   # removed in v2
             Link("370000", "sd-pipe", "SD-C", "lixia", "JS2-JS7"),   # unchanged
             Link("370000", "sd-point", "SD-P", "lixia", "JS1", "pipe-points")]
    link(store, links, created_by="test")
    before_v2 = {lk.external_id: find_ours(store, "370000", external_id=lk.external_id)[0] for lk in links}
    shutil.copytree(tmp / "v1", tmp / "v2")

    def lines(head: list[str], rows: list[list[str]]) -> list[list[str]]:
        s, e, m = head.index("起点点号"), head.index("终点点号"), head.index("材质")
        out = []
        for r in rows:
            key = f"{r[s]}-{r[e]}"
            if key in ("YS1-YS5", "YS5-YS6", "JS9-JS10"):
                continue  # removed
            if key in ("JS1-JS5", "JS5-JS6", "JS6-JS3"):
                r[m] = "钢"  # modified
            out.append(r)
        return out

    def points(head: list[str], rows: list[list[str]]) -> list[list[str]]:
        i, x = head.index("物探点号"), head.index("X")
        new = [list(rows[0]) for _ in range(3)]
        for k, r in enumerate(new):
            r[i] = r[head.index("图上点号")] = f"JSNEW{k}"
            r[x] = f"{float(r[x]) + 5 + k:.3f}"
        return rows + new  # added

    _rewrite(tmp / "v2" / "pipe_lines.csv", lines)
    _rewrite(tmp / "v2" / "pipe_points.csv", points)
    v2, _ = ingest_survey([tmp / "v2"], store, SurveyOptions(crs_in="EPSG:4548", dataset_id="lixia", keep_errors=True),
                          Settings(store="duckdb:///:memory:"))
    return {"store": store, "v1": v1, "v2": v2, "snap1": snap1, "snap2": _snapshot(store), "mid": mid.next_cursor,
            "before_v2": before_v2}


def test_the_first_version_is_all_added(district: dict) -> None:
    entries, _, pages = _walk(district["store"], as_features=False)
    v1 = [e for e in entries if e[0] == 1]
    assert Counter((c, ch) for _, c, ch, _ in v1) == {("datasets", "added"): 1,
                                                       ("pipe-points", "added"): len(district["snap1"]["pipe-points"]),
                                                       ("pipe-segments", "added"): len(district["snap1"]["pipe-segments"])}
    assert pages > 30  # small pages


def test_resuming_after_the_first_ingest_gives_exactly_the_changes_of_the_second(district: dict) -> None:
    store = district["store"]
    entries, end, _ = _walk(store, district["mid"])
    got = [(c, ch, f) for v, c, ch, f in entries if c != "datasets"]
    assert all(v == 2 for v, *_ in entries)
    assert len(got) == len(set(got))  # each once
    expected = _expected(district["snap1"], district["snap2"])
    assert set(got) == expected
    counts = district["v2"].counts
    for c, t in TABLES.items():
        for change in ("added", "modified", "deleted"):
            assert sum(1 for cc, ch, _ in got if cc == c and ch == change) == counts[t][change]
    assert {("pipe-segments", "deleted", "YS1-YS5"), ("pipe-segments", "modified", "JS1-JS5"),
            ("pipe-points", "added", "JSNEW0")} <= set(got)
    assert ("datasets", "modified", "lixia") in {(c, ch, f) for _, c, ch, f in entries}
    nothing = read_changes(store, cursor=end)  # caught up: nothing more, the cursor stays
    assert nothing.entries == 0 and nothing.complete and nothing.next_cursor == end


def test_features_come_as_geojson_in_lon_lat_and_deleted_ones_as_ids(district: dict) -> None:
    store = district["store"]
    page = read_changes(store, dataset="lixia", since_version=1, collections=("pipe-segments",), limit=500)
    assert page.version == 2 and page.complete
    groups = page.collections["pipe-segments"]
    assert groups["deleted"] == ["JS9-JS10", "YS1-YS5", "YS5-YS6"]
    modified = {f["id"]: f for f in groups["modified"]}
    feature = modified["JS1-JS5"]
    assert feature["properties"]["material"] == "G" and feature["properties"]["version_from"] == 2
    (lon0, lat0, z0), (lon1, lat1, _) = feature["geometry"]["coordinates"]
    assert 116.9 < lon0 < 117.2 and 36.5 < lat0 < 36.8 and 50 < z0 < 80
    ids = read_changes(store, dataset="lixia", since_version=1, collections=("pipe-segments",), as_features=False)
    assert sorted(ids.collections["pipe-segments"]["modified"]) == sorted(modified)


def test_since_a_timestamp_starts_after_it(district: dict) -> None:
    store = district["store"]
    versions = store.versions("lixia")
    entries, _, _ = _walk(store, since=versions[0]["created_at"] + timedelta(microseconds=0), as_features=False)
    assert {v for v, *_ in entries} == {2}
    entries, _, _ = _walk(store, since=versions[0]["created_at"] - timedelta(seconds=1), as_features=False)
    assert {v for v, *_ in entries} == {1, 2}


def test_bad_cursors_and_parameters_are_refused(district: dict) -> None:
    store = district["store"]
    for bad in ("not-a-cursor", "eyJ0IjoxfQ", "e30"):
        with pytest.raises(InvalidInputError, match="cursor"):
            read_changes(store, cursor=bad)
    with pytest.raises(InvalidInputError, match="since_version needs a dataset"):
        read_changes(store, since_version=1)
    with pytest.raises(InvalidInputError, match="unknown collections"):
        read_changes(store, collections=("roads",))
    with pytest.raises(InvalidInputError, match="limit"):
        read_changes(store, limit=0)


def test_the_crosswalk_survives_the_reingest_both_ways(district: dict) -> None:
    store = district["store"]
    before = district["before_v2"]
    after = {r["external_id"]: r for r in find_ours(store, "370000")}
    assert set(after) == {"SD-A", "SD-B", "SD-C", "SD-P"}
    assert after["SD-A"]["current"] and after["SD-A"]["item_id"] != before["SD-A"]["item_id"]  # re-stored row
    assert not after["SD-B"]["current"] and after["SD-B"]["item_id"] is None  # removed by the re-ingest
    assert after["SD-C"]["item_id"] == before["SD-C"]["item_id"]  # unchanged row, same fid
    fid = after["SD-A"]["item_id"]
    assert store.read().execute("SELECT feature_id FROM pipe_segments WHERE fid = ? AND version_to IS NULL",
                                [fid]).fetchone()[0] == "JS1-JS5"
    assert [(r["platform"], r["scheme"], r["external_id"]) for r in find_external(store, "lixia", "JS1-JS5")] == [
        ("370000", "sd-pipe", "SD-A")]
    assert [r["external_id"] for r in find_external(store, "lixia", "JS1", platform="370000")] == ["SD-P"]


def test_crosswalk_refusals_leave_nothing_half_stored(district: dict) -> None:
    store = district["store"]
    count = len(find_ours(store, "370000"))
    with pytest.raises(InvalidInputError, match="already names"):
        link(store, [Link("370000", "sd-pipe", "SD-NEW", "lixia", "JS6-JS3"),
                     Link("370000", "sd-pipe", "SD-C", "lixia", "JS6-JS3")])
    with pytest.raises(InvalidInputError, match="does not exist"):
        link(store, [Link("370000", "sd-pipe", "SD-NEW", "nosuch", "X")])
    with pytest.raises(InvalidInputError, match="collection"):
        link(store, [Link("370000", "sd-pipe", "SD-NEW", "lixia", "X", "roads")])
    assert len(find_ours(store, "370000")) == count
    link(store, [Link("370000", "sd-pipe", "SD-C", "lixia", "JS6-JS3")], replace=True)
    assert find_ours(store, "370000", "sd-pipe", "SD-C")[0]["feature_id"] == "JS6-JS3"
    unlink(store, "370000", "sd-pipe", "SD-C")
    assert find_ours(store, "370000", "sd-pipe", "SD-C") == []
