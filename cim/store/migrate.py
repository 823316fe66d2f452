"""Move a whole store between backends (DuckDB file ↔ PostGIS) with nothing lost.

One DuckDB connection ATTACHes the source (read-only) and the target; every store table is copied in one
target transaction, then counts and order-independent checksums of every table are computed on both
sides (the target read back inside that transaction) and the move commits only if all of them match.
A non-empty target is refused unless ``replace`` is given; a failed move leaves the target as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cim.errors import InvalidInputError, StoreError
from cim.store.postgis import all_ddl, pg_connect, postgres_extension_path, redact, srid_of
from cim.store.spatial import connect

#: store tables in schema order (every CREATE TABLE of the store, BIM, security and linkage DDL)
STORE_TABLES: tuple[str, ...] = tuple(
    m.group(1) for d in all_ddl(0) if (m := re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", d))
)
#: tables whose rows belong to the store itself (not copied; the target keeps its own)
META_TABLES = ("schema_info",)
#: (table, column) filled from a sequence, so the target's sequence is moved past the copied values
SEQUENCE_COLUMNS: dict[str, list[tuple[str, str]]] = {}
for _ddl in all_ddl(0):
    _t = re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", _ddl)
    for _col, _seq in re.findall(r"(\w+) BIGINT[^,]*?DEFAULT nextval\('(\w+)'\)", _ddl):
        if _t:
            SEQUENCE_COLUMNS.setdefault(_seq, []).append((_t.group(1), _col))


@dataclass
class TableCheck:
    """Rows and checksum of one table on both sides."""

    table: str
    rows: int
    checksum: str
    target_rows: int
    target_checksum: str

    @property
    def ok(self) -> bool:
        """Counts and checksums are equal."""
        return self.rows == self.target_rows and self.checksum == self.target_checksum


@dataclass
class MoveReport:
    """What a move (migrate or restore) copied and verified."""

    source: str
    target: str
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows copied over every table."""
        return sum(t.rows for t in self.tables)


