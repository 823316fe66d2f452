"""OGC API – Features / Records under /ogc on the sample district (TestClient): landing page, conformance,
collections and their 3D Tiles links, paging by next links, bbox in CRS84 and EPSG:4548, output CRSs checked
against pyproj + PROJ's own geoid shift, CQL2 text/JSON against pandas over the same rows, queryables, the
catalogue, HTML, and bad input answered 4xx with OGC exception bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pyproj import Transformer

from api.app import create_app
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import IfcOptions, ingest_ifc
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.trusted import trusted

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ROOT.parent / "shared" / "data" / "ifc" / "ifc4_ifcopenshell_ifcopenhouse.ifc"
GTX = Path("/usr/share/proj/egm96_15.gtx")
SETTINGS = Settings(store="duckdb:///:memory:")
STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not GTX.is_file(), reason="EGM96 grid not installed")
#: PROJ's own vertical grid shift: 1985 (≈ EGM96 geoid) heights + N = ellipsoidal heights.
GEOID_SHIFT = (f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=vgridshift "
               f"+grids={GTX} +multiplier=1 +step +proj=unitconvert +xy_in=rad +xy_out=deg")




def ogc_app(store: DuckDBStore, tiles: Path) -> FastAPI:
    """The app with the /ogc router (included here until api/app.py includes it)."""
    app = create_app(SETTINGS, store=store, tiles_dir=tiles, security=trusted())
    return app


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], s, SurveyOptions(), SETTINGS)
    if HOUSE.is_file():
        ingest_ifc(HOUSE, s, IfcOptions(dataset_id="house", placement=UserPlacement(STORAGE, 501990, 4058050, 75.3)),
                   SETTINGS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(store: DuckDBStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(ogc_app(store, tmp_path_factory.mktemp("ogc") / "tiles")) as c:
        yield c


@pytest.fixture(scope="module")
def segments(store: DuckDBStore) -> pd.DataFrame:
    """Current pipe segments, read independently of the API (pandas, WKB geometries)."""
    df = store.read().execute(
        "SELECT fid, category, diameter_mm, material, road, owner, status, kind, start_depth, year, "
        "ST_AsWKB(geom) AS wkb FROM pipe_segments WHERE version_to IS NULL").df()
    df["geom"] = shapely.from_wkb([bytes(w) for w in df["wkb"]])
    return df.set_index("fid")


def _all(client: TestClient, url: str, **params: Any) -> dict[str, Any]:
    r = client.get(url, params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _ids(body: dict[str, Any]) -> set[Any]:
    return {f["id"] for f in body["features"]}


# -- landing page, conformance, OpenAPI -----------------------------------------------------------------------
def test_landing_page_links_and_conformance(client: TestClient) -> None:
    body = client.get("/ogc").json()
    rels = {lk["rel"]: lk for lk in body["links"]}
    assert {"self", "alternate", "service-desc", "service-doc", "conformance", "data"} <= set(rels)
    assert rels["service-desc"]["href"].endswith("/openapi.json")
    conf = client.get("/ogc/conformance").json()["conformsTo"]
    for cls in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
                "ogcapi-features-1/1.0/conf/html", "ogcapi-features-2/1.0/conf/crs",
                "ogcapi-features-3/1.0/conf/filter", "ogcapi-features-3/1.0/conf/features-filter",
                "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json", "cql2/1.0/conf/basic-spatial-functions",
                "ogcapi-records-1/1.0/conf/records-api"):
        assert any(c.endswith(cls) for c in conf), cls
    # not implemented, so not declared: OpenAPI 3.0 (FastAPI writes 3.1), temporal and array functions
    assert not any(c.endswith(("oas30", "temporal-functions", "array-functions")) for c in conf)


def test_the_openapi_document_describes_the_items_parameters(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/ogc/collections/{collectionId}/items"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"collectionId", "bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang",
            "filter-crs", "crs", "properties", "f"} <= names
    assert {"400", "404"} <= set(op["responses"])
    assert "application/geo+json" in op["responses"]["200"]["content"]


# -- collections ----------------------------------------------------------------------------------------------
def test_every_store_collection_is_listed_with_links_extent_and_crs(client: TestClient, store: DuckDBStore) -> None:
    body = client.get("/ogc/collections").json()
    cols = {c["id"]: c for c in body["collections"]}
    cats = [r[0] for r in store.read().execute("SELECT DISTINCT category FROM pipe_segments").fetchall()]
    for cat in cats:
        assert f"pipe-segments-{cat.lower()}" in cols and f"pipe-points-{cat.lower()}" in cols
    assert {"pipe-segments", "pipe-points", "bim-elements", "datasets", "pointclouds", "rasters", "meshes",
            "catalogue"} <= set(cols)
    js = cols["pipe-segments-js"]
    rels = {(lk["rel"], lk["type"]) for lk in js["links"]}
    assert ("items", "application/geo+json") in rels
    assert ("http://www.opengis.net/def/rel/ogc/1.0/queryables", "application/schema+json") in rels
    assert any(lk["href"].endswith("/tiles/pipes/tileset.json") for lk in js["links"])
    assert any(lk["href"].endswith("/tiles/buildings/tileset.json") for lk in cols["bim-elements"]["links"])
    assert js["content"][0]["type"] == "application/json+3dtiles"
    assert js["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/4548"
    for code in ("4490", "4479", "4978", "4979", "4526", "4548"):
        assert f"http://www.opengis.net/def/crs/EPSG/0/{code}" in js["crs"]
    west, south, east, north = js["extent"]["spatial"]["bbox"][0]
    assert 116.9 < west < east < 117.2 and 36.5 < south < north < 36.8
    assert js["extent"]["temporal"]["interval"][0][0].endswith("Z")
    assert cols["catalogue"]["itemType"] == "record"
    assert client.get("/ogc/collections/pointclouds/items").json()["features"] == []


# -- paging ---------------------------------------------------------------------------------------------------
def test_next_links_walk_the_whole_collection_without_duplicates(client: TestClient, segments: pd.DataFrame) -> None:
    url: str | None = "/ogc/collections/pipe-segments-ps/items?limit=37"
    seen: list[int] = []
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        body = r.json()
        assert body["numberReturned"] == len(body["features"]) <= 37
        assert body["numberMatched"] == int((segments.category == "PS").sum())
        seen += [f["id"] for f in body["features"]]
        rels = {lk["rel"]: lk["href"] for lk in body["links"]}
        assert ("prev" in rels) == (pages > 0)
        url = rels.get("next")
        pages += 1
    assert len(seen) == len(set(seen)) == int((segments.category == "PS").sum())
    assert set(seen) == set(segments.index[segments.category == "PS"])
    assert pages == -(-len(seen) // 37)


def test_a_huge_limit_is_clamped_not_refused(client: TestClient, segments: pd.DataFrame) -> None:
    body = client.get("/ogc/collections/pipe-segments/items", params={"limit": 10**12}).json()
    assert body["numberReturned"] == len(segments) <= 10_000
    assert not any(lk["rel"] == "next" for lk in body["links"])


# -- bbox -----------------------------------------------------------------------------------------------------
def _densified_box(x0: float, y0: float, x1: float, y1: float, src: str) -> shapely.Geometry:
    box = shapely.segmentize(shapely.box(x0, y0, x1, y1), 0.0001)
    t = Transformer.from_crs(src, STORAGE, always_xy=True)
    return shapely.transform(box, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def test_bbox_in_crs84(client: TestClient, segments: pd.DataFrame) -> None:
    bbox = (117.0235, 36.6540, 117.0265, 36.6560)
    expected = set(segments.index[shapely.intersects(segments.geom.values, _densified_box(*bbox, "OGC:CRS84"))])
    assert 10 < len(expected) < len(segments) / 2
    got = _ids(_all(client, "/ogc/collections/pipe-segments/items", bbox=",".join(map(str, bbox))))
    assert got == expected
    lat_first = _ids(_all(client, "/ogc/collections/pipe-segments/items", bbox=f"{bbox[1]},{bbox[0]},{bbox[3]},{bbox[2]}",
                          **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}))
    assert lat_first == expected  # EPSG:4326 is lat, lon


def test_bbox_in_the_storage_crs_uses_its_axis_order(client: TestClient, segments: pd.DataFrame) -> None:
    e0, n0, e1, n1 = 502100.0, 4058100.0, 502300.0, 4058250.0
    expected = set(segments.index[shapely.intersects(segments.geom.values, shapely.box(e0, n0, e1, n1))])
    assert 10 < len(expected) < len(segments) / 2
    crs = "http://www.opengis.net/def/crs/EPSG/0/4548"
    got = _ids(_all(client, "/ogc/collections/pipe-segments/items", bbox=f"{n0},{e0},{n1},{e1}", **{"bbox-crs": crs}))
    assert got == expected  # EPSG:4548 is northing ("X") first


# -- output CRS and heights -----------------------------------------------------------------------------------
def _one(client: TestClient, segments: pd.DataFrame, crs: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    fid = int(segments.index[segments.category == "JS"][0])
    r = client.get(f"/ogc/collections/pipe-segments-js/items/{fid}", params={"crs": crs} if crs else {})
    assert r.status_code == 200, r.text
    stored = shapely.get_coordinates(segments.loc[fid, "geom"], include_z=True)
    return np.array(r.json()["geometry"]["coordinates"]), stored, r.headers["content-crs"]


def test_storage_crs_output_equals_the_stored_coordinates(client: TestClient, segments: pd.DataFrame) -> None:
    got, stored, header = _one(client, segments, "http://www.opengis.net/def/crs/EPSG/0/4548")
    assert header == "<http://www.opengis.net/def/crs/EPSG/0/4548>"
    np.testing.assert_allclose(got, stored[:, [1, 0, 2]], atol=1e-4)  # northing, easting, 1985 height


@pytest.mark.parametrize(("crs", "lat_first"), [(None, False), ("http://www.opengis.net/def/crs/EPSG/0/4979", True),
                                               ("http://www.opengis.net/def/crs/EPSG/0/4490", True)])
def test_geographic_output_has_ellipsoidal_heights(client: TestClient, segments: pd.DataFrame, crs: str | None,
                                                   lat_first: bool) -> None:
    got, stored, header = _one(client, segments, crs)
    assert header == f"<{crs or 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'}>"
    lon, lat = Transformer.from_crs(STORAGE, "EPSG:4490", always_xy=True).transform(stored[:, 0], stored[:, 1])
    _, _, h = Transformer.from_pipeline(GEOID_SHIFT).transform(lon, lat, stored[:, 2])
    expected = np.column_stack([lat, lon, h] if lat_first else [lon, lat, h])
    np.testing.assert_allclose(got[:, :2], expected[:, :2], atol=1e-8)
    np.testing.assert_allclose(got[:, 2], expected[:, 2], atol=2e-3)
    assert abs(float(np.mean(got[:, 2] - stored[:, 2])) + 7.3) < 0.5  # Jinan: N ≈ -7.3 m


def test_geocentric_output(client: TestClient, segments: pd.DataFrame) -> None:
    got, stored, _ = _one(client, segments, "http://www.opengis.net/def/crs/EPSG/0/4978")
    lon, lat = Transformer.from_crs(STORAGE, "EPSG:4490", always_xy=True).transform(stored[:, 0], stored[:, 1])
    _, _, h = Transformer.from_pipeline(GEOID_SHIFT).transform(lon, lat, stored[:, 2])
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    np.testing.assert_allclose(got, np.column_stack([x, y, z]), atol=5e-3)


def test_another_zone_and_a_filter_geometry_in_it(client: TestClient, segments: pd.DataFrame) -> None:
    got, stored, _ = _one(client, segments, "http://www.opengis.net/def/crs/EPSG/0/4527")
    assert np.allclose(got[:, 1] - stored[:, 0], 39_000_000, atol=1e-3)  # zone 39 with its prefix, N first
    centre = segments.geom.iloc[len(segments) // 2].centroid
    e, n = centre.x + 12.0, centre.y + 7.0
    expected = set(segments.index[segments.geom.apply(lambda g: g.distance(shapely.Point(e, n)) <= 30)])
    got_ids = _ids(_all(client, "/ogc/collections/pipe-segments/items", **{
        "filter": f"S_DWITHIN(geometry, POINT({n} {39_000_000 + e}), 30, meters)",
        "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4527"}))
    assert got_ids == expected and 1 < len(expected) < len(segments) / 4


# -- CQL2 -----------------------------------------------------------------------------------------------------
def _pt(lon: float, lat: float) -> shapely.Geometry:
    t = Transformer.from_crs("OGC:CRS84", STORAGE, always_xy=True)
    return shapely.Point(*t.transform(lon, lat))


_AREA = (117.0235, 36.6540, 117.0265, 36.6560)
CQL_CASES: list[tuple[str, Any, Any]] = [
    ("category = 'JS'", {"op": "=", "args": [{"property": "category"}, "JS"]}, lambda d: d.category == "JS"),
    ("diameter_mm <> 300", {"op": "<>", "args": [{"property": "diameter_mm"}, 300]},
     lambda d: d.diameter_mm.notna() & (d.diameter_mm != 300)),
    ("diameter_mm >= 400 AND category = 'PS'",
     {"op": "and", "args": [{"op": ">=", "args": [{"property": "diameter_mm"}, 400]},
                            {"op": "=", "args": [{"property": "category"}, "PS"]}]},
     lambda d: (d.diameter_mm >= 400) & (d.category == "PS")),
    ("category = 'RQ' OR diameter_mm < 200",
     {"op": "or", "args": [{"op": "=", "args": [{"property": "category"}, "RQ"]},
                           {"op": "<", "args": [{"property": "diameter_mm"}, 200]}]},
     lambda d: (d.category == "RQ") | (d.diameter_mm < 200)),
    ("NOT (category = 'PS')", {"op": "not", "args": [{"op": "=", "args": [{"property": "category"}, "PS"]}]},
     lambda d: d.category != "PS"),
    ("road LIKE '历%'", {"op": "like", "args": [{"property": "road"}, "历%"]},
     lambda d: d.road.fillna("").str.startswith("历")),
    ("category IN ('JS', 'RQ')", {"op": "in", "args": [{"property": "category"}, ["JS", "RQ"]]},
     lambda d: d.category.isin(["JS", "RQ"])),
    ("diameter_mm BETWEEN 300 AND 500", {"op": "between", "args": [{"property": "diameter_mm"}, 300, 500]},
     lambda d: d.diameter_mm.between(300, 500)),
    ("diameter_mm IS NULL", {"op": "isNull", "args": [{"property": "diameter_mm"}]},
     lambda d: d.diameter_mm.isna()),
    ("CASEI(kind) = casei('GRAVITY')", {"op": "=", "args": [{"op": "casei", "args": [{"property": "kind"}]},
                                                            {"op": "casei", "args": ["GRAVITY"]}]},
     lambda d: d.kind == "gravity"),
    (f"S_INTERSECTS(geometry, BBOX({_AREA[0]}, {_AREA[1]}, {_AREA[2]}, {_AREA[3]}))",
     {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": list(_AREA)}]},
     lambda d: shapely.intersects(d.geom.values, _densified_box(*_AREA, "OGC:CRS84"))),
    (f"S_WITHIN(geometry, POLYGON(({_AREA[0]} {_AREA[1]}, {_AREA[2]} {_AREA[1]}, {_AREA[2]} {_AREA[3]}, "
     f"{_AREA[0]} {_AREA[3]}, {_AREA[0]} {_AREA[1]})))",
     {"op": "s_within", "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": [[
         [_AREA[0], _AREA[1]], [_AREA[2], _AREA[1]], [_AREA[2], _AREA[3]], [_AREA[0], _AREA[3]], [_AREA[0], _AREA[1]]]]}]},
     lambda d: shapely.within(d.geom.values, _densified_box(*_AREA, "OGC:CRS84"))),
    ("S_DWITHIN(geometry, POINT(117.02242 36.6545), 40, meters)",
     {"op": "s_dwithin", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [117.02242, 36.6545]},
                                  40, "meters"]},
     lambda d: shapely.dwithin(d.geom.values, _pt(117.02242, 36.6545), 40)),
]


@pytest.mark.parametrize(("text", "tree", "expect"), CQL_CASES, ids=[c[0][:40] for c in CQL_CASES])
def test_cql2_text_and_json_select_what_pandas_selects(client: TestClient, segments: pd.DataFrame, text: str,
                                                       tree: Any, expect: Any) -> None:
    expected = set(segments.index[np.asarray(expect(segments), dtype=bool)])
    assert 0 < len(expected) < len(segments), "the case must select some rows, not all"
    got_text = _ids(_all(client, "/ogc/collections/pipe-segments/items", filter=text))
    got_json = _ids(_all(client, "/ogc/collections/pipe-segments/items", filter=json.dumps(tree),
                         **{"filter-lang": "cql2-json"}))
    assert got_text == expected
    assert got_json == expected


def test_a_quote_in_a_filter_value_is_data_not_sql(client: TestClient) -> None:
    body = _all(client, "/ogc/collections/pipe-segments/items", filter="road = 'x'' OR ''1''=''1'")
    assert body["features"] == [] and body["numberMatched"] == 0


# -- queryables -----------------------------------------------------------------------------------------------
def test_queryables_are_a_json_schema_of_the_filterable_properties(client: TestClient) -> None:
    r = client.get("/ogc/collections/pipe-points-js/queryables")
    assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
    body = r.json()
    props = body["properties"]
    assert props["geometry"]["format"] == "geometry-any"
    assert props["diameter_mm" if "diameter_mm" in props else "ground_h"]["type"] == "number"
    assert props["survey_date"] == {"title": "探测日期 survey date", "type": "string", "format": "date"}
    assert "JS" in props["category"]["enum"]
    dated = _all(client, "/ogc/collections/pipe-points/items", filter="survey_date >= DATE('2025-04-01')")
    assert dated["features"] and all(f["properties"]["survey_date"] >= "2025-04-01" for f in dated["features"])


# -- items, single item, datetime, properties -----------------------------------------------------------------
def test_single_item_matches_the_items_page_and_unknown_ids_are_404(client: TestClient) -> None:
    page = client.get("/ogc/collections/pipe-points-rq/items", params={"limit": 1}).json()
    feat = page["features"][0]
    one = client.get(f"/ogc/collections/pipe-points-rq/items/{feat['id']}").json()
    assert one["geometry"] == feat["geometry"] and one["properties"] == feat["properties"]
    assert {lk["rel"] for lk in one["links"]} >= {"self", "alternate", "collection"}
    for bad in ("999999999", "abc", "1e5"):
        r = client.get(f"/ogc/collections/pipe-points-rq/items/{bad}")
        assert r.status_code == 404 and r.json()["code"] == "NotFound"


def test_datetime_selects_rows_valid_then(client: TestClient, segments: pd.DataFrame) -> None:
    url = "/ogc/collections/pipe-segments/items"
    assert _all(client, url, datetime="2000-01-01T00:00:00Z")["features"] == []
    assert len(_all(client, url, datetime="2000-01-01T00:00:00Z/..")["features"]) == len(segments)
    assert _all(client, url, datetime="../2001-12-31")["features"] == []


def test_properties_selection(client: TestClient) -> None:
    body = client.get("/ogc/collections/pipe-segments/items", params={"properties": "category,road"}).json()
    assert all(set(f["properties"]) == {"category", "road"} for f in body["features"])


def test_bim_elements_are_footprints_at_their_base_height(client: TestClient) -> None:
    if not HOUSE.is_file():
        pytest.skip("IFC sample not available")
    body = _all(client, "/ogc/collections/bim-elements/items", filter="ifc_class = 'IfcFooting'",
                crs="http://www.opengis.net/def/crs/EPSG/0/4548")
    (feat,) = body["features"]
    assert feat["id"].startswith("house:1:")
    ring = np.array(feat["geometry"]["coordinates"][0])
    assert feat["geometry"]["type"] == "Polygon" and np.allclose(ring[:, 2], feat["properties"]["minz"])
    assert 4_058_049 < ring[:, 0].min() and 501_984 < ring[:, 1].min() < 501_996  # N, E
    one = client.get(f"/ogc/collections/bim-elements/items/{feat['id']}").json()
    assert one["properties"]["global_id"] == feat["properties"]["global_id"]


# -- catalogue (OGC API – Records) ----------------------------------------------------------------------------
def test_catalogue_records_carry_cjjt315_metadata(client: TestClient) -> None:
    body = client.get("/ogc/collections/catalogue/items", params={"type": "dataset", "limit": 100}).json()
    rec = next(r for r in body["features"] if r["id"] == "dataset:jinan_district")
    assert rec["conformsTo"][0].endswith("record-core") and rec["properties"]["type"] == "dataset"
    meta = rec["properties"]["cjjt315"]
    assert {"identification", "extent", "quality", "time", "crs", "distribution", "grade"} <= set(meta)
    assert meta["grade"]["grade"] == "重要" and meta["crs"]["storage"] == STORAGE
    assert meta["crs"]["vertical"] == "EPSG:5737" and meta["time"]["versions"][0]["version"] == 1
    assert meta["quality"]["versions"][0]["qc"]["errors"] == 0
    assert any("filter=dataset_id" in lk["href"] for lk in rec["links"] if lk["rel"] == "items")
    services = client.get("/ogc/collections/catalogue/items", params={"type": "service", "limit": 100}).json()
    sids = {r["id"] for r in services["features"]}
    assert {"collection:pipe-segments", "tileset:pipes", "tileset:buildings"} <= sids
    one = client.get("/ogc/collections/catalogue/items/dataset:jinan_district")
    assert one.status_code == 200 and one.json()["id"] == "dataset:jinan_district"
    assert client.get("/ogc/collections/catalogue/items", params={"q": "历下区"}).json()["numberMatched"] >= 1
    assert client.get("/ogc/collections/catalogue/items", params={"bbox": "100,20,101,21"}).json()["features"] == []


# -- HTML -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/pipe-segments",
                                 "/ogc/collections/pipe-segments/items", "/ogc/collections/pipe-segments/queryables",
                                 "/ogc/collections/catalogue/items"])
def test_html_by_f_or_accept(client: TestClient, url: str) -> None:
    for r in (client.get(url, params={"f": "html"}), client.get(url, headers={"Accept": "text/html,*/*;q=0.8"})):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text.startswith("<!DOCTYPE html>") and "http://" not in r.text.split("<body>")[0]
    assert client.get(url, headers={"Accept": "application/json"}).headers["content-type"] != "text/html"


# -- bad input ------------------------------------------------------------------------------------------------
BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("pipe-segments", {"bbox": "1,2,3"}, 400, "bbox"),
    ("pipe-segments", {"bbox": "a,b,c,d"}, 400, "bbox"),
    ("pipe-segments", {"bbox": "117.03,36.65,117.02,36.66"}, 400, "lower bound"),
    ("pipe-segments", {"bbox": "117.02,36.65,117.03,36.66", "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
     400, "axis order"),
    ("pipe-segments", {"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}, 400, "unsupported CRS"),
    ("pipe-segments", {"bbox": "1,2,3,4", "bbox-crs": "EPSG:99999"}, 400, "unsupported CRS"),
    ("pipe-segments", {"filter": "diameter_mm >"}, 400, "malformed cql2-text"),
    ("pipe-segments", {"filter": "{\"op\": ", "filter-lang": "cql2-json"}, 400, "malformed cql2-json"),
    ("pipe-segments", {"filter": "colour = 'red'"}, 400, "'colour' is not a queryable"),
    ("pipe-segments", {"filter": "diameter_mm = 'big'"}, 400, "cannot compare"),
    ("pipe-segments", {"filter": "T_AFTER(year, TIMESTAMP('2020-01-01T00:00:00Z'))"}, 400, "not supported"),
    ("pipe-segments", {"filter-lang": "ecql", "filter": "a=1"}, 400, "filter-lang"),
    ("pipe-segments", {"limit": 0}, 400, "limit"),
    ("pipe-segments", {"limit": "lots"}, 400, "limit"),
    ("pipe-segments", {"datetime": "yesterday"}, 400, "datetime"),
    ("pipe-segments", {"properties": "nope"}, 400, "properties"),
    ("pipe-segments", {"unknown": "1"}, 400, "unknown query parameter"),
    ("no-such-collection", {}, 404, "does not exist"),
]


@pytest.mark.parametrize(("collection", "params", "status", "words"), BAD, ids=[f"{b[0]}-{b[1]}"[:60] for b in BAD])
def test_bad_input_is_a_4xx_with_an_ogc_exception_naming_the_problem(client: TestClient, collection: str,
                                                                     params: dict[str, Any], status: int,
                                                                     words: str) -> None:
    r = client.get(f"/ogc/collections/{collection}/items", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "description"} and body["code"] in ("InvalidParameterValue", "NotFound")
    assert words in body["description"]


def test_next_links_keep_the_query(client: TestClient) -> None:
    body = client.get("/ogc/collections/pipe-segments/items",
                      params={"limit": 5, "filter": "category = 'JS'", "crs": "EPSG:4490"}).json()
    nxt = next(lk["href"] for lk in body["links"] if lk["rel"] == "next")
    q = parse_qs(urlsplit(nxt).query)
    assert q["filter"] == ["category = 'JS'"] and q["crs"] == ["EPSG:4490"] and q["offset"] == ["5"]
