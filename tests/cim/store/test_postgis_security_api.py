"""The access-control matrix (tests/api/test_security_matrix.py: every role × every endpoint, scoped views
over the store) run unchanged against a PostGIS store holding the graded datasets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cim.store import DuckDBStore
from cim.store.migrate import STORE_TABLES, attach, copy_tables
from cim.store.postgis import PostGISStore
from tests.api import test_security_matrix as suite
from tests.api.test_security_matrix import *  # noqa: F403 -- the suite's tests, collected here with the store below


@pytest.fixture(scope="module")
def graded(pg_server) -> Iterator[DuckDBStore]:  # noqa: F811 -- replaces the suite's DuckDB store
    url = pg_server.new_url()
    s = PostGISStore(url, storage_crs="EPSG:4548")
    source = suite.build_graded_store()  # in memory: copied over through an attach on its own connection
    attach(source._con, url, "dst", read_only=False)
    tables = {t: f"memory.main.{t}" for t in STORE_TABLES if t != "schema_info"}
    assert all(c.ok for c in copy_tables(source._con, tables, "dst", replace=False))
    source.close()
    yield s
    s.close()
    pg_server.drop(url)
