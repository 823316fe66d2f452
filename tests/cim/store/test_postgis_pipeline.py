"""The unchanged pipe converter and tiler on a PostGIS store give what they give on DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.heights import get_geoid
from cim.settings import Settings
from cim.store import open_store
from cim.store.migrate import inspect_store
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tiles.pipes import TilingOptions, build_pipe_tileset

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_and_tiling_on_postgis_match_duckdb_byte_for_byte(pg_url: str, tmp_path: Path) -> None:
    geoid = get_geoid("egm96")
    opts = TilingOptions(leaf_capacity=300)
    results = {}
    for name, url in (("duckdb", "duckdb:///" + str(tmp_path / "cim.duckdb")), ("postgis", pg_url)):
        store = open_store(url)
        try:
            version, report = ingest_survey([SAMPLE], store, SurveyOptions(), Settings(store=url))
            results[name] = (version.counts, report.summary())
            build_pipe_tileset(store, tmp_path / name, storage_crs="EPSG:4548", geoid=geoid, options=opts)
        finally:
            store.close()
    assert results["postgis"] == results["duckdb"]
    assert results["duckdb"][0]["pipe_segments"]["added"] > 100
    a, b = _files(tmp_path / "duckdb"), _files(tmp_path / "postgis")
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
    tables = inspect_store(pg_url)["tables"]
    here = inspect_store("duckdb:///" + str(tmp_path / "cim.duckdb"))["tables"]
    for table in ("pipe_points", "pipe_segments", "network_nodes", "network_edges", "qc_findings"):
        assert tables[table] == here[table], table
