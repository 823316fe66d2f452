"""Fixtures for the analyses: the sample Jinan district ingested once per module, and the spatial frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.analysis.common import Frame
from cim.heights import get_geoid
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "sample_data" / "jinan_district"
SHARED = REPO.parent / "shared" / "data"
SETTINGS = Settings(store="duckdb:///:memory:")


@pytest.fixture(scope="session")
def frame() -> Frame:
    """The default deployment frame (EPSG:4548, EGM96, Shandong)."""
    return Frame.from_settings(SETTINGS, get_geoid(SETTINGS.geoid, SETTINGS.geoid_path))


@pytest.fixture(scope="module")
def district() -> Iterator[DuckDBStore]:
    """An in-memory store holding the clean sample district (dataset ``jinan_district``). Read only: do not
    write to it in a test (use your own store for that)."""
    store = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], store, SurveyOptions(), SETTINGS)
    yield store
    store.close()
