"""The analysis API (tests/api/test_analysis_api.py) run unchanged against a PostGIS store holding the sample district."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.store import DuckDBStore
from cim.store.postgis import PostGISStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api import test_analysis_api as suite
from tests.api.test_analysis_api import *  # noqa: F403 -- the suite's tests, collected here with the store below

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"


@pytest.fixture(scope="module")
def store(pg_server) -> Iterator[DuckDBStore]:  # noqa: F811 -- replaces the suite's DuckDB store
    url = pg_server.new_url()
    s = PostGISStore(url, storage_crs="EPSG:4548")
    ingest_survey([SAMPLE], s, SurveyOptions(), suite.SETTINGS)
    yield s
    s.close()
    pg_server.drop(url)
