"""Benchmark: the DuckDB file store vs the PostGIS store on one generated city network.

Usage: python benchmarks/store_backends.py [--segments 1000000] [--pg-url postgresql://...] [--queries 40]

Without ``--pg-url`` a throw-away PostgreSQL + PostGIS (fsync on) is started on loopback. Measured on each
backend, in this process, one after the other:

1. ingest: the full pipe ingest (read, QC, topology, versioned write) into the store;
2. move: ``cim store migrate`` of the DuckDB store into an empty PostGIS database (bulk COPY + verification);
3. bbox: ``--queries`` random 500 m boxes, counting current segments with the DuckDB SQL the API uses
   (``ST_Intersects`` over the store's connection); on PostGIS also the same count asked of PostgreSQL itself
   (``&&`` on the GiST index), which is what DuckDB's attach cannot push down;
4. tiling: the pipe tileset from each store (checked byte-identical).
Prints each time and the PostGIS / DuckDB ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _ingest(data: Path, url: str) -> tuple[float, int]:
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    t0 = time.perf_counter()
    store = open_store(url)
    version, _ = ingest_survey([data], store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), Settings(store=url))
    store.close()
    return time.perf_counter() - t0, version.counts["pipe_segments"]["total"]


def _boxes(url: str, n: int, size: float = 500.0) -> list[tuple[float, float, float, float]]:
    import numpy as np

    from cim.store import open_store

    store = open_store(url)
    minx, miny, maxx, maxy = store.read().execute(
        "SELECT min(minx), min(miny), max(maxx), max(maxy) FROM datasets").fetchone()
    store.close()
    rng = np.random.default_rng(7)
    xs = rng.uniform(minx, max(minx, maxx - size), n)
    ys = rng.uniform(miny, max(miny, maxy - size), n)
    return [(float(x), float(y), float(x) + size, float(y) + size) for x, y in zip(xs, ys, strict=True)]


def _bbox_duckdb_sql(url: str, boxes: list) -> tuple[float, list[int]]:
    from cim.store import open_store

    store = open_store(url)
    times, counts = [], []
    for b in boxes:
        t0 = time.perf_counter()
        counts.append(store.read().execute(
            "SELECT count(*) FROM pipe_segments WHERE version_to IS NULL AND ST_Intersects(geom, ST_MakeEnvelope(?, ?, ?, ?))",
            list(b)).fetchone()[0])
        times.append(time.perf_counter() - t0)
    store.close()
    return statistics.median(times), counts


def _bbox_postgis_native(url: str, boxes: list) -> tuple[float, list[int]]:
    from cim.store.postgis import pg_connect

    times, counts = [], []
    with pg_connect(url) as conn:
        for b in boxes:
            t0 = time.perf_counter()
            counts.append(conn.execute(
                "SELECT count(*) FROM pipe_segments WHERE version_to IS NULL AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4548) "
                "AND ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4548))", [*b, *b]).fetchone()[0])
            times.append(time.perf_counter() - t0)
    return statistics.median(times), counts


def _tile(url: str, out: Path) -> float:
    from cim.heights import get_geoid
    from cim.store import open_store
    from tiles.pipes import build_pipe_tileset

    store = open_store(url)
    t0 = time.perf_counter()
    build_pipe_tileset(store, out, storage_crs="EPSG:4548", geoid=get_geoid("egm96"))
    wall = time.perf_counter() - t0
    store.close()
    return wall


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=None, help="admin URL of a server to create databases on")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    from cim.store.pgserver import TempPostgres
    from converters.samples.district import blocks_for_segments, generate_district

    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-bench-"))
    bx, by = blocks_for_segments(args.segments)
    t0 = time.perf_counter()
    shutil.rmtree(work / "city", ignore_errors=True)
    summary = generate_district(work / "city", blocks_x=bx, blocks_y=by, layout="single")
    print(f"generated {bx}x{by} blocks in {time.perf_counter() - t0:.1f} s: {summary}")
    server = None if args.pg_url else TempPostgres(fsync=True)
    try:
        new_db = server.new_url if server else _databases(args.pg_url)
        duck = "duckdb:///" + str(work / "cim.duckdb")
        for stale in ("cim.duckdb", "cim.duckdb.wal"):
            (work / stale).unlink(missing_ok=True)
        pg, moved = new_db(), new_db()
        r: dict[str, float] = {}
        r["ingest_duckdb"], n = _ingest(work / "city", duck)
        r["ingest_postgis"], n_pg = _ingest(work / "city", pg)
        assert n == n_pg, (n, n_pg)
        print(f"ingest {n} segments: DuckDB {r['ingest_duckdb']:.1f} s, PostGIS {r['ingest_postgis']:.1f} s")
        from cim.store.postgis import pg_connect

        with pg_connect(pg) as conn:
            pg_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"size: DuckDB file {(work / 'cim.duckdb').stat().st_size / 1e6:.0f} MB, "
              f"PostGIS database {pg_bytes / 1e6:.0f} MB")
        from cim.store.migrate import migrate_store

        t0 = time.perf_counter()
        report = migrate_store(duck, moved)
        r["move"] = time.perf_counter() - t0
        print(f"move DuckDB → PostGIS (COPY + verify): {report.rows} rows in {r['move']:.1f} s")
        boxes = _boxes(duck, args.queries)
        r["bbox_duckdb"], c1 = _bbox_duckdb_sql(duck, boxes)
        r["bbox_postgis_attach"], c2 = _bbox_duckdb_sql(pg, boxes)
        r["bbox_postgis_native"], c3 = _bbox_postgis_native(pg, boxes)
        assert c1 == c2 == c3, "bbox counts differ between backends"
        print(f"bbox (median of {len(boxes)}, mean {statistics.mean(c1):.0f} segments each): DuckDB "
              f"{r['bbox_duckdb'] * 1e3:.1f} ms, PostGIS via attach {r['bbox_postgis_attach'] * 1e3:.1f} ms, "
              f"PostGIS native (GiST) {r['bbox_postgis_native'] * 1e3:.1f} ms")
        r["tile_duckdb"] = _tile(duck, work / "tiles-duckdb")
        r["tile_postgis"] = _tile(pg, work / "tiles-postgis")
        same = _digest(work / "tiles-duckdb") == _digest(work / "tiles-postgis")
        print(f"tiling: DuckDB {r['tile_duckdb']:.1f} s, PostGIS {r['tile_postgis']:.1f} s, identical: {same}")
        print("ratios PostGIS / DuckDB: "
              f"ingest {r['ingest_postgis'] / r['ingest_duckdb']:.2f}x, "
              f"bbox via attach {r['bbox_postgis_attach'] / r['bbox_duckdb']:.2f}x, "
              f"bbox native {r['bbox_postgis_native'] / r['bbox_duckdb']:.2f}x, "
              f"tiling {r['tile_postgis'] / r['tile_duckdb']:.2f}x")
    finally:
        if server:
            server.stop()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _databases(admin_url: str):
    """A factory of fresh databases on an existing server (``CREATE DATABASE`` + PostGIS)."""
    import itertools
    import os

    import psycopg

    counter = itertools.count()

    def new() -> str:
        name = f"cim_bench_{os.getpid()}_{next(counter)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return admin_url.rsplit("/", 1)[0] + "/" + name

    return new


if __name__ == "__main__":
    main()
