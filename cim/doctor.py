"""Integrity check of a store and of 3D Tiles output folders (``cim doctor``).

What a crash, a full disk or a hostile file must never leave behind, checked from the data themselves:

* store: every dataset has its current version row; each version's recorded counts match the rows valid at
  that version; every pipe row's ``row_hash`` matches its content (an order-independent checksum of the
  current rows is reported, and compared with a recorded one where a version carries ``counts["checksum"]``);
  no orphan rows (feature, QC, network, BIM rows of a dataset or version that does not exist, or from a
  version after the current one); BIM models and submissions that point at existing versions and files;
  real-scene assets whose build folder exists, and no unreferenced build folders left over.
* tile folders (read as files only): ``tileset.json`` parses, every content URI stays inside the folder and
  names an existing file with a valid header (GLB, b3dm, i3dm, pnts, cmpt, subtree, external tileset JSON),
  ``manifest.json`` agrees with the tileset, and no unreferenced tile files or temporary files are left.

``fix`` only removes files and folders that nothing references and that are older than ``min_age_s`` (so
a build in progress is never touched); rows are never changed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cim.errors import StoreError
from cim.store.duckdb_ import _HASHED_POINT, _HASHED_SEGMENT, _hash_expr, json_value

#: tables whose rows belong to one version of one dataset (``version`` column), or a version range
VERSIONED_TABLES: tuple[tuple[str, str], ...] = (
    ("qc_findings", "version"), ("network_nodes", "version"), ("network_edges", "version"),
    ("bim_models", "version"), ("bim_spatial", "version"), ("bim_elements", "version"),
)
RANGED_TABLES: tuple[str, ...] = ("pipe_points", "pipe_segments", "features")
REALSCENE_KINDS: tuple[str, ...] = ("pointcloud", "raster", "mesh", "tileset")
TILE_SUFFIXES: tuple[str, ...] = (".glb", ".b3dm", ".i3dm", ".pnts", ".cmpt", ".subtree")
TEMP_MARKERS: tuple[str, ...] = (".tmp", ".part", ".partial")
_MAGIC = {".b3dm": b"b3dm", ".i3dm": b"i3dm", ".pnts": b"pnts", ".cmpt": b"cmpt", ".subtree": b"subt"}


@dataclass(frozen=True)
class Problem:
    """One finding: ``error`` means inconsistent or broken, ``warning`` means harmless leftover or stale."""

    severity: str
    code: str
    where: str
    message: str
    fixable: bool = False
    path: str | None = None


@dataclass
class DoctorReport:
    """Every problem found, what was checked, and what ``fix`` removed."""

    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity ``error`` (inconsistencies)."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when nothing is inconsistent (warnings allowed)."""
        return not self.errors

    def add(self, severity: str, code: str, where: str, message: str, *, path: Path | None = None,
            fixable: bool = False) -> None:
        self.problems.append(Problem(severity, code, where, message, fixable, str(path) if path else None))

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "errors": len(self.errors), "warnings": len(self.problems) - len(self.errors),
                "checked": self.checked, "checksums": self.checksums, "fixed": self.fixed,
                "problems": [asdict(p) for p in self.problems]}


