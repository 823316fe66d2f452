"""Property-based fuzzing of every parser we own: the answer to any input is a result or a CIMError.

Pipe tables (CSV, XLSX, DBF: random bytes and mutations of real sample tables, then the whole QC pipeline),
EPANET/SWMM ``.inp`` (mutations of the shared real models), CQL2 filters, ContextCapture ``metadata.xml`` and
the OGC API query parameters (never a 500). ``CIM_FUZZ_EXAMPLES`` scales the examples per parser (default
small for the suite; the campaign runs thousands).
"""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cim.settings import Settings
from tests.reliability.fuzzing import SHARED, examples, expect_clean, mutated, scratch

NUMERIC_JUNK = (b"nan", b"inf", b"-1e400", b"1e308", b"", b",", b"\t", b'"', b"\r\n", b"\x00", b"\xef\xbb\xbf",
                b"\xff\xfe", "１２３".encode(), "无".encode("gb18030"), b";", b"[", b"]", b"-0", b"9" * 40)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.samples.district import generate_district

    out = tmp_path_factory.mktemp("fuzz") / "district"
    generate_district(out, blocks_x=1, blocks_y=1, seed=11)
    return out


# ---------------------------------------------------------------------------------------------- tables


@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".txt", ".xlsx", ".xls", ".dbf", ".gpkg"]))
@examples(120)
def test_table_readers_on_random_bytes(data: bytes, suffix: str) -> None:
    from converters.pipes.tables import read_tables

    for path in scratch("t" + suffix, data):
        expect_clean(read_tables, path)


@given(st.data())
@examples(80)
def test_csv_mutations_through_the_whole_qc_pipeline(district: Path, data: st.DataObject) -> None:
    from converters.pipes.ingest import SurveyOptions, qc_survey

    name = data.draw(st.sampled_from(["JSPOINT.csv", "JSLINE.csv", "YSPOINT.csv", "YSLINE.csv"]))
    raw = data.draw(mutated((district / name).read_bytes(), NUMERIC_JUNK))
    with tempfile.TemporaryDirectory(prefix="cim-fuzz-") as tmp:
        folder = Path(tmp)
        partner = name.replace("POINT", "LINE") if "POINT" in name else name.replace("LINE", "POINT")
        shutil.copy(district / partner, folder / partner)
        (folder / name).write_bytes(raw)
        checked = expect_clean(qc_survey, [folder], SurveyOptions(crs_in="EPSG:4548"),
                                Settings(store="duckdb:///:memory:"))
        if checked is not None:
            checked.con.close()


@pytest.fixture(scope="module")
def xlsx_bytes(district: Path) -> bytes:
    import openpyxl as openpyxl
    book = openpyxl.Workbook()
    sheet = book.active
    for line in (district / "JSPOINT.csv").read_text(encoding="utf-8-sig").splitlines()[:30]:
        sheet.append(line.split(","))
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@given(st.data())
@examples(60)
def test_xlsx_mutations(xlsx_bytes: bytes, data: st.DataObject) -> None:
    from converters.pipes.tables import read_tables

    for path in scratch("t.xlsx", data.draw(mutated(xlsx_bytes))):
        expect_clean(read_tables, path)


def dbf_bytes(rows: list[tuple[str, str]], *, declared_rows: int | None = None, header_len: int | None = None,
              field_len: int = 12) -> bytes:
    """A dBASE III table of two character fields (``declared_*`` lie about its size)."""
    fields = b"".join(name.encode().ljust(11, b"\0") + b"C" + b"\0" * 4 + bytes([field_len, 0]) + b"\0" * 14
                      for name in ("POINT_ID", "ROAD"))
    hlen = header_len if header_len is not None else 32 + len(fields) + 1
    record_len = 1 + 2 * field_len
    head = struct.pack("<BBBBIHH20x", 3, 125, 1, 1, declared_rows if declared_rows is not None else len(rows),
                       hlen, record_len)
    body = b"".join(b" " + a.encode("gb18030")[:field_len].ljust(field_len) + b.encode("gb18030")[:field_len]
                    .ljust(field_len) for a, b in rows)
    return head + fields + b"\r" + body + b"\x1a"


@given(rows=st.lists(st.tuples(st.text(max_size=14), st.text(max_size=14)), max_size=8),
       declared=st.one_of(st.none(), st.integers(0, 2**32 - 1)), header=st.one_of(st.none(), st.integers(0, 2**16 - 1)),
       field_len=st.integers(0, 255), edits=st.data())
