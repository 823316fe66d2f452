"""``/api/bim``: BIM submissions over HTTP — a thin shell over :mod:`converters.ifc.submit` and :mod:`cim.bim`.

Routes (operation ids in brackets)::

    POST /api/bim/submissions                      [submitBimModel]       multipart upload → 201 + Location
    GET  /api/bim/submissions?project&stage&status [listBimSubmissions]
    GET  /api/bim/submissions/{id}                 [getBimSubmission]     + findings and history
    GET  /api/bim/submissions/{id}/report?f=       [getBimSubmissionReport] json | html | bcf
    POST /api/bim/submissions/{id}/check           [checkBimSubmission]   run the checks again
    POST /api/bim/submissions/{id}/review          [reviewBimSubmission]  {decision, actor, comment}
    GET  /api/bim/submissions/{id}/elements?f=geojson [getBimSubmissionElements] footprints by check result
    GET  /api/bim/compare?a=ID&b=ID                [compareBimSubmissions]

The upload is parsed as it streams in (multipart/form-data: ``file``, ``project``, ``stage`` and optional
``ids`` file, ``submitted_by``, ``discipline``, ``note``, placement ``crs``/``easting``/``northing``/``height``/
``rotation_deg``) into a temporary folder that is removed afterwards; a ``file`` larger than
``settings.max_upload_bytes`` (or a declared ``Content-Length`` that cannot fit) is answered 413 without
reading further. Errors: 400 bad input (a georeferencing refusal lists its ``findings``), 404 unknown
submission, 409 a review or check the current status does not allow (the status is named), 413 too large,
415 not multipart, or an IFC-XML/IFC-ZIP/unknown schema.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import shapely
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.errors import error_body, status_for
from api.security import scoped_services
from cim.analysis.common import Frame, Located, feature_collection
from cim.bim.clearance import NOT_STRUCTURE
from cim.bim.reports import bcf_bytes, report_html, report_json
from cim.bim.submissions import (
    STATUSES,
    Submission,
    events,
    findings,
    get_submission,
    list_submissions,
    review,
)
from cim.errors import CIMError, InvalidInputError, UnsupportedError
from cim.security.policy import Role
from cim.store import DuckDBStore
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import GeorefRefusedError
from converters.ifc.submit import (
    MAX_IDS_BYTES,
    check_submission,
    compare_submissions,
    comparison_dict,
    submission_dict,
    submit_model,
)

PREFIX = "/api/bim"
#: Largest text field of the upload form (bytes).
MAX_FIELD_BYTES = 4096
#: Slack for the form's boundaries, part headers and text fields in the Content-Length check (bytes).
FORM_OVERHEAD_BYTES = 64 * 1024
_FILE_FIELDS = ("file", "ids")
_TEXT_FIELDS = ("project", "stage", "submitted_by", "discipline", "note", "crs", "easting", "northing", "height",
                "rotation_deg")
_NUMBER_FIELDS = ("easting", "northing", "height", "rotation_deg")
_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file", "project", "stage"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "IFC-SPF file (.ifc)"},
        "project": {"type": "string", "description": "Project name; each submission is a new version"},
        "stage": {"type": "string", "enum": ["drawing_review", "handover"]},
        "ids": {"type": "string", "format": "binary", "description": "IDS 1.0 rule set (default: CN LOD3.0)"},
        "submitted_by": {"type": "string"},
        "discipline": {"type": "string", "enum": ["architecture", "structure", "mep"]},
        "note": {"type": "string"},
        "crs": {"type": "string", "description": "CRS of the placement, e.g. EPSG:4548"},
        "easting": {"type": "number"}, "northing": {"type": "number"},
        "height": {"type": "number", "description": "1985 height of the project origin (m)"},
        "rotation_deg": {"type": "number", "description": "Project X axis from grid east, degrees CCW"},
    },
}


class TooLargeError(InvalidInputError):
    """An upload larger than the service accepts (answered 413)."""


class ReviewRequest(BaseModel):
    """A reviewer's decision."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["accept", "reject"]
    actor: str = Field(min_length=1, max_length=200, description="The reviewer's name")
    comment: str | None = Field(None, max_length=4000)


