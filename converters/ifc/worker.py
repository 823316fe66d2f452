"""Parse, georeference and triangulate an IFC file in a separate process with a time and memory budget.

IfcOpenShell and OpenCASCADE run native code on untrusted files: a hostile model can loop, exhaust
memory or crash. :func:`run_worker` therefore converts in a spawned child process (address-space limit
``memory_budget_mb``, wall-clock limit ``time_budget_s``) and turns every way it can end badly into a
:class:`WorkerError` (a :class:`~cim.errors.CIMError`); the calling service process is never at risk.
Meshes stream to the caller as they are finished; when the geometry stalls (no element finished for
``geometry_stall_s``), the elements left are retried one by one in fresh children, and one that stalls
again is stored without mesh with a ``geometry.timeout`` finding instead of failing the whole file.
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
from typing import Any, NoReturn

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


def _prepare(
    header: IfcHeader, settings: Settings, placement: UserPlacement | None, say: Progress
) -> tuple[ConversionResult, Any, list[Any]]:
    """Open, georeference and read attributes: the result so far, the model and its element products.

    Stops after georeferencing on error findings (then no products).
    """
    from converters.ifc.elements import element_products, element_records, spatial_rows

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
        return result, model, []
    say("reading attributes")
    products = element_products(model)
    result.spatial = spatial_rows(model, georef)
    result.elements = element_records(model, products)
    result.stats = {"parse_s": t_parse - t0, "attributes_s": time.perf_counter() - t_parse}
    return result, model, products


def _finish(
    result: ConversionResult,
    meshes: dict[int, Any],
    failed: dict[int, str],
    settings: Settings,
    timed_out: dict[int, float] | None = None,
) -> ConversionResult:
    """Place the meshes, attach them to the elements, add geometry findings, checks and stats."""
    from converters.ifc.geometry import place

    t0 = time.perf_counter()
    origin, placed = place(meshes, result.georef)
    result.origin = origin
    _attach(result, placed, failed, timed_out or {})
    _post_checks(result, meshes, settings)
    result.stats.update(
        placement_s=time.perf_counter() - t0,
        elements=len(result.elements),
        meshes=len(placed),
        geometry_failed=len(failed) + len(timed_out or {}),
        geometry_timeout=len(timed_out or {}),
        vertices=sum(p.vertices for p in placed.values()),
        triangles=sum(p.triangles for p in placed.values()),
    )
    return result


def convert(
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None = None,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Open, georeference, read attributes and triangulate; stops after georeferencing on error findings."""
    from converters.ifc.geometry import triangulate

    say = progress or (lambda _m: None)
    result, model, products = _prepare(header, settings, placement, say)
    if result.georef.errors:
        return result
    say(f"geometry of {len(products)} elements")
    t0 = time.perf_counter()
    meshes, failed = triangulate(model, products, threads=threads, progress=say)
    result.stats.update(geometry_s=time.perf_counter() - t0, threads=threads or multiprocessing.cpu_count())
    return _finish(result, meshes, failed, settings)


def _attach(
    result: ConversionResult, placed: dict[int, Any], failed: dict[int, str], timed_out: dict[int, float]
) -> None:
    for rec in result.elements:
        mesh = placed.get(rec["step_id"])
        rec["mesh"] = mesh
        if rec["step_id"] in timed_out:
            result.findings.append(
                Finding(
                    "warning",
                    "geometry.timeout",
                    f"{rec['ifc_class']} {rec['global_id']} ({rec['name']!r}): geometry did not finish "
                    f"within {timed_out[rec['step_id']]:g} s, stored without mesh",
                    f"#{rec['step_id']} {rec['ifc_class']}",
                )
            )
        elif rec["step_id"] in failed:
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


# -- the child processes ------------------------------------------------------------------------------
def _child(conn: Connection, memory_budget_mb: int | None, task: Callable[..., None], args: tuple) -> None:
    """Entry point of a worker process: set the memory limit, run ``task(conn, *args)``, report failures."""
    _die_with_parent()
    try:
        if memory_budget_mb:
            import resource

            limit = int(memory_budget_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        task(conn, *args)
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


def _convert_task(
    conn: Connection,
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None,
    threads: int | None,
) -> None:
    """The whole file: the prepared result, then each finished element's mesh as it comes, then the failures."""
    from converters.ifc.geometry import expects_geometry, triangulate

    def say(message: str) -> None:
        conn.send(("progress", message))

    result, model, products = _prepare(header, settings, placement, say)
    conn.send(("prepared", result, [p.id() for p in products if expects_geometry(p)]))
    if result.georef.errors:
        return
    say(f"geometry of {len(products)} elements")
    _, failed = triangulate(
        model, products, threads=threads, progress=say, on_shape=lambda i, m: conn.send(("shape", i, m))
    )
    conn.send(("geometry", failed))


def _retry_task(conn: Connection, header: IfcHeader, ids: list[int]) -> None:
    """Elements ``ids`` one by one, single-threaded, each announced before it starts so a stall names it."""
    from converters.ifc.geometry import triangulate

    with openable(header) as path:
        model = load(path, header)
    for step_id in ids:
        conn.send(("start", step_id))
        meshes, failed = triangulate(model, [model.by_id(step_id)], threads=1)
        conn.send(("shape", step_id, meshes.get(step_id)))
        if failed:
            conn.send(("failed", failed))
    conn.send(("geometry", {}))


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


class _Proc:
    """One spawned worker process and the read end of its pipe."""

    def __init__(self, sup: _Supervisor, task: Callable[..., None], args: tuple) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_child,
            name=f"cim-ifc-{sup.header.path.name}",
            args=(sender, sup.memory_budget_mb, task, args),
            daemon=True,
        )
        self.sup = sup
        with _main_module_hidden():
            self.proc.start()
        sender.close()

    def receive(self, timeout: float) -> tuple | None:
        """The next message, None when none came within ``timeout``; raises when the process died."""
        if self.receiver.poll(timeout):
            try:
                return self.receiver.recv()
            except EOFError:
                raise _died(self.proc, self.sup.what, self.sup.memory_budget_mb) from None
        if not self.proc.is_alive() and not self.receiver.poll(0):
            raise _died(self.proc, self.sup.what, self.sup.memory_budget_mb)
        return None

    def close(self) -> None:
        """Kill the process if it still runs."""
        self.receiver.close()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)