# ---------------------------------------------------------------------------------------------- store


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a store file (spatial loaded); a clear StoreError when it cannot open."""
    from cim.store.spatial import load_spatial

    p = Path(path)
    if not p.is_file():
        raise StoreError(f"store {p} does not exist")
    try:
        con = duckdb.connect(str(p), read_only=True, config={"autoinstall_known_extensions": False,
                                                             "autoload_known_extensions": False})
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {p} read-only (is a writer running?): {exc}") from None
    load_spatial(con)
    return con


def check_store(con: duckdb.DuckDBPyConnection, report: DoctorReport | None = None, *,
                assets_root: Path | None = None, files_root: Path | None = None, fix: bool = False,
                min_age_s: float = 3600.0) -> DoctorReport:
    """Check a store through ``con`` (a connection or cursor); see the module docstring.

    ``assets_root`` is the real-scene assets folder and ``files_root`` the submitted-files store (each
    checked when given).
    """
    report = report or DoctorReport()
    try:
        datasets = _check_rows(con, report, files_root)
    except Exception as exc:  # noqa: BLE001 - DuckDB raises InternalException (not duckdb.Error) on broken state
        report.add("error", "store-unreadable", "store", f"queries fail: {str(exc).splitlines()[0][:200]}")
        return report
    if files_root is not None:
        _leftover_temp(report, files_root / "tmp", "files", fix, min_age_s)
    if assets_root is not None and datasets is not None:
        _check_assets(report, datasets, assets_root, fix, min_age_s)
    return report


def _check_rows(con: Any, report: DoctorReport, files_root: Path | None) -> list[dict[str, Any]] | None:
    """Every check made in SQL; the datasets (None when the store cannot be checked further)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "datasets" not in tables or "dataset_versions" not in tables:
        report.add("error", "not-a-store", "store", "the catalogue tables (datasets, dataset_versions) are missing")
        return None
    if not _check_indexes(con, report):  # first: a broken index fails every later query on its table
        return None
    datasets = _rows(con, "SELECT id, kind, current_version, metadata FROM datasets ORDER BY id")
    report.count("datasets", len(datasets))
    _check_versions(con, report)
    _check_orphans(con, report, tables)
    for d in datasets:
        versions = _rows(con, "SELECT version, counts FROM dataset_versions WHERE dataset_id = ? ORDER BY version",
                         [d["id"]])
        report.count("versions", len(versions))
        if {"pipe_points", "pipe_segments"} <= tables:
            _check_pipe_counts(con, report, d, versions)
        if "bim_models" in tables and d["kind"] == "bim":
            _check_bim(con, report, d, versions)
    if {"pipe_points", "pipe_segments"} <= tables:
        _check_row_hashes(con, report)
    if "bim_submissions" in tables:
        _check_submissions(con, report, tables, files_root)
    return datasets


def _check_indexes(con: Any, report: DoctorReport) -> bool:
    """Query every R-tree index once (False when one fails): after a crash, DuckDB's replay of an R-tree index
    from the WAL can leave it failing every query and insert on its table for the whole session."""
    indexes = con.execute(
        "SELECT index_name, table_name, expressions FROM duckdb_indexes() WHERE sql ILIKE '%USING RTREE%'"
    ).fetchall()
    for name, table, expressions in indexes:
        column = str(expressions).strip("[]'\" ")
        report.count("indexes")
        try:
            con.execute(f"SELECT count(*) FROM {table} WHERE ST_Intersects({column}, "
                        "ST_MakeEnvelope(-1e12, -1e12, 1e12, 1e12))").fetchone()
        except Exception as exc:  # noqa: BLE001 - DuckDB raises InternalException (not duckdb.Error) here
            report.add("error", "index-broken", f"{table}.{name}",
                       f"queries on {table} fail ({str(exc).splitlines()[0][:160]}): rebuild the index "
                       f"(DROP INDEX {name}; CREATE INDEX {name} ON {table} USING RTREE ({column}))")
            return False
    return True


def _rows(con: Any, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _check_versions(con: Any, report: DoctorReport) -> None:
    for did, cur in con.execute(
        """SELECT d.id, d.current_version FROM datasets d
           ANTI JOIN dataset_versions v ON v.dataset_id = d.id AND v.version = d.current_version"""
    ).fetchall():
        report.add("error", "version-missing", did, f"current version {cur} has no dataset_versions row")
    for did, v in con.execute(
        """SELECT v.dataset_id, v.version FROM dataset_versions v LEFT JOIN datasets d ON d.id = v.dataset_id
           WHERE d.id IS NULL OR v.version > d.current_version OR v.version < 1"""
    ).fetchall():
        report.add("error", "orphan-version", did, f"version {v} belongs to no dataset or lies after the current one")


def _check_orphans(con: Any, report: DoctorReport, tables: set[str]) -> None:
    """Rows of a dataset or version that does not exist, or from after the dataset's current version."""
    for table in RANGED_TABLES:
        if table not in tables:
            continue
        n = con.execute(
            f"""SELECT t.dataset_id, count(*) FROM {table} t LEFT JOIN datasets d ON d.id = t.dataset_id
                LEFT JOIN dataset_versions v ON v.dataset_id = t.dataset_id AND v.version = t.version_from
                WHERE d.id IS NULL OR v.version IS NULL OR t.version_from > d.current_version
                   OR t.version_to > d.current_version OR t.version_to <= t.version_from
                GROUP BY ALL"""
        ).fetchall()
        for did, count in n:
            report.add("error", "orphan-rows", did, f"{count} {table} rows of a missing dataset/version or "
                       "from after the current version")
        report.count(f"{table} rows", int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))
    for table, col in VERSIONED_TABLES:
        if table not in tables:
            continue
        for did, count in con.execute(
            f"""SELECT t.dataset_id, count(*) FROM {table} t LEFT JOIN datasets d ON d.id = t.dataset_id
                LEFT JOIN dataset_versions v ON v.dataset_id = t.dataset_id AND v.version = t.{col}
                WHERE d.id IS NULL OR v.version IS NULL GROUP BY ALL"""
        ).fetchall():
            report.add("error", "orphan-rows", did, f"{count} {table} rows of a missing dataset or version")
    if "pipe_valves" in tables:
        for did, count in con.execute(
            "SELECT dataset_id, count(*) FROM pipe_valves ANTI JOIN datasets d ON d.id = dataset_id GROUP BY ALL"
        ).fetchall():
            report.add("error", "orphan-rows", did, f"{count} pipe_valves rows of a missing dataset")


