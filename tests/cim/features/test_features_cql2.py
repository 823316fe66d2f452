"""CQL2 → SQL: parse errors name the position, properties come from the whitelist, values are parameters,
types are checked, unsupported functions are refused, geometry literals land in the storage CRS."""

from __future__ import annotations

import json

import pytest
import shapely

from cim.errors import InvalidInputError
from cim.features.collections import BIM_SOURCE, Collection, _segments
from cim.features.cql2 import parse_filter, to_sql
from cim.features.crs import CRS84, output_crs

STORAGE = "EPSG:4548"
SEGMENTS = Collection("pipe-segments", "t", "d", _segments(None))
BIM = Collection("bim-elements", "t", "d", BIM_SOURCE)


def _sql(text: str, lang: str = "cql2-text", collection: Collection = SEGMENTS, crs: str = CRS84) -> tuple[str, list]:
    f = to_sql(parse_filter(text, lang), collection, geometry_sql="geom", storage_crs=STORAGE,
               filter_crs=output_crs(crs, STORAGE))
    return f.sql, f.params


def test_comparisons_and_logic_become_parametrised_sql() -> None:
    sql, params = _sql("category = 'JS' AND (diameter_mm >= 300 OR NOT road LIKE '历%') AND status IN (0, 1)")
    assert sql == ("((category = ?) AND ((diameter_mm >= ?) OR (NOT (road LIKE ? ESCAPE '\\'))) "
                   "AND (status IN (?, ?)))")
    assert params == ["JS", 300.0, "历%", 0.0, 1.0]
    sql, params = _sql(json.dumps({"op": "between", "args": [{"property": "length_3d"}, 10, 60]}), "cql2-json")
    assert sql == "(length_3d BETWEEN ? AND ?)" and params == [10.0, 60.0]
    assert _sql("CASEI(road) = casei('X')")[0] == "(lower(road) = lower(?))"
    assert _sql("ACCENTI(owner) = accenti('é')")[0] == "(strip_accents(owner) = strip_accents(?))"
    assert _sql("diameter_mm IS NOT NULL")[0] == "(NOT (diameter_mm IS NULL))"
    assert _sql("length_3d / 2 > slope * 10")[0] == "((length_3d / ?) > (slope * ?))"


def test_injection_attempts_stay_values_or_fail() -> None:
    sql, params = _sql("road = 'x'' OR 1=1; DROP TABLE datasets; --'")
    assert sql == "(road = ?)" and params == ["x' OR 1=1; DROP TABLE datasets; --"]
    with pytest.raises(InvalidInputError, match="not a queryable"):
        _sql('"road; DROP TABLE datasets" = 1')


@pytest.mark.parametrize(("text", "lang", "words"), [
    ("diameter_mm >", "cql2-text", "1:14"),
    ("category = 'JS' AND", "cql2-text", "malformed cql2-text"),
    ('{"op": "=", "args": [', "cql2-json", "malformed cql2-json"),
    ("colour = 'red'", "cql2-text", "'colour' is not a queryable"),
    ("diameter_mm = 'wide'", "cql2-text", "cannot compare a number with a string"),
    ("road LIKE 5", "cql2-text", "LIKE compares strings"),
    ("T_AFTER(year, TIMESTAMP('2020-01-01T00:00:00Z'))", "cql2-text", "not supported"),
    ("A_CONTAINS(category, ('JS'))", "cql2-text", "not supported"),
    ("FOO(road) = 1", "cql2-text", "unknown operator or function 'foo'"),
    ("diameter_mm", "cql2-text", "must be a condition"),
    ("S_INTERSECTS(road, POINT(117 36))", "cql2-text", "compares the property 'geometry'"),
    ("S_INTERSECTS(geometry, POLYGON((117 36, 118 36, 117 37, 118 37, 117 36)))", "cql2-text", "invalid geometry"),
    ("S_DWITHIN(geometry, POINT(117 36), -1, meters)", "cql2-text", "non-negative"),
    ("S_DWITHIN(geometry, POINT(117 36), 5, furlongs)", "cql2-text", "units"),
    ("", "cql2-text", "empty"),
    ("a = 1", "ecql", "filter-lang"),
])
def test_bad_filters_are_named(text: str, lang: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _sql(text, lang)


def test_geometry_literals_are_transformed_to_the_storage_crs() -> None:
    sql, params = _sql("S_INTERSECTS(geometry, POINT(117 36.65))")
    assert sql == "ST_Intersects(geom, ST_GeomFromWKB(?))"
    pt = shapely.from_wkb(params[0])
    assert abs(pt.x - 500_000.0) < 1e-6 and 4_050_000 < pt.y < 4_060_000
    sql, params = _sql("S_WITHIN(geometry, BBOX(4058000, 502000, 4058100, 502100))",
                       crs="http://www.opengis.net/def/crs/EPSG/0/4548")  # N, E order of EPSG:4548
    assert shapely.from_wkb(params[0]).bounds == (502000.0, 4058000.0, 502100.0, 4058100.0)
    sql, params = _sql("S_DWITHIN(geometry, POINT(117 36.65), 0.5, kilometers)")
    assert sql.startswith("ST_DWithin(geom,") and params[1] == 500.0
    # a literal first swaps WITHIN/CONTAINS so the property stays first
    assert _sql("S_WITHIN(POINT(117 36.65), geometry)")[0].startswith("ST_Contains(geom,")


def test_bim_queryables_are_their_own() -> None:
    assert _sql("ifc_class = 'IfcWall'", collection=BIM)[0] == "(ifc_class = ?)"
    with pytest.raises(InvalidInputError, match="not a queryable"):
        _sql("diameter_mm > 1", collection=BIM)
