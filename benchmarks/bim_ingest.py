"""Benchmark: an IFC model into the store (worker process, attributes, geometry, placement, versioned write) and
the buildings tileset, against IfcOpenShell's bare geometry iterator over the same file, in one run.

Baseline: ``ifcopenshell.open`` + ``ifcopenshell.geom.iterator`` with the converter's settings (world
coordinates, welded vertices, no normals, no default materials) on as many threads as ours (every core),
reading each shape's vertex and index buffers — parsing and triangulating, nothing else. Each measured step
runs in its own forked child, so its peak RSS (including its own children: our conversion worker) is its own.

Default file: the largest ``*.ifc`` under ``../shared/data`` of at most ``--max-mb`` (5 MB). The 11.7 MB
railway model in ``ifc/benchmark`` is past that because IfcOpenShell's iterator alone takes more than
5 minutes on 2 cores there; give it with ``--file`` to measure it anyway.

Usage: python benchmarks/bim_ingest.py [--file F.ifc] [--max-mb 5] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: Where the model is placed (over 历山路 of the sample district, EPSG:4548, 1985 height).
PLACEMENT = ("EPSG:4548", 501990.0, 4058050.0, 75.3)


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _baseline(path: Path, threads: int, out: mp.Queue) -> None:
    """IfcOpenShell alone: parse, then the geometry iterator over every product with the same settings."""
    import ifcopenshell
    import ifcopenshell.geom
    import numpy as np

    from converters.ifc.geometry import _settings

    t0 = time.perf_counter()
    model = ifcopenshell.open(str(path))
    t_parse = time.perf_counter()
    it = ifcopenshell.geom.iterator(_settings(), model, threads)
    shapes = triangles = 0
    if it.initialize():
        while True:
            g = it.get().geometry
            triangles += len(np.frombuffer(g.faces_buffer, dtype="<i4")) // 3
            np.frombuffer(g.verts_buffer, dtype="<f8").reshape(-1, 3).copy()
            shapes += 1
            if not it.next():
                break
    out.put({"wall_s": time.perf_counter() - t0, "parse_s": t_parse - t0, "peak_mib": _peak_rss_mib(),
             "shapes": shapes, "triangles": triangles})


def _ours(path: Path, work: Path, threads: int, out: mp.Queue) -> None:
    """Ours: ingest (sniff, worker: parse, georeference, attributes, geometry, placement; store write) + tiles."""
    from cim.heights import get_geoid
    from cim.settings import Settings
    from cim.store import DuckDBStore
    from converters.ifc.georef import UserPlacement
    from converters.ifc.ingest import IfcOptions, ingest_ifc
    from tiles.buildings import build_buildings_tileset

    db = work / "cim.duckdb"
    for stale in (db, work / "cim.duckdb.wal"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(work / "tiles", ignore_errors=True)
    settings = Settings(store=f"duckdb:///{db}")
    geoid = get_geoid(settings.geoid, settings.geoid_path)
    t_open = time.perf_counter()
    store = DuckDBStore(db)  # a service has its store open: opening it is reported, not compared
    t0 = time.perf_counter()
    result = ingest_ifc(path, store, IfcOptions(dataset_id="bench", placement=UserPlacement(*PLACEMENT),
                                                threads=threads), settings)
    t_ingest = time.perf_counter()
    tiles = build_buildings_tileset(store, work / "tiles", storage_crs=settings.storage_crs, geoid=geoid)
    store.close()
    t_end = time.perf_counter()
    out.put({"wall_s": t_end - t0, "ingest_s": t_ingest - t0, "tiles_s": t_end - t_ingest, "open_s": t0 - t_open,
             "peak_mib": _peak_rss_mib(), "elements": result.counts["elements"], "meshes": result.counts["meshes"],
             "timings": {k: round(v, 2) for k, v in result.timings.items()}, "tiles_written": tiles.written,
             "tile_bytes": tiles.bytes})


def _run(fn, *args) -> dict:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    p.join()
    if p.exitcode != 0 or q.empty():
        raise SystemExit(f"{fn.__name__} failed (exit code {p.exitcode})")
    return q.get()


def pick_file(max_mb: float) -> tuple[Path, str]:
    """The largest IFC under ``DATA`` of at most ``max_mb``, and a line saying what was skipped."""
    files = sorted(DATA.rglob("*.ifc"), key=lambda p: p.stat().st_size, reverse=True)
    if not files:
        raise SystemExit(f"no .ifc file under {DATA}")
    fitting = [p for p in files if p.stat().st_size <= max_mb * 1e6]
    if not fitting:
        raise SystemExit(f"no .ifc file of at most {max_mb} MB under {DATA}: give --file")
    skipped = [p for p in files if p.stat().st_size > max_mb * 1e6]
    why = "; ".join(f"skipped {p.relative_to(DATA)} ({p.stat().st_size / 1e6:.1f} MB, over --max-mb {max_mb:g}: "
                    "IfcOpenShell's iterator alone takes > 5 min on 2 cores)" for p in skipped)
    return fitting[0], why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=None, help="IFC file (default: see above)")
    parser.add_argument("--max-mb", type=float, default=5.0, help="largest default file (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is compared")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="geometry threads of both sides")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    path, skipped = (args.file, "given with --file") if args.file else pick_file(args.max_mb)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-bench-bim-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"file: {path} ({path.stat().st_size / 1e6:.2f} MB); {skipped or 'the largest IFC in the shared data'}")
    print(f"threads: {args.threads} (cores: {os.cpu_count()}), runs: {args.repeat} each, alternating")
    base_runs, our_runs = [], []
    for _ in range(args.repeat):
        base_runs.append(_run(_baseline, path, args.threads))
        our_runs.append(_run(_ours, path, work, args.threads))
    base = min(base_runs, key=lambda r: r["wall_s"])
    ours = min(our_runs, key=lambda r: r["wall_s"])
    for name, runs in (("baseline", base_runs), ("ours", our_runs)):
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
        print(f"{name:9} walls: {walls} s")
    print(f"baseline  IfcOpenShell open + geometry iterator: {base['wall_s']:.2f} s (parse {base['parse_s']:.2f} s), "
          f"peak {base['peak_mib']:.0f} MiB, {base['shapes']} shapes, {base['triangles']} triangles")
    print(f"ours      ingest + buildings tiles:              {ours['wall_s']:.2f} s (ingest {ours['ingest_s']:.2f} s, "
          f"tiles {ours['tiles_s']:.2f} s; store opened before in {ours['open_s']:.2f} s), peak {ours['peak_mib']:.0f} MiB, {ours['elements']} elements "
          f"({ours['meshes']} meshes), {ours['elements'] / ours['ingest_s']:.0f} elements/s ingest, "
          f"{ours['elements'] / ours['wall_s']:.0f} elements/s with tiles, {ours['tiles_written']} tiles "
          f"{ours['tile_bytes'] / 1e6:.2f} MB")
    print(f"ours      where the ingest time goes: {ours['timings']}")
    ratio, ratio_ingest = ours["wall_s"] / base["wall_s"], ours["ingest_s"] / base["wall_s"]
    print(f"ratio ours/baseline: {ratio:.2f}x (ingest alone {ratio_ingest:.2f}x); "
          f"target ≤ 1.5x {'OK' if ratio <= 1.5 else 'MISSED'}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
