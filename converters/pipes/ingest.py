"""Pipe-survey pipeline: files → raw tables → staging → QC → (refuse | store, one transaction).

``qc_survey`` checks without a store; ``ingest_survey`` checks and writes a new dataset version.
A dataset folder may carry a ``dataset.toml`` manifest (id, title, crs, grade, encoding, mapping...)
so a delivery is self-describing; explicit options win over the manifest.
"""

from __future__ import annotations

import hashlib
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cim.crs import crs_code, get_crs
from cim.errors import CRSMissingError, InvalidInputError, OutOfRegionError, QCRefusedError, QCSummary
from cim.localcrs import find_local
from cim.localcrs import load_file as load_local_systems
from cim.pipes.fields import FieldMapping, load_mapping
from cim.pipes.normalize import StageOptions, stage
from cim.pipes.topology import build_topology
from cim.qc.catalogue import Tolerances
from cim.qc.engine import QCContext, fetch_findings, rules_run, run_qc
from cim.qc.report import QCReport
from cim.region import Region
from cim.settings import Settings, get_settings
from cim.store import DatasetInfo, DuckDBStore, VersionInfo
from cim.store.spatial import connect
from converters.pipes.layers import detect_kind
from converters.pipes.raw import to_raw
from converters.pipes.tables import CSV_SUFFIXES, EXCEL_SUFFIXES, GPKG_SUFFIXES, read_tables

TABLE_SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES + GPKG_SUFFIXES + (".shp",)
MANIFEST = "dataset.toml"
Progress = Callable[[str], None]


@dataclass
class SurveyOptions:
    """How to read one delivery. ``crs_in`` is required unless the files or manifest carry one."""

    crs_in: str | None = None
    vertical_in: str = "EPSG:5737"
    axis_order: str = "ne"
    encoding: str | None = None
    mapping: Path | None = None
    dataset_id: str | None = None
    title: str | None = None
    grade: str = "重要"
    keep_errors: bool = False
    source_kind: str = "survey"
    tolerances: Tolerances = field(default_factory=Tolerances)


@dataclass
class SurveyInput:
    """Raw tables of a delivery and what we learnt reading it."""

    points: list[pa.Table]
    lines: list[pa.Table]
    sources: list[dict[str, Any]]
    header_problems: list[tuple[str, str, str]]


@dataclass
class CheckResult:
    """A staged and checked delivery; ``con`` holds the staging and ``qc_result`` tables."""

    con: duckdb.DuckDBPyConnection
    report: QCReport
    options: SurveyOptions


