"""Kill-and-restart fault injection: run a ``cim`` job in a child process, SIGKILL it, check the store.

Two kinds of kill: after a random delay (the parent sends SIGKILL), or at a labelled point inside the
child (``CIM_FAULT_AT``), where this module, used as the child's launcher, patches the store and the tile
writer from outside the project code:

* ``exec:N`` - SIGKILL just before the N-th statement inside a store write transaction,
* ``commit`` - just before COMMIT of the last write transaction, ``committed`` - just after it,
* ``glb:N`` - just after the N-th tile file is written,
* ``pause:FILE`` - hold the data transaction open (before COMMIT) until FILE exists (concurrency tests).

After every kill the store is checked with :func:`cim.doctor.check_store` (read-only) and the tile folders
with :func:`cim.doctor.check_tiles`; then the job is re-run without a kill and must succeed, and everything
is checked again. Used by ``tests/reliability/test_kill_jobs.py`` (a quick subset) and
``benchmarks/kill_campaign.py`` (the full campaign).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
NET_ARGS = ["--crs", "EPSG:4548", "--scale", "0.3048", "--keep-errors"]


@dataclass
class Job:
    """One kind of job: its command line for run ``i`` (variants alternate so re-runs change data)."""

    kind: str
    argv: Callable[[Path, int], list[str]]
    tiles: str | None = None  # tile folder it writes, relative to the workspace


@dataclass
class Trial:
    """One kill and what was found after it."""

    kind: str
    mode: str
    killed: bool
    errors: list[str] = field(default_factory=list)
    rerun_ok: bool = True
    rerun_errors: list[str] = field(default_factory=list)
    resumed: int = 0
    seconds: float = 0.0


def prepare(inputs: Path) -> None:
    """Inputs of every job: two district variants, an EPANET and a SWMM model, two building variants."""
    from converters.samples.building import generate_building
    from converters.samples.district import generate_district

    inputs.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate((2025, 2026)):
        generate_district(inputs / f"district{i}", blocks_x=2, blocks_y=1, seed=seed)
        generate_building(inputs / f"building{i}.ifc", variant=("v1", "v2")[i])
    for name, sub in (("Net1.inp", "water_network"), ("swmm_Example1.inp", "sewer")):
        shutil.copy(SHARED / sub / name, inputs / name)


def workspace(inputs: Path, ws: Path) -> Path:
    """A job's own folder (its store, tiles and reports) with links to the shared inputs."""
    ws.mkdir(parents=True, exist_ok=True)
    for item in inputs.iterdir():
        if not (ws / item.name).exists():
            (ws / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
    return ws


def jobs() -> dict[str, Job]:
    """Every job kind of the campaign (stores and folders relative to the workspace)."""
    store = ["--store", "store.duckdb"]
    return {
        "pipes_csv": Job("pipes_csv", lambda ws, i: [
            "ingest", f"district{i % 2}", "--crs", "EPSG:4548", "--dataset", "kill_pipes", "--report-dir", "qc",
            *store]),
        "epanet": Job("epanet", lambda ws, i: [
            "ingest", "Net1.inp", *NET_ARGS, "--offset", f"500000,4000000,{10 + i % 2}", "--dataset", "kill_net",
            "--report-dir", "qc", *store]),
        "swmm": Job("swmm", lambda ws, i: [
            "ingest", "swmm_Example1.inp", *NET_ARGS, "--offset", f"500000,4000000,{2 + i % 2}", "--dataset",
            "kill_swmm", "--report-dir", "qc", *store]),
        "ifc": Job("ifc", lambda ws, i: [
            "ifc", "ingest", f"building{i % 2}.ifc", "--dataset", "kill_bim", "--memory-budget", "3072", *store]),
        "bim_submit": Job("bim_submit", lambda ws, i: [
            "bim", "submit", f"building{i % 2}.ifc", "--project", "kill-project", "--stage", "drawing_review",
            *store]),
        "tiles_pipes": Job("tiles_pipes", lambda ws, i: [
            "tile", "--out", "tiles/pipes", "--leaf-capacity", str(60 + 40 * (i % 2)), *store], "tiles/pipes"),
        "tiles_bim": Job("tiles_bim", lambda ws, i: [
            "tile-bim", "--out", "tiles/buildings", "--leaf-capacity", str(40 + 60 * (i % 2)), *store],
            "tiles/buildings"),
    }


#: what a tiling job needs in the store first
NEEDS = {"tiles_pipes": "pipes_csv", "tiles_bim": "ifc"}


def run_job(ws: Path, argv: list[str], *, fault: str | None = None, kill_after: float | None = None,
            timeout: float = 300.0) -> tuple[int, str, bool]:
    """Run ``cim argv`` in ``ws``; returns (exit code, stderr tail, whether it died of SIGKILL)."""
    proc = subprocess.Popen([sys.executable, __file__, *argv], cwd=ws, env=child_env(ws, fault), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if kill_after is not None:
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        _reap_group(proc.pid)
    return proc.returncode, (err or "")[-2000:] + (out or "")[-500:], proc.returncode == -signal.SIGKILL


def child_env(ws: Path, fault: str | None) -> dict[str, str]:
    """Environment of a job run by this launcher (``fault``: see the module docstring)."""
    env = {**os.environ, "CIM_FAULT_AT": fault or "none", "CIM_ASSETS_DIR": str(ws / "assets"),
           "COLUMNS": "200", "PYTHONHASHSEED": "0"}
    env.pop("CIM_STORE", None)
    return env


def _reap_group(pgid: int) -> None:
    """SIGKILL what is left of the job's process group (an IFC worker orphaned by the kill)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def check(ws: Path) -> list[str]:
    """Restart the store in a fresh process, as the service would (:func:`check_here`); a restart that kills
    that process is itself an inconsistency (the store is kept under ``evidence/`` beside the workspace)."""
    import json

    proc = subprocess.run([sys.executable, __file__, "--check", str(ws)], capture_output=True, text=True,
                          timeout=300, env=child_env(ws, None))
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    evidence = ws.parent / "evidence" / f"{ws.name}-{int(time.time() * 1000)}"
    evidence.mkdir(parents=True, exist_ok=True)
    for f in ws.glob("store.duckdb*"):
        if f.is_file():
            shutil.copy(f, evidence / f.name)
    tail = " ".join(proc.stderr.split())[-300:]
    return [f"restart crashed (exit {proc.returncode}; store kept in {evidence}): {tail}"]


def check_here(ws: Path) -> list[str]:
    """Restart the store as the service would (open it read-write: WAL replay), run the doctor inside that
    session, close; then check the tile folders. Returns the inconsistencies (doctor errors)."""
    from cim.doctor import DoctorReport, check_store, check_tiles
    from cim.store import DuckDBStore

    report = DoctorReport()
    path = ws / "store.duckdb"
    if path.exists():
        try:
            store = DuckDBStore(path)  # reopening after a crash rebuilds the R-tree indexes (the store's fix)
        except Exception as exc:  # noqa: BLE001 - a store that cannot be reopened is the worst inconsistency
            return [f"restart failed: {type(exc).__name__}: {str(exc)[:300]}"]
        try:
            files = ws / "store.duckdb.files"
            check_store(store.read(), report, assets_root=ws / "assets",
                        files_root=files if files.is_dir() else None)
        finally:
            try:
                store.close()
            except Exception as exc:  # noqa: BLE001 - an invalidated database may refuse to close
                report.add("error", "close-failed", str(path), f"{type(exc).__name__}: {str(exc)[:200]}")
    for job in jobs().values():
        if job.tiles and (ws / job.tiles).exists():
            check_tiles(ws / job.tiles, report)
    return [f"{p.code} {p.where}: {p.message}" for p in report.errors]


def unchecked_submissions(ws: Path) -> list[str]:
    """Submissions stored but never checked (a kill between the ingest and the checks)."""
    from cim.doctor import open_read_only

    if not (ws / "store.duckdb").exists():
        return []
    con = open_read_only(ws / "store.duckdb")
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "bim_submissions" not in tables:
            return []
        return [r[0] for r in con.execute("SELECT id FROM bim_submissions WHERE status = 'submitted'").fetchall()]
    finally:
        con.close()


def measure(ws: Path, job: Job, i: int) -> dict[str, Any]:
    """Statements and transactions the job runs in the store, and its wall time (a clean run)."""
    marker = ws / "statements.txt"
    t0 = time.perf_counter()
    code, err, _ = run_job(ws, job.argv(ws, i), fault=f"count:{marker}")
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{job.kind}: a clean run failed ({code}): {err}")
    statements, transactions = (int(v) for v in marker.read_text().split())
    return {"statements": statements, "transactions": transactions, "seconds": elapsed}


def trial(ws: Path, job: Job, i: int, mode: str, rng: random.Random, stats: dict[str, Any]) -> Trial:
    """Kill run ``i`` of ``job`` by ``mode`` (``delay``, ``exec``, ``commit``, ``committed``, ``glb``), check,
    resume or re-run, check again."""
    t0 = time.perf_counter()
    fault, delay = None, None
    if mode == "delay":
        delay = rng.uniform(0.5, max(stats["seconds"] * 1.1, 0.6))
    elif mode == "exec":
        fault = f"exec:{rng.randint(1, max(stats['statements'], 1))}"
    elif mode == "glb":
        fault = f"glb:{rng.randint(1, 3)}"
    else:  # commit / committed: of a data transaction (the first one only creates the schema)
        fault = f"{mode}:{rng.randint(min(2, stats['transactions']), stats['transactions'])}"
    code, err, killed = run_job(ws, job.argv(ws, i), fault=fault, kill_after=delay)
    t = Trial(job.kind, fault or f"delay:{delay:.2f}", killed)
    if not killed and code != 0:
        t.errors.append(f"the run failed without a kill ({code}): {err}")
    t.errors += check(ws)
    for sid in unchecked_submissions(ws):  # resume an interrupted submission: run its checks
        c, e, _ = run_job(ws, ["bim", "check", sid, "--store", "store.duckdb"])
        t.resumed += 1
        if c != 0:
            t.rerun_errors.append(f"resuming {sid} failed ({c}): {e}")
    code, err, _ = run_job(ws, job.argv(ws, i))
    t.rerun_ok = code == 0
    if code != 0:
        t.rerun_errors.append(f"re-run failed ({code}): {err}")
    t.rerun_errors += check(ws)
    t.seconds = time.perf_counter() - t0
    return t


# ---------------------------------------------------------------------------------------------- child


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(flag: Path, timeout: float = 120.0) -> None:
    """Say the pause point was reached (``<flag>.reached``), then wait until ``flag`` exists."""
    Path(f"{flag}.reached").touch()
    deadline = time.monotonic() + timeout
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _install(fault: str) -> None:
    """Patch the store's transactions and the tile writer to die at the labelled point."""
    import atexit
    from contextlib import contextmanager

    from cim.store import duckdb_

    label, _, arg = fault.partition(":")
    state = {"statements": 0, "transactions": 0}
    original = duckdb_.DuckDBStore.transaction

    class _Counting:
        def __init__(self, con: Any) -> None:
            self._con = con

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            state["statements"] += 1
            if label == "exec" and state["statements"] == int(arg):
                _die()
            return self._con.execute(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._con, name)

    @contextmanager
    def transaction(self: Any) -> Any:
        with original(self) as con:
            state["transactions"] += 1
            number = state["transactions"]
            yield _Counting(con)
            if label == "commit" and number == int(arg):
                _die()  # everything written, COMMIT not yet run
            if label == "pause" and number == 2:  # hold the data transaction open until told to go on
                _pause(Path(arg))
        if label == "committed" and number == int(arg):
            _die()  # committed, nothing after it (no checkpoint, no close) has run

    duckdb_.DuckDBStore.transaction = transaction  # type: ignore[method-assign]
    if label == "count":
        atexit.register(lambda: Path(arg).write_text(f"{state['statements']} {state['transactions']}"))
    if label == "glb":
        import tiles.glb

        write = tiles.glb.write_atomic
        written = {"n": 0}

        def write_atomic(path: Any, data: bytes) -> None:
            write(path, data)
            written["n"] += 1
            if written["n"] == int(arg):
                _die()

        tiles.glb.write_atomic = write_atomic


def _child_main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        import json

        print(json.dumps(check_here(Path(argv[1]))))
        return
    _install(os.environ.get("CIM_FAULT_AT", "") or "none")
    from cim.cli import main

    sys.argv = ["cim", *argv]
    main()


if __name__ == "__main__":
    _child_main(sys.argv[1:])
