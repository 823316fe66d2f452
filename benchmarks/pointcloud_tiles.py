"""Benchmark: LAS/LAZ point clouds to 3D Tiles 1.1, ours against ``py3dtiles convert``, in the same run.

Usage: python benchmarks/pointcloud_tiles.py [--points 50000000] [--workdir DIR] [--p3d-timeout 900]
       [--skip-generated] [--skip-p3d]

Cases:

1. ``../shared/data/pointcloud/benchmark/lambert93_epsg2154_extra_bytes_697k.laz`` (LAS 1.4, PDRF 8, extra
   bytes; the largest real sample);
2. a generated cloud of ``--points`` points (default 50 million) in Jinan (EPSG:4548, 1985 heights), written
   by laspy in flight-line strips as an uncompressed LAS 1.2 (PDRF 3, 1.7 GB at 50 M).

Each file is converted by ours (the full ``ingest_pointcloud``: header checks, checksum, 3D Tiles with glTF
POINTS content, the query copy, the catalogue row) and by ``py3dtiles convert --spec-version 1.1 --jobs 2
--srs_out 4978`` (glTF content placed in ECEF, the same output spec), each in its own process tree. Printed:
points/s, wall seconds, peak memory (the largest sum of the resident sizes of the process and all its
children, sampled every 0.1 s) and ours/py3dtiles throughput.

py3dtiles 12.1.1 hangs on LAZ input here: its main process decodes a first chunk with laspy's default
multi-threaded LAZ backend and then forks its workers, whose LAZ decoder waits forever on the threads that
did not survive the fork. It is therefore run through a two-line shim that makes laspy use the
single-threaded ``lazrs`` backend (its own code is unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_FILE = REPO.parent / "shared" / "data" / "pointcloud" / "benchmark" / "lambert93_epsg2154_extra_bytes_697k.laz"
P3D_SHIM = """
import sys, laspy
_open = laspy.open
def _serial_open(*a, **k):
    k.setdefault("laz_backend", laspy.LazBackend.Lazrs)
    return _open(*a, **k)
