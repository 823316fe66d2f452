"""Parse, georeference and triangulate an IFC file in a separate process with a time and memory budget.

IfcOpenShell and OpenCASCADE run native code on untrusted files: a hostile model can loop, exhaust
memory or crash. :func:`run_worker` therefore converts in a spawned child process (address-space limit
``memory_budget_mb``, wall-clock limit ``time_budget_s``) and turns every way it can end badly into a
:class:`WorkerError` (a :class:`~cim.errors.CIMError`); the calling service process is never at risk.
:func:`convert` is the conversion itself, usable in-process for debugging.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from cim import errors as cim_errors
from cim.errors import CIMError
from cim.settings import Settings
from converters.ifc.georef import (
    Finding,
    Georeference,
    UserPlacement,
    check_double_offset,
    check_region,
    georeference,
)
from converters.ifc.open import IfcHeader, load, openable

Progress = Callable[[str], None]
#: how running out of an address-space limit shows in native libraries' messages
_MEMORY_SIGNS = (
    "memoryerror",
    "bad_alloc",
    "failed to map segment",
    "cannot allocate memory",
    "out of memory",
    "can't start new thread",
)


class WorkerError(CIMError):
    """The conversion process ended without a result (crash, budget exceeded)."""


class WorkerTimeoutError(WorkerError):
    """The conversion ran past its time budget and was killed."""


class WorkerMemoryError(WorkerError):
    """The conversion needed more memory than its budget."""


@dataclass
class ConversionResult:
    """Everything the store needs from one IFC file (plain data, picklable)."""

    header: IfcHeader
    georef: Georeference
    model: dict[str, Any] = field(default_factory=dict)  # schema, app, project name, units
    spatial: list[dict[str, Any]] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)
    origin: tuple[float, float, float] | None = None
    findings: list[Finding] = field(default_factory=list)  # georef + conversion findings
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        """Findings that refuse the ingest."""
        return [f for f in self.findings if f.severity == "error"]


def _model_info(model: Any, header: IfcHeader) -> dict[str, Any]:
    app = None
    for a in model.by_type("IfcApplication"):
        app = " ".join(str(v) for v in (a.ApplicationFullName, a.Version) if v)
        break
    project = (model.by_type("IfcProject") or [None])[0]
    return {
        "schema": header.schema,
        "declared_schema": header.declared_schema,
        "authoring_app": app or header.originating_system or header.preprocessor_version,
        "project_name": getattr(project, "LongName", None) or getattr(project, "Name", None),
        "products": len(model.by_type("IfcProduct")),
    }


def convert(
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None = None,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Open, georeference, read attributes and triangulate; stops after georeferencing on error findings."""
    from converters.ifc.elements import element_products, element_records, spatial_rows
    from converters.ifc.geometry import place, triangulate

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    with openable(header) as path:
        say("parsing")
        model = load(path, header)
    t_parse = time.perf_counter()
    georef = georeference(model, settings, placement)
    result = ConversionResult(header=header, georef=georef, model=_model_info(model, header))
    result.model["length_unit_m"] = georef.length_unit_m
    result.findings = list(georef.findings)
    if georef.errors:
        result.stats = {"parse_s": t_parse - t0, "stopped": "georeferencing errors"}
        return result
    say("reading attributes")
    products = element_products(model)
    result.spatial = spatial_rows(model, georef)
    result.elements = element_records(model, products)
    t_attr = time.perf_counter()
    say(f"geometry of {len(products)} elements")
    meshes, failed = triangulate(model, products, threads=threads, progress=say)
    t_geom = time.perf_counter()
    origin, placed = place(meshes, georef)
    result.origin = origin
    _attach(result, placed, failed)
    _post_checks(result, meshes, settings)
    t_end = time.perf_counter()
    result.stats = {
        "parse_s": t_parse - t0,
        "attributes_s": t_attr - t_parse,
        "geometry_s": t_geom - t_attr,
        "placement_s": t_end - t_geom,
        "elements": len(result.elements),
        "meshes": len(placed),
        "geometry_failed": len(failed),
        "vertices": sum(p.vertices for p in placed.values()),
        "triangles": sum(p.triangles for p in placed.values()),
        "threads": threads or multiprocessing.cpu_count(),
    }
    return result


def _attach(result: ConversionResult, placed: dict[int, Any], failed: dict[int, str]) -> None:
    for rec in result.elements:
        mesh = placed.get(rec["step_id"])
        rec["mesh"] = mesh
        if rec["step_id"] in failed:
            result.findings.append(
                Finding(
                    "warning",
                    "geometry.failed",
                    f"{rec['ifc_class']} {rec['global_id']} ({rec['name']!r}): geometry failed, "
                    f"stored without mesh: {failed[rec['step_id']]}",
                    f"#{rec['step_id']} {rec['ifc_class']}",
                )
            )


