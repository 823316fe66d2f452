"""A real OGC API – Features client: GDAL's OAPIF driver (``ogrinfo``, ``ogr2ogr``) against the app served by
uvicorn on loopback lists the collections and downloads every feature of one (next links followed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.app import create_app
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.live_server import live_server
from tests.api.trusted import trusted

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(shutil.which("ogrinfo") is None or shutil.which("ogr2ogr") is None,
                       reason="GDAL command-line tools not installed (apt-get install gdal-bin)"),
    pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed"),
]




def ogc_app(store: DuckDBStore, tiles: Path) -> FastAPI:
    """The app with the /ogc router (included here until api/app.py includes it)."""
    app = create_app(Settings(store="duckdb:///:memory:"), store=store, tiles_dir=tiles, security=trusted())
    return app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DuckDBStore]]:
    store = DuckDBStore(":memory:")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(),
                  Settings(store="duckdb:///:memory:"))
    with live_server(ogc_app(store, tmp_path_factory.mktemp("gdal") / "tiles")) as url:
        yield f"OAPIF:{url}/ogc", store
    store.close()


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ogrinfo_lists_the_collections(served: tuple[str, DuckDBStore]) -> None:
    url, store = served
    out = _run("ogrinfo", "-ro", "-so", url)
    cats = [r[0].lower() for r in store.read().execute("SELECT DISTINCT category FROM pipe_segments").fetchall()]
    for cat in cats:
        assert f": pipe-segments-{cat} (" in out and f": pipe-points-{cat} (" in out
    assert "pipe-segments (title:" in out and "(3D Line String)" in out and "(3D Point)" in out
    info = _run("ogrinfo", "-ro", "-so", url, "pipe-segments-js")
    expected = store.read().execute(
        "SELECT count(*) FROM pipe_segments WHERE category = 'JS' AND version_to IS NULL").fetchone()[0]
    assert f"Feature Count: {expected}" in info and "diameter_mm: Real" in info


def test_ogr2ogr_downloads_every_feature(served: tuple[str, DuckDBStore], tmp_path: Path) -> None:
    url, store = served
    out = tmp_path / "out.gpkg"
    # a page size below the collection's size makes GDAL follow the next links
    _run("ogr2ogr", "-f", "GPKG", str(out), url, "pipe-segments-js", "-oo", "PAGE_SIZE=40")
    info = _run("ogrinfo", "-ro", "-so", str(out), "pipe-segments-js")
    expected = store.read().execute(
        "SELECT count(*) FROM pipe_segments WHERE category = 'JS' AND version_to IS NULL").fetchone()[0]
    assert expected > 40 and f"Feature Count: {expected}" in info
    assert "3D Line String" in info
    ids = _run("ogrinfo", "-ro", "-q", str(out), "-sql", 'SELECT COUNT(DISTINCT feature_id) AS n FROM "pipe-segments-js"')
    assert f"n (Integer) = {expected}" in ids
