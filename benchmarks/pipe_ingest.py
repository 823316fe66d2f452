"""Benchmark: ingest + full survey QC of a generated city network vs DuckDB's raw load of the same files.

Usage: python benchmarks/pipe_ingest.py [--segments N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _raw_load(data: Path, db: Path, out: mp.Queue) -> None:
    """Baseline: DuckDB read_csv of points and lines + ST_MakeLine joined on point ids, into a file table."""
    import pyarrow.csv as pacsv

    from cim.pipes.fields import default_mapping, map_columns
    from cim.store.spatial import connect

    points = next(p for p in sorted(data.glob("*.csv")) if "point" in p.name.lower())
    lines = next(p for p in sorted(data.glob("*.csv")) if "line" in p.name.lower())
    mapping = default_mapping()

    def col(path: Path, kind: str, field: str) -> str:
        header = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).column_names
        return next(c for c, f in map_columns(header, kind, mapping).items() if f == field)

    pid, x, y = (col(points, "point", f) for f in ("point_id", "x", "y"))
    s, e = (col(lines, "line", f) for f in ("start_id", "end_id"))
    t0 = time.perf_counter()
    con = connect(str(db))
    con.execute(f"CREATE TABLE pts AS SELECT * FROM read_csv('{points}', header=true)")
    con.execute(
        f"""CREATE TABLE segs AS SELECT l.*, ST_MakeLine(ST_Point(a."{y}", a."{x}"), ST_Point(b."{y}", b."{x}")) AS geom
            FROM read_csv('{lines}', header=true) l
            JOIN pts a ON a."{pid}" = l."{s}" JOIN pts b ON b."{pid}" = l."{e}" """
    )
    n = con.execute("SELECT count(*) FROM segs").fetchone()[0]
    con.close()
    out.put({"wall_s": time.perf_counter() - t0, "peak_gib": _peak_rss_gib(), "segments": n})


def _ingest(data: Path, db: Path, out: mp.Queue) -> None:
    """Ours: read, normalise, full QC catalogue, topology, versioned write with R-tree indexes."""
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    t0 = time.perf_counter()
    store = open_store(str(db))
    version, report = ingest_survey(
        [data], store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), Settings(store=str(db))
    )
    store.close()
    out.put({"wall_s": time.perf_counter() - t0, "peak_gib": _peak_rss_gib(),
             "segments": version.counts["pipe_segments"]["total"], "points": version.counts["pipe_points"]["total"],
             "findings": report.summary()})


def _run(fn, *args) -> dict:
    q: mp.Queue = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=fn, args=(*args, q))
    p.start()
    p.join()
    if p.exitcode != 0 or q.empty():
        raise SystemExit(f"{fn.__name__} failed (exit code {p.exitcode})")
    return q.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-bench-"))
    data = work / "city"
    from converters.samples.district import blocks_for_segments, generate_district

    bx, by = blocks_for_segments(args.segments)
    t0 = time.perf_counter()
    if data.exists():
        shutil.rmtree(data)
    summary = generate_district(data, blocks_x=bx, blocks_y=by, layout="single")
    print(f"generated {bx}x{by} blocks in {time.perf_counter() - t0:.1f} s: {summary}")

    for stale in ("raw.duckdb", "raw.duckdb.wal", "cim.duckdb", "cim.duckdb.wal"):
        (work / stale).unlink(missing_ok=True)
    base = _run(_raw_load, data, work / "raw.duckdb")
    ours = _run(_ingest, data, work / "cim.duckdb")
    ratio = ours["wall_s"] / base["wall_s"]
    print(f"baseline  DuckDB read_csv + ST_MakeLine: {base['wall_s']:.2f} s, peak {base['peak_gib']:.2f} GiB, "
          f"{base['segments']} segments")
    print(f"ours      ingest + full QC + topology:   {ours['wall_s']:.2f} s, peak {ours['peak_gib']:.2f} GiB, "
          f"{ours['segments']} segments, {ours['points']} points, findings {ours['findings']}")
    print(f"ratio ours/baseline: {ratio:.2f}x")
    print(f"targets: wall ≤ 60 s {'OK' if ours['wall_s'] <= 60 else 'MISSED'}; "
          f"peak ≤ 4 GiB {'OK' if ours['peak_gib'] <= 4 else 'MISSED'}; "
          f"ratio ≤ 5x {'OK' if ratio <= 5 else 'MISSED'}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