def _post_checks(result: ConversionResult, meshes: dict[int, Any], settings: Settings) -> None:
    """Region and double-offset checks on the converted geometry."""
    import numpy as np

    bounds = [r["mesh"].bounds for r in result.elements if r.get("mesh") is not None]
    if not bounds:
        return
    b = np.array(bounds)
    lo, hi = b[:, :3].min(axis=0), b[:, 3:].max(axis=0)
    g = result.georef
    before = len(g.findings)
    corners_e = np.array([lo[0], hi[0], lo[0], hi[0]])
    corners_n = np.array([lo[1], lo[1], hi[1], hi[1]])
    check_region(g, corners_e, corners_n, settings, "the model extent")
    verts = np.concatenate([m.verts for m in meshes.values()])
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    check_double_offset(g, float(np.hypot(centre[0], centre[1])), "the geometry")
    result.findings += g.findings[before:]


# -- the child process --------------------------------------------------------------------------------
def _child(
    conn: Connection,
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None,
    threads: int | None,
    memory_budget_mb: int | None,
) -> None:
    """Entry point of the worker process: set the memory limit, convert, send one reply."""
    _die_with_parent()
    try:
        if memory_budget_mb:
            import resource

            limit = int(memory_budget_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = convert(
            header, settings, placement, threads=threads, progress=lambda m: conn.send(("progress", m))
        )
        conn.send(("ok", result))
    except MemoryError:
        _reply(conn, ("memory", "MemoryError"))
    except CIMError as exc:
        _reply(conn, ("cim", type(exc).__name__, str(exc)))
    except BaseException as exc:  # noqa: BLE001 - everything else is reported, never raised in the child
        text = f"{type(exc).__name__}: {exc}"
        if any(sign in text.lower() for sign in _MEMORY_SIGNS):
            _reply(conn, ("memory", text))
        else:
            _reply(conn, ("crash", text, traceback.format_exc(limit=6)))
    finally:
        conn.close()


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this worker when the process that started it dies (a killed or crashed
    service must not leave a conversion running on)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the worker still ends when it next reports to a gone parent
        pass


def _reply(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except Exception:  # noqa: BLE001 - the parent reports the exit code instead
        pass


def run_worker(
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None = None,
    *,
    time_budget_s: float = 1800.0,
    memory_budget_mb: int | None = 6144,
    threads: int | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """:func:`convert` in a spawned process; every failure becomes a :class:`~cim.errors.CIMError`.

    Raises:
        WorkerTimeoutError: past ``time_budget_s`` (the process is killed).
        WorkerMemoryError: past ``memory_budget_mb`` of address space.
        WorkerError: the process crashed or died.
        InvalidInputError, CRSError, …: the conversion refused the file (re-raised with the child's class).
    """
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child,
        name=f"cim-ifc-{header.path.name}",
        args=(sender, header, settings, placement, threads, memory_budget_mb),
        daemon=True,
    )
    deadline = time.monotonic() + time_budget_s
    with _main_module_hidden():
        proc.start()
    sender.close()
    what = f"file {header.path}"
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeoutError(
                    f"{what}: conversion exceeded its time budget of {time_budget_s:g} s and was stopped "
                    "(hostile or very large geometry?); the store is unchanged"
                )
            if receiver.poll(min(remaining, 0.25)):
                try:
                    message = receiver.recv()
                except EOFError:
                    raise _died(proc, what, memory_budget_mb) from None
                if message[0] == "progress":
                    if progress:
                        progress(message[1])
                    continue
                return _outcome(message, what, memory_budget_mb)
            if not proc.is_alive() and not receiver.poll(0):
                raise _died(proc, what, memory_budget_mb)
    finally:
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join(10)


_START_LOCK = threading.Lock()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep ``spawn`` from re-running the caller's ``__main__`` in the worker (it needs nothing from it).

    Without this an unguarded script, ``python -`` or an embedding host would be re-executed (or fail to
    be) in every worker.
    """
    main = sys.modules.get("__main__")
    with _START_LOCK:
        saved = {
            k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__
        }
        if main is not None:
            main.__dict__.pop("__file__", None)
            if "__spec__" in saved:
                main.__spec__ = None
        try:
            yield
        finally:
            if main is not None:
                main.__dict__.update(saved)


def _outcome(message: tuple, what: str, memory_budget_mb: int | None) -> ConversionResult:
    kind = message[0]
    if kind == "ok":
        return message[1]
    if kind == "memory":
        raise WorkerMemoryError(
            f"{what}: conversion needed more than its memory budget of {memory_budget_mb} MB "
            f"({message[1]}); the store is unchanged"
        )
    if kind == "cim":
        cls = getattr(cim_errors, message[1], None)
        if not (isinstance(cls, type) and issubclass(cls, CIMError)):
            cls = WorkerError
        raise cls(message[2])
    raise WorkerError(f"{what}: conversion failed: {message[1]}\n{message[2]}")


def _died(proc: Any, what: str, memory_budget_mb: int | None) -> WorkerError:
    proc.join(5)
    code = proc.exitcode
    how = f"exit code {code}"
    if code is not None and code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    message = (
        f"{what}: the conversion process died ({how}) without a result: out of its memory budget of "
        f"{memory_budget_mb} MB, or a native crash in IfcOpenShell on this file; the store is unchanged"
    )
    if code in (-signal.SIGKILL, -signal.SIGABRT) and memory_budget_mb:
        return WorkerMemoryError(message)
    return WorkerError(message)
