"""Backup and restore of a store on either backend: one Parquet file per table plus a manifest.

A backup is read in one transaction (a consistent snapshot) and published atomically (written to a
temporary folder, then renamed). The manifest records rows and the order-independent checksum of every
table; a restore copies the files in one target transaction and commits only if every table matches, so
a backup made from DuckDB restores into PostGIS and back. For PostgreSQL-level physical backups and
replicas (pg_basebackup, WAL archiving, streaming replication) see docs/deployment.md.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim.errors import InvalidInputError, StoreError
from cim.store import schema
from cim.store.migrate import (
    META_TABLES,
    STORE_TABLES,
    MoveReport,
    advance_sequences,
    attach,
    backend_of,
    checksum_sql,
    columns,
    copy_tables,
    duckdb_path,
    redact,
)
from cim.store.spatial import connect

FORMAT = "cim-store-backup"


def backup_store(url: str, out_dir: str | Path) -> dict[str, Any]:
    """Write a backup of the store at ``url`` into the new folder ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    if out.exists():
        raise StoreError(f"backup folder {out} exists: choose a new folder")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = connect(":memory:")
    try:
        attach(con, url, "src", read_only=True)
        prefix = "src.main"
        present = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src' AND schema_name = 'main'").fetchall()}
        tables: dict[str, Any] = {}
        con.execute("BEGIN TRANSACTION")
        for table in STORE_TABLES:
            if table in META_TABLES or table not in present:
                continue
            relation = f"{prefix}.{table}"
            target = tmp / f"{table}.parquet"
            con.execute(f"COPY (SELECT * FROM {relation}) TO '{_lit(str(target))}' (FORMAT parquet, COMPRESSION zstd)")
            rows, digest = con.execute(checksum_sql(relation, columns(con, relation))).fetchone()
            tables[table] = {"file": target.name, "rows": int(rows), "checksum": str(digest)}
        version = con.execute(f"SELECT value FROM {prefix}.schema_info WHERE key = 'schema_version'").fetchone()
        con.execute("COMMIT")
        manifest = {"format": FORMAT, "format_version": 1, "source": redact(url), "backend": backend_of(url),
                    "schema_version": version[0] if version else schema.SCHEMA_VERSION,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "tables": tables}
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    return manifest


def read_manifest(backup_dir: str | Path) -> dict[str, Any]:
    """A backup's manifest, checked for format and the presence of every file."""
    folder = Path(backup_dir)
    path = folder / "manifest.json"
    if not path.is_file():
        raise InvalidInputError(f"{folder} is not a store backup (no manifest.json)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not a {FORMAT} manifest")
    missing = [t["file"] for t in manifest["tables"].values() if not (folder / t["file"]).is_file()]
    if missing:
        raise InvalidInputError(f"backup {folder} lacks files {missing}")
    return manifest


def restore_store(backup_dir: str | Path, url: str, *, replace: bool = False) -> MoveReport:
    """Restore a backup into the store at ``url`` (refusing a non-empty target unless ``replace``)."""
    from cim.store import open_store

    folder = Path(backup_dir)
    manifest = read_manifest(folder)
    created = backend_of(url) == "duckdb" and not Path(duckdb_path(url)).exists()
    con = connect(":memory:")
    try:
        open_store(url).close()
        attach(con, url, "dst", read_only=False)
        tables = {t: f"read_parquet('{_lit(str(folder / m['file']))}')" for t, m in manifest["tables"].items()
                  if t in STORE_TABLES}
        expected = {t: (m["rows"], m["checksum"]) for t, m in manifest["tables"].items() if t in tables}
        checks = copy_tables(con, tables, "dst", replace=replace, expected=expected)
        advance_sequences(con, url, "dst")
    except BaseException:
        con.close()
        if created:
            for suffix in ("", ".wal"):
                Path(duckdb_path(url) + suffix).unlink(missing_ok=True)
        raise
    con.close()
    return MoveReport(str(folder), redact(url), checks)


def _lit(text: str) -> str:
    return text.replace("'", "''")