def backend_of(url: str) -> str:
    """``duckdb`` or ``postgis`` for a store URL or bare path."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgis"
    if url.startswith("duckdb://") or "://" not in url:
        return "duckdb"
    raise InvalidInputError(f"no store backend for {url.split('://', 1)[0]!r} (supported: duckdb, postgresql)")


def duckdb_path(url: str) -> str:
    """The file of a DuckDB store URL (refusing ``:memory:``, which no other connection can see)."""
    path = url[len("duckdb://"):] if url.startswith("duckdb://") else url
    path = path[1:] if url.startswith("duckdb://") and path.startswith("/") else path
    if not path or path == ":memory:":
        raise InvalidInputError("an in-memory store cannot be moved, backed up or restored: use a store file")
    return path


def attach(con: duckdb.DuckDBPyConnection, url: str, alias: str, *, read_only: bool) -> None:
    """ATTACH a store (DuckDB file or PostgreSQL database) to ``con`` as ``alias``."""
    ro = ", READ_ONLY" if read_only else ""
    try:
        if backend_of(url) == "postgis":
            pg_connect(url).close()  # a clear error for a wrong or unreachable server
            con.execute(f"LOAD '{postgres_extension_path()}'")
            con.execute(f"ATTACH '{_lit(url)}' AS {alias} (TYPE postgres{ro})")
        else:
            path = duckdb_path(url)
            if read_only and not Path(path).is_file():
                raise InvalidInputError(f"store file {path} does not exist")
            con.execute(f"ATTACH '{_lit(path)}' AS {alias}{' (READ_ONLY)' if read_only else ''}")
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {redact(url)}: {str(exc).replace(url, redact(url))}") from None


def columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """(name, type) of every column of a table or query."""
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def checksum_sql(relation: str, cols: list[tuple[str, str]]) -> str:
    """Rows and an order-independent checksum (sum of row hashes; geometries as WKB) of ``relation``."""
    parts = [f"ST_AsWKB({_q(n)})" if t.startswith("GEOMETRY") else _q(n) for n, t in cols]
    return f"SELECT count(*), coalesce(sum(hash({', '.join(parts)})::HUGEINT), 0)::VARCHAR FROM {relation}"


def _lit(text: str) -> str:
    return text.replace("'", "''")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def occupied_tables(con: duckdb.DuckDBPyConnection, alias: str, tables: list[str]) -> list[str]:
    """The tables of the target that hold rows."""
    return [t for t in tables
            if con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {alias}.main.{t} LIMIT 1)").fetchone()[0]]


def copy_tables(
    con: duckdb.DuckDBPyConnection, sources: dict[str, str], dst: str, *, replace: bool,
    expected: dict[str, tuple[int, str]] | None = None,
) -> list[TableCheck]:
    """Copy ``{table: source relation}`` into catalog ``dst`` in one transaction, verified before commit.

    ``expected`` gives (rows, checksum) per table to verify against (a backup's manifest); otherwise they
    are computed on the source. Raises StoreError (and rolls back) on any mismatch.
    """
    tables = list(sources)
    occupied = occupied_tables(con, dst, tables)
    if occupied and not replace:
        raise StoreError(f"the target store is not empty (rows in {', '.join(occupied)}); "
                         "pass --replace to overwrite it")
    checks: list[TableCheck] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for table, relation in sources.items():
            src_cols = columns(con, relation)
            dst_names = {n for n, _ in columns(con, f"{dst}.main.{table}")}
            missing = [n for n, _ in src_cols if n not in dst_names]
            if missing:
                raise StoreError(f"target table {table} lacks columns {missing}: migrate its schema first")
            names = ", ".join(_q(n) for n, _ in src_cols)
            if replace:
                con.execute(f"DELETE FROM {dst}.main.{table}")
            con.execute(f"INSERT INTO {dst}.main.{table} ({names}) SELECT {names} FROM {relation}")
            rows, digest = expected[table] if expected else con.execute(checksum_sql(relation, src_cols)).fetchone()
            t_rows, t_digest = con.execute(checksum_sql(f"{dst}.main.{table}", src_cols)).fetchone()
            checks.append(TableCheck(table, int(rows), str(digest), int(t_rows), str(t_digest)))
        bad = [c for c in checks if not c.ok]
        if bad:
            raise StoreError("copy verification failed, nothing was stored: " + ", ".join(
                f"{c.table} rows {c.rows}→{c.target_rows} checksum {c.checksum}→{c.target_checksum}" for c in bad))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return checks


def advance_sequences(con: duckdb.DuckDBPyConnection, dst_url: str, dst: str) -> None:
    """Move the target's id sequences past every copied id, so new rows never collide."""
    for seq, uses in SEQUENCE_COLUMNS.items():
        top = max(
            (con.execute(f"SELECT coalesce(max({c}), 0) FROM {dst}.main.{t}").fetchone()[0] for t, c in uses), default=0
        )
        if not top:
            continue
        if backend_of(dst_url) == "postgis":
            with pg_connect(dst_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT setval(%s, greatest(%s, (SELECT last_value FROM " + seq + ")))", [seq, int(top)]
                )
            continue
        last = con.execute(
            "SELECT last_value FROM duckdb_sequences() WHERE database_name = ? AND sequence_name = ?", [dst, seq]
        ).fetchone()
        need = int(top) - int(last[0] if last and last[0] is not None else 0)
        if need > 0:
            con.execute(f"SELECT max(nextval('{dst}.main.{seq}')) FROM range({need})")


def storage_srid_check(con: duckdb.DuckDBPyConnection, src_relation: str, dst_url: str) -> None:
    """Refuse moving datasets stored in another CRS than a PostGIS target's SRID (their SRID would be wrong)."""
    if backend_of(dst_url) != "postgis":
        return
    with pg_connect(dst_url) as conn:
        row = conn.execute("SELECT value FROM schema_info WHERE key = 'srid'").fetchone()
    srid = int(row[0]) if row else None
    crs = [r[0] for r in con.execute(f"SELECT DISTINCT storage_crs FROM {src_relation}").fetchall()]
    other = [c for c in crs if srid is None or srid_of(c) != srid]
    if other:
        raise StoreError(f"datasets stored in {other} cannot go into a PostGIS store with SRID {srid}")


def migrate_store(src_url: str, dst_url: str, *, replace: bool = False) -> MoveReport:
    """Copy every table of the store at ``src_url`` into the store at ``dst_url``, verified (see module doc)."""
    from cim.store import open_store

    if backend_of(src_url) == backend_of(dst_url) and _same(src_url, dst_url):
        raise InvalidInputError("source and target are the same store")
    con = connect(":memory:")
    attach(con, src_url, "src", read_only=True)
    src_schema = "src.main"
    created = backend_of(dst_url) == "duckdb" and not Path(duckdb_path(dst_url)).exists()
    try:
        open_store(dst_url).close()  # creates or migrates the target's schema
        attach(con, dst_url, "dst", read_only=False)
        present = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src' AND schema_name = 'main'").fetchall()}
        tables = [t for t in STORE_TABLES if t not in META_TABLES and t in present]
        if "datasets" in tables:
            storage_srid_check(con, f"{src_schema}.datasets", dst_url)
        checks = copy_tables(con, {t: f"{src_schema}.{t}" for t in tables}, "dst", replace=replace)
        advance_sequences(con, dst_url, "dst")
    except BaseException:
        con.close()
        if created:
            for suffix in ("", ".wal"):
                Path(duckdb_path(dst_url) + suffix).unlink(missing_ok=True)
        raise
    con.close()
    return MoveReport(redact(src_url), redact(dst_url), checks)


def _same(a: str, b: str) -> bool:
    if backend_of(a) == "duckdb":
        return Path(duckdb_path(a)).resolve() == Path(duckdb_path(b)).resolve()
    return a == b


def report_dict(report: MoveReport) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {"source": report.source, "target": report.target, "rows": report.rows,
            "tables": {c.table: {"rows": c.rows, "checksum": c.checksum, "target_rows": c.target_rows,
                                 "target_checksum": c.target_checksum, "ok": c.ok} for c in report.tables}}



def inspect_store(url: str) -> dict[str, Any]:
    """Read-only facts about a store: backend, schema version (and, on PostGIS, whether the schema is
    current), rows and checksum per table, so two sites or a replica can be compared table by table."""
    con = connect(":memory:")
    try:
        attach(con, url, "src", read_only=True)
        prefix = "src.main"
        present = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src' AND schema_name = 'main'").fetchall()}
        if "schema_info" not in present:
            raise StoreError(f"{redact(url)} holds no CIM store (no schema_info table)")
        info = dict(con.execute(f"SELECT key, value FROM {prefix}.schema_info").fetchall())
        out: dict[str, Any] = {"store": redact(url), "backend": backend_of(url),
                               "schema_version": info.get("schema_version"),
                               "missing_tables": [t for t in STORE_TABLES if t not in present], "tables": {}}
        if backend_of(url) == "postgis":
            from cim.store.postgis import schema_digest

            out["srid"] = int(info["srid"]) if info.get("srid") else None
            out["schema_current"] = out["srid"] is not None and info.get("ddl_digest") == schema_digest(out["srid"])
        con.execute("BEGIN TRANSACTION")
        for table in STORE_TABLES:
            if table in present and table not in META_TABLES:
                relation = f"{prefix}.{table}"
                rows, digest = con.execute(checksum_sql(relation, columns(con, relation))).fetchone()
                out["tables"][table] = {"rows": int(rows), "checksum": str(digest)}
        con.execute("COMMIT")
        return out
    finally:
        con.close()
