"""Submit a BIM model for drawing review (施工图审查) or handover (竣工交付): store, ingest, register, check.

:func:`submit_model` does, in order:

1. validates the project, stage, discipline and the IDS given (well-formed, valid against IDS 1.0 and
   semantically usable), and sniffs the file (IFC-SPF, complete, supported schema, not too large);
2. keeps the file (and the IDS) in the content-addressed :class:`~cim.bim.files.FileStore`: never
   overwritten, the same content is the same entry;
3. ingests the model as the next version of the project's BIM dataset (:func:`project_dataset_id`) and
   registers the submission (status ``submitted``) **in the same store transaction**, so a refused or
   failed ingest leaves neither a version nor a submission behind. A file stored in step 2 stays when the
   ingest then fails: it is content-addressed, referenced by nothing, and a later submission of the same
   bytes reuses it;
4. runs the checks and records them (``passed``/``failed``): IDS (the default Chinese rule set
   :data:`~cim.bim.ids.CN_REVIEW_LOD300` or the IDS given), georeferencing plausibility, delivery
   completeness for the discipline and stage, and the clearance of the building's below-ground part to
   the existing pipes (:func:`~cim.bim.clearance.bim_pipe_clearance`). A check that cannot run (e.g. the
   IDS worker's time budget) becomes an ``error`` finding ``CHECK-NOT-RUN`` naming why, so the
   submission fails visibly and can be re-checked with :func:`check_submission`.

The summary of a submission keeps the discipline and the IDS (its SHA-256 in the file store), so a
re-check runs the same rules unless told otherwise.

Example::

    out = submit_model("tower.ifc", store, project="jinan-tower", stage="drawing_review", settings=settings,
                       placement=UserPlacement("EPSG:4548", 501990.0, 4058050.0, 75.3))
    out.submission.status, out.counts["errors"]     # ('failed', 74)
    compare_submissions(store, first_id, out.submission.id).summary()
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cim.analysis.common import Frame, clean
from cim.bim.clearance import bim_pipe_clearance, clearance_findings
from cim.bim.compare import Comparison, compare_versions
from cim.bim.delivery import DISCIPLINES, delivery_findings, georef_plausibility
from cim.bim.files import FileStore, StoredFile, file_store
from cim.bim.ids import CN_REVIEW_LOD300, Finding, IdsSource, check_ids, validate_ids
from cim.bim.submissions import (
    CHECK_KINDS,
    STAGES,
    Submission,
    create_submission,
    get_submission,
    record_checks,
)
from cim.bim.submissions import findings as recorded_findings
from cim.errors import CIMError, InvalidInputError, NotFoundError, StoreError
from cim.region import Region
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import IfcIngestResult, IfcOptions, ingest_ifc
from converters.ifc.open import sniff

#: Longest project name accepted.
MAX_PROJECT_CHARS = 200
#: Largest IDS file accepted (bytes).
MAX_IDS_BYTES = 5 * 1024 * 1024
_CLEAN_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_RECHECKABLE = ("submitted", "passed", "failed")


@dataclass
class SubmissionOutcome:
    """What a submission stored and found."""

    submission: Submission
    ingest: IfcIngestResult
    file: StoredFile
    findings: list[Finding]
    counts: dict[str, Any] = field(default_factory=dict)  # errors/warnings/infos, by_check_kind, elements
    timings: dict[str, float] = field(default_factory=dict)


# -- naming and validation ----------------------------------------------------------------------------
def project_dataset_id(project: str) -> str:
    """The BIM dataset of a project: ``bim-<project>`` for a clean lower-case slug (``jinan-tower``), else
    ``bim-<ascii slug>-<8 hex of SHA-256(project)>`` (``济南 3#楼`` → ``bim-3-…``), so names never collide."""
    name = check_project(project)
    if _CLEAN_ID.fullmatch(name):
        return f"bim-{name}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"bim-{slug}-{digest}" if slug else f"bim-{digest}"


def check_project(project: str | None) -> str:
    """The project name stripped; raises InvalidInputError when empty, too long or with control characters."""
    name = (project or "").strip()
    if not name:
        raise InvalidInputError("project must not be empty", field="project")
    if len(name) > MAX_PROJECT_CHARS:
        raise InvalidInputError(f"project name is {len(name)} characters, at most {MAX_PROJECT_CHARS}",
                                field="project")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInputError("project name contains control characters", field="project")
    return name


def _check_choice(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise InvalidInputError(f"{name} {value!r} is not one of {', '.join(allowed)}", field=name)


def _check_dataset_owner(store: DuckDBStore, dataset_id: str, project: str) -> None:
    """Refuse a dataset that exists as another kind or holds another project's submissions."""
    cur = store.read()
    try:
        kind = cur.execute("SELECT kind FROM datasets WHERE id = ?", [dataset_id]).fetchone()
        others = cur.execute(
            "SELECT DISTINCT project FROM bim_submissions WHERE dataset_id = ? AND project <> ? LIMIT 1",
            [dataset_id, project],
        ).fetchone()
    finally:
        cur.close()
    if kind and kind[0] != "bim":
        raise InvalidInputError(f"dataset {dataset_id!r} of project {project!r} exists as a {kind[0]!r} dataset, "
                                "not a BIM model: choose another project name", field="project")
    if others:
        raise InvalidInputError(f"dataset {dataset_id!r} already holds submissions of project {others[0]!r}: "
                                "choose another project name", field="project")


def _ids_bytes(ids: IdsSource) -> tuple[bytes, str]:
    """The IDS as bytes and a name for messages (a path is read; text is encoded)."""
    if isinstance(ids, bytes):
        data, name = ids, "uploaded IDS"
    elif isinstance(ids, str) and ids.lstrip("\ufeff \t\r\n").startswith("<"):
        data, name = ids.encode("utf-8"), "IDS text"
    else:
        path = Path(ids)
        if not path.is_file():
            raise NotFoundError(f"IDS file {path} does not exist")
        if path.stat().st_size > MAX_IDS_BYTES:
            raise InvalidInputError(f"IDS file is larger than {MAX_IDS_BYTES} bytes", file=str(path))
        data, name = path.read_bytes(), path.name
    if len(data) > MAX_IDS_BYTES:
        raise InvalidInputError(f"IDS is larger than {MAX_IDS_BYTES} bytes", file=name)
    if not data.strip():
        raise InvalidInputError("IDS is empty", file=name)
    return data, name


def prepare_ids(ids: IdsSource, files: FileStore, name: str | None = None) -> StoredFile:
    """Validate an IDS (XSD and semantic audit, strict) and keep it in the file store.

    Raises:
        InvalidInputError: the IDS is empty, too large, malformed, invalid or unusable (each problem named).
    """
    data, label = _ids_bytes(ids)
    label = name or label
    issues = validate_ids(data)
    if issues:
        raise InvalidInputError(f"IDS cannot be used ({len(issues)} problem(s)): " + "; ".join(issues[:10]),
                                file=label)
    return files.put(data, label)


# -- one transaction for the version and the submission -----------------------------------------------
class _Joined:
    """The store seen from inside one open write transaction: nested transactions and reads join it."""

    def __init__(self, con: Any) -> None:
        self._con = con

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        yield self._con

    def read(self) -> Any:
        return self._con


class _ThenInTransaction:
    """``store`` whose first write transaction also runs ``then(con)`` before it commits."""

    def __init__(self, store: DuckDBStore, then: Callable[[Any], None]) -> None:
        self._store, self._then, self.done = store, then, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._store.transaction() as con:
            yield con
            if not self.done:
                self._then(con)
                self.done = True


# -- checks -------------------------------------------------------------------------------------------
def _model_row(store: DuckDBStore, dataset_id: str, version: int) -> dict[str, Any]:
    cur = store.read()
    try:
        cur.execute("SELECT * FROM bim_models WHERE dataset_id = ? AND version = ?", [dataset_id, version])
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
    finally:
        cur.close()
    if row is None:
        raise NotFoundError(f"BIM model {dataset_id!r} version {version} does not exist")
    return dict(zip(names, row, strict=True))


def _not_run(kind: str, exc: Exception) -> Finding:
    return Finding(kind, "CHECK-NOT-RUN", "error", f"检查未能完成 / the {kind} check could not run: {exc}",
                   expected=f"the {kind} check completes", found=type(exc).__name__)


def run_checks(
    store: DuckDBStore,
    submission: Submission,
    *,
    settings: Settings,
    frame: Frame,
    ids: StoredFile | None,
    discipline: str,
) -> tuple[list[Finding], dict[str, Any]]:
    """Every check of one submission (``ids``: a stored IDS, None for the default rule set): its findings and a
    summary (per check, with timings)."""
    files = file_store(settings, store.path)
    ds, version = submission.dataset_id, submission.version
    findings: list[Finding] = []
    summary: dict[str, Any] = {"discipline": discipline, "timings": {}}

    def timed(kind: str, run: Callable[[], list[Finding]]) -> None:
        t0 = time.perf_counter()
        try:
            found = run()
        except CIMError as exc:
            found = [_not_run(kind, exc)]
            summary.setdefault("not_run", {})[kind] = str(exc)
        summary["timings"][f"{kind}_s"] = round(time.perf_counter() - t0, 3)
        findings.extend(found)

    def ids_check() -> list[Finding]:
        report = check_ids(files.path(submission.file_sha256), ids.path if ids else CN_REVIEW_LOD300)
        summary["ids"] |= report.summary()
        return report.findings

    def clearance_check() -> list[Finding]:
        result = bim_pipe_clearance(store, frame, dataset=ds, version=version)
        summary["clearance"] = clean(result.summary)
        return clearance_findings(result)

    summary["ids"] = ({"rule_set": ids.name or ids.sha256, "default": False, "sha256": ids.sha256, "name": ids.name}
                      if ids else {"rule_set": CN_REVIEW_LOD300.name, "default": True})
    timed("ids", ids_check)
    region = Region(settings.region_name, tuple(settings.region_bbox))
    timed("georef", lambda: georef_plausibility(_model_row(store, ds, version), storage_crs=settings.storage_crs,
                                                region=region))
    timed("delivery", lambda: delivery_findings(store, ds, version, discipline=discipline, stage=submission.stage))
    timed("clearance", clearance_check)
    return findings, summary


def _counts(findings: list[Finding]) -> dict[str, Any]:
    return {
        **{f"{s}s": sum(f.severity == s for f in findings) for s in ("error", "warning", "info")},
        "findings": len(findings),
        "by_check_kind": {k: sum(f.check_kind == k for f in findings) for k in CHECK_KINDS},
    }


# -- public API ---------------------------------------------------------------------------------------
def submit_model(
    path: str | Path,
    store: DuckDBStore,
    *,
    project: str,
    stage: str,
    settings: Settings,
    submitted_by: str | None = None,
    placement: UserPlacement | None = None,
    ids: IdsSource | None = None,
    discipline: str = "architecture",
    frame: Frame | None = None,
    file_name: str | None = None,
    ids_name: str | None = None,
    note: str | None = None,
    threads: int | None = None,
) -> SubmissionOutcome:
    """Store, ingest, register and check a model file as the next version of ``project``'s BIM dataset.

    ``file_name``/``ids_name`` are the names the client gave (an upload arrives in a temporary file);
    ``frame`` defaults to the frame of ``settings``.

    Raises:
        InvalidInputError: bad project/stage/discipline, a refused IDS, a file that is not a complete IFC
            of a supported schema (or too large, or without elements), georeferencing refused
            (:class:`~converters.ifc.ingest.GeorefRefusedError`, with the findings).
        UnsupportedError: IFC-XML/IFC-ZIP or an unknown schema.
        WorkerError: the conversion crashed or ran out of its budget.
    In every case no version and no submission are stored.
    """
    t0 = time.perf_counter()
    name = check_project(project)
    _check_choice(stage, STAGES, "stage")
    _check_choice(discipline, DISCIPLINES, "discipline")
    dataset_id = project_dataset_id(name)
    _check_dataset_owner(store, dataset_id, name)
    files = file_store(settings, store.path)
    stored_ids = prepare_ids(ids, files, ids_name) if ids is not None else None
    sniff(path, max_bytes=settings.max_upload_bytes)
    stored = files.put(path, file_name or Path(path).name)
    t_stored = time.perf_counter()
    created: list[Submission] = []

    def register(con: Any) -> None:
        (version,) = con.execute("SELECT current_version FROM datasets WHERE id = ?", [dataset_id]).fetchone()
        created.append(create_submission(_Joined(con), project=name, stage=stage, dataset_id=dataset_id,
                                         version=int(version), file=stored, submitted_by=submitted_by, note=note))

    options = IfcOptions(dataset_id=dataset_id, title=name, placement=placement or UserPlacement(),
                         threads=threads, note=f"{stage} submission")
    writer = _ThenInTransaction(store, register)
    result = ingest_ifc(path, writer, options, settings)  # type: ignore[arg-type]
    if not created:
        raise StoreError("the ingest wrote no transaction: the submission was not registered")
    t_ingested = time.perf_counter()
    sub = _check(store, created[0], settings, frame or Frame.from_settings(settings), stored_ids, discipline)
    findings = recorded_findings(store, sub.id)
    t_end = time.perf_counter()
    counts = {**_counts(findings), "elements": result.counts["elements"]}
    timings = {"store_file_s": t_stored - t0, "ingest_s": t_ingested - t_stored, "checks_s": t_end - t_ingested,
               "total_s": t_end - t0}
    return SubmissionOutcome(sub, result, stored, findings, counts, timings)


def check_submission(
    store: DuckDBStore,
    submission_id: str,
    *,
    settings: Settings,
    frame: Frame | None = None,
    ids: IdsSource | None = None,
    discipline: str | None = None,
) -> Submission:
    """(Re-)run every check of a submission and record the findings (status ``passed`` or ``failed``).

    ``ids`` (a new IDS) and ``discipline`` default to those of the last check (else the default rule set
    and ``architecture``).

    Raises:
        NotFoundError: no such submission (or its stored file is gone).
        InvalidInputError: the submission is accepted or rejected (``field='status'``), a refused IDS or
            an unknown discipline.
    """
    sub = get_submission(store, submission_id)
    if sub.status not in _RECHECKABLE:
        raise InvalidInputError(
            f"submission {submission_id} is {sub.status}: checks can only run while it is "
            f"{', '.join(_RECHECKABLE)}", field="status")
    previous = sub.summary or {}
    discipline = discipline or previous.get("discipline") or "architecture"
    _check_choice(discipline, DISCIPLINES, "discipline")
    files = file_store(settings, store.path)
    files.path(sub.file_sha256)  # the model file must still be there
    ids_file: StoredFile | None = None
    if ids is not None:
        ids_file = prepare_ids(ids, files)
    elif (prev := previous.get("ids") or {}).get("sha256"):
        path = files.path(prev["sha256"])
        ids_file = StoredFile(prev["sha256"], path.stat().st_size, path, prev.get("name"))
    return _check(store, sub, settings, frame or Frame.from_settings(settings), ids_file, discipline)


def _check(store: DuckDBStore, sub: Submission, settings: Settings, frame: Frame, ids_file: StoredFile | None,
           discipline: str) -> Submission:
    found, summary = run_checks(store, sub, settings=settings, frame=frame, ids=ids_file, discipline=discipline)
    return record_checks(store, sub.id, found, summary)


def compare_submissions(store: DuckDBStore, a_id: str, b_id: str) -> Comparison:
    """Element differences (GlobalId) from the older to the newer of two submissions of one project.

    Raises:
        NotFoundError: a submission does not exist.
        InvalidInputError: the submissions are of different projects, or the same one.
    """
    a, b = get_submission(store, a_id), get_submission(store, b_id)
    if a.dataset_id != b.dataset_id:
        raise InvalidInputError(f"submissions {a.id} ({a.project}) and {b.id} ({b.project}) are of different "
                                "projects: only versions of one project's model can be compared", field="b")
    if a.id == b.id:
        raise InvalidInputError(f"compare two different submissions (both are {a.id})", field="b")
    old, new = sorted((a, b), key=lambda s: s.version)
    return compare_versions(store, a.dataset_id, old.version, new.version)


def comparison_dict(cmp: Comparison, store: DuckDBStore | None = None) -> dict[str, Any]:
    """A comparison as JSON-ready data (summary first), with the submissions of both versions when ``store``."""
    data = {"dataset_id": cmp.dataset_id, "v1": cmp.v1, "v2": cmp.v2, "summary": cmp.summary(),
            **{k: [asdict(x) for x in getattr(cmp, k)] for k in ("added", "removed", "changed")},
            "unchanged": cmp.unchanged}
    if store is not None:
        cur = store.read()
        try:
            rows = cur.execute("SELECT version, id FROM bim_submissions WHERE dataset_id = ? AND version IN (?, ?)",
                               [cmp.dataset_id, cmp.v1, cmp.v2]).fetchall()
        finally:
            cur.close()
        data["submissions"] = {str(v): sid for v, sid in rows}
    return data


def submission_dict(sub: Submission) -> dict[str, Any]:
    """A submission as JSON-ready data (times in ISO 8601, UTC)."""
    data = asdict(sub)
    for key in ("submitted_at", "checked_at"):
        data[key] = data[key].isoformat() + "Z" if data[key] is not None else None
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))
