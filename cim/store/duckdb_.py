"""DuckDBStore: the embedded default store (a file or ``:memory:``), spatial extension loaded offline.

One connection writes; every write is one transaction, so a refused or failed ingest leaves the
store exactly as it was.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cim.bim.schema import BIM_DDL, BIM_INDEXES
from cim.errors import InvalidInputError, NotFoundError, StoreError
from cim.linkage.schema import LINKAGE_DDL
from cim.security.schema import SECURITY_DDL
from cim.store import schema
from cim.store.spatial import connect, quiet

GRADES = ("核心", "重要", "一般")
#: Order-independent checksum of a dataset's current rows (recorded per version; ``cim doctor`` compares it).
CHECKSUM_SQL = ("SELECT coalesce(bit_xor(hash(row_hash)), 0) FROM {table} "
                "WHERE dataset_id = ? AND version_to IS NULL")


@dataclass
class DatasetInfo:
    """Catalogue entry of a dataset, as given at ingest."""

    id: str
    title: str
    kind: str
    storage_crs: str
    source_crs: str | None = None
    vertical_crs: str | None = "EPSG:5737"
    category: str | None = "时空基础数据"
    grade: str = "重要"
    secret: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse ids and grades the catalogue cannot hold."""
        if not self.id or any(c in self.id for c in "/\\ \t\n?#"):
            raise InvalidInputError(f"dataset id {self.id!r} must be non-empty without spaces, slashes, ? or #")
        if self.grade not in GRADES:
            raise InvalidInputError(f"data grade {self.grade!r} is not one of {GRADES} (GB/T 43697-2024)")


@dataclass(frozen=True)
class VersionInfo:
    """What one ingest did to a dataset."""

    dataset_id: str
    version: int
    counts: dict[str, dict[str, int]]


_HASHED_POINT = [c for c in schema.POINT_COLUMNS if c not in ("feature_id", "source_file", "source_row", "qc_flags")]
_HASHED_SEGMENT = [
    c for c in schema.SEGMENT_COLUMNS if c not in ("feature_id", "source_file", "source_row", "qc_flags")
]