@dataclass
class _Supervisor:
    """Runs the worker processes of one file under the time budget and collects the streamed meshes."""

    header: IfcHeader
    time_budget_s: float
    memory_budget_mb: int | None
    stall_s: float
    say: Progress
    deadline: float = 0.0
    geometry_from: float = 0.0  # when the prepared result came
    what: str = ""
    meshes: dict[int, Any] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    timed_out: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.time_budget_s
        self.what = f"file {self.header.path}"

    def wait(self) -> float:
        """How long to wait for the next message; raises once the time budget is spent."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeoutError(
                f"{self.what}: conversion exceeded its time budget of {self.time_budget_s:g} s and was "
                "stopped (hostile or very large geometry?); the store is unchanged"
            )
        return min(remaining, 0.25)

    def other(self, message: tuple) -> None:
        """A progress note is passed on; anything else is the child's failure and raises."""
        if message[0] != "progress":
            _outcome(message, self.what, self.memory_budget_mb)
        self.say(message[1])

    def whole_file(self, args: tuple) -> tuple[ConversionResult, list[int]]:
        """The conversion child: its prepared result and, after a geometry stall, the elements left to do."""
        proc = _Proc(self, _convert_task, args)
        result: ConversionResult | None = None
        wanted: list[int] = []
        last = 0.0
        try:
            while True:
                message = proc.receive(self.wait())
                now = time.monotonic()
                if message is None:
                    if result is not None and now - last > self.stall_s:
                        left = [i for i in wanted if i not in self.meshes]
                        self.say(
                            f"geometry stalled for {self.stall_s:g} s with {len(left)} of {len(wanted)} "
                            "elements left; retrying them one by one"
                        )
                        return result, left
                elif message[0] == "prepared":
                    result, wanted, last = message[1], message[2], now
                    self.geometry_from = now
                    if result.georef.errors:
                        return result, []
                elif message[0] == "shape":
                    self._keep(message[1], message[2])
                    last = now
                elif message[0] == "geometry" and result is not None:
                    self.failed.update(message[1])
                    return result, []
                else:
                    self.other(message)
        finally:
            proc.close()

    def one_by_one(self, ids: list[int]) -> None:
        """Elements ``ids`` in fresh single-threaded children; one past ``stall_s`` is recorded as timed out
        and the rest go on in a new child."""
        while ids:
            ids = self._retry(ids)

    def _retry(self, ids: list[int]) -> list[int]:
        proc = _Proc(self, _retry_task, (self.header, ids))
        current, started = None, 0.0
        try:
            while True:
                message = proc.receive(self.wait())
                now = time.monotonic()
                if message is None:
                    if current is not None and now - started > self.stall_s:
                        self.timed_out[current] = self.stall_s
                        self.say(f"geometry of #{current} did not finish within {self.stall_s:g} s")
                        return ids[ids.index(current) + 1 :]
                elif message[0] == "start":
                    current, started = message[1], now
                elif message[0] == "shape":
                    self._keep(message[1], message[2])
                elif message[0] == "failed":
                    self.failed.update(message[1])
                elif message[0] == "geometry":
                    return []
                else:
                    self.other(message)
        finally:
            proc.close()

    def _keep(self, step_id: int, mesh: Any) -> None:
        if mesh is not None:
            self.meshes[step_id] = mesh


def run_worker(
    header: IfcHeader,
    settings: Settings,
    placement: UserPlacement | None = None,
    *,
    time_budget_s: float = 1800.0,
    memory_budget_mb: int | None = 6144,
    threads: int | None = None,
    geometry_stall_s: float = 120.0,
    progress: Progress | None = None,
) -> ConversionResult:
    """:func:`convert` in spawned processes; every failure becomes a :class:`~cim.errors.CIMError`.

    Meshes stream to this process as they are finished. When no element finishes for ``geometry_stall_s``
    while some remain, the child is killed and the remaining elements are retried one by one in new
    single-threaded children, each within ``geometry_stall_s``; an element past it is stored without mesh
    with a ``geometry.timeout`` finding. Placement of the meshes runs here, after the children.

    Raises:
        WorkerTimeoutError: past ``time_budget_s`` in all (the process is killed).
        WorkerMemoryError: past ``memory_budget_mb`` of address space.
        WorkerError: the process crashed or died.
        InvalidInputError, CRSError, …: the conversion refused the file (re-raised with the child's class).
    """
    say = progress or (lambda _m: None)
    sup = _Supervisor(header, time_budget_s, memory_budget_mb, geometry_stall_s, say)
    result, left = sup.whole_file((header, settings, placement, threads))
    if result.georef.errors:
        return result
    sup.one_by_one(left)
    result.stats.update(
        geometry_s=time.monotonic() - sup.geometry_from,
        geometry_retried=len(left),
        threads=threads or multiprocessing.cpu_count(),
    )
    return _finish(result, sup.meshes, sup.failed, settings, sup.timed_out)


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


def _outcome(message: tuple, what: str, memory_budget_mb: int | None) -> NoReturn:
    """Raise the child's failure report as the matching :class:`WorkerError` or :class:`CIMError`."""
    kind = message[0]
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
