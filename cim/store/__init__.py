"""The unified spatial store. ``open_store(url)`` picks the backend from the URL scheme."""

from __future__ import annotations

from cim.errors import UnsupportedError
from cim.store.duckdb_ import DatasetInfo, DuckDBStore, VersionInfo

__all__ = ["DatasetInfo", "DuckDBStore", "VersionInfo", "open_store"]


def open_store(url: str) -> DuckDBStore:
    """Open a store from a URL, SQLAlchemy style, or a bare file path.

    ``duckdb:///cim.duckdb`` (relative), ``duckdb:////srv/cim/cim.duckdb`` (absolute),
    ``duckdb:///:memory:`` (in memory), ``postgresql://user@host:5432/db`` (PostGIS,
    :class:`~cim.store.postgis.PostGISStore`, same interface).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from cim.store.postgis import PostGISStore

        return PostGISStore(url)
    if url.startswith("duckdb://"):
        path = url[len("duckdb://"):]
        path = path[1:] if path.startswith("/") else path
        return DuckDBStore(path or ":memory:")
    if "://" in url:
        raise UnsupportedError(f"no store backend for {url.split('://', 1)[0]!r} (supported: duckdb, postgresql)")
    return DuckDBStore(url)