@examples(80)
def test_dbf_with_lying_headers(rows: list[tuple[str, str]], declared: int | None, header: int | None,
                                field_len: int, edits: st.DataObject) -> None:
    import pyogrio  # noqa: F401 - installed by scripts/setup.sh

    from converters.pipes.tables import read_tables

    data = dbf_bytes(rows, declared_rows=declared, header_len=header, field_len=field_len)
    data = edits.draw(st.one_of(st.just(data), mutated(data)))
    for path in scratch("t.dbf", data):
        expect_clean(read_tables, path)


# ---------------------------------------------------------------------------------------------- networks


INP_TOKENS = (b"nan", b"inf", b"-1e400", b"1e308", b'"', b"[", b"]", b"[JUNCTIONS]", b"[PIPES]", b"[CONDUITS]",
              b"[XSECTIONS]", b"[COORDINATES]", b"\n", b";", b"0", b"-1", b"ABC", b"\t", b"\x00", b"\xff")


@pytest.mark.skipif(not (SHARED / "water_network").is_dir(), reason="../shared/data is absent")
@given(st.data())
@examples(40)
def test_epanet_mutations(data: st.DataObject) -> None:
    from converters.network.epanet import read_epanet

    name = data.draw(st.sampled_from(["Net1.inp", "Net3.inp"]))
    raw = data.draw(mutated((SHARED / "water_network" / name).read_bytes(), INP_TOKENS))
    for path in scratch(name, raw):
        expect_clean(read_epanet, path, crs_in="EPSG:4548", offset=(500000.0, 4000000.0, 0.0), scale=0.3048)


@pytest.mark.skipif(not (SHARED / "sewer").is_dir(), reason="../shared/data is absent")
@given(st.data())
@examples(80)
def test_swmm_mutations(data: st.DataObject) -> None:
    from converters.network.swmm import read_swmm

    name = data.draw(st.sampled_from(["swmm_Example1.inp", "swmm_site_drainage_model.inp"]))
    raw = data.draw(mutated((SHARED / "sewer" / name).read_bytes(), INP_TOKENS))
    for path in scratch(name, raw):
        expect_clean(read_swmm, path, crs_in="EPSG:4548", offset=(500000.0, 4000000.0, 0.0), scale=0.3048)


@given(text=st.text(max_size=400))
@examples(60)
def test_inp_reader_on_random_text(text: str) -> None:
    from converters.network.swmm import read_swmm

    for path in scratch("m.inp", text.encode("utf-8", "surrogatepass")):
        expect_clean(read_swmm, path, crs_in="EPSG:4548")


# ---------------------------------------------------------------------------------------------- CQL2

PROPS = ("category", "diameter_mm", "material", "road", "status", "start_depth", "year", "geometry", "nope", "id")
LITERALS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=12), st.booleans(),
                     st.just("DATE('2024-02-30')"), st.just("TIMESTAMP('x')"), st.just("POINT(1 2)"),
                     st.just("POLYGON((0 0,1 0,0 0))"), st.just("BBOX(1,2,3)"), st.just("NULL"))


@st.composite
def cql2_text(draw: st.DrawFn, depth: int = 0) -> str:
    """Grammar-shaped CQL2 text with wrong types, arities, properties and literals mixed in."""
    if depth > 2 or draw(st.booleans()):
        prop = draw(st.sampled_from(PROPS))
        op = draw(st.sampled_from(["=", "<>", "<", ">=", "LIKE", "IN", "BETWEEN", "IS NULL", "S_INTERSECTS",
                                   "T_AFTER", "+", "A_CONTAINS", "casei"]))
        lit = draw(LITERALS)
        lit = repr(lit) if isinstance(lit, str) and not lit.isupper() else str(lit)
        if op == "IN":
            return f"{prop} IN ({lit}, {draw(LITERALS)!r})"
        if op == "BETWEEN":
            return f"{prop} BETWEEN {lit} AND {draw(LITERALS)!r}"
        if op == "IS NULL":
            return f"{prop} IS NULL"
        if op in ("S_INTERSECTS", "T_AFTER", "A_CONTAINS", "casei"):
            return f"{op}({prop}, {lit})"
        return f"{prop} {op} {lit}"
    left, right = draw(cql2_text(depth + 1)), draw(cql2_text(depth + 1))
    return draw(st.sampled_from([f"({left}) AND ({right})", f"{left} OR {right}", f"NOT ({left})", f"{left} {right}"]))


