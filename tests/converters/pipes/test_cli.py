"""The ``cim`` command line as a user drives it: exit codes, messages, reports, the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cim.cli import _load_plugins, app
from cim.store import DuckDBStore

SAMPLES = Path(__file__).resolve().parents[3] / "sample_data"
runner = CliRunner()
_load_plugins()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_qc_on_the_clean_sample_exits_zero_and_writes_three_reports(tmp_path: Path) -> None:
    result = invoke("qc", str(SAMPLES / "jinan_district"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "qc-report.json").read_text(encoding="utf-8"))
    assert report["summary"]["findings"] == 0 and report["crs_in"] == "EPSG:4548"
    assert (tmp_path / "r" / "qc-report.html").stat().st_size > 0
    assert (tmp_path / "r" / "qc-report.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_qc_on_the_dirty_sample_exits_one(tmp_path: Path) -> None:
    result = invoke("qc", str(SAMPLES / "jinan_district_dirty"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r" / "qc-report.json").read_text(encoding="utf-8"))
    assert report["summary"]["errors"] > 0


def test_ingest_refuses_the_dirty_sample_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    assert invoke("ingest", str(SAMPLES / "jinan_district"), "--store", store,
                  "--report-dir", str(tmp_path / "r")).exit_code == 0
    result = invoke("ingest", str(SAMPLES / "jinan_district_dirty"), "--dataset", "jinan_district", "--store", store,
                    "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 1
    s = DuckDBStore(tmp_path / "cim.duckdb")
    assert [v["version"] for v in s.versions("jinan_district")] == [1]
    assert s.count("pipe_segments", "jinan_district") == 840
    s.close()


def test_keep_errors_never_stores_points_outside_the_region(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    result = invoke("ingest", str(SAMPLES / "jinan_district_dirty"), "--keep-errors", "--store", store,
                    "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "outside Shandong" in result.output and "swapped" in result.output


def test_ingest_with_keep_errors_stores_the_dirty_sample_flagged(tmp_path: Path) -> None:
    import csv
    import shutil

    dirty = tmp_path / "dirty"
    shutil.copytree(SAMPLES / "jinan_district_dirty", dirty)
    defect = json.loads((dirty / "defects.json").read_text(encoding="utf-8"))["crs_region"][0]
    path = dirty / defect["file"]
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    ix, iy = header.index("X坐标"), header.index("Y坐标")
    row = rows[defect["row"] - 1]
    row[ix], row[iy] = row[iy], row[ix]  # put the swapped point back where it belongs
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    result = invoke("ingest", str(dirty), "--keep-errors", "--store", store, "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    s = DuckDBStore(tmp_path / "cim.duckdb")
    flagged = s.read().execute(
        "SELECT count(*) FROM pipe_segments WHERE list_contains(qc_flags, 'reversed_slope')").fetchone()[0]
    assert flagged == 1
    for table in ("pipe_points", "pipe_segments"):  # duplicates kept with --keep-errors still get distinct ids
        n, distinct = s.read().execute(f"SELECT count(*), count(DISTINCT feature_id) FROM {table}").fetchone()
        assert n == distinct
    dup = s.read().execute(
        "SELECT feature_id FROM pipe_points WHERE list_contains(qc_flags, 'duplicate_point_id')").fetchall()
    assert dup and "@" in dup[0][0]
    s.close()


def test_a_missing_crs_gives_one_clear_line_and_exit_code_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cim.cli import main

    folder = tmp_path / "d"
    folder.mkdir()
    for f in (SAMPLES / "jinan_district").glob("JS*.csv"):
        (folder / f.name).write_bytes(f.read_bytes())
    import sys

    argv, sys.argv = sys.argv, ["cim", "qc", str(folder), "--out", str(tmp_path / "r")]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    assert exit_info.value.code == 2
    assert "no CRS" in capsys.readouterr().err


def test_demo_ingests_the_sample_district_and_reports(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    result = invoke("demo", "--store", store, "--out", str(tmp_path / "out"), "--no-serve")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "qc" / "jinan_district" / "qc-report.json").is_file()
    s = DuckDBStore(tmp_path / "cim.duckdb")
    assert s.get_dataset("jinan_district")["grade"] == "重要"
    assert s.count("pipe_points", "jinan_district") == 765
    s.close()


def test_datasets_and_info_show_the_catalogue(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    invoke("demo", "--store", store, "--out", str(tmp_path / "out"), "--no-serve")
    listed = json.loads(invoke("datasets", "--json", "--store", store).output)
    kinds = {d["id"]: d["kind"] for d in listed}
    assert kinds["jinan_district"] == "pipe_survey"
    # the demo also submits the sample office and catalogues the district's DEM, orthophoto and point cloud
    assert sorted(kinds.values()) == ["bim", "pipe_survey", "pointcloud", "raster", "raster"]
    assert (tmp_path / "cim.duckdb.assets" / "jinan_points").is_dir()
    info = json.loads(invoke("info", "jinan_district", "--store", store).output)
    assert info["current"] == {"pipe_points": 765, "pipe_segments": 840}
