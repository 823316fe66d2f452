"""Load DuckDB's spatial extension offline, from the ``duckdb-extension-spatial`` wheel."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import duckdb

from cim.errors import StoreError


@lru_cache(maxsize=1)
def spatial_extension_path() -> Path:
    """Path of ``spatial.duckdb_extension`` matching the installed DuckDB version."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:
        if exc.name != "duckdb_extension_spatial":
            raise
        raise StoreError("the duckdb-extension-spatial package is not installed (pip install cim-service)") from None
    root = Path(duckdb_extension_spatial.__file__).parent
    version = duckdb.__version__
    wanted = root / "extensions" / f"v{version}" / "spatial.duckdb_extension"
    if wanted.is_file():
        return wanted
    found = sorted(root.rglob("spatial.duckdb_extension"))
    raise StoreError(
        f"no spatial extension for DuckDB {version} in {root} (found: {[str(p) for p in found]}); "
        "install matching duckdb and duckdb-extension-spatial versions"
    )


def load_spatial(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD the spatial extension into ``con`` without touching the network."""
    con.execute(f"LOAD '{spatial_extension_path()}'")


def connect(path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with spatial loaded, no automatic extension downloads and no progress bar (which
    would print into a command's stdout, e.g. JSON output)."""
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    con = duckdb.connect(path, config=config)
    load_spatial(con)
    quiet(con)
    return con


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Switch off the progress bar of one connection or cursor (a per-connection setting in DuckDB)."""
    con.execute("SET enable_progress_bar = false; SET enable_progress_bar_print = false")
    return con