def _check_pipe_counts(con: Any, report: DoctorReport, d: dict[str, Any], versions: list[dict[str, Any]]) -> None:
    """Rows valid at each version = that version's recorded ``total`` (pipe tables)."""
    for v in versions:
        counts = json_value(v["counts"]) or {}
        for table in ("pipe_points", "pipe_segments"):
            recorded = counts.get(table, {}).get("total") if isinstance(counts.get(table), dict) else None
            if recorded is None:
                continue
            found = con.execute(
                f"""SELECT count(*) FROM {table} WHERE dataset_id = ? AND version_from <= ?
                    AND (version_to IS NULL OR version_to > ?)""",
                [d["id"], v["version"], v["version"]],
            ).fetchone()[0]
            report.count("version counts")
            if int(found) != int(recorded):
                report.add("error", "count-mismatch", d["id"],
                           f"version {v['version']}: {found} {table} rows, the version records {recorded}")
    for table in ("pipe_points", "pipe_segments"):
        total, checksum = con.execute(
            f"""SELECT count(*), coalesce(bit_xor(hash(row_hash)), 0) FROM {table}
                WHERE dataset_id = ? AND version_to IS NULL""", [d["id"]]
        ).fetchone()
        if total:
            report.checksums[f"{d['id']}/{table}"] = f"{int(checksum):016x}"
        current = next((v for v in versions if v["version"] == d["current_version"]), None)
        recorded = (json_value(current["counts"]) or {}).get("checksum", {}) if current else {}
        if isinstance(recorded, dict) and table in recorded and str(recorded[table]) != f"{int(checksum):016x}":
            report.add("error", "checksum-mismatch", d["id"],
                       f"{table}: checksum of the current rows {int(checksum):016x} != recorded {recorded[table]}")


def _check_row_hashes(con: Any, report: DoctorReport) -> None:
    """Every pipe row's ``row_hash`` recomputed from its content (a torn or altered row shows here)."""
    segments = ("(SELECT *, ST_X(ST_StartPoint(geom)) AS x1, ST_Y(ST_StartPoint(geom)) AS y1, "
                "ST_X(ST_EndPoint(geom)) AS x2, ST_Y(ST_EndPoint(geom)) AS y2 FROM pipe_segments)")
    for table, source, cols in (("pipe_points", "pipe_points", _HASHED_POINT),
                                ("pipe_segments", segments, _HASHED_SEGMENT)):
        for did, bad in con.execute(
            f"SELECT dataset_id, count(*) FROM {source} n WHERE row_hash IS DISTINCT FROM {_hash_expr(cols)} "
            "GROUP BY ALL"
        ).fetchall():
            report.add("error", "row-hash-mismatch", did, f"{bad} {table} rows whose content does not match "
                       "their row_hash")
        report.count("row hashes", int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))


