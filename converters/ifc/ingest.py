"""IFC ingest: sniff → worker process (parse, georeference, attributes, geometry) → one store transaction.

Every ingest of a file adds a dataset version with its own full rows in ``bim_models``, ``bim_spatial``
and ``bim_elements`` (see ``cim/bim/schema.py``); version counts compare elements with the previous
version by GlobalId and hashes. Georeferencing errors (no georeference, outside the region, double
offset, unknown CRS, unit mismatch) refuse the ingest before geometry; any failure leaves the store as
it was.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cim.crs import get_crs
from cim.errors import CRSError, CRSMissingError, InvalidInputError, OutOfRegionError
from cim.localcrs import find_local
from cim.localcrs import load_file as load_local_systems
from cim.settings import Settings, get_settings
from cim.store import DatasetInfo, DuckDBStore
from converters.ifc.georef import Finding, UserPlacement
from converters.ifc.open import sniff
from converters.ifc.worker import ConversionResult, Progress, run_worker

CATEGORY = "工程建设项目数据"


@dataclass
class IfcOptions:
    """How to ingest one IFC file."""

    dataset_id: str | None = None
    title: str | None = None
    grade: str = "重要"
    secret: bool = False
    category: str = CATEGORY
    placement: UserPlacement = field(default_factory=UserPlacement)
    time_budget_s: float = 1800.0
    memory_budget_mb: int | None = 6144
    threads: int | None = None  # geometry threads (default: every core)
    geometry_stall_s: float = 120.0  # no element finished for this long: retry one by one, each this long
    note: str | None = None


@dataclass
class IfcIngestResult:
    """What one IFC ingest stored."""

    dataset_id: str
    version: int
    counts: dict[str, Any]
    findings: list[Finding]
    georef: dict[str, Any]
    timings: dict[str, float]
    origin: tuple[float, float, float] | None

    @property
    def elements_per_s(self) -> float:
        """Elements converted per second of the whole ingest."""
        total = self.timings.get("total_s") or 0.0
        return self.counts["elements"] / total if total else 0.0


class GeorefRefusedError(InvalidInputError):
    """Ingest refused on georeferencing errors; ``findings`` lists every finding (the store is unchanged)."""

    findings: list[Finding]


class GeorefMissingError(GeorefRefusedError, CRSMissingError):
    """Refused: the model is not georeferenced and no placement was given."""


class GeorefOutOfRegionError(GeorefRefusedError, OutOfRegionError):
    """Refused: the model lies outside the configured region."""


class GeorefCRSError(GeorefRefusedError, CRSError):
    """Refused: the file's CRS is empty, unknown or unusable."""


_REFUSAL_CLASS: dict[str, type[GeorefRefusedError]] = {
    "georef.none": GeorefMissingError,
    "georef.outside_region": GeorefOutOfRegionError,
    "georef.crs_empty": GeorefCRSError,
    "georef.crs_unparseable": GeorefCRSError,
    "georef.crs_geographic": GeorefCRSError,
    "georef.transform": GeorefCRSError,
}


def refusal(result: ConversionResult) -> GeorefRefusedError:
    """The error to raise for a conversion with error findings (class from the first one)."""
    errors = result.errors
    cls = _REFUSAL_CLASS.get(errors[0].code, GeorefRefusedError)
    lines = "; ".join(f"[{f.code}] {f.entity + ': ' if f.entity else ''}{f.message}" for f in errors)
    exc = cls(
        f"ingest refused: {len(errors)} georeferencing error(s): {lines}. The store is unchanged.",
        file=str(result.header.path),
    )
    exc.findings = list(result.findings)
    return exc


def default_dataset_id(path: Path) -> str:
    """A dataset id from the file name (stem, spaces and separators replaced)."""
    stem = Path(path).stem
    return "".join("_" if c in "/\\ \t\n?#" else c for c in stem) or "ifc"


