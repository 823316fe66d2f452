"""Reports of a submission checked with the default rules on FZK-Haus: JSON (schema), HTML, BCF 2.1."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from cim.bim import submissions as subs
from cim.bim.delivery import check_delivery
from cim.bim.files import FileStore
from cim.bim.ids import CN_REVIEW_LOD300, Finding, IdsReport, check_ids
from cim.bim.reports import (
    REPORT_SCHEMA_ID,
    REPORT_SCHEMA_PATH,
    bcf_bytes,
    render_html,
    report_json,
    write_bcf,
)
from cim.store import DuckDBStore

jsonschema = pytest.importorskip("jsonschema")
FZK = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ifc" / "ifc4_archicad20_fzk_haus.ifc"
EVIL = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def fzk_report() -> IdsReport:
    if not FZK.is_file():
        pytest.skip("shared IFC data not present")
    return check_ids(FZK, CN_REVIEW_LOD300)


@pytest.fixture
def submission(
    store: DuckDBStore,
    tmp_path: Path,
    fzk_report: IdsReport,
    add_model: Callable[..., None],
    add_elements: Callable[..., None],
    add_spatial: Callable[..., None],
) -> str:
    """A failed drawing-review submission of FZK-Haus with IDS, delivery and georef findings."""
    door = next(f for f in fzk_report.findings if f.rule_id == "CN300-FR-02")
    add_model(
        store,
        "fzk",
        1,
        ifc_schema="IFC4",
        authoring_app="ARCHICAD 20",
        element_count=82,
        georef={"method": "ref_latlon"},
        origin_x=500000.0,
        origin_y=4057000.0,
        origin_h=30.0,
    )
    add_elements(
        store,
        "fzk",
        1,
        [
            {
                "global_id": door.global_id,
                "ifc_class": "IfcDoor",
                "name": "Haustuer",
                "storey_name": "Erdgeschoss",
            }
        ],
    )
    add_spatial(
        store, "fzk", 1, [{"global_id": "0lY6P5Ur90TAQnnnI6wtnb", "ifc_class": "IfcProject", "name": "FZK"}]
    )
    stored = FileStore(tmp_path / "files").put(FZK)
    s = subs.create_submission(
        store,
        project="3701-2025-007",
        stage="drawing_review",
        dataset_id="fzk",
        version=1,
        file=stored,
        submitted_by=EVIL,
    )
    findings = [
        *fzk_report.findings,
        *check_delivery(
            {"IfcWallStandardCase": 13, "IfcSlab": 4}, discipline="architecture", stage="drawing_review"
        ),
        Finding("georef", "GEO-LATLON-ONLY", "warning", "仅有场地经纬度"),
        Finding("ids", "X-EVIL", "error", EVIL, found=EVIL),
    ]
    subs.record_checks(store, s.id, findings, fzk_report.summary())
    return s.id


def test_json_report_validates_and_counts(store: DuckDBStore, submission: str, fzk_report: IdsReport) -> None:
    report = report_json(store, submission)
    schema = json.loads(REPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)
    assert report["schema"] == REPORT_SCHEMA_ID == schema["$id"]
    assert report["submission"]["status"] == "failed" and report["summary"]["passed"] is False
    n_ids = len(fzk_report.findings)
    assert report["summary"]["findings"] == n_ids + 5 + 1 + 1  # 5 missing classes, georef, evil
    assert report["summary"]["by_check_kind"]["georef"] == {"error": 0, "warning": 1, "info": 0}
    assert report["findings"][0]["severity"] == "error" and report["findings"][-1]["severity"] != "error"
    door = [f for f in report["findings"] if f["element_name"] == "Haustuer"]  # joined from bim_elements
    assert {"CN300-FR-02", "CN300-CL-01"} <= {f["rule_id"] for f in door}
    assert {f["storey_name"] for f in door} == {"Erdgeschoss"}
    assert report["model"]["georef"] == {"method": "ref_latlon"} and report["model"]["origin"] == [
        500000.0,
        4057000.0,
        30.0,
    ]
    assert report["checks"]["ids"] == "cn_review_lod300.ids"
    assert [e["to_status"] for e in report["events"]] == ["submitted", "checked", "failed"]
    json.dumps(report, ensure_ascii=False)  # serialisable as is
    # a broken report is caught by the schema
    report["findings"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(report)


def test_html_is_escaped_and_complete(store: DuckDBStore, submission: str) -> None:
    page = render_html(report_json(store, submission), max_rows=50)
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "3701-2025-007" in page and "检查未通过" in page and "CN300-FR-02" in page
    assert "Showing 50 of" in page


def test_bcf_zip_reads_back(store: DuckDBStore, submission: str, tmp_path: Path) -> None:
    report = report_json(store, submission)
    path = tmp_path / "review.bcfzip"
    topics = write_bcf(store, submission, path)
    failing = {
        (f["rule_id"], f["global_id"])
        for f in report["findings"]
        if f["global_id"] and f["severity"] != "info"
    }
    model_level = [f for f in report["findings"] if not f["global_id"] and f["severity"] != "info"]
    assert topics == len(failing) + len(model_level)
    ns = {"": ""}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert ET.fromstring(z.read("bcf.version")).get("VersionId") == "2.1"
        assert ET.fromstring(z.read("project.bcfp")).find("Project/Name").text.startswith("3701-2025-007")
        markups = [n for n in names if n.endswith("/markup.bcf")]
        assert len(markups) == topics
        selected = set()
        for name in markups:
            markup = ET.fromstring(z.read(name))
            topic = markup.find("Topic", ns)
            labels = [label.text for label in topic.findall("Labels")]
            assert topic.get("TopicType") in ("Error", "Warning") and len(labels) == 2
            assert markup.find("Header/File/Filename").text == FZK.name
            viewpoint = markup.find("Viewpoints/Viewpoint")
            if viewpoint is None:
                continue
            visinfo = ET.fromstring(z.read(name.replace("markup.bcf", viewpoint.text)))
            guids = [c.get("IfcGuid") for c in visinfo.findall("Components/Selection/Component")]
            assert len(guids) == 1
            selected.add((labels[1], guids[0]))
        assert selected == failing  # one viewpoint per failing element and rule, selecting that element
    from bcf.v2.bcfxml import BcfXml

    with BcfXml.load(path) as bcf:
        assert len(bcf.topics) == topics
        guids = {
            g
            for t in bcf.topics.values()
            for v in t.viewpoints.values()
            for g in v.get_selected_guids() or []
        }
        assert guids == {gid for _, gid in failing}
    assert bcf_bytes(store, submission, severities=("error",))[:2] == b"PK"
