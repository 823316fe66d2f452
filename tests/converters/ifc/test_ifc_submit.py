"""Submissions through :func:`submit_model` and ``cim bim``: the real IFC house placed over a street of the
sample pipe district, a revised copy as version 2, re-checks, comparison, reports and reviews, and every
refusal leaving the store as it was (one transaction for the model version and its submission)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from ifc_samples import ifc
from typer.testing import CliRunner

import converters.ifc.submit as submit_mod
from cim.bim.submissions import events, list_submissions
from cim.errors import InvalidInputError, NotFoundError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import GeorefMissingError
from converters.ifc.submit import (
    SubmissionOutcome,
    check_submission,
    compare_submissions,
    project_dataset_id,
    submit_model,
)
from converters.ifc.submit_cli import register
from converters.pipes.ingest import SurveyOptions, ingest_survey

ROOT = Path(__file__).resolve().parents[3]
HOUSE = ifc("ifc4_ifcopenshell_ifcopenhouse.ifc")
FOOTING = "2W4bl$KK1Brv_UEOkAThqU"
SOUTH_WALL = "3g46_woBL6sugXeY5_WP6n"
OVER_STREET = UserPlacement("EPSG:4548", 501990.0, 4058050.0, 75.3)
WALLS_NAMED_IDS = (Path(__file__).resolve().parents[2] / "api" / "test_bim_api.py").read_text(encoding="utf-8")
WALLS_NAMED_IDS = WALLS_NAMED_IDS.split('WALLS_NAMED_IDS = b"""', 1)[1].split('"""', 1)[0]
TABLES = ("datasets", "dataset_versions", "bim_models", "bim_elements", "bim_spatial", "bim_submissions",
          "bim_check_findings", "bim_review_events")
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, Settings, Path]]:
    tmp = tmp_path_factory.mktemp("submit")
    settings = Settings(store=f"duckdb:///{tmp}/cim.duckdb")
    store = DuckDBStore(tmp / "cim.duckdb")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(), settings)
    yield store, settings, tmp
    store.close()


@pytest.fixture(scope="module")
def first(setup: tuple[DuckDBStore, Settings, Path]) -> SubmissionOutcome:
    store, settings, _ = setup
    return submit_model(HOUSE, store, project="历下 3#楼", stage="drawing_review", settings=settings,
                        submitted_by="张工", placement=OVER_STREET)


def _counts(store: DuckDBStore) -> dict[str, int]:
    con = store.read()
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_dataset_ids_from_project_names_never_collide() -> None:
    assert project_dataset_id("jinan-tower") == "bim-jinan-tower"
    other = project_dataset_id("Jinan Tower")
    assert other.startswith("bim-jinan-tower-") and len(other) == len("bim-jinan-tower-") + 8
    a, b = project_dataset_id("历下 3#楼"), project_dataset_id("历下 4#楼")
    assert a != b and a.startswith("bim-3-") and b.startswith("bim-4-")
    assert project_dataset_id("  历下 3#楼 ") == a
    with pytest.raises(InvalidInputError, match="project must not be empty"):
        project_dataset_id("   ")


def test_a_submission_keeps_the_file_ingests_a_version_and_records_failed_checks(
        setup: tuple[DuckDBStore, Settings, Path], first: SubmissionOutcome) -> None:
    store, _, tmp = setup
    sub = first.submission
    assert (sub.project, sub.stage, sub.version, sub.status) == ("历下 3#楼", "drawing_review", 1, "failed")
    assert sub.dataset_id == project_dataset_id("历下 3#楼") == first.ingest.dataset_id
    stored = tmp / "cim.duckdb.files" / sub.file_sha256[:2] / sub.file_sha256
    assert stored.read_bytes() == HOUSE.read_bytes() and first.file.path == stored
    assert first.counts["elements"] == 40 and first.counts["by_check_kind"]["clearance"] == 3
    assert first.counts["errors"] == sub.summary["errors"] > 0
    assert [e.to_status for e in events(store, sub.id)] == ["submitted", "checked", "failed"]
    clearance = [f for f in first.findings if f.check_kind == "clearance"]
    assert {(f.rule_id, f.global_id) for f in clearance} == {("GB50289-4.1.9-CLASH", FOOTING),
                                                             ("GB50289-4.1.9-UNDER", FOOTING)}
    assert sub.summary["clearance"]["basis"] == "below_ground" and sub.summary["discipline"] == "architecture"
    assert sub.summary["ids"]["default"] is True and sub.summary["ids"]["errors"] > 0


def test_a_revised_copy_is_version_2_and_the_comparison_names_the_changed_wall(
        setup: tuple[DuckDBStore, Settings, Path], first: SubmissionOutcome) -> None:
    store, settings, tmp = setup
    revised = tmp / "house_rev2.ifc"
    revised.write_bytes(HOUSE.read_bytes().replace(b"'South wall'", b"'South wall (revised)'"))
    second = submit_model(revised, store, project="历下 3#楼", stage="handover", settings=settings,
                          placement=OVER_STREET)
    assert second.submission.version == 2 and second.submission.file_sha256 != first.submission.file_sha256
    cmp = compare_submissions(store, second.submission.id, first.submission.id)
    assert (cmp.v1, cmp.v2) == (1, 2)
    assert cmp.summary() == {"added": 0, "removed": 0, "changed": 1, "geometry_changed": 0,
                             "properties_changed": 1, "unchanged": 39}
    assert cmp.changed[0].global_id == SOUTH_WALL and cmp.changed[0].changed_attributes == ("name",)
    assert [s.version for s in list_submissions(store, project="历下 3#楼")] == [1, 2]


def test_a_recheck_with_another_ids_replaces_the_findings(setup: tuple[DuckDBStore, Settings, Path],
                                                          first: SubmissionOutcome, tmp_path: Path) -> None:
    store, settings, _ = setup
    ids = tmp_path / "walls.ids"
    ids.write_text(WALLS_NAMED_IDS, encoding="utf-8")
    sub = check_submission(store, first.submission.id, settings=settings, ids=ids)
    assert sub.summary["ids"]["name"] == "walls.ids" and sub.summary["ids"]["errors"] == 0
    assert sub.summary["by_check_kind"].get("ids", 0) == 0 and sub.status == "failed"  # clearance still fails
    again = check_submission(store, first.submission.id, settings=settings)  # keeps the stored IDS
    assert again.summary["ids"]["sha256"] == sub.summary["ids"]["sha256"]


def test_when_registering_fails_the_version_is_rolled_back(setup: tuple[DuckDBStore, Settings, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, settings, _ = setup

    def broken(*args: object, **kwargs: object) -> None:
        raise InvalidInputError("registration failed on purpose")

    monkeypatch.setattr(submit_mod, "create_submission", broken)
    before = _counts(store)
    with pytest.raises(InvalidInputError, match="on purpose"):
        submit_model(HOUSE, store, project="回滚", stage="drawing_review", settings=settings, placement=OVER_STREET)
    assert _counts(store) == before
    with pytest.raises(NotFoundError):
        store.get_dataset(project_dataset_id("回滚"))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"placement": None}, GeorefMissingError, "georef.none"),
        ({"ids": b"<ids><broken"}, InvalidInputError, "IDS is not well-formed XML"),
        ({"stage": "final"}, InvalidInputError, "stage 'final'"),
        ({"discipline": "landscape"}, InvalidInputError, "discipline 'landscape'"),
        ({"project": ""}, InvalidInputError, "project must not be empty"),
    ],
)
def test_refusals_store_no_version_and_no_submission(setup: tuple[DuckDBStore, Settings, Path], kwargs: dict,
                                                     error: type[Exception], words: str) -> None:
    store, settings, _ = setup
    before = _counts(store)
    args = {"project": "拒绝", "stage": "drawing_review", "placement": OVER_STREET} | kwargs
    with pytest.raises(error, match=words):
        submit_model(HOUSE, store, settings=settings, **args)
    assert _counts(store) == before


# -- the command line -------------------------------------------------------------------------------------
runner = CliRunner()
app = typer.Typer()
register(app)


@app.callback()
def _root() -> None:
    """Stand-in for the ``cim`` app."""


def cli(*args: str) -> object:
    return runner.invoke(app, ["bim", *args], catch_exceptions=False)


def test_the_cli_submits_lists_reports_reviews_and_compares(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/cim.duckdb"
    s = DuckDBStore(tmp_path / "cim.duckdb")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], s, SurveyOptions(), Settings(store=url))
    s.close()
    place = ["--crs", "EPSG:4548", "--easting", "501990", "--northing", "4058050", "--height", "75.3"]
    r1 = cli("submit", str(HOUSE), "--project", "cli-house", "--stage", "drawing_review", "--by", "王工", *place,
             "--store", url)
    assert r1.exit_code == 0, r1.output
    sid = r1.stdout.strip()
    assert sid.startswith("S") and len(sid) == 22 and "GB50289-4.1.9-CLASH" in r1.output and "failed" in r1.output
    listed = json.loads(cli("list", "--project", "cli-house", "--json", "--store", url).stdout)
    assert [x["id"] for x in listed] == [sid] and listed[0]["status"] == "failed"
    shown = json.loads(cli("show", sid, "--json", "--store", url).stdout)
    assert any(f["global_id"] == FOOTING for f in shown["findings"])
    for fmt in ("json", "html", "bcf"):
        out = tmp_path / f"report.{fmt}"
        r = cli("report", sid, "--format", fmt, "--out", str(out), "--store", url)
        assert r.exit_code == 0 and out.stat().st_size > 0, r.output
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["submission"]["id"] == sid
    assert zipfile.is_zipfile(tmp_path / "report.bcf")
    refused = cli("review", sid, "--accept", "--by", "审图员", "--store", url)
    assert refused.exit_code == 1 and "'failed'" in refused.output
    assert cli("review", sid, "--by", "审图员", "--store", url).exit_code == 2
    rejected = cli("review", sid, "--reject", "--by", "审图员", "--comment", "管线冲突", "--store", url)
    assert rejected.exit_code == 0 and "rejected" in rejected.output
    r2 = cli("submit", str(HOUSE), "--project", "cli-house", "--stage", "handover", *place, "--store", url)
    cmp = json.loads(cli("compare", sid, r2.stdout.strip(), "--json", "--store", url).stdout)
    assert cmp["summary"]["unchanged"] == 40 and cmp["summary"]["changed"] == 0
    bad = cli("submit", str(tmp_path / "report.json"), "--project", "cli-house", "--stage", "handover", *place,
              "--store", url)
    assert bad.exit_code == 1 and "not an IFC-SPF file" in bad.output
    assert len(json.loads(cli("list", "--json", "--store", url).stdout)) == 2
