"""The OGC API – Features suite (tests/api/test_ogc_features.py) run unchanged against a PostGIS store: the
API speaks DuckDB SQL to the store's connections, which read PostgreSQL through the attach."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cim.store import DuckDBStore
from cim.store.postgis import PostGISStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import IfcOptions, ingest_ifc
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api import test_ogc_features as suite
from tests.api.test_ogc_features import *  # noqa: F403 -- the suite's tests, collected here with the store below


@pytest.fixture(scope="module")
def store(pg_server) -> Iterator[DuckDBStore]:  # noqa: F811 -- replaces the suite's DuckDB store
    url = pg_server.new_url()
    s = PostGISStore(url, storage_crs=suite.STORAGE)
    ingest_survey([suite.ROOT / "sample_data" / "jinan_district"], s, SurveyOptions(), suite.SETTINGS)
    if suite.HOUSE.is_file():
        ingest_ifc(suite.HOUSE, s, IfcOptions(dataset_id="house",
                                              placement=UserPlacement(suite.STORAGE, 501990, 4058050, 75.3)),
                   suite.SETTINGS)
    yield s
    s.close()
    pg_server.drop(url)
