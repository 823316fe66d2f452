"""Item queries over the store (no HTTP): time travel over dataset versions, the R-tree plan of bbox queries,
when numberMatched is given, and what a public principal sees (hidden grades, coarsened positions)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.errors import InvalidInputError, NotFoundError
from cim.features import ItemsRequest, get_item, query_items, registry
from cim.features import query as query_module
from cim.heights import get_geoid
from cim.security.policy import PUBLIC_GRID_M, Principal, Role
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample_data" / "jinan_district"
SETTINGS = Settings(store="duckdb:///:memory:")
STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")
GEOID = get_geoid("egm96") if Path("/usr/share/proj/egm96_15.gtx").is_file() else None


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    """The sample district ingested twice: version 2 changes the diameter of the first water line (JS1-JS21)."""
    folder = tmp_path_factory.mktemp("v2") / "jinan_district"
    shutil.copytree(SAMPLE, folder)
    lines = (folder / "JSLINE.csv").read_text(encoding="utf-8-sig").splitlines()
    assert lines[1].startswith("JS1,JS21,") and ",DN300," in lines[1]
    lines[1] = lines[1].replace(",DN300,", ",DN400,")
    (folder / "JSLINE.csv").write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    store = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], store, SurveyOptions(), SETTINGS)
    ingest_survey([folder], store, SurveyOptions(keep_errors=True), SETTINGS)  # a DN jump is flagged, not refused
    yield store
    store.close()


def _items(store: Any, collection: str, **kw: Any) -> list[dict[str, Any]]:
    _, view = registry(store, STORAGE)
    page = query_items(store, view, view.get(collection), ItemsRequest(limit=10_000, **kw), storage_crs=STORAGE,
                       geoid=GEOID)
    return [f.to_dict() for f in page.features]


def test_datetime_reads_the_rows_valid_at_that_time(versioned: DuckDBStore) -> None:
    v1, v2 = (v["created_at"] for v in versioned.versions("jinan_district"))
    between = (v1 + (v2 - v1) / 2).isoformat() + "Z"
    flt = "feature_id = 'JS1-JS21'"
    (now,) = _items(versioned, "pipe-segments-js", filter=flt)
    (then,) = _items(versioned, "pipe-segments-js", filter=flt, datetime=between)
    assert now["properties"]["diameter_mm"] == 400 and now["properties"]["version_from"] == 2
    assert then["properties"]["diameter_mm"] == 300 and then["properties"]["version_to"] == 2
    both = _items(versioned, "pipe-segments-js", filter=flt, datetime=f"{between}/..")
    assert sorted(f["properties"]["diameter_mm"] for f in both) == [300, 400]
    assert len(_items(versioned, "pipe-segments-js", datetime=between)) == len(_items(versioned, "pipe-segments-js"))
    _, view = registry(versioned, STORAGE)
    closed = get_item(versioned, view, view.get("pipe-segments-js"), str(then["id"]), crs=None, storage_crs=STORAGE,
                      geoid=GEOID)
    assert closed.to_dict()["properties"]["version_to"] == 2  # a closed row keeps its id


class _Recorder:
    """A store whose cursors record the SQL they run."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store, self.sql = store, []  # type: ignore[var-annotated]
        self.path = store.path

    def datasets(self) -> list[dict[str, Any]]:
        return self.store.datasets()

    def read(self) -> Any:
        outer, cur = self, self.store.read()

        class Cursor:
            def execute(self, sql: str, params: Any = None) -> Any:
                outer.sql.append((sql, params))
                return cur.execute(sql, params or [])

            def close(self) -> None:
                cur.close()

        return Cursor()


def test_bbox_queries_use_the_rtree(versioned: DuckDBStore) -> None:
    rec = _Recorder(versioned)
    assert _items(rec, "pipe-segments", bbox="117.0235,36.6540,117.0265,36.6560", filter="diameter_mm > 100")
    sql, params = next((s, p) for s, p in rec.sql if "ST_Intersects" in s and "LIMIT" in s)
    assert "'" not in sql.split("FROM", 1)[1].replace("'\\'", "")  # every value is a parameter
    plan = versioned.read().execute("EXPLAIN " + sql, params).fetchall()[0][1]
    assert "RTREE_INDEX_SCAN" in plan