def ingest_ifc(
    path: Path | str,
    store: DuckDBStore,
    options: IfcOptions | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> IfcIngestResult:
    """Convert an IFC file in a worker process and store it as a new version of a ``bim`` dataset.

    Raises:
        InvalidInputError / UnsupportedError: not a (complete, supported) IFC file, too large, no products.
        GeorefRefusedError (also a CRSMissingError, OutOfRegionError or CRSError): georeferencing errors.
        WorkerError: the conversion crashed or ran out of its time/memory budget.
    In every case the store is unchanged.
    """
    settings = settings or get_settings()
    options = options or IfcOptions()
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    header = sniff(path, max_bytes=settings.max_upload_bytes)
    info = DatasetInfo(
        id=options.dataset_id or default_dataset_id(header.path),
        title=options.title or header.path.stem,
        kind="bim",
        storage_crs=settings.storage_crs,
        vertical_crs=settings.vertical_crs,
        category=options.category,
        grade=options.grade,
        secret=options.secret,
    )
    info.validate()
    _check_placement(options.placement, settings)
    t_sniff = time.perf_counter()
    result = run_worker(
        header,
        settings,
        options.placement,
        time_budget_s=options.time_budget_s,
        memory_budget_mb=options.memory_budget_mb,
        threads=options.threads or multiprocessing.cpu_count(),
        geometry_stall_s=options.geometry_stall_s,
        progress=say,
    )
    t_worker = time.perf_counter()
    if result.errors:
        raise refusal(result)
    info.source_crs = result.georef.source_crs if result.georef.method != "ref_latlon" else "EPSG:4326"
    info.provenance = {
        "file": header.path.name,
        "sha256": header.sha256,
        "size": header.size,
        "schema": header.declared_schema,
        "authoring_app": result.model.get("authoring_app"),
    }
    info.metadata = {
        "georef_method": result.georef.method,
        "ifc_schema": header.schema,
        "findings": dict(Counter(f.severity for f in result.findings)),
    }
    _dedupe(result)
    say("writing store")
    with store.transaction() as con:
        version, counts = write_bim_version(con, store, info, result, note=options.note)
    t_end = time.perf_counter()
    timings = {
        "sniff_s": t_sniff - t0,
        "worker_s": t_worker - t_sniff,
        "write_s": t_end - t_worker,
        "total_s": t_end - t0,
        **{k: v for k, v in result.stats.items() if k.endswith("_s")},
    }
    return IfcIngestResult(
        info.id, version, counts, result.findings, result.georef.to_json(), timings, result.origin
    )


def _check_placement(placement: UserPlacement, settings: Settings) -> None:
    """Refuse an unknown placement CRS or non-finite numbers before starting the worker."""
    if placement.crs:
        if settings.local_crs_file:
            load_local_systems(settings.local_crs_file)
        if find_local(placement.crs) is None:
            get_crs(placement.crs)  # raises CRSError naming the CRS
    for name in ("easting", "northing", "height", "rotation_deg"):
        value = getattr(placement, name)
        if value is not None and not math.isfinite(value):
            raise InvalidInputError(f"placement {name} must be a finite number, not {value!r}", field=name)


def _dedupe(result: ConversionResult) -> None:
    """Keep the first element per GlobalId (the table's key); report the others."""
    seen: dict[str, dict[str, Any]] = {}
    kept = []
    for rec in result.elements:
        gid = rec["global_id"] or f"#{rec['step_id']}"
        rec["global_id"] = gid
        if gid in seen:
            result.findings.append(
                Finding(
                    "warning",
                    "ifc.duplicate_global_id",
                    f"GlobalId {gid} is used again by {rec['ifc_class']} "
                    f"#{rec['step_id']} (first: #{seen[gid]['step_id']}); the repeat is not stored",
                    f"#{rec['step_id']} {rec['ifc_class']}.GlobalId",
                )
            )
            continue
        seen[gid] = rec
        kept.append(rec)
    result.elements = kept
    ids: set[str] = set()
    result.spatial = [r for r in result.spatial if not (r["global_id"] in ids or ids.add(r["global_id"]))]


# -- store writes (inside store.transaction()) --------------------------------------------------------
_ELEMENT_SCHEMA = pa.schema(
    [
        ("global_id", pa.string()),
        ("ifc_class", pa.string()),
        ("predefined_type", pa.string()),
        ("name", pa.string()),
        ("object_type", pa.string()),
        ("tag", pa.string()),
        ("storey_global_id", pa.string()),
        ("storey_name", pa.string()),
        ("building_global_id", pa.string()),
        ("space_global_id", pa.string()),
        ("materials", pa.list_(pa.string())),
        ("classifications", pa.string()),
        ("psets", pa.string()),
        ("quantities", pa.string()),
        ("color", pa.string()),
        ("minx", pa.float64()),
        ("miny", pa.float64()),
        ("minz", pa.float64()),
        ("maxx", pa.float64()),
        ("maxy", pa.float64()),
        ("maxz", pa.float64()),
        ("footprint", pa.binary()),
        ("mesh_positions", pa.binary()),
        ("mesh_indices", pa.binary()),
        ("geometry_hash", pa.string()),
        ("properties_hash", pa.string()),
    ]
)
_SPATIAL_SCHEMA = pa.schema(
    [
        ("global_id", pa.string()),
        ("ifc_class", pa.string()),
        ("name", pa.string()),
        ("long_name", pa.string()),
        ("parent_global_id", pa.string()),
        ("elevation", pa.float64()),
        ("attrs", pa.string()),
    ]
)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def element_table(elements: list[dict[str, Any]]) -> pa.Table:
    """Arrow table of element records in ``bim_elements`` column order (JSON as text, footprint as WKB)."""
    cols: dict[str, list[Any]] = {name: [] for name in _ELEMENT_SCHEMA.names}
    for rec in elements:
        mesh = rec.get("mesh")
        for key in (
            "global_id",
            "ifc_class",
            "predefined_type",
            "name",
            "object_type",
            "tag",
            "storey_global_id",
            "storey_name",
            "building_global_id",
            "space_global_id",
            "materials",
            "properties_hash",
        ):
            cols[key].append(rec.get(key))
        for key in ("classifications", "psets", "quantities"):
            cols[key].append(_dumps(rec.get(key)))
        cols["color"].append(mesh.color if mesh is not None else None)
        bounds = mesh.bounds if mesh is not None else (None,) * 6
        for key, v in zip(("minx", "miny", "minz", "maxx", "maxy", "maxz"), bounds, strict=True):
            cols[key].append(v)
        cols["footprint"].append(mesh.footprint if mesh is not None else None)
        cols["mesh_positions"].append(mesh.positions if mesh is not None else None)
        cols["mesh_indices"].append(mesh.indices if mesh is not None else None)
        cols["geometry_hash"].append(mesh.geometry_hash if mesh is not None else None)
    return pa.table(cols, schema=_ELEMENT_SCHEMA)


def spatial_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Arrow table of ``bim_spatial`` rows (attrs as JSON text)."""
    cols: dict[str, list[Any]] = {name: [] for name in _SPATIAL_SCHEMA.names}
    for row in rows:
        for key in _SPATIAL_SCHEMA.names:
            cols[key].append(_dumps(row.get(key)) if key == "attrs" else row.get(key))
    return pa.table(cols, schema=_SPATIAL_SCHEMA)


def write_bim_version(
    con: duckdb.DuckDBPyConnection,
    store: DuckDBStore,
    info: DatasetInfo,
    result: ConversionResult,
    *,
    note: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Write ``result`` as the next version of dataset ``info``; ``con`` is inside ``store.transaction()``."""
    row = con.execute("SELECT current_version, kind FROM datasets WHERE id = ?", [info.id]).fetchone()
    if row and row[1] != "bim":
        raise InvalidInputError(
            f"dataset {info.id!r} exists with kind {row[1]!r}, not 'bim': choose another --dataset"
        )
    version = (row[0] if row else 0) + 1
    now = datetime.now(UTC).replace(tzinfo=None)
    elements, spatial = element_table(result.elements), spatial_table(result.spatial)
    con.register("_ifc_elements", elements)
    con.register("_ifc_spatial", spatial)
    try:
        con.execute(
            """INSERT INTO bim_elements SELECT ?, ?, global_id, ifc_class, predefined_type, name,
                 object_type, tag, storey_global_id, storey_name, building_global_id, space_global_id,
                 materials, classifications::JSON, psets::JSON, quantities::JSON, color,
                 minx, miny, minz, maxx, maxy, maxz,
                 CASE WHEN footprint IS NULL THEN NULL ELSE ST_GeomFromWKB(footprint) END,
                 mesh_positions, mesh_indices, geometry_hash, properties_hash FROM _ifc_elements""",
            [info.id, version],
        )
        con.execute(
            """INSERT INTO bim_spatial SELECT ?, ?, global_id, ifc_class, name, long_name, parent_global_id,
                 elevation, attrs::JSON FROM _ifc_spatial""",
            [info.id, version],
        )
    finally:
        con.unregister("_ifc_elements")
        con.unregister("_ifc_spatial")
    changes = _changes(con, info.id, version)
    ext = _extent(con, info.id, version, result.origin)
    counts = {
        "elements": len(result.elements),
        "spatial": len(result.spatial),
        "meshes": sum(1 for r in result.elements if r.get("mesh") is not None),
        "by_class": dict(sorted(Counter(r["ifc_class"] for r in result.elements).items())),
        "bim_elements": changes,
    }
    origin = result.origin or (None, None, None)
    georef = result.georef.to_json() | {
        "findings": [f.to_dict() for f in result.findings],
        "origin": list(origin) if result.origin else None,
    }
    con.execute(
        "INSERT INTO bim_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::JSON, ?, ?, ?, ?, ?::JSON, ?)",
        [
            info.id,
            version,
            result.header.sha256,
            result.header.path.name,
            result.header.size,
            result.header.declared_schema,
            result.model.get("authoring_app"),
            result.model.get("project_name"),
            result.georef.length_unit_m,
            _dumps(georef),
            *origin,
            counts["elements"],
            _dumps({**result.stats, "by_class": counts["by_class"], "opened_as": result.header.schema}),
            now,
        ],
    )
    store._upsert_dataset(con, info, version, now, ext)
    summary = dict(Counter(f.severity for f in result.findings))
    con.execute(
        "INSERT INTO dataset_versions VALUES (?, ?, ?, 'ingest', ?, ?, ?, ?)",
        [
            info.id,
            version,
            now,
            _dumps(
                [
                    {
                        "file": result.header.path.name,
                        "sha256": result.header.sha256,
                        "size": result.header.size,
                        "schema": result.header.declared_schema,
                    }
                ]
            ),
            _dumps({"bim_elements": changes, "bim_spatial": {"total": counts["spatial"]}}),
            _dumps({"georef": summary, "method": result.georef.method}),
            note,
        ],
    )
    return version, counts


def _changes(con: duckdb.DuckDBPyConnection, dataset_id: str, version: int) -> dict[str, int]:
    """added / modified / deleted / unchanged elements against the previous version (by GlobalId)."""
    added, modified, deleted, unchanged, total = con.execute(
        """WITH n AS (SELECT global_id, geometry_hash, properties_hash FROM bim_elements
                      WHERE dataset_id = ? AND version = ?),
                o AS (SELECT global_id, geometry_hash, properties_hash FROM bim_elements
                      WHERE dataset_id = ? AND version = ?)
           SELECT (SELECT count(*) FROM n ANTI JOIN o USING (global_id)),
                  (SELECT count(*) FROM n JOIN o USING (global_id)
                    WHERE n.geometry_hash IS DISTINCT FROM o.geometry_hash
                       OR n.properties_hash IS DISTINCT FROM o.properties_hash),
                  (SELECT count(*) FROM o ANTI JOIN n USING (global_id)),
                  (SELECT count(*) FROM n JOIN o USING (global_id)
                    WHERE n.geometry_hash IS NOT DISTINCT FROM o.geometry_hash
                      AND n.properties_hash IS NOT DISTINCT FROM o.properties_hash),
                  (SELECT count(*) FROM n)""",
        [dataset_id, version, dataset_id, version - 1],
    ).fetchone()
    return {
        "added": int(added),
        "modified": int(modified),
        "deleted": int(deleted),
        "unchanged": int(unchanged),
        "total": int(total),
    }


def _extent(
    con: duckdb.DuckDBPyConnection, dataset_id: str, version: int, origin: tuple[float, float, float] | None
) -> tuple:
    ext = con.execute(
        """SELECT min(minx), min(miny), min(minz), max(maxx), max(maxy), max(maxz) FROM bim_elements
           WHERE dataset_id = ? AND version = ?""",
        [dataset_id, version],
    ).fetchone()
    if ext[0] is None and origin is not None:
        return (*origin, *origin)
    return tuple(ext)
