"""PostGISStore: the store on PostgreSQL + PostGIS, for several API processes and cities that outgrow a file.

PostgreSQL is the system of record: the tables of the DuckDB schema translated to PostgreSQL types
(``geometry`` columns with the deployment's SRID and GiST indexes, JSON checked text, ``bytea``, sequences,
primary keys and CHECK constraints), created and migrated through psycopg. Callers keep speaking DuckDB
SQL: :meth:`read` and :meth:`transaction` hand out DuckDB connections with the PostgreSQL database
ATTACHed (``TYPE postgres``) as the default catalog, so spatial SQL runs in DuckDB over rows streamed
from PostgreSQL (binary COPY both ways; a DuckDB transaction is one PostgreSQL transaction).
"""

from __future__ import annotations

import hashlib
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duckdb

from cim.bim.schema import BIM_DDL, BIM_INDEXES
from cim.errors import StoreError
from cim.linkage.schema import LINKAGE_DDL
from cim.security.schema import SECURITY_DDL
from cim.store import schema
from cim.store.duckdb_ import DuckDBStore
from cim.store.spatial import connect, quiet

CATALOG = "pg"
#: the PostgreSQL schema of the store tables: ``main``, as in DuckDB, so ``<db>.main.<table>`` names work
SCHEMA = "main"
_LOCK_KEY = 7_315_001  # pg_advisory_xact_lock key serialising schema migrations across processes

#: geometry columns and their PostGIS type (``{srid}`` filled from the storage CRS)
GEOMETRY_TYPES = {
    ("pipe_points", "geom"): "geometry(PointZ, {srid})",
    ("pipe_segments", "geom"): "geometry(LineStringZ, {srid})",
    ("features", "geom"): "geometry(Geometry, {srid})",
    ("bim_elements", "footprint"): "geometry(Geometry, {srid})",
}
#: PostgreSQL-only additions: the b-tree indexes a server store needs for its filters (not unique: the DuckDB
#: schema does not constrain ``fid`` either, and both backends must accept the same data)
PG_EXTRA: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS pipe_points_fid ON pipe_points (fid)",
    "CREATE INDEX IF NOT EXISTS pipe_segments_fid ON pipe_segments (fid)",
    "CREATE INDEX IF NOT EXISTS features_fid ON features (fid)",
    "CREATE INDEX IF NOT EXISTS pipe_points_current ON pipe_points (dataset_id, feature_id) WHERE version_to IS NULL",
    "CREATE INDEX IF NOT EXISTS pipe_segments_current ON pipe_segments (dataset_id, feature_id) "
    "WHERE version_to IS NULL",
    "CREATE INDEX IF NOT EXISTS features_current ON features (dataset_id, collection) WHERE version_to IS NULL",
)


@lru_cache(maxsize=1)
def postgres_extension_path() -> Path:
    """Path of ``postgres_scanner.duckdb_extension`` matching the installed DuckDB version."""
    try:
        import duckdb_extension_postgres_scanner
    except ImportError as exc:
        if exc.name != "duckdb_extension_postgres_scanner":
            raise
        raise StoreError("the duckdb-extension-postgres-scanner package is not installed") from None
    root = Path(duckdb_extension_postgres_scanner.__file__).parent
    wanted = root / "extensions" / f"v{duckdb.__version__}" / "postgres_scanner.duckdb_extension"
    if not wanted.is_file():
        raise StoreError(f"no postgres extension for DuckDB {duckdb.__version__} in {root}")
    return wanted