# -- streaming multipart ------------------------------------------------------------------------------
def _safe_name(name: str | None, default: str) -> str:
    """A client file name reduced to a harmless last path component."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^\w.\-]+", "_", base).strip("._")[:120]
    return base or default


class _Form:
    """Collects a multipart/form-data body: text fields in memory, files under ``folder``, with limits."""

    def __init__(self, folder: Path, max_file_bytes: int) -> None:
        self.folder, self.max_file_bytes = folder, max_file_bytes
        self.text: dict[str, str] = {}
        self.files: dict[str, tuple[Path, str | None]] = {}
        self._field = self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._out: Any = None
        self._buf = bytearray()
        self._size = 0

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
                "on_header_end": self._hend, "on_headers_finished": self._headers_done,
                "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._name, self._out, self._buf, self._size = {}, None, None, bytearray(), 0

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name not in (*_FILE_FIELDS, *_TEXT_FIELDS):
            raise InvalidInputError(f"unknown form field {name!r}; expected {', '.join((*_FILE_FIELDS, *_TEXT_FIELDS))}",
                                    field=name or "form")
        if name in self.text or name in self.files:
            raise InvalidInputError(f"form field {name!r} is given twice", field=name)
        self._name = name
        if name in _FILE_FIELDS:
            client = params.get(b"filename", b"").decode("utf-8", "replace") or None
            path = self.folder / name / _safe_name(client, "model.ifc" if name == "file" else "rules.ids")
            path.parent.mkdir()
            self.files[name] = (path, client)
            self._out = path.open("wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._name == "file" and self._size > self.max_file_bytes:
            raise TooLargeError(f"the file is larger than the {self.max_file_bytes} bytes accepted "
                                "(CIM_MAX_UPLOAD_BYTES); nothing was stored", field="file")
        if self._name == "ids" and self._size > MAX_IDS_BYTES:
            raise TooLargeError(f"the IDS file is larger than the {MAX_IDS_BYTES} bytes accepted", field="ids")
        if self._out is not None:
            self._out.write(data[start:end])
        elif self._size > MAX_FIELD_BYTES:
            raise InvalidInputError(f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                                    field=self._name)
        else:
            self._buf += data[start:end]

    def _end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._name is not None:
            self.text[self._name] = self._buf.decode("utf-8", "replace").strip()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def _read_form(request: Request, folder: Path, max_file_bytes: int) -> _Form:
    """Stream the request body into a :class:`_Form` (raising as soon as a limit is passed)."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UnsupportedError(f"the upload must be multipart/form-data, not {kind.decode() or 'missing'!r}")
    declared = request.headers.get("content-length")
    limit = max_file_bytes + MAX_IDS_BYTES + FORM_OVERHEAD_BYTES
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the upload is {declared} bytes, larger than the {max_file_bytes} bytes accepted "
                            "for a model file (CIM_MAX_UPLOAD_BYTES); nothing was stored", field="file")
    form = _Form(folder, max_file_bytes)
    parser = MultipartParser(params[b"boundary"], form.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInputError(f"the multipart body cannot be parsed: {exc}", field="form") from None
    finally:
        form.close()
    return form


def _number(text: dict[str, str], name: str) -> float | None:
    value = text.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, not {value!r}", field=name) from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number, not {value!r}", field=name)
    return number


def _placement(text: dict[str, str]) -> UserPlacement | None:
    e, n, h, r = (_number(text, k) for k in _NUMBER_FIELDS)
    crs = text.get("crs") or None
    if (e is None) != (n is None):
        raise InvalidInputError("give easting and northing together", field="easting" if e is None else "northing")
    if crs is None and e is None:
        return None
    return UserPlacement(crs=crs, easting=e, northing=n, height=h or 0.0, rotation_deg=r or 0.0)


