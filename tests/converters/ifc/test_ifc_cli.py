"""``cim ifc ingest`` as a user drives it: summary, findings, refusals and exit codes."""

from __future__ import annotations

from pathlib import Path

import typer
from ifc_samples import ifc, jinan_ifc
from typer.testing import CliRunner

from cim.store import DuckDBStore
from converters.ifc.cli import register

runner = CliRunner()
app = typer.Typer()
register(app)


@app.callback()
def _root() -> None:
    """Stand-in for the ``cim`` app (the real one loads ``register`` through its entry point)."""


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_ingest_prints_a_summary_and_the_findings(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    result = invoke(
        "ifc",
        "ingest",
        str(jinan_ifc(tmp_path)),
        "--dataset",
        "jinan",
        "--title",
        "济南测试",
        "--store",
        store,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "jinan version 1" in out and "IfcWallStandardCase" in out
    assert (
        "epset_map_conversion from EPSG:4548" in out
        and "geometry.failed" in out
        and "stored 2 elements" in out
    )
    s = DuckDBStore(tmp_path / "cim.duckdb")
    assert s.get_dataset("jinan")["title"] == "济南测试"
    s.close()


def test_an_ungeoreferenced_model_is_refused_then_placed(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path}/cim.duckdb"
    model = str(ifc("ifc4_ifcopenshell_ifcopenhouse.ifc"))
    refused = invoke("ifc", "ingest", model, "--store", store)
    assert refused.exit_code == 1
    assert "refused" in refused.output and "georef.none" in refused.output and "--easting" in refused.output
    placed = invoke(
        "ifc",
        "ingest",
        model,
        "--store",
        store,
        "--crs",
        "EPSG:4548",
        "--easting",
        "500000",
        "--northing",
        "4057669.9",
        "--height",
        "30",
        "--rotation",
        "15",
    )
    assert placed.exit_code == 0, placed.output
    assert "user from EPSG:4548" in placed.output
    s = DuckDBStore(tmp_path / "cim.duckdb")
    assert [v["version"] for v in s.versions("ifc4_ifcopenshell_ifcopenhouse")] == [1]
    s.close()


def test_half_a_placement_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(
        "ifc",
        "ingest",
        str(jinan_ifc(tmp_path)),
        "--easting",
        "500000",
        "--store",
        f"duckdb:///{tmp_path}/cim.duckdb",
    )
    assert result.exit_code == 2 and "--easting and --northing together" in result.output
    assert not (tmp_path / "cim.duckdb").exists()


def test_a_broken_file_exits_1_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "zero.ifc"
    path.write_bytes(b"")
    result = invoke("ifc", "ingest", str(path), "--store", f"duckdb:///{tmp_path}/cim.duckdb")
    assert result.exit_code == 1 and "empty (0 bytes)" in result.output