def redact(url: str) -> str:
    """The URL without its password (for logs, ``store.path`` and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def srid_of(crs: str) -> int:
    """``EPSG:4548`` → 4548."""
    m = re.fullmatch(r"(?i)epsg:(\d+)", crs.strip())
    if not m:
        raise StoreError(f"a PostGIS store needs an EPSG storage CRS, not {crs!r}")
    return int(m.group(1))


def pg_ddl(ddl: str, srid: int) -> str:
    """One DuckDB DDL statement of the store schema in PostgreSQL + PostGIS."""
    out = re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", ddl)
    out = re.sub(r"\bBLOB\b", "BYTEA", out)
    out = out.replace("USING RTREE", "USING GIST")
    # JSON as text checked to parse: keeps the exact text (checksums, audit hash chain) and lets DuckDB's
    # postgres scanner UPDATE it (PostgreSQL has no assignment cast varchar -> json)
    out = re.sub(r"\b(\w+) JSON\b", r"\1 TEXT CHECK (\1 IS NULL OR \1::json IS NOT NULL)", out)
    table = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", out)
    if table:
        for (name, column), pg_type in GEOMETRY_TYPES.items():
            if name == table.group(1):
                out = re.sub(rf"\b{column} GEOMETRY\b", f"{column} {pg_type.format(srid=srid)}", out)
    if re.search(r"\bGEOMETRY\b", out):
        raise StoreError(f"no PostGIS type for a geometry column in: {ddl.splitlines()[0]}")
    return out


def all_ddl(srid: int) -> tuple[str, ...]:
    """Every statement creating the schema on PostgreSQL, in order."""
    parts = (*schema.DDL, *BIM_DDL, *SECURITY_DDL, *LINKAGE_DDL, *schema.INDEXES, *BIM_INDEXES)
    return (*(pg_ddl(d, srid) for d in parts), *PG_EXTRA)


def pg_connect(url: str, **kw: Any) -> Any:
    """A psycopg connection, or a StoreError that names the server (never the password)."""
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=10, options=f"-c search_path={SCHEMA},public", **kw)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostGIS store {redact(url)}: {str(exc).strip()}") from None


class PostGISStore(DuckDBStore):
    """The spatial store on PostgreSQL + PostGIS, with DuckDB SQL on top (see the module docstring).

    Example::

        store = PostGISStore("postgresql://cim@db.internal/cim")
        store.datasets()
    """

    backend = "postgis"

    def __init__(self, url: str, *, storage_crs: str | None = None) -> None:
        from cim.settings import get_settings

        self.url = url
        self.path = redact(url)
        self.srid = srid_of(storage_crs or get_settings().storage_crs)
        self._lock = threading.RLock()
        migrate_schema(url, self.srid)
        try:
            self._con = connect(":memory:")
            self._con.execute(f"LOAD '{postgres_extension_path()}'")
            self._con.execute(f"ATTACH '{_sql_text(url)}' AS {CATALOG} (TYPE postgres)")
            self._con.execute(f"USE {CATALOG}.{SCHEMA}")
        except duckdb.Error as exc:
            raise StoreError(f"cannot attach PostGIS store {self.path}: {str(exc).replace(url, self.path)}") from None

    def _init_schema(self) -> None:  # the schema is created by migrate_schema, through psycopg
        return None

    def read(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor whose default catalog is the PostgreSQL database (schema ``main``)."""
        cur = quiet(self._con.cursor())
        cur.execute(f"USE {CATALOG}.{SCHEMA}")
        return cur

    def execute_pg(self, sql: str, params: Any = None) -> list[tuple]:
        """Run SQL in PostgreSQL itself (PostGIS functions, index-backed bbox queries), outside DuckDB."""
        with pg_connect(self.url) as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def schema_digest(srid: int) -> str:
    """Digest of the schema DDL: a store whose recorded digest differs is migrated on open."""
    return hashlib.sha256("\n".join(all_ddl(srid)).encode()).hexdigest()[:16]


def migrate_schema(url: str, srid: int) -> list[str]:
    """Create or migrate the schema on the server (idempotent; serialised across processes).

    New tables, indexes and sequences are created; columns the DDL has but a table lacks are added
    (``ALTER TABLE ADD COLUMN`` with the DDL's type and default). Returns the columns added.
    """
    import psycopg

    digest = schema_digest(srid)
    with pg_connect(url, autocommit=True) as conn:
        if _recorded(conn, "ddl_digest") == digest:
            return []
        recorded = _recorded(conn, "srid")
        if recorded is not None and int(recorded) != srid:
            raise StoreError(f"the PostGIS store {redact(url)} holds geometries in SRID {recorded}, not {srid}: "
                             "set CIM_STORAGE_CRS to match")
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                for ddl in all_ddl(srid):
                    conn.execute(ddl)
                added = _add_missing_columns(conn, srid)
                for key, value in (("schema_version", schema.SCHEMA_VERSION), ("ddl_digest", digest),
                                   ("srid", str(srid))):
                    conn.execute(
                        "INSERT INTO schema_info VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        [key, value],
                    )
        except psycopg.Error as exc:
            raise StoreError(f"cannot create the store schema in {redact(url)}: {str(exc).strip()}") from None
    return added


def _recorded(conn: Any, key: str) -> str | None:
    row = conn.execute(f"SELECT to_regclass('{SCHEMA}.schema_info') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    found = conn.execute("SELECT value FROM schema_info WHERE key = %s", [key]).fetchone()
    return found[0] if found else None


def _add_missing_columns(conn: Any, srid: int) -> list[str]:
    """Add to existing tables the columns their DDL declares but they lack (a schema migration)."""
    added: list[str] = []
    for ddl in all_ddl(srid):
        m = re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", ddl)
        if not m:
            continue
        table = m.group(1)
        probe = f"_cim_mig_{table}"
        conn.execute(ddl.replace(m.group(0), f"CREATE TEMP TABLE {probe}", 1))
        wanted = conn.execute(_COLUMNS_SQL, [f"pg_temp.{probe}"]).fetchall()
        have = {r[0] for r in conn.execute(_COLUMNS_SQL, [f"{SCHEMA}.{table}"]).fetchall()}
        for name, pg_type, default in wanted:
            if name not in have:
                extra = f" DEFAULT {default}" if default else ""
                conn.execute(f'ALTER TABLE {SCHEMA}.{table} ADD COLUMN "{name}" {pg_type}{extra}')
                added.append(f"{table}.{name}")
        conn.execute(f"DROP TABLE {probe}")
    return added


_COLUMNS_SQL = """SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid)
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""