def find_files(paths: Iterable[Path]) -> list[Path]:
    """Table files named or inside the named folders (sorted; manifests and reports skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in TABLE_SUFFIXES)
        elif p.exists():
            out.append(p)
        else:
            raise InvalidInputError("file or folder does not exist", file=str(p))
    if not out:
        raise InvalidInputError(f"no pipe tables (.csv, .xlsx, .shp, .gpkg) in {', '.join(map(str, paths))}")
    return out


def read_manifest(paths: Sequence[Path], options: SurveyOptions) -> SurveyOptions:
    """Fill unset options from a ``dataset.toml`` in the (first) folder given."""
    folder = next((Path(p) for p in paths if Path(p).is_dir()), None)
    if folder is None or not (folder / MANIFEST).is_file():
        return options
    path = folder / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"manifest is not valid TOML: {exc}", file=str(path)) from None
    updates: dict[str, Any] = {}
    for key in ("crs_in", "vertical_in", "axis_order", "encoding", "title", "grade"):
        manifest_key = {"crs_in": "crs", "vertical_in": "vertical_crs"}.get(key, key)
        if manifest_key in data and getattr(options, key) == getattr(SurveyOptions(), key):
            updates[key] = data[manifest_key]
    if "id" in data and options.dataset_id is None:
        updates["dataset_id"] = data["id"]
    if "mapping" in data and options.mapping is None:
        updates["mapping"] = folder / data["mapping"]
    return replace(options, **updates)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_survey(
    files: Sequence[Path],
    options: SurveyOptions,
    mapping: FieldMapping,
    *,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> SurveyInput:
    """Read every table of every file into raw point/line tables."""
    result = SurveyInput([], [], [], [])
    for path in files:
        if progress:
            progress(f"reading {path.name}")
        digest = _sha256(path)
        for src in read_tables(path, encoding=options.encoding, max_bytes=max_bytes):
            kind = detect_kind(src.layer, src.columns, mapping, file=src.file)
            raw = to_raw(src, kind, mapping, axis_order=options.axis_order)
            (result.points if kind == "point" else result.lines).append(raw)
            result.sources.append(
                {"file": src.file, "layer": src.layer, "kind": kind, "rows": src.num_rows,
                 "encoding": src.encoding, "sha256": digest}
            )
            result.header_problems += [(src.file, src.layer, p) for p in src.header_problems]
    if not result.points and not result.lines:
        raise InvalidInputError("no point or line tables found", file=", ".join(map(str, files)))
    return result


def check(
    survey: SurveyInput,
    options: SurveyOptions,
    settings: Settings,
    progress: Progress | None = None,
) -> CheckResult:
    """Stage the raw tables in an in-memory DuckDB and run the QC catalogue."""
    if not options.crs_in:
        raise CRSMissingError(
            "no CRS given for the coordinates: pass --crs (e.g. EPSG:4548 for CGCS2000 3-degree zone CM 117°E "
            "without zone prefix, EPSG:4527 with prefix 39) or set crs in dataset.toml"
        )
    if settings.local_crs_file:
        load_local_systems(settings.local_crs_file)
    local = find_local(options.crs_in)
    crs_in = local.name if local else crs_code(get_crs(options.crs_in))
    say = progress or (lambda _msg: None)
    con = connect(":memory:")
    con.execute(f"SET memory_limit = '{settings.staging_memory}'")
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/cim-staging'")
    say("normalising")
    stage(con, survey.points, survey.lines, StageOptions(crs_in, settings.storage_crs, options.vertical_in))
    survey.points.clear()  # the staged copy is all we need now; free the Arrow tables
    survey.lines.clear()
    say("running QC")
    ctx = QCContext(
        storage_crs=settings.storage_crs,
        region=Region(settings.region_name, tuple(settings.region_bbox)),
        source_kind=options.source_kind,
        tolerances=options.tolerances,
        header_problems=survey.header_problems,
    )
    run_qc(con, ctx, crs_in=crs_in, on_rule=lambda rule_id: say(f"QC {rule_id}"))
    report = QCReport(
        findings=fetch_findings(con),
        sources=survey.sources,
        crs_in=crs_in,
        storage_crs=settings.storage_crs,
        dataset=options.dataset_id,
        tolerances={k: v for k, v in vars(options.tolerances).items()},
        rules_run=rules_run(options.source_kind),
    )
    return CheckResult(con, report, options)


def qc_survey(
    paths: Sequence[Path],
    options: SurveyOptions | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> CheckResult:
    """Read and check a delivery without touching any store."""
    settings = settings or get_settings()
    options = read_manifest(paths, options or SurveyOptions())
    files = find_files(paths)
    survey = read_survey(files, options, load_mapping(options.mapping), max_bytes=settings.max_upload_bytes,
                         progress=progress)
    return check(survey, options, settings, progress)


_FINAL_POINTS = """
CREATE OR REPLACE TEMP TABLE final_points AS
WITH f AS (SELECT file, layer, row, list(DISTINCT rule_id ORDER BY rule_id) AS flags
           FROM qc_result WHERE row IS NOT NULL GROUP BY ALL),
d1 AS (SELECT point_id FROM stg_points WHERE x IS NOT NULL AND y IS NOT NULL GROUP BY 1 HAVING count(*) > 1),
d2 AS (SELECT point_id, category FROM stg_points WHERE x IS NOT NULL AND y IS NOT NULL GROUP BY ALL HAVING count(*) > 1)
SELECT p.rowid AS prow,
       CASE WHEN p.point_id IS NULL THEN '@' || p._file || ':' || p._row
            WHEN d1.point_id IS NULL THEN p.point_id
            WHEN d2.point_id IS NULL THEN coalesce(p.category, '?') || ':' || p.point_id
            ELSE p.point_id || '@' || p._file || ':' || p._row END AS feature_id,
       p.point_id, p.map_no, p.category, p.subtype, p.feature, p.appurtenance, p.code,
       p.x, p.y, p.ground_h, p.well_depth, p.well_bottom_h, p.status, p.road, p.survey_date,
       p.attrs, f.flags AS qc_flags, p._file AS source_file, p._row AS source_row
FROM stg_points p LEFT JOIN f ON f.file = p._file AND f.layer = p._layer AND f.row = p._row
LEFT JOIN d1 ON d1.point_id = p.point_id
LEFT JOIN d2 ON d2.point_id = p.point_id AND d2.category IS NOT DISTINCT FROM p.category
WHERE p.x IS NOT NULL AND p.y IS NOT NULL
"""

_FINAL_SEGMENTS = """
CREATE OR REPLACE TEMP TABLE final_segments AS
WITH f AS (SELECT file, layer, row, list(DISTINCT rule_id ORDER BY rule_id) AS flags
           FROM qc_result WHERE row IS NOT NULL GROUP BY ALL),
b AS (SELECT *, coalesce(line_id, start_id || '-' || end_id) AS base FROM stg_segments
      WHERE x1 IS NOT NULL AND x2 IS NOT NULL),
