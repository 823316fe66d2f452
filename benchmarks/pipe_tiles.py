"""Benchmark: tile a generated city pipe network (3D Tiles 1.1) and compare with ``py3dtiles export``.

Usage: python benchmarks/pipe_tiles.py [--segments 1000000] [--compare-segments 20000] [--workdir DIR]

1. Ours on the full city: wall time, peak memory, output size, tile count, and how fast a client opens
   the root (tileset.json + root content read and parsed).
2. Ratio on the same geometries: a smaller city tiled by us and by ``py3dtiles export -d`` (the same
   pipe solids written as one WKB MultiPolygonZ per pipe), in the same run. py3dtiles is installed in
   its own virtual environment (``benchmarks/.venv-py3dtiles``) so its pins never touch ours.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

P3D_VENV = Path(__file__).resolve().parent / ".venv-py3dtiles"


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _prepare(data: Path, db: Path, segments: int) -> None:
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import blocks_for_segments, generate_district

    bx, by = blocks_for_segments(segments)
    generate_district(data, blocks_x=bx, blocks_y=by, layout="single")
    store = open_store(str(db))
    ingest_survey([data], store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), Settings(store=str(db)))
    store.close()


def _tile(db: Path, out: Path, q: mp.Queue) -> None:
    from cim.heights import get_geoid
    from cim.store import open_store
    from tiles.glb import read_glb
    from tiles.pipes import build_pipe_tileset

    store = open_store(str(db))
    t0 = time.perf_counter()
    result = build_pipe_tileset(store, out, storage_crs="EPSG:4548", geoid=get_geoid("egm96"))
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    doc = json.loads((out / "tileset.json").read_text(encoding="utf-8"))
    root_uri = doc["root"].get("content", {}).get("uri")
    root_bytes = (out / root_uri).stat().st_size if root_uri else 0
    if root_uri:
        read_glb(out / root_uri)
    q.put({"wall_s": wall, "peak_gib": _peak_gib(), "tiles": result.tiles, "bytes": result.bytes,
           "features": result.features, "root_open_s": time.perf_counter() - t1, "root_bytes": root_bytes,
           "tileset_json_bytes": (out / "tileset.json").stat().st_size})


def _run(fn, *args) -> dict:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    p.join()
    if p.exitcode != 0 or q.empty():
        raise SystemExit(f"{fn.__name__} failed (exit code {p.exitcode})")
    return q.get()


def _write_wkbs(db: Path, folder: Path) -> tuple[float, float, float]:
    """The same pipe solids (8-sided cylinders) as one MultiPolygonZ WKB file per pipe, local coordinates."""
    import numpy as np

    from cim.store import open_store
    from tiles.solids import pipe_cylinders

    store = open_store(str(db))
    d = store.read().execute(
        """SELECT ST_X(ST_StartPoint(geom)) x1, ST_Y(ST_StartPoint(geom)) y1, start_z, ST_X(ST_EndPoint(geom)) x2,
                  ST_Y(ST_EndPoint(geom)) y2, end_z, coalesce(height_mm, diameter_mm, 200) / 2000.0 r
           FROM pipe_segments WHERE version_to IS NULL"""
    ).fetchnumpy()
    store.close()
    origin = (float(np.min(d["x1"])), float(np.min(d["y1"])), 0.0)
    start = np.column_stack([d["x1"] - origin[0], d["y1"] - origin[1], d["start_z"]])
    end = np.column_stack([d["x2"] - origin[0], d["y2"] - origin[1], d["end_z"]])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(start)):
        mesh = pipe_cylinders(start[i:i + 1], end[i:i + 1], d["r"][i:i + 1], np.zeros(1, np.uint32), sides=8)
        tris = mesh.positions[mesh.indices.reshape(-1, 3)]
        parts = [struct.pack("<BII", 1, 1006, len(tris))]
        for t in tris:  # each triangle a polygon with one closed ring of 4 points
            ring = np.vstack([t, t[:1]])
            parts.append(struct.pack("<BIII", 1, 1003, 1, 4) + ring.astype("<f8").tobytes())
        (folder / f"{i}.wkb").write_bytes(b"".join(parts))
    return origin


def _py3dtiles() -> Path:
    exe = P3D_VENV / "bin" / "py3dtiles"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(P3D_VENV)], check=True)
        subprocess.run([str(P3D_VENV / "bin" / "pip"), "install", "-q", "py3dtiles"], check=True)
    return exe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--compare-segments", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cim-tiles-bench-"))
    for sub in ("city", "small", "ours", "ours_small", "p3d", "wkb"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for db in work.glob("*.duckdb*"):
        db.unlink()

    print(f"preparing a {args.segments:,}-segment city (generate + ingest, not timed)", flush=True)
    _prepare(work / "city", work / "city.duckdb", args.segments)
    ours = _run(_tile, work / "city.duckdb", work / "ours")
    print(f"ours, full city: {ours['wall_s']:.1f} s, peak {ours['peak_gib']:.2f} GiB, {ours['tiles']} tiles, "
          f"{ours['bytes'] / 1e6:.0f} MB, {ours['features']:,} features; root: tileset.json "
          f"{ours['tileset_json_bytes'] / 1e3:.0f} kB + root content {ours['root_bytes'] / 1e6:.2f} MB opened in "
          f"{ours['root_open_s']:.3f} s")
    print(f"targets: wall ≤ 120 s {'OK' if ours['wall_s'] <= 120 else 'MISSED'}; peak ≤ 4 GiB "
          f"{'OK' if ours['peak_gib'] <= 4 else 'MISSED'}; root opens < 1 s {'OK' if ours['root_open_s'] < 1 else 'MISSED'}")

    print(f"comparing with py3dtiles export on a {args.compare_segments:,}-segment city", flush=True)
    _prepare(work / "small", work / "small.duckdb", args.compare_segments)
    small = _run(_tile, work / "small.duckdb", work / "ours_small")
    origin = _write_wkbs(work / "small.duckdb", work / "wkb")
    exe = _py3dtiles()
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "export", "-d", str(work / "wkb"), "-o", *map(str, origin), "-s",
                           str(work / "p3d")], capture_output=True, text=True)
    p3d_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"py3dtiles export failed: {proc.stderr[-500:]}")
        return
    p3d_bytes = sum(f.stat().st_size for f in (work / "p3d").rglob("*") if f.is_file())
    print(f"same geometries: ours {small['wall_s']:.1f} s ({small['bytes'] / 1e6:.1f} MB), py3dtiles export "
          f"{p3d_wall:.1f} s ({p3d_bytes / 1e6:.1f} MB); ratio ours/py3dtiles {small['wall_s'] / p3d_wall:.2f}x")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
