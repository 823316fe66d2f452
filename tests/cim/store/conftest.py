"""Store fixtures for both backends: a real PostgreSQL + PostGIS started on loopback for the session.

Outside CI the PostGIS half skips with the reason when no server can be started; in CI (``$CI`` set) that
is a failure, so the PostGIS contract can never silently drop out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from cim.errors import StoreError
from cim.store import DuckDBStore
from cim.store.pgserver import TempPostgres as PgServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL + PostGIS server (skip outside CI if it cannot start; fail in CI)."""
    try:
        server = PgServer()
    except (StoreError, OSError, LookupError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the store contract on PostGIS, but no server could be started: {exc}")
        pytest.skip(f"no PostgreSQL + PostGIS server could be started on loopback: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database on the session server, dropped after the test."""
    url = pg_server.new_url()
    yield url
    pg_server.drop(url)


@pytest.fixture(params=["duckdb", "postgis"])
def store(request: pytest.FixtureRequest) -> Iterator[DuckDBStore]:
    """An empty store on each backend (overrides the DuckDB-only fixture of tests/conftest.py)."""
    if request.param == "duckdb":
        s = DuckDBStore(":memory:")
    else:
        from cim.store.postgis import PostGISStore

        s = PostGISStore(request.getfixturevalue("pg_url"), storage_crs="EPSG:4548")
    yield s
    s.close()