def test_number_matched_only_when_cheap(versioned: DuckDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _, view = registry(versioned, STORAGE)
    col = view.get("pipe-segments")
    total = versioned.count("pipe_segments", "jinan_district")
    page = query_items(versioned, view, col, ItemsRequest(limit=5), storage_crs=STORAGE, geoid=GEOID)
    assert page.number_matched == total and page.number_returned == 5 and page.has_next
    filtered = ItemsRequest(limit=5, bbox="117.0235,36.6540,117.0265,36.6560")
    assert query_items(versioned, view, col, filtered, storage_crs=STORAGE, geoid=GEOID).number_matched
    monkeypatch.setattr(query_module, "COUNT_LIMIT", 100)  # the collection is now "large"
    page = query_items(versioned, view, col, filtered, storage_crs=STORAGE, geoid=GEOID)
    assert page.number_matched is None and page.number_returned == 5
    plain = query_items(versioned, view, col, ItemsRequest(limit=5), storage_crs=STORAGE, geoid=GEOID)
    assert plain.number_matched == total  # unfiltered counts are cached per catalogue state


def test_limit_and_offset_rules() -> None:
    assert query_module.clamp_limit(None) == 10 and query_module.clamp_limit(10**9) == query_module.MAX_LIMIT
    with pytest.raises(InvalidInputError, match="limit"):
        query_module.clamp_limit(0)
    assert query_module.parse_datetime("2025-03-11")[1].hour == 23
    assert query_module.parse_datetime("../2025-03-11T08:00:00+08:00") == (None, query_module.parse_datetime(
        "2025-03-11T00:00:00Z")[0])
    with pytest.raises(InvalidInputError, match="start is after the end"):
        query_module.parse_datetime("2025-03-12/2025-03-11")


@dataclass
class _Scoped:
    """Stand-in for the security ScopedStore: the store's read API plus the principal."""

    store: DuckDBStore
    principal: Principal

    @property
    def path(self) -> str:
        return self.store.path

    def datasets(self) -> list[dict[str, Any]]:
        return self.store.datasets()

    def read(self) -> Any:
        return self.store.read()


@pytest.fixture(scope="module")
def graded() -> Iterator[DuckDBStore]:
    """The sample district twice: as 重要 (jinan_district) and as 一般 (open_district)."""
    store = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], store, SurveyOptions(), SETTINGS)
    ingest_survey([SAMPLE], store, SurveyOptions(dataset_id="open_district"), SETTINGS)
    with store.transaction() as con:
        con.execute("UPDATE datasets SET grade = '一般' WHERE id = 'open_district'")
    yield store
    store.close()


def test_the_public_sees_only_general_data_coarsened(graded: DuckDBStore) -> None:
    public = _Scoped(graded, Principal("anon", Role.PUBLIC))
    feats = _items(public, "pipe-segments-js", crs="http://www.opengis.net/def/crs/EPSG/0/4548")
    assert feats and {f["properties"]["dataset_id"] for f in feats} == {"open_district"}
    coords = np.array([c for f in feats for c in f["geometry"]["coordinates"]])
    assert coords.shape[1] == 2  # heights withheld
    assert np.allclose(np.mod(coords, PUBLIC_GRID_M), PUBLIC_GRID_M / 2)  # snapped to 50 m cell centres
    assert all("start_depth" not in f["properties"] and "attrs" not in f["properties"] for f in feats)
    # probing a withheld value does not reveal coarse rows
    assert _items(public, "pipe-segments-js", filter="start_depth > 0") == []
    full = _items(graded, "pipe-segments-js", filter="dataset_id = 'jinan_district'")
    _, view = registry(public, STORAGE)
    with pytest.raises(NotFoundError):
        get_item(public, view, view.get("pipe-segments-js"), str(full[0]["id"]), crs=None, storage_crs=STORAGE,
                 geoid=GEOID)
    planner = _Scoped(graded, Principal("p", Role.PLANNER))
    assert {f["properties"]["dataset_id"] for f in _items(planner, "pipe-segments-js")} == {
        "jinan_district", "open_district"}
