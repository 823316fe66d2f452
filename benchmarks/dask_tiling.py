"""Benchmark: pipe tiling single-process vs on a Dask LocalCluster, on one generated city network.

Usage: python benchmarks/dask_tiling.py [--segments 1000000] [--points 50000000] [--workers 2] [--regions N]
       [--workdir DIR] [--skip-pipes]

The city is generated and ingested into a DuckDB file store (timed apart), then tiled twice into empty
folders: once by ``tiles.pipes.build_pipe_tileset`` and once by ``tiles.dask_tiles.build_pipe_tileset_dask``
on a ``LocalCluster(n_workers=--workers, threads_per_worker=1)`` (cluster start-up timed apart). The two
tilesets are compared byte for byte. Then a generated point cloud (``--points``; the generator of
``benchmarks/pointcloud_tiles.py``) is tiled by ``tiles.pointcloud`` in one process (``workers=1``) and on a
LocalCluster (``dask="local"``), outputs compared byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regions", type=int, default=None, help="tile regions (default: 4 per worker)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--points", type=int, default=50_000_000, help="generated point cloud (0: skip)")
    parser.add_argument("--skip-pipes", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-bench-"))
    if not args.skip_pipes:
        pipes(args, work)
    if args.points:
        pointcloud(args, work)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def pipes(args: argparse.Namespace, work: Path) -> None:
    """The pipe tileset, single process vs Dask."""
    from cim.heights import get_geoid
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import blocks_for_segments, generate_district
    from tiles.dask_tiles import build_pipe_tileset_dask, local_cluster
    from tiles.pipes import build_pipe_tileset

    bx, by = blocks_for_segments(args.segments)
    shutil.rmtree(work / "city", ignore_errors=True)
    generate_district(work / "city", blocks_x=bx, blocks_y=by, layout="single")
    url = "duckdb:///" + str(work / "cim.duckdb")
    for stale in ("cim.duckdb", "cim.duckdb.wal"):
        (work / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = open_store(url)
    version, _ = ingest_survey([work / "city"], store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True),
                               Settings(store=url))
    print(f"ingested {version.counts['pipe_segments']['total']} segments in {time.perf_counter() - t0:.1f} s "
          f"({os.cpu_count()} CPUs on this machine)")
    geoid = get_geoid("egm96")
    for out in ("serial", "dask"):
        shutil.rmtree(work / out, ignore_errors=True)

    t0 = time.perf_counter()
    serial = build_pipe_tileset(store, work / "serial", storage_crs="EPSG:4548", geoid=geoid)
    t_serial = time.perf_counter() - t0
    print(f"single process: {t_serial:.1f} s, {serial.tiles} tiles, {serial.bytes / 1e6:.0f} MB")

    t0 = time.perf_counter()
    with local_cluster(n_workers=args.workers) as client:
        t_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask = build_pipe_tileset_dask(store, work / "dask", storage_crs="EPSG:4548", geoid=geoid, client=client,
                                       regions=args.regions)
        t_dask = time.perf_counter() - t0
    store.close()
    same = _digest(work / "serial") == _digest(work / "dask")
    print(f"Dask LocalCluster({args.workers} workers): {t_dask:.1f} s (+ {t_start:.1f} s cluster start), "
          f"{dask.tiles} tiles, byte-identical: {same}")
    print(f"speed-up single / Dask: {t_serial / t_dask:.2f}x (with cluster start {t_serial / (t_dask + t_start):.2f}x)")
    for out in ("serial", "dask"):
        shutil.rmtree(work / out, ignore_errors=True)


def pointcloud(args: argparse.Namespace, work: Path) -> None:
    """The point-cloud tileset, one process vs a Dask LocalCluster."""
    import sys

    from pyproj import CRS

    from tiles.pointcloud import PointSource, TilerOptions, build_pointcloud_tileset

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pointcloud_tiles import generate

    cloud = work / f"cloud_{args.points}.las"
    if not cloud.is_file():
        t0 = time.perf_counter()
        generate(cloud, args.points)
        print(f"generated {args.points:,} points ({cloud.stat().st_size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t0:.0f} s")
    source = PointSource(cloud, CRS.from_epsg(4548).to_wkt())
    runs = {}
    for name, opts in (("one process", TilerOptions(workers=1)),
                       (f"Dask LocalCluster({args.workers})", TilerOptions(workers=args.workers, dask="local"))):
        out = work / f"pc_{'dask' if opts.dask else 'serial'}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        r = build_pointcloud_tileset(source, out, opts)
        runs[name] = (time.perf_counter() - t0, out)
        print(f"point cloud, {name}: {runs[name][0]:.1f} s ({r.points / runs[name][0]:,.0f} points/s), "
              f"{r.tiles} tiles (cluster start included)")
    (t1, a), (t2, b) = runs.values()
    print(f"point cloud speed-up one process / Dask: {t1 / t2:.2f}x, byte-identical: {_digest(a) == _digest(b)}")
    for _, out in runs.values():
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