# -- responses ----------------------------------------------------------------------------------------
def _links(sid: str) -> dict[str, Any]:
    base = f"{PREFIX}/submissions/{sid}"
    return {"self": base, "report": {f: f"{base}/report?f={f}" for f in ("json", "html", "bcf")},
            "elements": f"{base}/elements?f=geojson", "check": f"{base}/check", "review": f"{base}/review"}


def _error(exc: Exception, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse({**error_body(exc), **extra}, status_code=status)


def _conflict_checked(action: Callable[[], Submission]) -> Response:
    """The submission after ``action``; 409 when its status does not allow it (the status is named)."""
    try:
        sub = action()
    except InvalidInputError as exc:
        if exc.field == "status":
            return _error(exc, 409)
        raise
    return JSONResponse({"submission": submission_dict(sub), "links": _links(sub.id)})


def elements_geojson(store: DuckDBStore, frame: Frame, submission_id: str) -> dict[str, Any]:
    """Element footprints of a submission's model coloured by check result, for the viewer.

    Each feature: ``global_id``, ``ifc_class``, ``name``, ``storey``, ``status`` (``failed`` with an error
    finding, ``warning`` with a warning, else ``passed``), ``rules`` (rule ids of its findings), counts, and
    its bottom/top as 1985 heights and ellipsoidal heights (``bottom_eh``/``top_eh``) to extrude.
    Findings on no drawn element (model level, spatial structure) are listed in ``model_findings``.
    """
    sub = get_submission(store, submission_id)
    by_element: dict[str, list[Any]] = defaultdict(list)
    found = findings(store, sub.id)
    for f in found:
        if f.global_id:
            by_element[f.global_id].append(f)
    cur = store.read()
    try:
        rows = cur.execute(
            """SELECT global_id, ifc_class, name, storey_name, minz, maxz, ST_AsWKB(footprint) FROM bim_elements
               WHERE dataset_id = ? AND version = ? AND footprint IS NOT NULL ORDER BY global_id""",
            [sub.dataset_id, sub.version]).fetchall()
    finally:
        cur.close()
    rows = [r for r in rows if r[1] not in NOT_STRUCTURE or r[1] == "IfcSpace"]
    items, drawn = [], set()
    geoms = shapely.from_wkb([bytes(r[6]) for r in rows]) if rows else []
    centres = shapely.centroid(geoms) if rows else []
    cx, cy = shapely.get_x(centres), shapely.get_y(centres)
    bottom = np.array([r[4] for r in rows], dtype="f8")
    top = np.array([r[5] for r in rows], dtype="f8")
    _, _, bottom_eh = frame.place(cx, cy, bottom)
    _, _, top_eh = frame.place(cx, cy, top)
    for k, (gid, cls, name, storey, minz, maxz, _) in enumerate(rows):
        mine = by_element.get(gid, [])
        severities = {f.severity for f in mine}
        status = "failed" if "error" in severities else "warning" if "warning" in severities else "passed"
        drawn.add(gid)
        items.append(Located(geoms[k], {
            "global_id": gid, "ifc_class": cls, "name": name, "storey": storey, "status": status,
            "rules": sorted({f.rule_id for f in mine}), "errors": sum(f.severity == "error" for f in mine),
            "warnings": sum(f.severity == "warning" for f in mine), "bottom_h": minz, "top_h": maxz,
            "bottom_eh": bottom_eh[k], "top_eh": top_eh[k]}, id=gid))
    model_level = [{"check_kind": f.check_kind, "rule_id": f.rule_id, "severity": f.severity,
                    "global_id": f.global_id, "ifc_class": f.ifc_class, "message": f.message}
                   for f in found if f.global_id not in drawn]
    return feature_collection(items, frame, submission={"id": sub.id, "status": sub.status, "project": sub.project,
                                                        "dataset_id": sub.dataset_id, "version": sub.version},
                              model_findings=model_level[:1000], model_findings_total=len(model_level))


def refresh_buildings_tiles(svc: Any, store: DuckDBStore) -> dict[str, Any]:
    """Rebuild the buildings tileset after a new model version (incremental: unchanged tiles stay). A tiling
    failure does not undo the submission; it is reported in the answer."""
    from tiles.buildings import build_buildings_tileset

    with svc.tiles_lock:
        try:
            result = build_buildings_tileset(store, svc.buildings_tiles_dir, storage_crs=svc.settings.storage_crs,
                                             geoid=svc.geoid)
        except CIMError as exc:
            return {"error": str(exc)}
    return {"tileset": "/tiles/buildings/tileset.json", "tiles": result.tiles, "written": result.written}


async def _submit(request: Request) -> Response:
    """The upload route: stream the form, submit in a worker thread, answer 201 (or 4xx with the reason)."""
    svc = scoped_services(request)
    store = svc.writable_store(Role.REVIEWER, Role.PLANNER)  # before reading the upload
    folder = Path(tempfile.mkdtemp(prefix="cim-upload-"))
    try:
        form = await _read_form(request, folder, svc.settings.max_upload_bytes)
        text = form.text
        missing = [k for k in ("project", "stage") if not text.get(k)] + ([] if "file" in form.files else ["file"])
        if missing:
            raise InvalidInputError(f"missing form field(s): {', '.join(missing)}", field=missing[0])
        path, client_name = form.files["file"]
        ids = form.files.get("ids")
        out = await run_in_threadpool(
            submit_model, path, store, project=text["project"], stage=text["stage"], settings=svc.settings,
            submitted_by=text.get("submitted_by") or None, placement=_placement(text),
            ids=ids[0] if ids else None, ids_name=ids[1] if ids else None,
            discipline=text.get("discipline") or "architecture", frame=svc.frame, file_name=client_name,
            note=text.get("note") or None)
    except CIMError as exc:
        status = 413 if isinstance(exc, TooLargeError) else 415 if isinstance(exc, UnsupportedError) \
            else status_for(exc)
        body = error_body(exc)
        for part in _FILE_FIELDS:  # the temporary folder is no business of the client
            body["detail"] = body["detail"].replace(f"{folder / part}{os.sep}", "")
        if isinstance(exc, GeorefRefusedError):
            body["findings"] = [f.to_dict() for f in exc.findings]
        return JSONResponse(body, status_code=status)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sid = out.submission.id
    tiles = await run_in_threadpool(refresh_buildings_tiles, svc, store)
    body = {"submission": submission_dict(out.submission), "counts": out.counts, "tiles": tiles,
            "timings": {k: round(v, 3) for k, v in out.timings.items()}, "links": _links(sid)}
    return JSONResponse(body, status_code=201, headers={"Location": f"{PREFIX}/submissions/{sid}"})


# -- the router ---------------------------------------------------------------------------------------
def bim_router() -> APIRouter:
    """The BIM submission routes under ``/api/bim``: reads through the caller's scoped store, writes (submit,
    check, review) only for the roles allowed to make them."""
    router = APIRouter(prefix=PREFIX, tags=["bim"])

    @router.post("/submissions", status_code=201, name="submitBimModel", operation_id="submitBimModel",
                 openapi_extra={"requestBody": {"required": True,
                                                "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}}}})
    async def submit(request: Request) -> Response:
        """Upload a model: stored, ingested as the project's next version, registered and checked."""
        return await _submit(request)

    @router.get("/submissions", name="listBimSubmissions", operation_id="listBimSubmissions")
    def list_(request: Request, project: str | None = None,
              stage: Annotated[Literal["drawing_review", "handover"] | None, Query()] = None,
              status: Annotated[str | None, Query(description=", ".join(STATUSES))] = None) -> list[dict[str, Any]]:
        """Submissions, oldest first, filtered by project, stage and status."""
        if status is not None and status not in STATUSES:
            raise InvalidInputError(f"status {status!r} is not one of {', '.join(STATUSES)}", field="status")
        store = scoped_services(request).store()
        return [submission_dict(s) | {"links": _links(s.id)}
                for s in list_submissions(store, project=project, stage=stage, status=status)]

    @router.get("/submissions/{submission_id}", name="getBimSubmission", operation_id="getBimSubmission")
    def get(request: Request, submission_id: str) -> dict[str, Any]:
        """One submission with its findings and status history."""
        store = scoped_services(request).store()
        sub = get_submission(store, submission_id)
        return {"submission": submission_dict(sub), "findings": [f.to_dict() for f in findings(store, sub.id)],
                "events": [{"event_at": e.event_at.isoformat() + "Z", "actor": e.actor, "from_status": e.from_status,
                            "to_status": e.to_status, "comment": e.comment} for e in events(store, sub.id)],
                "links": _links(sub.id)}

    @router.get("/submissions/{submission_id}/report", name="getBimSubmissionReport",
                operation_id="getBimSubmissionReport")
    def report(request: Request, submission_id: str,
               f: Annotated[Literal["json", "html", "bcf"], Query(description="json, html or bcf")] = "json",
               download: bool = False) -> Response:
        """The review report: JSON (schema in cim/bim/rules), printable HTML or a BCF 2.1 zip."""
        store = scoped_services(request).store()
        attachment = {"Content-Disposition": f'attachment; filename="{submission_id}.{f}"'}
        if f == "bcf":
            return Response(bcf_bytes(store, submission_id), media_type="application/octet-stream",
                            headers=attachment)
        headers = attachment if download else {}
        if f == "html":
            return HTMLResponse(report_html(store, submission_id), headers=headers)
        return JSONResponse(report_json(store, submission_id), headers=headers)

    @router.post("/submissions/{submission_id}/check", name="checkBimSubmission", operation_id="checkBimSubmission")
    def check(request: Request, submission_id: str,
              discipline: Literal["architecture", "structure", "mep"] | None = None) -> Response:
        """Run every check again with the stored file and IDS (409 once accepted or rejected)."""
        svc = scoped_services(request)
        store = svc.writable_store(Role.REVIEWER, Role.PLANNER)
        return _conflict_checked(lambda: check_submission(store, submission_id, settings=svc.settings,
                                                          frame=svc.frame, discipline=discipline))

    @router.post("/submissions/{submission_id}/review", name="reviewBimSubmission",
                 operation_id="reviewBimSubmission")
    def review_(request: Request, submission_id: str, body: ReviewRequest) -> Response:
        """Accept (a passed submission) or reject (passed or failed); 409 names the current status otherwise."""
        store = scoped_services(request).writable_store(Role.REVIEWER)
        return _conflict_checked(lambda: review(store, submission_id, actor=body.actor, decision=body.decision,
                                                comment=body.comment))

    @router.get("/submissions/{submission_id}/elements", name="getBimSubmissionElements",
                operation_id="getBimSubmissionElements")
    def elements(request: Request, submission_id: str,
                 f: Annotated[Literal["geojson"], Query()] = "geojson") -> Response:
        """Element footprints coloured by check result (GeoJSON, lon/lat, heights to extrude)."""
        svc = scoped_services(request)
        body = elements_geojson(svc.store(), svc.frame, submission_id)
        return JSONResponse(body, media_type="application/geo+json")

    @router.get("/compare", name="compareBimSubmissions", operation_id="compareBimSubmissions")
    def compare(request: Request, a: Annotated[str, Query(description="A submission id")],
                b: Annotated[str, Query(description="Another submission of the same project")]) -> dict[str, Any]:
        """Elements added, removed and changed (GlobalId) from the older to the newer submission."""
        store = scoped_services(request).store()
        return comparison_dict(compare_submissions(store, a, b), store)

    return router