class DuckDBStore:
    """The spatial store on DuckDB + spatial.

    Example::

        store = DuckDBStore(":memory:")
        store.datasets()  # -> []
    """

    backend = "duckdb"

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        crashed = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            crashed = Path(self.path + ".wal").exists()  # left by a process that died before its checkpoint
        try:
            self._con = connect(self.path)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open store {self.path}: {_lock_hint(exc)}") from None
        self._lock = threading.RLock()
        self._init_schema()
        if crashed:
            self._rebuild_rtree_indexes()

    def _rebuild_rtree_indexes(self) -> None:
        """After a crash: rebuild the R-tree indexes replayed from the WAL, then checkpoint.

        DuckDB 1.5.5 + spatial: an R-tree index replayed from the WAL of a process killed between COMMIT and
        checkpoint fails every query on its table, and the next checkpoint corrupts the file. Rebuilding the
        indexes from their definitions (the rows themselves replay correctly) and checkpointing avoids both;
        the kill campaign (``benchmarks/kill_campaign.py``) found it and checks it.
        """
        with self._lock:
            rows = self._con.execute(
                "SELECT index_name, sql FROM duckdb_indexes() WHERE sql ILIKE '%USING RTREE%'").fetchall()
            for name, sql in rows:
                self._con.execute(f'DROP INDEX "{name}"')
                self._con.execute(sql)
            self._con.execute("CHECKPOINT")

    # -- plumbing -------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        with self.transaction() as con:
            for ddl in (*schema.DDL, *BIM_DDL, *SECURITY_DDL, *LINKAGE_DDL):
                con.execute(ddl)
            for ddl in (*schema.INDEXES, *BIM_INDEXES):
                con.execute(ddl)
            con.execute(
                "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [schema.SCHEMA_VERSION]
            )

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            else:
                try:
                    self._con.execute("COMMIT")
                except duckdb.Error as exc:  # a full disk, a read-only file: the transaction is rolled back
                    raise StoreError(f"cannot write to store {self.path}: {exc}") from None

    def read(self) -> duckdb.DuckDBPyConnection:
        """A cursor for read queries (shares the database, own transaction state)."""
        return quiet(self._con.cursor())

    def close(self) -> None:
        """Close the store (checkpointing a file store)."""
        self._con.close()

    # -- catalogue ------------------------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset's catalogue entry."""
        return self._dicts("SELECT * FROM datasets ORDER BY id")

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        """One dataset's catalogue entry; raises NotFoundError."""
        rows = self._dicts("SELECT * FROM datasets WHERE id = ?", [dataset_id])
        if not rows:
            raise NotFoundError(f"dataset {dataset_id!r} does not exist")
        return rows[0]

    def versions(self, dataset_id: str) -> list[dict[str, Any]]:
        """The recorded versions of a dataset, oldest first."""
        return self._dicts(
            "SELECT * FROM dataset_versions WHERE dataset_id = ? ORDER BY version", [dataset_id]
        )

    def count(self, table: str, dataset_id: str | None = None, *, current: bool = True) -> int:
        """Rows in a feature table (current version only by default)."""
        if table not in ("pipe_points", "pipe_segments", "features"):
            raise InvalidInputError(f"unknown table {table!r}")
        where = ["version_to IS NULL"] if current else []
        params: list[Any] = []
        if dataset_id:
            where.append("dataset_id = ?")
            params.append(dataset_id)
        sql = f"SELECT count(*) FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.read().execute(sql, params).fetchone()[0])

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.read().execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- pipe network ---------------------------------------------------------------------------
    def write_pipe_network(
        self,
        info: DatasetInfo,
        points: pa.Table,
        segments: pa.Table,
        *,
        findings: pa.Table | None = None,
        nodes: pa.Table | None = None,
        edges: pa.Table | None = None,
        sources: list[dict[str, Any]] | None = None,
        qc_summary: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> VersionInfo:
        """Write one ingest of a pipe dataset as a new version, in one transaction.

        ``points`` carries :data:`schema.POINT_COLUMNS` and ``segments`` :data:`schema.SEGMENT_COLUMNS`
        (x1, y1, x2, y2 are the segment ends in the storage CRS). Rows whose content is unchanged keep
        their version; changed and removed rows are closed (``version_to``) and new content is added.
        """
        info.validate()
        _require(points, schema.POINT_COLUMNS, "points")
        _require(segments, schema.SEGMENT_COLUMNS, "segments")
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.transaction() as con:
            row = con.execute("SELECT current_version FROM datasets WHERE id = ?", [info.id]).fetchone()
            version = (row[0] if row else 0) + 1
            con.register("_new_points", rechunk(points))
            con.register("_new_segments", rechunk(segments))
            try:
                counts = {
                    "pipe_points": self._merge(con, "pipe_points", "_new_points", info.id, version, "point"),
                    "pipe_segments": self._merge(con, "pipe_segments", "_new_segments", info.id, version, "segment"),
                }
                self._write_aux(con, info.id, version, findings, nodes, edges)
                ext = con.execute(
                    """SELECT min(x), min(y), min(z), max(x), max(y), max(z) FROM (
                         SELECT x, y, ground_h AS z FROM _new_points
                         UNION ALL SELECT x1, y1, start_z FROM _new_segments
                         UNION ALL SELECT x2, y2, end_z FROM _new_segments)"""
                ).fetchone()
            finally:
                con.unregister("_new_points")
                con.unregister("_new_segments")
            self._upsert_dataset(con, info, version, now, ext)
            counts["checksum"] = {
                table: f"{int(con.execute(CHECKSUM_SQL.format(table=table), [info.id]).fetchone()[0]):016x}"
                for table in ("pipe_points", "pipe_segments")}
            con.execute(
                "INSERT INTO dataset_versions VALUES (?, ?, ?, 'ingest', ?, ?, ?, ?)",
                [info.id, version, now, json.dumps(sources or [], ensure_ascii=False),
                 json.dumps(counts), json.dumps(qc_summary or {}, ensure_ascii=False), note],
            )
        return VersionInfo(info.id, version, counts)

    def write_asset(
        self,
        info: DatasetInfo,
        *,
        extent: tuple[float | None, ...],
        sources: list[dict[str, Any]] | None = None,
        counts: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> VersionInfo:
        """Record one ingest of a file-based dataset (point cloud, raster, mesh, tileset) as a new version.

        The data stay in files (``info.metadata`` says where); the store keeps the catalogue entry, its
        ``extent`` (minx, miny, minz, maxx, maxy, maxz in ``info.storage_crs``, NULLs where unknown) and a
        version row, written in one transaction.
        """
        info.validate()
        if len(extent) != 6:
            raise InvalidInputError("an asset extent has six values: minx, miny, minz, maxx, maxy, maxz")
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.transaction() as con:
            row = con.execute("SELECT current_version FROM datasets WHERE id = ?", [info.id]).fetchone()
            version = (row[0] if row else 0) + 1
            self._upsert_dataset(con, info, version, now, tuple(extent))
            con.execute(
                "INSERT INTO dataset_versions VALUES (?, ?, ?, 'ingest', ?, ?, ?, ?)",
                [info.id, version, now, json.dumps(sources or [], ensure_ascii=False),
                 json.dumps(counts or {}, ensure_ascii=False), json.dumps({}), note],
            )
        return VersionInfo(info.id, version, counts or {})

    def _merge(
        self, con: duckdb.DuckDBPyConnection, table: str, new: str, dataset_id: str, version: int, kind: str
    ) -> dict[str, int]:
        """Close changed/removed current rows, insert new content; unchanged rows keep their version."""
        columns, hashed, geom = (
            (schema.POINT_COLUMNS, _HASHED_POINT, _POINT_GEOM) if kind == "point"
            else ([c for c in schema.SEGMENT_COLUMNS if c not in ("x1", "y1", "x2", "y2")], _HASHED_SEGMENT, _SEGMENT_GEOM)
        )
        col_list = ", ".join(columns)
        values = ", ".join(f"n.{c}" for c in columns)
        total = con.execute(f"SELECT count(*) FROM {new}").fetchone()[0]
        has_current = con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE dataset_id = ? AND version_to IS NULL LIMIT 1)",
            [dataset_id],
        ).fetchone()[0]
        if not has_current:  # first version (or all rows deleted before): plain bulk insert
            con.execute(
                f"""INSERT INTO {table} (dataset_id, version_from, {col_list}, geom, row_hash)
                    SELECT ?, ?, {values}, {geom}, {_hash_expr(hashed)} FROM {new} n""",
                [dataset_id, version],
            )
            return {"added": int(total), "modified": 0, "deleted": 0, "unchanged": 0, "total": int(total)}
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT n.feature_id, {_hash_expr(hashed)} AS row_hash FROM {new} n"
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _closing AS
                SELECT t.fid, t.feature_id FROM {table} t
                ANTI JOIN _keys k ON k.feature_id = t.feature_id AND k.row_hash = t.row_hash
                WHERE t.dataset_id = ? AND t.version_to IS NULL""",
            [dataset_id],
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _adding AS
                SELECT k.* FROM _keys k
                ANTI JOIN (SELECT feature_id, row_hash FROM {table} WHERE dataset_id = ? AND version_to IS NULL) t
                  ON k.feature_id = t.feature_id AND k.row_hash = t.row_hash""",
            [dataset_id],
        )
        con.execute(f"UPDATE {table} SET version_to = ? WHERE fid IN (SELECT fid FROM _closing)", [version])
        con.execute(
            f"""INSERT INTO {table} (dataset_id, version_from, {col_list}, geom, row_hash)
                SELECT ?, ?, {values}, {geom}, a.row_hash FROM {new} n JOIN _adding a ON a.feature_id = n.feature_id""",
            [dataset_id, version],
        )
        added, modified, deleted = con.execute(
            """SELECT
                 (SELECT count(*) FROM _adding a ANTI JOIN _closing c ON c.feature_id = a.feature_id),
                 (SELECT count(*) FROM _adding a SEMI JOIN _closing c ON c.feature_id = a.feature_id),
                 (SELECT count(*) FROM _closing c ANTI JOIN _adding a ON a.feature_id = c.feature_id)"""
        ).fetchone()
        for tmp in ("_keys", "_closing", "_adding"):
            con.execute(f"DROP TABLE {tmp}")
        return {
            "added": int(added), "modified": int(modified), "deleted": int(deleted),
            "unchanged": int(total - added - modified), "total": int(total),
        }

    def _write_aux(
        self,
        con: duckdb.DuckDBPyConnection,
        dataset_id: str,
        version: int,
        findings: pa.Table | None,
        nodes: pa.Table | None,
        edges: pa.Table | None,
    ) -> None:
        con.execute("DELETE FROM network_nodes WHERE dataset_id = ?", [dataset_id])
        con.execute("DELETE FROM network_edges WHERE dataset_id = ?", [dataset_id])
        for table, data, cols in (
            ("qc_findings", findings,
             "rule_id, severity, file, row, feature_id, field, value, message, category, layer"),
            ("network_nodes", nodes, "node, point_id, category, degree, component"),
            ("network_edges", edges, "edge, feature_id, category, from_node, to_node, component"),
        ):
            if data is None or data.num_rows == 0:
                continue
            con.register("_aux", rechunk(data))
            try:
                con.execute(
                    f"INSERT INTO {table} (dataset_id, version, {cols}) SELECT ?, ?, {cols} FROM _aux",
                    [dataset_id, version],
                )
            finally:
                con.unregister("_aux")

    def _upsert_dataset(
        self, con: duckdb.DuckDBPyConnection, info: DatasetInfo, version: int, now: datetime, ext: tuple
    ) -> None:
        values = [
            info.title, info.kind, info.category, info.source_crs, info.storage_crs, info.vertical_crs,
            info.grade, info.secret, json.dumps(info.provenance, ensure_ascii=False),
            json.dumps(info.metadata, ensure_ascii=False), version, now, *ext,
        ]
        exists = con.execute("SELECT 1 FROM datasets WHERE id = ?", [info.id]).fetchone()
        if exists:
            con.execute(
                """UPDATE datasets SET title=?, kind=?, category=?, source_crs=?, storage_crs=?, vertical_crs=?,
                   grade=?, secret=?, provenance=?, metadata=?, current_version=?, updated_at=?,
                   minx=?, miny=?, minz=?, maxx=?, maxy=?, maxz=? WHERE id=?""",
                [*values, info.id],
            )
        else:
            con.execute(
                """INSERT INTO datasets (title, kind, category, source_crs, storage_crs, vertical_crs, grade, secret,
                   provenance, metadata, current_version, updated_at, minx, miny, minz, maxx, maxy, maxz,
                   id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                [*values, info.id, now],
            )


def _lock_hint(exc: Exception) -> str:
    """DuckDB's lock error, with what it means for the user first."""
    text = str(exc)
    if "lock" in text.lower():
        return "another process has it open for writing (a running service or ingest; DuckDB allows one " \
               f"writing process per store file — stop it, or send the work to that service) ({text})"
    return text


def json_value(value: Any) -> Any:
    """A JSON column's value as Python (DuckDB hands JSON columns out as text); other text is returned as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def rechunk(table: pa.Table, rows: int = 122_880) -> pa.Table:
    """The same table in batches of at most ``rows`` (zero-copy), so DuckDB scans it on every core."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), schema=table.schema)


def _require(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise StoreError(f"{what} table lacks columns {missing}")


def _hash_expr(columns: Sequence[str]) -> str:
    return "CAST(hash(" + ", ".join(f"n.{c}" for c in columns) + ") AS VARCHAR)"


_POINT_GEOM = "ST_Point3D(n.x, n.y, coalesce(n.ground_h, 0))::GEOMETRY"
_SEGMENT_GEOM = (
    "ST_MakeLine(ST_Point3D(n.x1, n.y1, coalesce(n.start_z, 0)), ST_Point3D(n.x2, n.y2, coalesce(n.end_z, 0)))::GEOMETRY"
)
