"""Run buildingSMART IDS 1.0 specifications over an IFC file with ifctester, in a worker process.

``check_ids(ifc, ids)`` answers per specification whether the model passes, and one
:class:`Finding` per element that fails a requirement (rule id = the specification's ``identifier``,
else its name; expected = the requirement in words; found = ifctester's failure reason).

What this wrapper adds to ifctester 0.9:

* **Isolation**: checks run in a fresh interpreter (``python -c``; task and result travel as JSON over
  stdin/stdout, nothing is unpickled) with a wall-clock budget (``timeout_s``) and an optional
  address-space limit, so a hostile IFC or IDS cannot hang or exhaust the service; the process is
  killed when the budget is spent. Works from any caller (no ``__main__`` guard needed).
* **IDS validity**: an IDS must be well-formed and valid against the IDS 1.0 XSD (else
  :class:`InvalidInputError` naming the file and the reason). A semantic audit then finds what the
  XSD cannot: unknown or lower-case IFC classes, attributes the applicable class does not have
  (or has only as derived/inverse attributes), values that cannot match their type (``FALSE``,
  ``42,3``, ``42.0`` for an integer, value checks on entity- or select-valued attributes, patterns
  on numbers), requirements in a prohibited specification. With ``strict=True`` (default) such an
  IDS is refused; with ``strict=False`` the problems are listed in ``IdsReport.ids_issues`` and the
  model is reported as failing.
* **IDS 1.0 semantics ifctester 0.9 misses** (patched inside the worker process only): real values
  compare with the standard's tolerance ``|expected| · 1e-6 + 1e-6`` (also for range bounds, which
  tighten for exclusive bounds); an optional attribute passes when it is null (not when empty);
  restrictions read as words in findings (``matching '…'``, ``one of …``).
* **Schema aliases**: headers such as ``IFC4X3_ADD1`` (refused by ifcopenshell 0.9) are read as the
  nearest supported schema (``IFC4X3_ADD2``) from a temporary copy with the header rewritten.
* **Severity**: IDS has none; a specification whose ``instructions`` attribute starts with
  ``[warning]`` or ``[info]`` yields findings of that severity, all others ``error``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cim.bim.ifc_schema import FILE_SCHEMA, SCHEMA_ALIASES, SUPPORTED_SCHEMAS, rewrite_schema
from cim.errors import CIMError, InvalidInputError, NotFoundError

#: The default rule set for Chinese drawing review at delivery level LOD3.0 (构件级).
CN_REVIEW_LOD300 = Path(__file__).with_name("rules") / "cn_review_lod300.ids"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_FINDINGS_PER_SPEC = 5_000
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")

IdsSource = str | Path | bytes

_IDS_NS = "{http://standards.buildingsmart.org/IDS}"
_SEVERITY_TOKEN = re.compile(r"^\s*\[(error|warning|info)\]", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One check result worth reporting; the fields of a ``bim_check_findings`` row (less submission).

    ``check_kind`` is ``ids``, ``georef``, ``delivery`` or ``clearance``; ``severity`` one of
    :data:`SEVERITIES`.
    """

    check_kind: str
    rule_id: str
    severity: str
    message: str
    global_id: str | None = None
    ifc_class: str | None = None
    expected: str | None = None
    found: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding as a plain dict (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class SpecificationResult:
    """Outcome of one IDS specification: pass/fail and how many elements it applied to and failed."""

    rule_id: str
    name: str
    usage: str  # required | optional | prohibited
    severity: str
    passed: bool
    applicable: int
    failed: int
    description: str | None = None
    ifc_versions: tuple[str, ...] = ()


@dataclass
class IdsReport:
    """The result of one IDS run over one IFC file."""

    ids_name: str
    ids_title: str | None
    ifc_name: str
    ifc_schema: str  # the schema the file was read as
    ifc_schema_declared: str | None  # the header's schema when an alias was applied
    specifications: list[SpecificationResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    ids_issues: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the IDS is sound and no finding is an error."""
        return not self.ids_issues and not any(f.severity == "error" for f in self.findings)

    def summary(self) -> dict[str, Any]:
        """Counts for a submission summary."""
        by_severity = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        return {
            "ids": self.ids_name,
            "specifications": len(self.specifications),
            "specifications_failed": sum(not s.passed for s in self.specifications),
            "findings": len(self.findings),
            **{f"{s}s": n for s, n in by_severity.items()},
            "ids_issues": len(self.ids_issues),
            "ifc_schema": self.ifc_schema,
            "seconds": round(self.seconds, 3),
        }


# -- public API ---------------------------------------------------------------------------------
def check_ids(
    ifc_path: str | Path,
    ids: IdsSource = CN_REVIEW_LOD300,
    *,
    strict: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit_bytes: int | None = None,
    max_findings_per_spec: int = DEFAULT_MAX_FINDINGS_PER_SPEC,
) -> IdsReport:
    """Check an IFC file against an IDS (a path, or the XML as text/bytes) in a worker process.

    Raises:
        NotFoundError: the IFC or IDS file does not exist.
        InvalidInputError: the IDS is malformed, invalid against the IDS 1.0 schema or (``strict``)
            semantically unusable; the IFC cannot be read; the check ran past ``timeout_s`` or
            ``memory_limit_bytes``.
        CIMError: ifctester itself failed on the model.
    """
    (outcome,) = check_ids_many(
        [(ifc_path, ids)],
        strict=strict,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
        max_findings_per_spec=max_findings_per_spec,
    )
    if isinstance(outcome, CIMError):
        raise outcome
    return outcome


def check_ids_many(
    jobs: Sequence[tuple[str | Path, IdsSource]],
    *,
    strict: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit_bytes: int | None = None,
    max_findings_per_spec: int = DEFAULT_MAX_FINDINGS_PER_SPEC,
) -> list[IdsReport | CIMError]:
    """Run several (IFC, IDS) checks in one worker process sharing one time budget.

    Returns one entry per job, in order: the report, or the error that job raised (a refused IDS,
    an unreadable IFC). A budget overrun or a crashed worker raises for the whole batch.
    """
    prepared = [(str(_existing(ifc, "IFC")), _ids_job(ids)) for ifc, ids in jobs]
    task = {"jobs": prepared, "strict": strict, "cap": max_findings_per_spec}
    label = Path(prepared[0][0]).name if len(prepared) == 1 else f"{len(prepared)} IFC/IDS checks"
    return [_outcome(o) for o in _run_in_worker(task, timeout_s, memory_limit_bytes, label)]


def validate_ids(ids: IdsSource, *, timeout_s: float = 60.0) -> list[str]:
    """Validate an IDS: XSD errors raise :class:`InvalidInputError`; semantic problems are returned."""
    task = {"jobs": [(None, _ids_job(ids))], "strict": False, "cap": 0}
    (outcome,) = [_outcome(o) for o in _run_in_worker(task, timeout_s, None, _ids_job(ids)[2])]
    if isinstance(outcome, CIMError):
        raise outcome
    return outcome  # type: ignore[return-value]


# -- parent side --------------------------------------------------------------------------------
def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{what} file {p} does not exist")
    return p


def _ids_job(ids: IdsSource) -> tuple[str, str | bytes, str]:
    """(kind, value, label): kind ``path`` or ``xml``."""
    if isinstance(ids, bytes):
        return "xml", base64.b64encode(ids).decode("ascii"), "<IDS text>"
    if isinstance(ids, str) and ids.lstrip("\ufeff \t\r\n").startswith("<"):
        return "xml", base64.b64encode(ids.encode("utf-8")).decode("ascii"), "<IDS text>"
    path = _existing(ids, "IDS")
    return "path", str(path), path.name


def _outcome(raw: tuple[Any, ...]) -> Any:
    kind = raw[0]
    if kind == "ok":
        return raw[1]
    if kind == "invalid":
        return InvalidInputError(raw[1], file=raw[2])
    return CIMError(raw[1])


def _run_in_worker(task: dict[str, Any], timeout_s: float, memory_limit: int | None, label: str) -> list:
    """Run ``task`` in a fresh interpreter (JSON in on stdin, JSON out); killed past ``timeout_s``."""
    task = {**task, "memory_limit": memory_limit}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from cim.bim.ids import _worker_main; _worker_main()"],
            input=json.dumps(task).encode(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInputError(
            f"IDS check did not finish within {timeout_s:g} s and was stopped "
            "(the model is too large for the time budget, or malformed)",
            file=label,
        ) from None
    try:
        outcomes = json.loads(done.stdout)
    except ValueError:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise InvalidInputError(
            f"the IDS check process ended without a result (exit code {done.returncode}; {tail[0][:300]}): "
            "the file is too large for the memory limit, or malformed",
            file=label,
        ) from None
    return [_decode(o) for o in outcomes]


def _decode(raw: list[Any]) -> tuple[Any, ...]:
    if raw[0] == "ok" and isinstance(raw[1], dict):
        r = dict(raw[1])
        r["specifications"] = [
            SpecificationResult(**{**s, "ifc_versions": tuple(s["ifc_versions"])})
            for s in r["specifications"]
        ]
        r["findings"] = [Finding(**f) for f in r["findings"]]
        return "ok", IdsReport(**r)
    return tuple(raw)


# -- worker side --------------------------------------------------------------------------------
def _worker_main() -> None:
    """Entry point of the worker interpreter: read the task from stdin, write outcomes to stdout."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, never into the result
    task = json.loads(sys.stdin.buffer.read())
    jobs = [
        (ifc, (kind, base64.b64decode(v) if kind == "xml" else v, name))
        for ifc, (kind, v, name) in task["jobs"]
    ]
    try:
        if task.get("memory_limit"):
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (task["memory_limit"], task["memory_limit"]))
        _patch_ifctester()
        outcomes = [_run_job(ifc, ids, task["strict"], task["cap"]) for ifc, ids in jobs]
    except BaseException as exc:  # noqa: BLE001 - report, never die silently
        outcomes = [("error", f"IDS check failed: {type(exc).__name__}: {exc}")] * len(jobs)
    json.dump(
        [[o[0], asdict(o[1]), *o[2:]] if isinstance(o[1], IdsReport) else list(o) for o in outcomes], out
    )
    out.close()


def _run_job(ifc_path: str | None, ids_job: tuple[str, Any, str], strict: bool, cap: int) -> tuple:
    start = time.perf_counter()
    kind, value, ids_name = ids_job
    try:
        doc, identifiers = _load_ids(kind, value)
    except _InvalidIds as exc:
        return "invalid", str(exc), ids_name
    issues = _audit(doc)
    if ifc_path is None:
        return "ok", issues
    if issues and strict:
        return "invalid", "IDS is not usable: " + "; ".join(issues), ids_name
    import ifcopenshell

    ifc_name = Path(ifc_path).name
    try:
        with openable_ifc(ifc_path) as (path, declared, used):
            model = ifcopenshell.open(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unreadable file
        return "invalid", f"cannot read the IFC file: {type(exc).__name__}: {exc}", ifc_name
    try:
        doc.validate(model)
        report = _report(
            doc, identifiers, model, ids_name, ifc_name, declared if declared != used else None, cap
        )
    except MemoryError:
        return "error", f"IDS check ran out of memory on {ifc_name}"
    except Exception as exc:  # noqa: BLE001 - an ifctester failure is reported, not fatal to the batch
        return "error", f"IDS check of {ifc_name} failed in ifctester: {type(exc).__name__}: {exc}"
    report.ids_issues = issues
    report.findings[:0] = [
        Finding("ids", "IDS-AUDIT", "error", f"the IDS itself is unsound: {issue}") for issue in issues
    ]
    report.seconds = time.perf_counter() - start
    return "ok", report


class _InvalidIds(Exception):
    pass


def _load_ids(kind: str, value: Any) -> tuple[Any, list[str | None]]:
    """Parse and XSD-validate an IDS; returns the ifctester document and the specification identifiers."""
    from ifctester import ids as ids_mod

    try:
        data = Path(value).read_bytes() if kind == "path" else value
        root = ET.fromstring(data)
        if root.tag != f"{_IDS_NS}ids":
            raise _InvalidIds(f"the root element is {root.tag!r}, not an IDS 1.0 <ids> element")
        identifiers = [s.get("identifier") for s in root.iter(f"{_IDS_NS}specification")]
        doc = (
            ids_mod.open(value, validate=True)
            if kind == "path"
            else ids_mod.from_string(data.decode("utf-8-sig"), validate=True)
        )
    except _InvalidIds:
        raise
    except ids_mod.IdsXmlValidationError as exc:
        err = exc.xml_error
        where = f" at {err.path}" if getattr(err, "path", None) else ""
        raise _InvalidIds(f"IDS is not valid against the IDS 1.0 schema{where}: {err.reason}") from None
    except ET.ParseError as exc:
        raise _InvalidIds(f"IDS is not well-formed XML: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure makes the IDS unusable
        raise _InvalidIds(f"IDS cannot be read: {type(exc).__name__}: {exc}") from None
    return doc, identifiers


def _severity(spec: Any) -> str:
    match = _SEVERITY_TOKEN.match(spec.instructions or "")
    return match.group(1).lower() if match else "error"


def _report(
    doc: Any,
    identifiers: list[str | None],
    model: Any,
    ids_name: str,
    ifc_name: str,
    declared: str | None,
    cap: int,
) -> IdsReport:
    report = IdsReport(
        ids_name=ids_name,
        ids_title=doc.info.get("title"),
        ifc_name=ifc_name,
        ifc_schema=model.schema_identifier,
        ifc_schema_declared=declared,
    )
    for i, spec in enumerate(doc.specifications):
        rule_id = (identifiers[i] if i < len(identifiers) else None) or spec.name
        severity = _severity(spec)
        usage = spec.get_usage()
        findings = list(_spec_findings(spec, rule_id, severity, usage))
        if cap and len(findings) > cap:
            extra = len(findings) - cap
            findings = findings[:cap] + [
                Finding("ids", rule_id, "info", f"{spec.name}: {extra} further failures are not listed")
            ]
        report.findings.extend(findings)
        versions = spec.ifcVersion if isinstance(spec.ifcVersion, list) else str(spec.ifcVersion).split()
        report.specifications.append(
            SpecificationResult(
                rule_id=rule_id,
                name=spec.name,
                usage=usage,
                severity=severity,
                passed=bool(spec.status),
                applicable=len(spec.applicable_entities),
                failed=len(spec.failed_entities),
                description=spec.description or None,
                ifc_versions=tuple(versions),
            )
        )
    return report


def _element(el: Any) -> tuple[str | None, str]:
    return getattr(el, "GlobalId", None) if el.is_a("IfcRoot") else None, el.is_a()


def _spec_findings(spec: Any, rule_id: str, severity: str, usage: str) -> Iterator[Finding]:
    if spec.status:
        return
    applicability = "; ".join(f.to_string("applicability", spec, None) for f in spec.applicability)
    if usage == "prohibited":
        for el in spec.applicable_entities:
            gid, cls = _element(el)
            yield Finding(
                "ids",
                rule_id,
                severity,
                f"{spec.name}: prohibited element present (#{el.id()} {cls})",
                gid,
                cls,
                f"no element matches: {applicability}",
                "the element matches",
            )
        return
    if usage == "required" and not spec.applicable_entities:
        yield Finding(
            "ids",
            rule_id,
            severity,
            f"{spec.name}: no element matches the applicability ({applicability})",
            None,
            None,
            f"at least one element: {applicability}",
            "none",
        )
    for facet in spec.requirements:
        expected = facet.to_string("requirement", spec, facet)
        for failure in facet.failures:
            el = failure["element"]
            gid, cls = _element(el)
            found = failure["reason"] or "the requirement is not met"
            ref = gid or f"#{el.id()}"
            yield Finding(
                "ids", rule_id, severity, f"{spec.name}: {cls} {ref}: {found}", gid, cls, expected, found
            )


# -- IFC schema aliases -------------------------------------------------------------------------
_HEADER_BYTES = 1 << 16


def schema_alias(name: str) -> str | None:
    """The ifcopenshell schema to read a header's schema name as (``IFC4X3_ADD1`` -> ``IFC4X3_ADD2``)."""
    upper = name.strip().upper()
    if upper in SUPPORTED_SCHEMAS:
        return upper
    if upper in SCHEMA_ALIASES:
        return SCHEMA_ALIASES[upper]
    if upper.startswith("IFC4X3"):
        return "IFC4X3_ADD2"
    if upper.startswith("IFC2X3"):
        return "IFC2X3"
    if re.fullmatch(r"IFC4(_ADD\d|_TC\d|_ADD\d_TC\d)?", upper):
        return "IFC4"
    return None


@contextlib.contextmanager
def openable_ifc(path: str | Path) -> Iterator[tuple[Path, str | None, str | None]]:
    """(path ifcopenshell can open, declared schema, schema used): a temporary copy when aliased."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(_HEADER_BYTES)
    match = FILE_SCHEMA.search(head)
    declared = match.group(1).decode("ascii", "replace") if match else None
    used = schema_alias(declared) if declared else None
    if declared is None or used is None or used == declared:
        yield path, declared, used or declared
        return
    with tempfile.TemporaryDirectory(prefix="cim-ifc-") as tmp:
        copy = Path(tmp) / path.name
        rewrite_schema(path, copy, used)
        yield copy, declared, used


# -- ifctester fixes (worker process only) ------------------------------------------------------
_BOUNDS = ("minInclusive", "minExclusive", "maxInclusive", "maxExclusive")
_TOL = Decimal("1e-6")
_patched = False


def _dec(x: float | str) -> Decimal:
    return Decimal(repr(x) if isinstance(x, float) else str(x).strip())


def _tolerance(expected: Decimal) -> Decimal:
    return _TOL * (1 + abs(expected))


def ids_equal(actual: float, expected: float) -> bool:
    """IDS 1.0 real comparison: ``|actual - expected| <= |expected| · 1e-6 + 1e-6``."""
    a, e = _dec(actual), _dec(expected)
    if not (a.is_finite() and e.is_finite()):
        return actual == expected
    return e - _tolerance(e) <= a <= e + _tolerance(e)


def _within_bound(actual: float, constraint: str, bound: str) -> bool:
    a, b = _dec(actual), _dec(bound)
    if not (a.is_finite() and b.is_finite()):
        return False
    tol = _tolerance(b)
    if constraint == "minInclusive":
        return a >= b - tol
    if constraint == "minExclusive":
        return a > b + tol
    if constraint == "maxInclusive":
        return a <= b + tol
    return a < b - tol


_BOUND_WORDS = {"minInclusive": ">=", "minExclusive": ">", "maxInclusive": "<=", "maxExclusive": "<"}


def restriction_text(restriction: Any) -> str:
    """An IDS restriction in words for reports (``one of A, B``, ``matching '[0-9]+'``, ``>= 0``)."""
    parts = []
    for key, value in restriction.options.items():
        values = [str(v) for v in (value if isinstance(value, list) else [value])]
        if key == "enumeration":
            shown = ", ".join(values[:8]) + (f", … ({len(values)} in all)" if len(values) > 8 else "")
            parts.append(f"one of {shown}")
        elif key == "pattern":
            parts.append(" and ".join(f"matching '{v}'" for v in values))
        elif key in _BOUND_WORDS:
            parts.append(" and ".join(f"{_BOUND_WORDS[key]} {v}" for v in values))
        else:
            parts.append(" and ".join(f"{key} {v}" for v in values))
    return " and ".join(parts) or "any value"


def _patch_ifctester() -> None:
    """Apply the IDS 1.0 fixes to ifctester's classes (call only inside the worker process)."""
    global _patched
    if _patched:
        return
    from ifctester import facet

    original_eq = facet.Restriction.__eq__
    original_attribute = facet.Attribute.__call__

    def restriction_eq(self: Any, other: Any) -> bool:
        if not isinstance(other, float) or not any(k in self.options for k in (*_BOUNDS, "enumeration")):
            return original_eq(self, other)
        rest = {}
        try:
            for key, value in self.options.items():
                values = value if isinstance(value, list) else [value]
                if key in _BOUNDS:
                    if not all(_within_bound(other, key, v) for v in values):
                        return False
                elif key == "enumeration":
                    if not any(ids_equal(other, float(v)) for v in values):
                        return False
                else:
                    rest[key] = value
        except (ValueError, ArithmeticError):
            return False
        if not rest:
            return True
        return original_eq(facet.Restriction(options=rest, base=self.base), other)

    def attribute_call(self: Any, inst: Any, logger: Any = None) -> Any:
        result = original_attribute(self, inst, logger)
        reason = result.reason or {}
        is_null = reason.get("type") == "NOVALUE" or (
            reason.get("type") == "FALSEY" and reason["actual"] is None
        )
        if not result and self.cardinality == "optional" and is_null:
            return facet.AttributeResult(True)  # optional: a null attribute passes, an empty one fails
        return result

    facet.is_x = lambda value, cast_value: ids_equal(value, cast_value)
    facet.Restriction.__str__ = restriction_text
    facet.Restriction.__eq__ = restriction_eq
    facet.Attribute.__call__ = attribute_call
    _patched = True


# -- semantic audit of an IDS -------------------------------------------------------------------
_INTEGER = re.compile(r"[+-]?\d+")
_DOUBLE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?INF|NaN")
_BOOLEAN = {"true", "false", "1", "0"}
_LOGICAL = _BOOLEAN | {"unknown"}


def _schemas(spec: Any) -> list[Any]:
    import ifcopenshell.ifcopenshell_wrapper as w

    versions = spec.ifcVersion if isinstance(spec.ifcVersion, list) else str(spec.ifcVersion).split()
    out = []
    for v in versions:
        with contextlib.suppress(Exception):
            out.append(w.schema_by_name(v))
    return out


def _declaration(schema: Any, name: str) -> Any | None:
    try:
        return schema.declaration_by_name(name)
    except Exception:  # noqa: BLE001 - not in this schema
        return None


def _names(value: Any) -> list[str] | None:
    """Literal names of a simple value or an enumeration restriction; None for patterns and others."""
    if isinstance(value, str):
        return [value]
    options = getattr(value, "options", None)
    if options and set(options) == {"enumeration"}:
        enum = options["enumeration"]
        return list(enum) if isinstance(enum, list) else [enum]
    return None


def _literals(value: Any) -> list[str]:
    """Every literal that a value (simple or restriction) compares against."""
    if isinstance(value, str):
        return [value]
    options = getattr(value, "options", None) or {}
    out: list[str] = []
    for key in ("enumeration", *_BOUNDS):
        v = options.get(key)
        if v is not None:
            out.extend(v if isinstance(v, list) else [v])
    return out


def _value_kind(t: Any) -> str:
    """integer | real | number | boolean | logical | string | binary | entity | select | enum | aggregate."""
    for _ in range(32):
        kind = type(t).__name__
        if kind in ("named_type", "type_declaration"):
            t = t.declared_type()
        elif kind == "simple_type":
            return str(t.declared_type())
        elif kind == "entity":
            return "entity"
        elif kind == "select_type":
            return "select"
        elif kind == "enumeration_type":
            return "enum"
        else:
            return "aggregate"
    return "aggregate"


def _literal_problem(kind: str, value: Any) -> str | None:
    """Why the IDS value can never match a value of this base kind, or None."""
    options = getattr(value, "options", None) or {}
    if kind in ("integer", "real", "number", "boolean", "logical") and "pattern" in options:
        return f"a pattern never matches a {kind} value"
    for literal in _literals(value):
        text = str(literal).strip()
        if kind == "integer" and not _INTEGER.fullmatch(text):
            return f"{text!r} is not an integer"
        if kind in ("real", "number") and not _DOUBLE.fullmatch(text):
            return f"{text!r} is not a number in XML notation (e.g. 42.3)"
        if kind == "boolean" and text not in _BOOLEAN:
            return f"{text!r} is not a boolean (write true or false, in lower case)"
        if kind == "logical" and text not in _LOGICAL:
            return f"{text!r} is not a logical (true, false or unknown, in lower case)"
    return None


def _audit_entity(name: Any, schemas: list[Any], where: str) -> list[str]:
    issues = []
    for n in _names(name) or []:
        if n != n.upper():
            issues.append(f"{where}: IFC class {n!r} must be written in upper case ({n.upper()})")
        elif schemas and not any(
            (d := _declaration(s, n)) is not None and type(d).__name__ == "entity" for s in schemas
        ):
            issues.append(f"{where}: {n} is not an IFC class of {'/'.join(s.name() for s in schemas)}")
    return issues


def _applicable(spec: Any, schemas: list[Any]) -> list[Any] | None:
    """Entity declarations the applicability names literally (None when not literal)."""
    entities = [f for f in spec.applicability if type(f).__name__ == "Entity"]
    if len(entities) != 1:
        return None
    names = _names(entities[0].name)
    if not names:
        return None
    decls = [d.as_entity() for s in schemas for n in names if (d := _declaration(s, n)) is not None]
    decls = [d for d in decls if d is not None]
    return decls or None


def _audit_attribute(facet: Any, decls: list[Any] | None, where: str) -> list[str]:
    if decls is None or not isinstance(facet.name, str):
        return []
    name = facet.name
    classes = "/".join(sorted({d.name().upper() for d in decls}))
    attrs = [a for d in decls for a in d.all_attributes() if a.name() == name]
    if not attrs:
        if any(a.name() == name for d in decls for a in d.all_inverse_attributes()):
            return [f"{where}: {name} is an inverse attribute of {classes} and cannot be checked"]
        return [f"{where}: {classes} has no attribute {name} (or only a derived one), it cannot be checked"]
    if facet.value is None:
        return []
    kind = _value_kind(attrs[0].type_of_attribute())
    if kind in ("entity", "select"):
        return [f"{where}: {name} of {classes} is {kind}-valued; a value check on it always fails"]
    problem = _literal_problem(kind, facet.value)
    return [f"{where}: attribute {name}: {problem}"] if problem else []


def _audit_property(facet: Any, schemas: list[Any], where: str) -> list[str]:
    data_type = getattr(facet, "dataType", None)
    if not data_type or not schemas:
        return []
    decls = [d for s in schemas if (d := _declaration(s, str(data_type))) is not None]
    if not decls:
        return [f"{where}: dataType {data_type} is not an IFC type of {'/'.join(s.name() for s in schemas)}"]
    if facet.value is None:
        return []
    problem = _literal_problem(_value_kind(decls[0]), facet.value)
    return [f"{where}: property {facet.baseName} ({data_type}): {problem}"] if problem else []


def _audit(doc: Any) -> list[str]:
    """Problems that make a schema-valid IDS unusable (see module docstring)."""
    issues: list[str] = []
    for i, spec in enumerate(doc.specifications, 1):
        where = f"specification {i} ({spec.name})"
        schemas = _schemas(spec)
        if spec.maxOccurs == 0 and spec.requirements:
            issues.append(f"{where}: a prohibited specification must not have requirements")
        decls = _applicable(spec, schemas)
        for facet in (*spec.applicability, *spec.requirements):
            kind = type(facet).__name__
            if kind in ("Entity", "PartOf") and getattr(facet, "name", None) is not None:
                issues.extend(_audit_entity(facet.name, schemas, where))
            elif kind == "Attribute":
                issues.extend(_audit_attribute(facet, decls, where))
            elif kind == "Property":
                issues.extend(_audit_property(facet, schemas, where))
    return issues