def _check_bim(con: Any, report: DoctorReport, d: dict[str, Any], versions: list[dict[str, Any]]) -> None:
    models = {r["version"]: r for r in _rows(
        con, "SELECT version, element_count FROM bim_models WHERE dataset_id = ?", [d["id"]])}
    for v in versions:
        model = models.get(v["version"])
        if model is None:
            report.add("error", "bim-model-missing", d["id"], f"version {v['version']} has no bim_models row")
            continue
        n = con.execute("SELECT count(*) FROM bim_elements WHERE dataset_id = ? AND version = ?",
                        [d["id"], v["version"]]).fetchone()[0]
        counts = json_value(v["counts"]) or {}
        recorded = (counts.get("bim_elements") or {}).get("total", model["element_count"])
        report.count("version counts")
        if int(n) != int(model["element_count"] or 0) or int(n) != int(recorded):
            report.add("error", "count-mismatch", d["id"],
                       f"version {v['version']}: {n} bim_elements rows, the version records {recorded} "
                       f"(model: {model['element_count']})")


def _check_submissions(con: Any, report: DoctorReport, tables: set[str], files_root: Path | None) -> None:
    subs = _rows(con, """SELECT s.id, s.dataset_id, s.version, s.status, s.file_sha256, v.version AS found
                         FROM bim_submissions s LEFT JOIN dataset_versions v
                         ON v.dataset_id = s.dataset_id AND v.version = s.version""")
    report.count("submissions", len(subs))
    for s in subs:
        if s["found"] is None:
            report.add("error", "orphan-submission", s["id"],
                       f"submission points at {s['dataset_id']} version {s['version']}, which does not exist")
        if s["status"] == "submitted":
            report.add("warning", "submission-unchecked", s["id"],
                       f"submission was stored but never checked (interrupted?): run `cim bim check {s['id']}`")
        sha = str(s["file_sha256"] or "")
        if files_root is not None and not (files_root / sha[:2] / sha).is_file():
            report.add("error", "file-missing", s["id"], f"the submitted file {sha} is not in {files_root}")
    for table in ("bim_check_findings", "bim_review_events"):
        if table in tables:
            for (count,) in con.execute(
                f"SELECT count(*) FROM {table} t ANTI JOIN bim_submissions s ON s.id = t.submission_id"
            ).fetchall():
                if count:
                    report.add("error", "orphan-rows", table, f"{count} {table} rows of a missing submission")


def _check_assets(report: DoctorReport, datasets: list[dict[str, Any]], root: Path, fix: bool,
                  min_age_s: float) -> None:
    """Real-scene assets: the current build folder exists (and its tileset is sound); leftovers reported."""
    current: dict[str, str] = {}
    for d in datasets:
        if d["kind"] not in REALSCENE_KINDS:
            continue
        meta = json_value(d["metadata"]) or {}
        build = str(meta.get("build") or "")
        folder = root / d["id"] / build
        report.count("assets")
        if not build or not folder.is_dir():
            report.add("error", "asset-missing", d["id"], f"the build folder {folder} of the current version is "
                       "missing", path=folder)
            continue
        current[d["id"]] = build
        tileset = meta.get("tileset")
        if isinstance(tileset, str) and tileset:
            check_tiles(folder, report, tileset_name=tileset, leftovers=False)
    if not root.is_dir():
        return
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for build_dir in sorted(p for p in ds_dir.iterdir() if p.is_dir()):
            if current.get(ds_dir.name) == build_dir.name:
                continue
            _leftover(report, build_dir, "assets", "unreferenced build folder (an interrupted or superseded "
                      "conversion)", fix, min_age_s)


# ---------------------------------------------------------------------------------------------- tiles


def check_tiles(folder: str | Path, report: DoctorReport | None = None, *, tileset_name: str = "tileset.json",
                fix: bool = False, min_age_s: float = 3600.0, leftovers: bool = True) -> DoctorReport:
    """Check one tile output folder (see the module docstring).

    ``leftovers`` also reports (and under ``fix`` removes) tile and temporary files the tileset does not
    reference; off for folders that may hold other files by design (a real-scene build).
    """
    report = report or DoctorReport()
    folder = Path(folder)
    where = str(folder)
    report.count("tile folders")
    root_json = folder / tileset_name
    if not root_json.is_file():
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            report.add("warning", "not-published", where, f"no {tileset_name}: an unfinished first build, "
                       "nothing is served from here")
        elif not folder.is_dir():
            report.add("error", "missing", where, "the tile folder does not exist")
        return report
    referenced: set[Path] = set()
    _walk_tileset(root_json, folder, report, referenced, depth=0)
    _check_manifest(folder, report, referenced)
    if leftovers:
        _unreferenced_files(folder, report, referenced | {root_json.resolve()}, fix, min_age_s)
    return report