laspy.open = _serial_open
from py3dtiles.command_line import main
sys.exit(main())
"""


# ------------------------------------------------------------------------------------------------ measuring
def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def measure(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``cmd``; wall seconds, peak tree RSS (bytes), exit status, output tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
    done.set()
    sampler.join()
    return {"seconds": time.perf_counter() - t0, "peak": peak[0], "rc": proc.returncode, "timed_out": timed_out,
            "tail": (out or "").strip().splitlines()[-3:]}


# ------------------------------------------------------------------------------------------------ runners
def ours_child(path: str, work: str) -> None:
    """(in a child process) ingest ``path`` into a fresh store under ``work``; print the result as JSON."""
    sys.path.insert(0, str(REPO))
    from cim.settings import Settings
    from cim.store import DuckDBStore
    from converters.pointcloud.ingest import ingest_pointcloud

    settings = Settings(store=f"duckdb:///{work}/s.duckdb", assets_dir=Path(work) / "assets",
                        region_bbox=(-180, -90, 180, 90))
    store = DuckDBStore(Path(work) / "s.duckdb")
    r = ingest_pointcloud(Path(path), store, settings)
    store.close()
    print(json.dumps({"points": r.tiles["points"], "tiles": r.tiles["tiles"], "tiler_seconds": r.tiles["seconds"],
                      "density": r.metadata["density_per_m2"]}))


def run_ours(path: Path, work: Path, timeout: float) -> dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    m = measure([sys.executable, __file__, "--_ours", str(path), str(work)], timeout)
    if m["rc"] == 0:
        m.update(json.loads(m["tail"][-1]))
    shutil.rmtree(work, ignore_errors=True)
    return m


def run_py3dtiles(path: Path, work: Path, timeout: float) -> dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, "-c", P3D_SHIM, "convert", "--spec-version", "1.1", "--jobs", "2", "--srs_out", "4978",
           "--overwrite", "--out", str(work), str(path)]
    m = measure(cmd, timeout)
    shutil.rmtree(work, ignore_errors=True)
    return m


# ------------------------------------------------------------------------------------------------ data
def generate(path: Path, points: int, *, density: float = 8.0, chunk: int = 2_000_000) -> Path:
    """A LAS 1.2 PDRF 3 cloud of ``points`` points over a square in Jinan (EPSG:4548), written in chunks, each
    a west–east strip (as flight lines are); ground, trees and building roofs by class."""
    import laspy
    import numpy as np
    from pyproj import CRS

    side = (points / density) ** 0.5
    h = laspy.LasHeader(point_format=3, version="1.2")
    h.scales, h.offsets = np.array([0.001, 0.001, 0.001]), np.array([500000.0, 4050000.0, 0.0])
    h.add_crs(CRS("EPSG:4548"))
    rng = np.random.default_rng(2025)
    strips = -(-points // chunk)
    with laspy.open(str(path), mode="w", header=h) as w:
        for k in range(strips):
            n = min(chunk, points - k * chunk)
            rec = laspy.ScaleAwarePointRecord.zeros(n, header=h)
            x = 500000 + rng.random(n) * side
            y = 4050000 + (k + rng.random(n)) * side / strips
            z = 60 + 0.01 * (y - 4050000) + 1.5 * np.sin(x / 70) + rng.random(n) * 0.05
            cls = rng.choice(np.array([2, 5, 6], dtype=np.uint8), n, p=[0.7, 0.2, 0.1])
            z += np.where(cls == 5, rng.random(n) * 12, 0) + np.where(cls == 6, 25.0, 0)
            order = np.argsort(x, kind="stable")  # scan order: along the strip
            rec.x, rec.y, rec.z = x[order], y[order], z[order]
            rec.classification = cls[order]
            rec.intensity = rng.integers(0, 4096, n)
            rec.red = rng.integers(0, 65536, n)
            rec.green = rng.integers(0, 65536, n)
            rec.blue = rng.integers(0, 65536, n)
            w.write_points(rec)
    return path


# ------------------------------------------------------------------------------------------------ main
def _line(name: str, tool: str, points: int, m: dict[str, object]) -> str:
    if m["timed_out"]:
        return f"{name:<34} {tool:<10} did not finish within {m['seconds']:.0f} s (peak {m['peak'] / 2**30:.2f} GiB)"
    if m["rc"] != 0:
        return f"{name:<34} {tool:<10} FAILED (exit {m['rc']}): {m['tail']}"
    inner = f" (tiler alone {m['tiler_seconds']:.1f} s)" if "tiler_seconds" in m else ""
    return (f"{name:<34} {tool:<10} {points:>12,} pts {m['seconds']:8.1f} s {points / m['seconds']:>12,.0f} pts/s "
            f"peak {m['peak'] / 2**30:5.2f} GiB{inner}")


def bench(name: str, path: Path, points: int, work: Path, args: argparse.Namespace) -> dict[str, object]:
    ours = run_ours(path, work / "ours", args.timeout)
    print(_line(name, "ours", points, ours), flush=True)
    result: dict[str, object] = {"case": name, "points": points, "ours": ours}
    if not args.skip_p3d:
        p3d = run_py3dtiles(path, work / "p3d", args.p3d_timeout)
        print(_line(name, "py3dtiles", points, p3d), flush=True)
        result["py3dtiles"] = p3d
        if ours["rc"] == 0 and p3d["rc"] == 0 and not p3d["timed_out"]:
            ratio = p3d["seconds"] / ours["seconds"]
            print(f"{name:<34} ratio      ours is {ratio:.2f}× py3dtiles' throughput", flush=True)
            result["ratio"] = ratio
        elif ours["rc"] == 0 and p3d["timed_out"]:
            print(f"{name:<34} ratio      ours is > {p3d['seconds'] / ours['seconds']:.2f}× py3dtiles' throughput "
                  "(py3dtiles stopped at the time limit)", flush=True)
            result["ratio_at_least"] = p3d["seconds"] / ours["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=50_000_000, help="size of the generated cloud")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=3600, help="time limit of our conversion (s)")
    parser.add_argument("--p3d-timeout", type=float, default=900, help="time limit of py3dtiles (s)")
    parser.add_argument("--skip-generated", action="store_true")
    parser.add_argument("--skip-p3d", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--_ours", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._ours:
        ours_child(*args._ours)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-pc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; scratch {work}", flush=True)
    results = []
    if BENCH_FILE.is_file():
        results.append(bench(BENCH_FILE.name, BENCH_FILE, 697_721, work, args))
    else:
        print(f"{BENCH_FILE} is missing: case 1 skipped")
    if not args.skip_generated:
        path = work / f"generated_{args.points}.las"
        if not path.is_file():
            t0 = time.perf_counter()
            generate(path, args.points)
            print(f"generated {path.name}: {path.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        results.append(bench(f"generated {args.points:,}", path, args.points, work, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
