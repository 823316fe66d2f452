"""Tests for the survey-QC report writers (JSON schema, CSV, HTML)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from cim.qc.catalogue import RULES, Finding, Tolerances
from cim.qc.report import (
    CSV_HEADER,
    REPORT_SCHEMA_ID,
    REPORT_SCHEMA_PATH,
    QCReport,
    csv_safe,
    write_csv,
    write_html,
    write_json,
    write_report,
)

jsonschema = pytest.importorskip("jsonschema")


def _finding(rule: str, severity: str, row: int | None = 2, **kw: str | None) -> Finding:
    base: dict[str, str | None] = {
        "file": "管线点.csv", "feature_id": "YS001", "field": "物探点号", "value": "YS001",
        "message": "点号重复", "category": "PS", "layer": None,
    }
    base.update(kw)
    return Finding(rule_id=rule, severity=severity, row=row, **base)  # type: ignore[arg-type]


@pytest.fixture
def report() -> QCReport:
    findings = [
        _finding("duplicate_point_id", "error", 3),
        _finding("duplicate_point_id", "error", 4, category="JS"),
        _finding("orphan_point", "warning", 7, category=None),
        _finding("clearance", "info", None, file=None, field=None, value=None, message="净距 0.3 m < 1.0 m"),
        _finding("dangling_reference", "error", 12, file="管线段.csv", field="终点点号", value="<script>alert(1)</script>"),
    ]
    return QCReport(
        findings=findings,
        sources=[
            {"file": "管线点.csv", "layer": None, "kind": "point", "rows": 120, "encoding": "gbk"},
            {"file": "管线段.csv", "layer": None, "kind": "line", "rows": 118, "encoding": "utf-8"},
        ],
        crs_in="EPSG:4548",
        storage_crs="EPSG:4548",
        dataset="济南 测试",
        tolerances=asdict(Tolerances()),
        rules_run=[r.id for r in RULES if r.id != "clearance"],
    )


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(REPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# ---------------------------------------------------------------------------------------------- model


def test_counts(report: QCReport) -> None:
    by_rule = report.counts_by_rule()
    assert set(by_rule) == {r.id for r in RULES}
    assert by_rule["duplicate_point_id"] == {"error": 2, "warning": 0, "info": 0}
    assert by_rule["orphan_point"] == {"error": 0, "warning": 1, "info": 0}
    assert by_rule["header"] == {"error": 0, "warning": 0, "info": 0}
    assert report.counts_by_category() == {
        "JS": {"error": 1, "warning": 0, "info": 0},
        "PS": {"error": 2, "warning": 0, "info": 1},
        "unknown": {"error": 0, "warning": 1, "info": 0},
    }
    assert report.summary() == {"errors": 3, "warnings": 1, "infos": 1, "findings": 5}
    assert not report.passed
    assert QCReport(findings=[_finding("orphan_point", "warning")], storage_crs="EPSG:4548").passed


def test_json_dict_shape(report: QCReport) -> None:
    d = report.to_json_dict()
    assert d["schema"] == REPORT_SCHEMA_ID and d["schema_version"] == "1.0"
    assert d["tool"]["name"] == "cim-service"
    assert [r["id"] for r in d["rules"]] == [r.id for r in RULES]
    rules = {r["id"]: r for r in d["rules"]}
    assert rules["duplicate_point_id"]["count"] == 2 and rules["header"]["count"] == 0
    assert rules["clearance"]["run"] is False and rules["header"]["run"] is True
    assert d["findings"][0] == report.findings[0].to_dict()
    assert d["created_at"].endswith("Z")


# ----------------------------------------------------------------------------------------------- JSON


def test_json_validates_against_schema(report: QCReport, tmp_path: Path) -> None:
    path = write_json(report, tmp_path / "r.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    _validator().validate(loaded)
    assert loaded == report.to_json_dict()
    assert "济南 测试" in path.read_text(encoding="utf-8")  # not \u-escaped


def test_json_empty_report_validates(tmp_path: Path) -> None:
    path = write_json(QCReport(findings=[], storage_crs="EPSG:4548"), tmp_path / "e.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    _validator().validate(loaded)
    assert loaded["findings"] == [] and loaded["summary"]["findings"] == 0


def test_schema_rejects_bad_report(report: QCReport) -> None:
    d = report.to_json_dict()
    d["findings"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(d)
    d = report.to_json_dict()
    del d["findings"][0]["row"]
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(d)


def test_schema_documents_every_field() -> None:
    schema = json.loads(REPORT_SCHEMA_PATH.read_text(encoding="utf-8"))

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub, f"{where}.{name} lacks a description"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "$")
    assert schema["$id"] == REPORT_SCHEMA_ID


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_bom_and_chinese_round_trip(report: QCReport, tmp_path: Path) -> None:
    path = write_csv(report, tmp_path / "r.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 1 + len(report.findings)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["file"] == "管线点.csv" and first["field"] == "物探点号" and first["message"] == "点号重复"
    assert first["rule_title_zh"] == "点号重复" and first["row"] == "3"
    info = dict(zip(rows[0], rows[4], strict=True))
    assert info["row"] == "" and info["file"] == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-1.25", "-1.25"),
        ("+3", "+3"),
        ("-4.5e-3", "-4.5e-3"),
        ("YS001", "YS001"),
        ("", ""),
        (7, 7),
    ],
)
def test_csv_safe(value: object, expected: object) -> None:
    assert csv_safe(value) == expected


def test_csv_injection_guard_in_file(tmp_path: Path) -> None:
    r = QCReport(
        findings=[_finding("numeric", "error", value="=1+1", field="-2.5"), _finding("numeric", "error", value="-0.75")],
        storage_crs="EPSG:4548",
    )
    with write_csv(r, tmp_path / "x.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["value"] == "'=1+1" and rows[0]["field"] == "-2.5"
    assert rows[1]["value"] == "-0.75"


# ----------------------------------------------------------------------------------------------- HTML


def test_html_escapes_and_is_self_contained(report: QCReport, tmp_path: Path) -> None:
    text = write_html(report, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<html lang="zh-CN">' in text and '<meta charset="utf-8">' in text
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert "点号重复" in text and "Duplicate point IDs" in text
    assert text.count("<script>") == 1  # only the inline sort script
    assert "Showing the first" not in text


def test_html_row_cap(tmp_path: Path) -> None:
    findings = [_finding("orphan_point", "warning", i) for i in range(2, 60)]
    findings.append(_finding("dangling_reference", "error", 99, feature_id="LAST-ERR"))
    r = QCReport(findings=findings, storage_crs="EPSG:4548")
    text = write_html(r, tmp_path / "c.html", max_html_rows=10).read_text(encoding="utf-8")
    assert "Showing the first 10 of 59 findings" in text
    assert "JSON and CSV reports" in text
    body = text.split("问题清单 Findings", 1)[1]
    assert body.count("<tr class=\"sev-") == 10
    assert "LAST-ERR" in body  # errors come first even when capped


def test_write_report_all_formats(report: QCReport, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "out", stem="qc", max_html_rows=2)
    assert {k: p.name for k, p in paths.items()} == {"json": "qc.json", "csv": "qc.csv", "html": "qc.html"}
    assert all(p.is_file() for p in paths.values())
    assert "qc.json" in paths["html"].read_text(encoding="utf-8")


def test_large_report_streams(tmp_path: Path) -> None:
    n = 200_000
    findings = [
        Finding("elevation_identity", "error" if i % 3 else "warning", "管线段.csv", i + 2, f"P{i}", "起点高程",
                str(i * 0.01), "高程不闭合", "PS" if i % 2 else "JS", None)
        for i in range(n)
    ]
    r = QCReport(findings=findings, storage_crs="EPSG:4548")
    paths = write_report(r, tmp_path)
    loaded = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert len(loaded["findings"]) == n and loaded["summary"]["findings"] == n
    with paths["csv"].open(encoding="utf-8-sig", newline="") as fh:
        assert sum(1 for _ in fh) == n + 1
    html_text = paths["html"].read_text(encoding="utf-8")
    assert "Showing the first 20000 of 200000 findings" in html_text
    assert paths["html"].stat().st_size < 20 * 1024 * 1024