d AS (SELECT base FROM b GROUP BY 1 HAVING count(*) > 1)
SELECT CASE WHEN d.base IS NULL THEN s.base ELSE s.base || '@' || s._file || ':' || s._row END AS feature_id,
       s.line_id, s.start_id, s.end_id, s.category, s.subtype, s.kind, s.shape, s.diameter_mm, s.width_mm,
       s.height_mm, s.material, s.burial, s.status, s.start_depth, s.end_depth, s.start_h, s.end_h,
       s.start_z, s.end_z, s.length_3d, s.slope, s.pressure, s.voltage, s.flow_dir, s.owner, s.year, s.road,
       s.attrs, f.flags AS qc_flags, s._file AS source_file, s._row AS source_row,
       s.x1, s.y1, s.x2, s.y2, s.start_prow, s.end_prow
FROM b s LEFT JOIN f ON f.file = s._file AND f.layer = s._layer AND f.row = s._row
LEFT JOIN d ON d.base = s.base
"""


def summary_of(report: QCReport) -> QCSummary:
    """Error/warning/info counts of a report."""
    s = report.summary()
    return QCSummary(s["errors"], s["warnings"], s["infos"])


def write_checked(
    checked: CheckResult, store: DuckDBStore, settings: Settings, *, kind: str = "pipe_survey",
    dataset_id: str, progress: Progress | None = None,
) -> VersionInfo:
    """Write a checked delivery to the store as one new version (refusing errors unless kept)."""
    con, report, options = checked.con, checked.report, checked.options
    summary = summary_of(report)
    outside = [f for f in report.findings if f.rule_id == "crs_region"]
    if outside:  # never stored, even with --keep-errors: widen CIM_REGION_BBOX to load foreign data on purpose
        first = "; ".join(f"{Path(f.file or '').name} row {f.row}: {f.message}" for f in outside[:3])
        raise OutOfRegionError(
            f"ingest refused: {len(outside)} points lie outside {settings.region_name} "
            f"({first}). Fix the CRS or axis order, or widen CIM_REGION_BBOX. The store is unchanged."
        )
    if summary.errors and not options.keep_errors:
        raise QCRefusedError(
            f"ingest refused: QC found {summary.errors} errors ({summary.warnings} warnings); "
            "fix the data or pass --keep-errors to store it with the rows flagged. The store is unchanged.",
            summary,
            report.findings[:50],
        )
    say = progress or (lambda _msg: None)
    say("building network")
    for view in ("raw_points_c", "raw_lines_c"):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    for table in ("raw_points", "raw_lines"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    for table in ("stg_lines", "_crossings", "size_parsed"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(_FINAL_POINTS)
    con.execute(_FINAL_SEGMENTS)
    con.execute("DROP TABLE stg_points")
    con.execute("DROP TABLE stg_segments")
    topo = build_topology(con)
    from cim.store.schema import POINT_COLUMNS, SEGMENT_COLUMNS

    points = con.execute(f"SELECT {', '.join(POINT_COLUMNS)} FROM final_points").to_arrow_table()
    segments = con.execute(f"SELECT {', '.join(SEGMENT_COLUMNS)} FROM final_segments").to_arrow_table()
    findings = con.execute(
        "SELECT rule_id, severity, file, row, feature_id, field, value, message, category, layer FROM qc_result"
    ).to_arrow_table()
    info = DatasetInfo(
        id=dataset_id,
        title=options.title or dataset_id,
        kind=kind,
        storage_crs=settings.storage_crs,
        source_crs=report.crs_in,
        vertical_crs="EPSG:5737",
        grade=options.grade,
        provenance={"sources": report.sources, "vertical_in": options.vertical_in, "axis_order": options.axis_order},
        metadata={"qc": report.summary(), "components": topo.components},
    )
    for table in ("final_points", "final_segments", "qc_result"):  # the Arrow copies are all we need now
        con.execute(f"DROP TABLE IF EXISTS {table}")
    say("writing store")
    return store.write_pipe_network(
        info, points, segments, findings=findings, nodes=topo.nodes, edges=topo.edges,
        sources=report.sources, qc_summary=report.summary(),
        note="kept QC errors" if summary.errors else None,
    )


def default_dataset_id(paths: Sequence[Path]) -> str:
    """A dataset id from the folder or file name."""
    first = Path(paths[0]).resolve()
    return (first.name if first.is_dir() else first.stem).replace(" ", "_")


def ingest_survey(
    paths: Sequence[Path],
    store: DuckDBStore,
    options: SurveyOptions | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> tuple[VersionInfo, QCReport]:
    """Read, check and store a delivery as a new dataset version; refuse on QC errors unless kept."""
    settings = settings or get_settings()
    checked = qc_survey(paths, options, settings, progress)
    dataset_id = checked.options.dataset_id or default_dataset_id(paths)
    checked.report.dataset = dataset_id
    try:
        version = write_checked(checked, store, settings, dataset_id=dataset_id, progress=progress)
    finally:
        checked.con.close()
    return version, checked.report
