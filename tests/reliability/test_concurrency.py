"""Concurrent readers and writers: readers see the old or the new version, never a mix; two ingests are
serialised (one process) or the second is refused with a clear message (two processes), never interleaved."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kill_harness as kh
import pyarrow as pa
import pytest

from cim.doctor import check_store, check_tiles, content_problem
from cim.store import DatasetInfo, DuckDBStore

Rows = list[dict[str, Any]]


def _network(n: int, shift: float = 0.0) -> tuple[Rows, Rows]:
    points = [{"feature_id": f"P{i}", "point_id": f"J{i}", "category": "JS", "x": 500000.0 + 5 * i + shift,
               "y": 4057000.0, "ground_h": 30.0} for i in range(n)]
    segments = [{"feature_id": f"S{i}", "start_id": f"J{i}", "end_id": f"J{i + 1}", "category": "JS",
                 "diameter_mm": 200.0, "x1": 500000.0 + 5 * i + shift, "y1": 4057000.0,
                 "x2": 500005.0 + 5 * i + shift, "y2": 4057000.0, "start_z": 28.0, "end_z": 28.0}
                for i in range(n - 1)]
    return points, segments


def _info(dataset_id: str = "water") -> DatasetInfo:
    return DatasetInfo(id=dataset_id, title="给水", kind="pipe_survey", storage_crs="EPSG:4548")


def test_readers_during_writes_see_whole_versions(tmp_path: Path, point_table: Callable[[Rows], pa.Table],
                                                  segment_table: Callable[[Rows], pa.Table]) -> None:
    store = DuckDBStore(tmp_path / "cim.duckdb")
    sizes = [300, 1200, 50, 2000, 700]
    expected = {(n, n - 1) for n in sizes}
    p, s = _network(sizes[0])
    store.write_pipe_network(_info(), point_table(p), segment_table(s))
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                cur = store.read()
                row = cur.execute(
                    """SELECT (SELECT count(*) FROM pipe_points WHERE dataset_id = 'water' AND version_to IS NULL),
                              (SELECT count(*) FROM pipe_segments WHERE dataset_id = 'water' AND version_to IS NULL)"""
                ).fetchone()
                seen.append((int(row[0]), int(row[1])))
                cur.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i, n in enumerate(sizes[1:], start=1):
        p, s = _network(n, shift=i * 0.25)  # every row changes: closes and re-adds all of them
        store.write_pipe_network(_info(), point_table(p), segment_table(s))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(seen) > 20 and set(seen) <= expected, set(seen) - expected
    assert len(set(seen)) >= 2  # the readers did overlap the writes
    assert check_store(store.read()).ok
    store.close()


def test_writers_in_one_process_are_serialised(tmp_path: Path, point_table: Callable[[Rows], pa.Table],
                                               segment_table: Callable[[Rows], pa.Table]) -> None:
    store = DuckDBStore(tmp_path / "cim.duckdb")
    failures: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(4):
                p, s = _network(20 + 10 * k + i, shift=k)
                store.write_pipe_network(_info(), point_table(p), segment_table(s))
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert [v["version"] for v in store.versions("water")] == list(range(1, 13))
    assert check_store(store.read()).ok  # every version's counts match the rows valid at it
    store.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conc") / "inputs"
    kh.prepare(path)
    return path


@pytest.mark.skipif(not (kh.SHARED / "sewer").is_dir(), reason="../shared/data is absent")
def test_a_second_ingest_process_is_refused_clearly_while_one_writes(inputs: Path, tmp_path: Path) -> None:
    ws = kh.workspace(inputs, tmp_path / "ws")
    job = kh.jobs()["pipes_csv"]
    flag = ws / "go"
    env_cmd = [sys.executable, kh.__file__, *job.argv(ws, 0)]
    first = subprocess.Popen(env_cmd, cwd=ws, env=kh.child_env(ws, f"pause:{flag}"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{flag}.reached").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        code, err, _ = kh.run_job(ws, job.argv(ws, 1))
        assert code != 0
        assert "cannot open store" in err and "lock" in err.lower(), err
        assert "Traceback" not in err
        flag.touch()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert kh.check(ws) == []
    con = __import__("cim.doctor", fromlist=["open_read_only"]).open_read_only(ws / "store.duckdb")
    assert con.execute("SELECT count(*) FROM dataset_versions").fetchone()[0] == 1
    con.close()


@pytest.mark.skipif(not (kh.SHARED / "sewer").is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize("kind", ["tiles_bim", "tiles_pipes"])
def test_tile_readers_during_a_rebuild_always_find_a_complete_tileset(inputs: Path, tmp_path: Path,
                                                                      kind: str) -> None:
    ws = kh.workspace(inputs, tmp_path / "ws")
    job = kh.jobs()[kind]
    for argv in (kh.jobs()[kh.NEEDS[kind]].argv(ws, 0), job.argv(ws, 0)):
        code, err, _ = kh.run_job(ws, argv)
        assert code == 0, err
    folder = ws / job.tiles
    problems: list[str] = []
    reads = 0
    proc = subprocess.Popen([sys.executable, kh.__file__, *job.argv(ws, 1)], cwd=ws, env=kh.child_env(ws, None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None or reads < 5:
        text = (folder / "tileset.json").read_bytes()
        try:
            doc = json.loads(text)
        except ValueError as exc:
            problems.append(f"tileset.json torn: {exc}")
            continue
        for uri in [t["content"]["uri"] for t in _tiles(doc["root"]) if "content" in t]:
            if not (folder / uri).exists():
                # gone after the new tileset replaced this one: a client re-reads tileset.json (never a mix)
                if (folder / "tileset.json").read_bytes() == text:
                    problems.append(f"{uri}: missing while its tileset.json is current")
            elif problem := content_problem(folder / uri):
                problems.append(f"{uri}: {problem}")
        reads += 1
    assert proc.returncode == 0, proc.communicate()
    assert problems == [] and reads >= 5
    assert check_tiles(folder).ok


def _tiles(root: dict) -> list[dict]:
    out, stack = [], [root]
    while stack:
        tile = stack.pop()
        out.append(tile)
        stack += tile.get("children", [])
    return out
