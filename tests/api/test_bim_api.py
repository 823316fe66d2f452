"""BIM submissions through the web API (TestClient) on real IFC files placed over a street of the sample
pipe district: upload → checked → reports → review (409 when not allowed) → second version → compare, the
viewer's element GeoJSON, and bad uploads answered 4xx with the store left exactly as it was."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from cim.settings import SHANDONG_BBOX, Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.trusted import trusted

ROOT = Path(__file__).resolve().parents[2]
IFC = ROOT.parent / "shared" / "data" / "ifc"
HOUSE = IFC / "ifc4_ifcopenshell_ifcopenhouse.ifc"  # 40 elements, strip footing 2 m deep, no georeference
FZK = IFC / "ifc4_archicad20_fzk_haus.ifc"  # 89 elements, slab on grade
FOOTING = "2W4bl$KK1Brv_UEOkAThqU"  # the house's IfcFooting
#: Over 历山路 (the street along E 501 986.5): the footing spans E 501 985–501 995, N 4 058 050–4 058 055.
OVER_STREET = {"crs": "EPSG:4548", "easting": "501990", "northing": "4058050", "height": "75.3"}
WALLS_NAMED_IDS = b"""<?xml version="1.0" encoding="utf-8"?>
<ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:schemaLocation="http://standards.buildingsmart.org/IDS http://standards.buildingsmart.org/IDS/1.0/ids.xsd">
  <info><title>Walls named</title></info>
  <specifications>
    <specification name="Walls are named" ifcVersion="IFC4" identifier="TEST-WALL-NAME">
      <applicability minOccurs="1" maxOccurs="unbounded">
        <entity><name><simpleValue>IFCWALLSTANDARDCASE</simpleValue></name></entity>
      </applicability>
      <requirements><attribute><name><simpleValue>Name</simpleValue></name></attribute></requirements>
    </specification>
  </specifications>