def _walk_tileset(path: Path, top: Path, report: DoctorReport, referenced: set[Path], depth: int) -> None:
    where = str(path)
    if depth > 16:
        report.add("error", "tileset-depth", where, "external tilesets nest deeper than 16 levels (a cycle?)")
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report.add("error", "tileset-invalid", where, f"does not parse as JSON: {exc}")
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("root"), dict) or "asset" not in doc:
        report.add("error", "tileset-invalid", where, "not a 3D Tiles tileset (asset and root required)")
        return
    for tile in _tiles(doc["root"]):
        report.count("tiles")
        if "boundingVolume" not in tile or not isinstance(tile.get("geometricError", 0), int | float):
            report.add("error", "tile-invalid", where, "a tile lacks a boundingVolume or a numeric geometricError")
        contents = [tile["content"]] if isinstance(tile.get("content"), dict) else []
        contents += [c for c in tile.get("contents", []) if isinstance(c, dict)]
        implicit = tile.get("implicitTiling")
        if isinstance(implicit, dict):
            subtrees = (implicit.get("subtrees") or {}).get("uri")
            contents = contents + ([{"uri": subtrees}] if isinstance(subtrees, str) else [])
        for content in contents:
            uri = str(content.get("uri") or content.get("url") or "")
            if "{" in uri:  # an implicit tiling template: every file it matches must be sound
                _check_template(path, top, uri, report, referenced)
                continue
            target = _resolve(path.parent, uri, top)
            if target is None:
                report.add("error", "uri-outside", where, f"content URI {uri!r} is absolute or leaves the folder")
                continue
            if target in referenced:
                continue
            referenced.add(target)
            report.count("tile files")
            if not target.is_file():
                report.add("error", "content-missing", where, f"content {uri!r} does not exist", path=target)
            elif target.suffix.lower() == ".json":
                _walk_tileset(target, top, report, referenced, depth + 1)
            else:
                problem = content_problem(target)
                if problem:
                    report.add("error", "content-invalid", str(target), problem, path=target)


def _check_template(path: Path, top: Path, uri: str, report: DoctorReport, referenced: set[Path]) -> None:
    pattern = re.sub(r"\{[a-z]+\}", "*", uri)
    if _resolve(path.parent, pattern.replace("*", "0"), top) is None:
        report.add("error", "uri-outside", str(path), f"template URI {uri!r} is absolute or leaves the folder")
        return
    matched = sorted(path.parent.glob(pattern))
    if not matched:
        report.add("warning", "template-empty", str(path), f"no file matches the template {uri!r}")
    for target in matched:
        referenced.add(target.resolve())
        report.count("tile files")
        problem = content_problem(target)
        if problem:
            report.add("error", "content-invalid", str(target), problem, path=target)


