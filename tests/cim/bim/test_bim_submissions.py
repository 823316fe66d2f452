"""The submission lifecycle: statuses, review decisions, events, one transaction per change."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from cim.bim import submissions as subs
from cim.bim.files import FileStore, StoredFile
from cim.bim.ids import Finding
from cim.errors import InvalidInputError, NotFoundError
from cim.store import DuckDBStore


@pytest.fixture
def stored(tmp_path: Path) -> StoredFile:
    return FileStore(tmp_path).put(b"ISO-10303-21;\n", "济南某住宅_建筑.ifc")


def _new(
    store: DuckDBStore, stored: StoredFile, project: str = "3701-2025-001", stage: str = "drawing_review"
):
    return subs.create_submission(
        store,
        project=project,
        stage=stage,
        dataset_id="bim_a",
        version=1,
        file=stored,
        submitted_by="设计院张工",
    )


ERROR = Finding(
    "ids", "CN300-FR-02", "error", "门无防火等级", "1Oms875aH3Wg$9l65H2ZGw", "IfcDoor", "FireRating", "none"
)
WARNING = Finding("georef", "GEO-LATLON-ONLY", "warning", "仅有场地经纬度")


def test_create_and_ids(store: DuckDBStore, stored: StoredFile) -> None:
    s = _new(store, stored)
    assert re.fullmatch(r"S\d{17}[0-9A-HJKMNP-TV-Z]{4}", s.id)
    assert (s.status, s.project, s.file_sha256, s.file_name) == (
        "submitted",
        "3701-2025-001",
        stored.sha256,
        stored.name,
    )
    assert s.checked_at is None and s.summary == {}
    assert [(e.from_status, e.to_status, e.actor) for e in subs.events(store, s.id)] == [
        (None, "submitted", "设计院张工")
    ]
    ids = [subs.new_submission_id(datetime(2025, 6, 1, 8, 0, 0, 1000 * i)) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50  # sortable by time, unique
    with pytest.raises(InvalidInputError, match="stage 'design'"):
        _new(store, stored, stage="design")
    with pytest.raises(InvalidInputError, match="project must not be empty"):
        _new(store, stored, project="  ")


def test_checks_then_accept(store: DuckDBStore, stored: StoredFile) -> None:
    s = _new(store, stored)
    checked = subs.record_checks(store, s.id, [WARNING], {"ids": "cn_review_lod300.ids"})
    assert checked.status == "passed" and checked.checked_at is not None
    assert checked.summary["ids"] == "cn_review_lod300.ids"
    assert (checked.summary["errors"], checked.summary["warnings"], checked.summary["by_check_kind"]) == (
        0,
        1,
        {"georef": 1},
    )
    accepted = subs.review(store, s.id, actor="审图专家李工", decision="accept", comment="同意")
    assert accepted.status == "accepted"
    assert [(e.from_status, e.to_status) for e in subs.events(store, s.id)] == [
        (None, "submitted"),
        ("submitted", "checked"),
        ("checked", "passed"),
        ("passed", "accepted"),
    ]
    assert subs.events(store, s.id)[-1].comment == "同意"
    with pytest.raises(InvalidInputError, match="is accepted: checks can only be recorded"):
        subs.record_checks(store, s.id, [])


def test_failed_can_only_be_rejected(store: DuckDBStore, stored: StoredFile) -> None:
    s = _new(store, stored)
    with pytest.raises(InvalidInputError, match=r"cannot accept submission S\w+: its status is 'submitted'"):
        subs.review(store, s.id, actor="李工", decision="accept")
    with pytest.raises(InvalidInputError, match="its status is 'submitted', only a passed or failed"):
        subs.review(store, s.id, actor="李工", decision="reject")
    failed = subs.record_checks(store, s.id, [ERROR, WARNING.to_dict()])
    assert failed.status == "failed" and failed.summary["errors"] == 1
    with pytest.raises(
        InvalidInputError, match="its status is 'failed', only a passed submission can be accepted"
    ):
        subs.review(store, s.id, actor="李工", decision="accept")
    assert subs.get_submission(store, s.id).status == "failed"  # refused decisions change nothing
    rejected = subs.review(store, s.id, actor="李工", decision="reject", comment="补充防火等级")
    assert rejected.status == "rejected"
    with pytest.raises(InvalidInputError, match="its status is 'rejected'"):
        subs.review(store, s.id, actor="李工", decision="reject")
    with pytest.raises(InvalidInputError, match="decision 'maybe'"):
        subs.review(store, s.id, actor="李工", decision="maybe")
    with pytest.raises(InvalidInputError, match="actor"):
        subs.review(store, s.id, actor=" ", decision="reject")


def test_recheck_replaces_findings(store: DuckDBStore, stored: StoredFile) -> None:
    s = _new(store, stored)
    subs.record_checks(store, s.id, [ERROR, WARNING])
    assert [f.rule_id for f in subs.findings(store, s.id)] == [
        "CN300-FR-02",
        "GEO-LATLON-ONLY",
    ]  # errors first
    again = subs.record_checks(store, s.id, [WARNING])
    assert again.status == "passed" and subs.findings(store, s.id) == [WARNING]
    assert [e.to_status for e in subs.events(store, s.id)][-2:] == ["checked", "passed"]


def test_a_failing_change_leaves_the_store_unchanged(
    store: DuckDBStore, stored: StoredFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _new(store, stored)

    def broken_event(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(subs, "_event", broken_event)
    with pytest.raises(RuntimeError, match="disk full"):
        subs.record_checks(store, s.id, [ERROR])
    monkeypatch.undo()
    assert subs.get_submission(store, s.id).status == "submitted"
    assert subs.findings(store, s.id) == [] and len(subs.events(store, s.id)) == 1
    with pytest.raises(InvalidInputError, match="severity 'fatal'"):
        subs.record_checks(store, s.id, [{**ERROR.to_dict(), "severity": "fatal"}])
    with pytest.raises(InvalidInputError, match="check kind 'clash'"):
        subs.record_checks(store, s.id, [{**ERROR.to_dict(), "check_kind": "clash"}])


def test_list_and_not_found(store: DuckDBStore, stored: StoredFile) -> None:
    a = _new(store, stored, project="P1")
    b = _new(store, stored, project="P2", stage="handover")
    c = _new(store, stored, project="P1", stage="handover")
    subs.record_checks(store, c.id, [ERROR])
    assert [s.id for s in subs.list_submissions(store)] == [a.id, b.id, c.id]
    assert [s.id for s in subs.list_submissions(store, project="P1")] == [a.id, c.id]
    assert [s.id for s in subs.list_submissions(store, stage="handover", status="failed")] == [c.id]
    assert subs.list_submissions(store, project="P3") == []
    for call in (
        lambda: subs.get_submission(store, "S0"),
        lambda: subs.events(store, "S0"),
        lambda: subs.record_checks(store, "S0", []),
        lambda: subs.review(store, "S0", actor="x", decision="reject"),
    ):
        with pytest.raises(NotFoundError, match="submission 'S0' does not exist"):
            call()