@given(text=st.one_of(st.text(max_size=300), cql2_text()), lang=st.sampled_from(["cql2-text", "cql2-json", "x"]))
@examples(200)
def test_cql2_parser(text: str, lang: str) -> None:
    from cim.features.cql2 import parse_filter

    expect_clean(parse_filter, text, lang)


# ---------------------------------------------------------------------------------------------- metadata.xml


@st.composite
def metadata_xml(draw: st.DrawFn) -> bytes:
    srs = draw(st.one_of(st.sampled_from(["EPSG:4548", "EPSG:4548+5737", "EPSG:0", "EPSG:99999999", "ENU:36.6,117",
                                          "ENU:nan,inf", "ENU:91,0", 'PROJCS["x"]', "", "WKT", "EPSG:4326"]),
                         st.text(max_size=60)))
    origin = draw(st.one_of(st.sampled_from(["0,0,0", "1e308,1e308,1", "nan,0,0", "1,2", "a,b,c", ""]),
                            st.text(max_size=30)))
    body = (f"<?xml version='1.0'?><ModelMetadata version='1'><SRS>{srs}</SRS><SRSOrigin>{origin}</SRSOrigin>"
            "</ModelMetadata>").encode("utf-8", "surrogatepass")
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>'
    return draw(st.one_of(st.just(body), mutated(body), st.just(bomb), st.binary(max_size=300)))


@given(data=metadata_xml())
@examples(120)
def test_metadata_xml(data: bytes) -> None:
    import converters.mesh.metadata_xml as metadata
    for path in scratch("metadata.xml", data):
        expect_clean(metadata.parse_metadata_xml, path)


# ---------------------------------------------------------------------------------------------- OGC API


@pytest.fixture(scope="module")
def api(district: Path) -> Iterator[object]:
    import fastapi  # noqa: F401 - installed by scripts/setup.sh
    from fastapi.testclient import TestClient

    from api.app import create_app
    from cim.security.config import parse_security_config
    from cim.store import DuckDBStore
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    settings = Settings(store="duckdb:///:memory:")
    store = DuckDBStore(":memory:")
    ingest_survey([district], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    security = parse_security_config({"auth": {"anonymous_role": "planner"}, "limits": {
        "requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0}})
    with tempfile.TemporaryDirectory() as tiles, TestClient(
            create_app(settings, store=store, tiles_dir=Path(tiles), security=security),
            raise_server_exceptions=False) as client:
        ids = [c["id"] for c in client.get("/ogc/collections").json()["collections"]]
        yield client, ids
    store.close()


NUM = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))
PARAMS = st.fixed_dictionaries({}, optional={
    "bbox": st.one_of(st.lists(NUM, max_size=7).map(lambda v: ",".join(map(str, v))), st.text(max_size=40)),
    "bbox-crs": st.sampled_from(["http://www.opengis.net/def/crs/EPSG/0/4548", "EPSG:4548", "x", ""]),
    "datetime": st.one_of(st.text(max_size=30), st.sampled_from(["2024-01-01/..", "../..", "2024-13-45",
                                                                 "2024-01-01T00:00:00Z/2023-01-01T00:00:00Z"])),
    "limit": st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=8)),
    "offset": st.one_of(st.integers(-5, 10**13).map(str), st.text(max_size=8)),
    "filter": st.one_of(cql2_text(), st.text(max_size=120)),
    "filter-lang": st.sampled_from(["cql2-text", "cql2-json", "sql"]),
    "filter-crs": st.sampled_from(["http://www.opengis.net/def/crs/EPSG/0/4548", "nope"]),
    "crs": st.sampled_from(["http://www.opengis.net/def/crs/EPSG/0/4548", "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                            "EPSG:999999", "../../etc"]),
    "properties": st.text(max_size=40),
    "f": st.sampled_from(["json", "html", "xml"]),
})


@given(params=PARAMS, which=st.integers(0, 50), item=st.one_of(st.none(), st.text(max_size=20)))
@examples(150)
def test_ogc_items_query_parameters_never_500(api: tuple, params: dict, which: int, item: str | None) -> None:
    client, ids = api
    cid = ids[which % len(ids)] if which < 45 else "no-such-collection"
    url = f"/ogc/collections/{cid}/items" + (f"/{quote(item, safe='')}" if item and item.strip("/.") else "")
    r = client.get(url, params=params)
    assert r.status_code < 500, (url, params, r.status_code, r.text[:500])
    if r.status_code >= 400 and "json" in r.headers.get("content-type", ""):
        assert r.json()  # a described error body