def _tiles(root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = [root]
    while stack:
        tile = stack.pop()
        yield tile
        stack.extend(c for c in tile.get("children", []) or [] if isinstance(c, dict))


def _resolve(base: Path, uri: str, top: Path) -> Path | None:
    if not uri or "://" in uri or uri.startswith(("/", "\\")) or ":" in uri.split("/")[0]:
        return None
    target = (base / uri.split("?")[0].split("#")[0]).resolve()
    return target if target.is_relative_to(top.resolve()) else None


def content_problem(path: Path) -> str | None:
    """Why a tile content file is not valid (header, declared length, GLB JSON chunk); None when it is."""
    try:
        with path.open("rb") as f:
            head = f.read(28)
            size = path.stat().st_size
            suffix = path.suffix.lower()
            if suffix == ".glb":
                if len(head) < 20:
                    return "too short for a GLB"
                magic, version, length = struct.unpack_from("<4sII", head, 0)
                if magic != b"glTF" or version != 2:
                    return f"not a glTF 2.0 binary (magic {magic!r}, version {version})"
                if length != size:
                    return f"GLB declares {length} bytes, the file has {size} (truncated?)"
                json_len, kind = struct.unpack_from("<II", head, 12)
                if kind != 0x4E4F534A or 20 + json_len > size:
                    return "the first GLB chunk is not a complete JSON chunk"
                f.seek(20)
                json.loads(f.read(json_len).decode("utf-8"))
                return None
            if suffix in _MAGIC:
                if head[:4] != _MAGIC[suffix]:
                    return f"wrong magic {head[:4]!r} for {suffix}"
                if suffix != ".subtree" and (len(head) < 12 or struct.unpack_from("<I", head, 8)[0] != size):
                    return f"{suffix} header length does not match the file size {size} (truncated?)"
            return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"unreadable: {exc}"


def _check_manifest(folder: Path, report: DoctorReport, referenced: set[Path]) -> None:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        keys = set((doc.get("tiles") or {}).keys())
    except (OSError, ValueError, AttributeError) as exc:
        report.add("warning", "manifest-invalid", str(manifest), f"unreadable (the next build rebuilds all): {exc}")
        return
    listed = {(folder / "tiles" / f"{k}.glb").resolve() for k in keys}
    tiles_dir = (folder / "tiles").resolve()
    served = {p for p in referenced if p.parent == tiles_dir and p.suffix == ".glb"}
    if listed != served:
        report.add("warning", "manifest-stale", str(manifest),
                   f"manifest lists {len(listed)} tiles, the tileset serves {len(served)} "
                   f"({len(listed - served)} not served, {len(served - listed)} not listed): the next build "
                   "rewrites them")


def _unreferenced_files(folder: Path, report: DoctorReport, referenced: set[Path], fix: bool,
                        min_age_s: float) -> None:
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == "manifest.json" and p.parent == folder:
            continue
        temp = any(m in p.name for m in TEMP_MARKERS)
        if temp or (p.suffix.lower() in TILE_SUFFIXES and p.resolve() not in referenced):
            _leftover(report, p, str(folder), "temporary file left by an interrupted write" if temp
                      else "tile file the tileset does not reference", fix, min_age_s)


def _leftover_temp(report: DoctorReport, folder: Path, where: str, fix: bool, min_age_s: float) -> None:
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            _leftover(report, p, where, "temporary upload left by an interrupted store", fix, min_age_s)


def _leftover(report: DoctorReport, path: Path, where: str, what: str, fix: bool, min_age_s: float) -> None:
    """Report an unreferenced file or folder; remove it under ``fix`` when nothing touched it for min_age_s."""
    old = time.time() - _newest_mtime(path) >= min_age_s
    if fix and old:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        report.fixed.append(str(path))
        return
    note = "" if old else f" (modified in the last {min_age_s:g} s: maybe in progress, kept)"
    report.add("warning", "leftover", where, f"{what}: {path}{note}", path=path, fixable=old)


def _newest_mtime(path: Path) -> float:
    try:
        if path.is_dir():
            return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))])
        return path.stat().st_mtime
    except OSError:
        return time.time()


# ---------------------------------------------------------------------------------------------- entry


def store_file(url: str) -> Path | None:
    """The file behind a store URL or path (as :func:`cim.store.open_store` reads it); None for memory."""
    text = url[len("duckdb://"):] if url.startswith("duckdb://") else url
    if url.startswith("duckdb://"):
        text = text[1:] if text.startswith("/") else text
    elif "://" in url:
        raise StoreError(f"cim doctor checks DuckDB stores only, not {url.split('://', 1)[0]!r}")
    return None if not text or text == ":memory:" else Path(text)


def run_doctor(store_url: str | None, tile_dirs: Iterable[str | Path] = (), *, settings: Any = None,
               fix: bool = False, min_age_s: float = 3600.0) -> DoctorReport:
    """Check a store file (read-only, with its assets and submitted files) and tile folders."""
    report = DoctorReport()
    if store_url:
        path = store_file(store_url)
        if path is None:
            raise StoreError("an in-memory store cannot be checked from outside its process")
        con = open_read_only(path)
        try:
            assets = Path(settings.assets_dir) if settings and settings.assets_dir else Path(f"{path}.assets")
            files = Path(settings.files_dir) if settings and settings.files_dir else Path(f"{path}.files")
            check_store(con, report, assets_root=assets, files_root=files if files.is_dir() else None, fix=fix,
                        min_age_s=min_age_s)
        finally:
            con.close()
    for folder in tile_dirs:
        check_tiles(folder, report, fix=fix, min_age_s=min_age_s)
    return report
