"""Benchmark: pipe tiling single-process vs on a Dask LocalCluster, on one generated city network.

Usage: python benchmarks/dask_tiling.py [--segments 1000000] [--workers 2] [--regions N] [--workdir DIR]

The city is generated and ingested into a DuckDB file store (timed apart), then tiled twice into empty
folders: once by ``tiles.pipes.build_pipe_tileset`` and once by ``tiles.dask_tiles.build_pipe_tileset_dask``
on a ``LocalCluster(n_workers=--workers, threads_per_worker=1)`` (cluster start-up timed apart). The two
tilesets are compared byte for byte. The point-cloud tiler has no Dask variant yet, so it is not timed here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
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
    args = parser.parse_args()
    from cim.heights import get_geoid
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import blocks_for_segments, generate_district
    from tiles.dask_tiles import build_pipe_tileset_dask, local_cluster
    from tiles.pipes import build_pipe_tileset

    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-bench-"))
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
    if importlib.util.find_spec("tiles.pointcloud") is None:
        print("point cloud: tiles/pointcloud.py is not in this checkout; not timed")
    else:
        print("point cloud: tiles/pointcloud.py has no Dask variant yet (region partitioning not written); not timed")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