</ids>
"""
TABLES = ("datasets", "dataset_versions", "bim_models", "bim_elements", "bim_spatial", "bim_submissions",
          "bim_check_findings", "bim_review_events")
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


def _app(settings: Settings, store: DuckDBStore, tiles: Path) -> FastAPI:
    return create_app(settings, store=store, tiles_dir=tiles, buildings_tiles_dir=tiles.parent / "buildings", security=trusted('reviewer'))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, Settings, Path]]:
    tmp = tmp_path_factory.mktemp("bim-api")
    settings = Settings(store="duckdb:///:memory:", files_dir=tmp / "files")
    store = DuckDBStore(":memory:")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(), settings)
    yield store, settings, tmp
    store.close()


@pytest.fixture(scope="module")
def client(env: tuple[DuckDBStore, Settings, Path]) -> Iterator[TestClient]:
    store, settings, tmp = env
    with TestClient(_app(settings, store, tmp / "tiles")) as c:
        yield c


def _post(client: TestClient, path: Path | None, name: str, content: bytes | None = None,
          ids: bytes | None = None, **fields: str) -> Any:
    files: dict[str, Any] = {"file": (name, content if content is not None else path.read_bytes(),  # type: ignore[union-attr]
                                      "application/octet-stream")}
    if ids is not None:
        files["ids"] = ("rules.ids", ids, "application/xml")
    return client.post("/api/bim/submissions", files=files, data=fields)


def _counts(store: DuckDBStore) -> dict[str, int]:
    con = store.read()
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def first(client: TestClient) -> dict[str, Any]:
    r = _post(client, HOUSE, "开放住宅.ifc", project="历山路住宅", stage="drawing_review", submitted_by="张工",
              **OVER_STREET)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/api/bim/submissions/{r.json()['submission']['id']}"
    return r.json()


@pytest.fixture(scope="module")
def second(client: TestClient, first: dict[str, Any]) -> dict[str, Any]:
    r = _post(client, FZK, "fzk_haus.ifc", ids=WALLS_NAMED_IDS, project="历山路住宅", stage="handover",
              submitted_by="李工", **OVER_STREET)
    assert r.status_code == 201, r.text
    return r.json()


# -- the round trip ---------------------------------------------------------------------------------------
def test_first_submission_is_stored_checked_and_fails_on_the_pipes_under_its_footing(
        client: TestClient, first: dict[str, Any], env: tuple[DuckDBStore, Settings, Path]) -> None:
    sub = first["submission"]
    assert sub["status"] == "failed" and sub["version"] == 1 and sub["file_name"] == "开放住宅.ifc"
    assert sub["dataset_id"].startswith("bim-") and sub["submitted_by"] == "张工"
    assert first["counts"]["elements"] == 40 and first["counts"]["errors"] > 0
    assert env[1].files_dir and (env[1].files_dir / sub["file_sha256"][:2] / sub["file_sha256"]).is_file()
    body = client.get(first["links"]["self"]).json()
    assert [e["to_status"] for e in body["events"]] == ["submitted", "checked", "failed"]
    found = body["findings"]
    kinds = {f["check_kind"] for f in found}
    assert kinds == {"ids", "georef", "delivery", "clearance"}
    clash = [f for f in found if f["rule_id"] == "GB50289-4.1.9-CLASH"]
    assert len(clash) == 1 and clash[0]["severity"] == "error"
    assert clash[0]["global_id"] == FOOTING and clash[0]["ifc_class"] == "IfcFooting"
    assert "DH21-DH22" in clash[0]["message"] and clash[0]["expected"].startswith("≥ 1.50 m")
    under = " ".join(f["message"] for f in found if f["rule_id"] == "GB50289-4.1.9-UNDER")
    assert "JS21-JS22" in under and "below" in under  # the water main under the footing
    assert any(f["rule_id"] == "DLV-ARC-SPACE" and f["severity"] == "error" for f in found)  # the house has no rooms
    assert any(f["rule_id"] == "GEO-USER" for f in found)


def test_a_submission_refreshes_the_buildings_tileset_the_viewer_loads(client: TestClient, first: dict[str, Any]
                                                                      ) -> None:
    assert first["tiles"]["tileset"] == "/tiles/buildings/tileset.json" and first["tiles"]["tiles"] >= 1
    tileset = client.get("/tiles/buildings/tileset.json")
    assert tileset.status_code == 200 and tileset.json()["asset"]["version"] == "1.1"


def test_reports_in_json_html_and_bcf(client: TestClient, first: dict[str, Any]) -> None:
    sid = first["submission"]["id"]
    j = client.get(f"/api/bim/submissions/{sid}/report", params={"f": "json"})
    assert j.status_code == 200 and j.headers["content-type"].startswith("application/json")
    assert j.json()["submission"]["id"] == sid and j.json()["submission"]["status"] == "failed"
    assert any(f["global_id"] == FOOTING for f in j.json()["findings"])
    h = client.get(f"/api/bim/submissions/{sid}/report", params={"f": "html", "download": "true"})
    assert h.headers["content-type"].startswith("text/html") and sid in h.text and FOOTING in h.text
    assert h.headers["content-disposition"] == f'attachment; filename="{sid}.html"'
    b = client.get(f"/api/bim/submissions/{sid}/report", params={"f": "bcf"})
    assert b.headers["content-type"] == "application/octet-stream"
    assert b.headers["content-disposition"] == f'attachment; filename="{sid}.bcf"'
    with zipfile.ZipFile(io.BytesIO(b.content)) as z:
        assert "bcf.version" in z.namelist()
        assert any(FOOTING in z.read(n).decode("utf-8") for n in z.namelist() if n.endswith(".bcfv"))
    assert client.get(f"/api/bim/submissions/{sid}/report", params={"f": "pdf"}).status_code == 422


def test_a_failed_submission_cannot_be_accepted_but_can_be_rejected(client: TestClient, first: dict[str, Any],
                                                                    second: dict[str, Any]) -> None:
    sid = first["submission"]["id"]
    r = client.post(f"/api/bim/submissions/{sid}/review", json={"decision": "accept", "actor": "审图员"})
    assert r.status_code == 409 and "'failed'" in r.json()["detail"]
    r = client.post(f"/api/bim/submissions/{sid}/review",
                    json={"decision": "reject", "actor": "审图员", "comment": "基础与通信管块冲突"})
    assert r.status_code == 200 and r.json()["submission"]["status"] == "rejected"
    again = client.post(f"/api/bim/submissions/{sid}/check")
    assert again.status_code == 409 and "rejected" in again.json()["detail"]
    assert client.post(f"/api/bim/submissions/{sid}/review", json={"decision": "maybe", "actor": "x"}).status_code == 422


def test_second_version_with_its_own_ids_passes_and_is_accepted(client: TestClient, second: dict[str, Any]) -> None:
    sub = second["submission"]
    assert sub["version"] == 2 and sub["status"] == "passed", second
    assert sub["summary"]["ids"]["name"] == "rules.ids" and sub["summary"]["ids"]["errors"] == 0
    assert sub["summary"]["warnings"] > 0  # the slab on grade beside low-confidence cells: warnings only
    sid = sub["id"]
    recheck = client.post(f"/api/bim/submissions/{sid}/check")  # reruns with the stored IDS
    assert recheck.status_code == 200 and recheck.json()["submission"]["status"] == "passed"
    assert recheck.json()["submission"]["summary"]["ids"]["rule_set"] == "rules.ids"
    ok = client.post(f"/api/bim/submissions/{sid}/review", json={"decision": "accept", "actor": "审图员",
                                                                  "comment": "同意交付"})
    assert ok.status_code == 200 and ok.json()["submission"]["status"] == "accepted"
    twice = client.post(f"/api/bim/submissions/{sid}/review", json={"decision": "accept", "actor": "审图员"})
    assert twice.status_code == 409 and "'accepted'" in twice.json()["detail"]
    events = client.get(f"/api/bim/submissions/{sid}").json()["events"]
    assert events[-1]["to_status"] == "accepted" and events[-1]["comment"] == "同意交付"


def test_listing_and_comparing_versions(client: TestClient, first: dict[str, Any], second: dict[str, Any]) -> None:
    listed = client.get("/api/bim/submissions", params={"project": "历山路住宅"}).json()
    assert [s["version"] for s in listed] == [1, 2]
    assert [s["id"] for s in client.get("/api/bim/submissions", params={"stage": "handover"}).json()] == [
        second["submission"]["id"]]
    assert client.get("/api/bim/submissions", params={"status": "nonsense"}).status_code == 400
    a, b = first["submission"]["id"], second["submission"]["id"]
    cmp = client.get("/api/bim/compare", params={"a": b, "b": a}).json()
    assert (cmp["v1"], cmp["v2"]) == (1, 2) and cmp["submissions"] == {"1": a, "2": b}
    assert cmp["summary"]["added"] == 89 and cmp["summary"]["removed"] == 40 and cmp["summary"]["unchanged"] == 0
    assert any(e["global_id"] == FOOTING for e in cmp["removed"])
    assert client.get("/api/bim/compare", params={"a": a, "b": a}).status_code == 400
    assert client.get("/api/bim/compare", params={"a": a, "b": "S00000000000000000XXXX"}).status_code == 404
    assert client.get("/api/bim/submissions/S00000000000000000XXXX").status_code == 404


def test_element_footprints_for_the_viewer_carry_the_check_result(client: TestClient, first: dict[str, Any],
                                                                  second: dict[str, Any]) -> None:
    r = client.get(first["links"]["elements"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["submission"]["id"] == first["submission"]["id"]
    by_id = {f["properties"]["global_id"]: f for f in fc["features"]}
    footing = by_id[FOOTING]
    assert footing["properties"]["status"] == "failed" and "GB50289-4.1.9-CLASH" in footing["properties"]["rules"]
    assert footing["properties"]["bottom_h"] == pytest.approx(73.3, abs=0.01)
    assert footing["properties"]["top_eh"] > footing["properties"]["bottom_eh"]
    west, south, east, north = SHANDONG_BBOX
    for lon, lat in footing["geometry"]["coordinates"][0]:
        assert west < lon < east and south < lat < north
    assert any(f["rule_id"] == "DLV-ARC-SPACE" for f in fc["model_findings"])
    statuses = {f["properties"]["status"] for f in client.get(second["links"]["elements"]).json()["features"]}
    assert "failed" not in statuses and "passed" in statuses


# -- bad uploads ------------------------------------------------------------------------------------------
TRUNCATED = HOUSE.read_bytes()[: len(HOUSE.read_bytes()) // 2]
NO_ELEMENTS = b"""ISO-10303-21;
HEADER;
FILE_DESCRIPTION(('ViewDefinition [ReferenceView]'),'2;1');
FILE_NAME('empty.ifc','2025-01-01T00:00:00',(''),(''),'','','');
FILE_SCHEMA(('IFC4'));
ENDSEC;
DATA;
#1=IFCPROJECT('0YvctVUKr0kugbFTf53O9L',$,'Empty',$,$,$,$,$,$);
ENDSEC;
END-ISO-10303-21;
"""


@pytest.mark.parametrize(
    ("content", "extra", "status", "words"),
    [
        (b"this is a drawing, not a model\n", {}, 400, "not an IFC-SPF file"),
        (TRUNCATED, {}, 400, "truncated"),
        (b"", {}, 400, "empty (0 bytes)"),
        (NO_ELEMENTS.replace(b"'IFC4'", b"'IFC9'"), {}, 415, "unknown IFC schema 'IFC9'"),
        (NO_ELEMENTS, {}, 400, "no IfcProduct"),
        (b"PK\x03\x04zipped", {}, 415, "IFC-ZIP"),
        (None, {"ids": b"<ids><broken"}, 400, "IDS is not well-formed XML"),
        (None, {"stage": "demolition"}, 400, "stage 'demolition'"),
        (None, {"easting": "east"}, 400, "easting must be a number"),
        (None, {"colour": "red"}, 400, "unknown form field 'colour'"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message_and_nothing_stored(
        client: TestClient, env: tuple[DuckDBStore, Settings, Path], content: bytes | None, extra: dict[str, Any],
        status: int, words: str) -> None:
    store = env[0]
    before = _counts(store)
    fields = {"project": "坏文件", "stage": "drawing_review", **OVER_STREET}
    ids = extra.pop("ids", None)
    fields |= extra
    r = _post(client, HOUSE, "bad.ifc", content=content, ids=ids, **fields)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()
    assert "cim-upload-" not in r.json()["detail"]  # no server paths
    assert _counts(store) == before


def test_an_unplaced_model_is_refused_with_the_georeferencing_findings(
        client: TestClient, env: tuple[DuckDBStore, Settings, Path]) -> None:
    before = _counts(env[0])
    r = _post(client, HOUSE, "house.ifc", project="无坐标", stage="drawing_review")
    assert r.status_code == 400 and r.json()["error"] == "GeorefMissingError"
    assert [f["code"] for f in r.json()["findings"] if f["severity"] == "error"] == ["georef.none"]
    assert _counts(env[0]) == before


def test_oversize_uploads_are_413_before_anything_is_stored(env: tuple[DuckDBStore, Settings, Path]) -> None:
    store, settings, tmp = env
    small = settings.model_copy(update={"max_upload_bytes": 50_000, "files_dir": tmp / "small-files"})
    before = _counts(store)
    with TestClient(_app(small, store, tmp / "tiles")) as c:
        r = _post(c, HOUSE, "house.ifc", project="太大", stage="drawing_review", **OVER_STREET)
        assert r.status_code == 413 and "50000 bytes" in r.json()["detail"]
        assert "CIM_MAX_UPLOAD_BYTES" in r.json()["detail"]
        huge = c.post("/api/bim/submissions", content=b"x" * 10,
                      headers={"content-type": "multipart/form-data; boundary=zz", "content-length": str(10**12)})
        assert huge.status_code == 413
        assert c.post("/api/bim/submissions", json={"project": "x"}).status_code == 415
        missing = c.post("/api/bim/submissions", data={"project": "x", "stage": "handover"},
                         files={"ids": ("r.ids", WALLS_NAMED_IDS)})
        assert missing.status_code == 400 and "missing form field(s): file" in missing.json()["detail"]
    assert _counts(store) == before
    assert not [p for p in (tmp / "small-files").rglob("*") if p.is_file()]


def test_openapi_names_every_route(env: tuple[DuckDBStore, Settings, Path]) -> None:
    spec = _app(env[1], env[0], Path("nowhere")).openapi()
    ops = {op["operationId"] for path, item in spec["paths"].items() if path.startswith("/api/bim") for op in item.values()}
    assert ops == {"submitBimModel", "listBimSubmissions", "getBimSubmission", "getBimSubmissionReport",
                   "checkBimSubmission", "reviewBimSubmission", "getBimSubmissionElements", "compareBimSubmissions"}
    body = spec["paths"]["/api/bim/submissions"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file", "project", "stage"]
    assert json.dumps(spec, ensure_ascii=False)
