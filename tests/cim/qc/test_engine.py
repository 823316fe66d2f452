"""The QC catalogue on the committed sample district: the clean one passes, the dirty one trips every rule."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from cim.qc.catalogue import RULES
from cim.settings import Settings
from converters.pipes.ingest import SurveyOptions, qc_survey

SAMPLES = Path(__file__).resolve().parents[3] / "sample_data"


@pytest.fixture(scope="module")
def dirty():
    checked = qc_survey([SAMPLES / "jinan_district_dirty"], SurveyOptions(), Settings())
    yield checked
    checked.con.close()


def test_the_clean_sample_has_no_finding_at_all() -> None:
    checked = qc_survey([SAMPLES / "jinan_district"], SurveyOptions(), Settings())
    assert checked.report.summary() == {"errors": 0, "warnings": 0, "infos": 0, "findings": 0}
    assert set(checked.report.rules_run) == {r.id for r in RULES}


def test_the_dirty_sample_trips_every_rule_of_the_catalogue(dirty) -> None:
    found = {f.rule_id for f in dirty.report.findings}
    assert found == {r.id for r in RULES}


def test_every_injected_defect_is_reported_at_its_file_and_row(dirty) -> None:
    defects = json.loads((SAMPLES / "jinan_district_dirty" / "defects.json").read_text(encoding="utf-8"))
    by_rule: dict[str, list] = defaultdict(list)
    for f in dirty.report.findings:
        by_rule[f.rule_id].append(f)
    for rule_id, items in defects.items():
        findings = by_rule[rule_id]
        for item in items:
            located = [f for f in findings if f.file and Path(f.file).name == item["file"] and f.row == item["row"]]
            if rule_id == "crossing_without_junction":  # a crossing is reported once, on either segment of the pair
                located += [f for f in findings if item["feature_id"] in (f.feature_id, f.value)]
            assert located, f"{rule_id}: no finding at {item}"


def test_findings_name_field_value_and_a_readable_message(dirty) -> None:
    numeric = [f for f in dirty.report.findings if f.rule_id == "numeric"]
    assert {f.value for f in numeric} >= {"abc"} or any("米" in (f.value or "") for f in numeric)
    assert all(f.field and f.message and f.severity == "error" for f in numeric)
    region = [f for f in dirty.report.findings if f.rule_id == "crs_region"]
    assert "swapped" in region[0].message


def test_a_refused_dirty_ingest_counts_errors_by_rule_in_the_report(dirty) -> None:
    counts = dirty.report.counts_by_rule()
    assert counts["reversed_slope"]["error"] >= 1
    assert counts["clearance"]["info"] >= 1
    assert dirty.report.summary()["errors"] > 0 and not dirty.report.passed


def test_findings_are_counted_by_major_category_not_by_layer_prefix(dirty) -> None:
    assert set(dirty.report.counts_by_category()) <= {"JS", "PS", "RQ", "RL", "DL", "TX", "GY", "QT", "unknown"}
