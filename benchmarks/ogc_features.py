"""Benchmark: OGC API – Features bbox item queries on the ~1,000,000-segment city, our API vs pygeoapi.

Both servers run on loopback with one worker each and get the same random bbox queries
(``/collections/pipe-segments/items?bbox=<lon/lat>&limit=100``) from the same Python load generator
(threads with keep-alive connections, same concurrency); a warm-up pass precedes each measured pass.

* ours: ``api.ogc`` under uvicorn (1 worker), DuckDB file store copied from the city store (R-tree), output
  CRS84 with ellipsoidal heights computed per request (storage CRS → lon/lat, 1985 height + EGM96);
* pygeoapi (PyPI, own venv ``benchmarks/.venv-pygeoapi`` with Debian's GDAL bindings) under gunicorn
  (1 worker, 8 threads), OGR provider over a GeoPackage export of the same current segments, already in
  lon/lat with the same ellipsoidal heights (its easiest path: no reprojection per request; GDAL answers the
  bbox from the GeoPackage R-tree). pygeoapi's SQLiteGPKG provider is not used: it filters bboxes without
  the R-tree (a full scan per request).

The result counts of both servers are cross-checked per bbox. Prints requests/s, p50/p99 latency and the
ratios. Targets: ≥ 3× pygeoapi's throughput, p99 ≤ 50 ms.

Usage: python benchmarks/ogc_features.py [--store /tmp/exc_city/city.duckdb] [--segments 1000000]
       [--requests 1000] [--concurrency 8] [--workdir out/bench/ogc] [--pygeoapi-venv benchmarks/.venv-pygeoapi]
(a given ``--store`` is copied, never written; without one the city is generated and ingested once.)
Needs: Debian ``python3-gdal python3-venv`` for the pygeoapi venv.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from fastapi import Request

ROOT = Path(__file__).resolve().parents[1]
STORAGE = "EPSG:4548"
COLLECTION = "pipe-segments"


# -- data ----------------------------------------------------------------------------------------------------
def city_store(work: Path, segments: int, given: Path | None) -> Path:
    """A private copy of the city store (copied from ``given``, else generated and ingested once)."""
    db = work / "city.duckdb"
    if db.exists():
        return db
    if given is not None and given.exists():
        shutil.copyfile(given, db)
        return db
    from cim.settings import Settings
    from cim.store import open_store
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import blocks_for_segments, generate_district

    data = work / "city"
    bx, by = blocks_for_segments(segments)
    if not data.exists():
        generate_district(data, blocks_x=bx, blocks_y=by, layout="single")
    store = open_store(str(db))
    ingest_survey([data], store, SurveyOptions(crs_in=STORAGE, keep_errors=True), Settings(store=str(db)))
    store.close()
    return db


def export_gpkg(db: Path, gpkg: Path) -> int:
    """The current segments as a GeoPackage in lon/lat with ellipsoidal heights (what our API serves)."""
    if gpkg.exists():
        return -1
    import pyogrio.raw
    import shapely

    from cim.features.collections import SEGMENT_PROPERTIES
    from cim.features.crs import CRS84, from_storage, output_crs
    from cim.heights import get_geoid
    from cim.store import DuckDBStore

    store = DuckDBStore(db)
    names = [q.name for q in SEGMENT_PROPERTIES]
    cur = store.read()
    table = cur.execute(f"SELECT fid AS cim_fid, {', '.join(names)}, attrs, ST_AsWKB(geom) AS wkb "
                        "FROM pipe_segments WHERE version_to IS NULL ORDER BY fid").to_arrow_table()
    store.close()
    geoms = shapely.from_wkb(table.column("wkb").to_numpy(zero_copy_only=False))
    coords = shapely.get_coordinates(geoms, include_z=True)
    moved = from_storage(coords, STORAGE, output_crs(CRS84, STORAGE), get_geoid("egm96"))
    geoms = shapely.set_coordinates(geoms, np.round(moved, 9))
    fields = ["cim_fid", *names, "attrs"]
    data = [table.column(f).to_numpy(zero_copy_only=False) for f in fields]
    tmp = gpkg.with_suffix(".tmp.gpkg")
    pyogrio.raw.write(str(tmp), geometry=shapely.to_wkb(geoms), field_data=data, fields=fields,
                      layer="pipe_segments", driver="GPKG", crs="EPSG:4326", geometry_type="LineString Z",
                      promote_to_multi=False)
    tmp.rename(gpkg)
    return len(geoms)


def random_boxes(db: Path, n: int, size_m: float, seed: int) -> list[str]:
    """``n`` random size_m × size_m boxes inside the city, as CRS84 bbox strings (lon/lat envelopes)."""
    from cim.crs import to_lonlat
    from cim.store import DuckDBStore

    store = DuckDBStore(db)
    (row,) = [r for r in store.datasets()]
    store.close()
    rng = np.random.default_rng(seed)
    cx = rng.uniform(row["minx"] + 200, row["maxx"] - 200, n)
    cy = rng.uniform(row["miny"] + 200, row["maxy"] - 200, n)
    h = size_m / 2
    lon0, lat0 = to_lonlat(cx - h, cy - h, STORAGE)
    lon1, lat1 = to_lonlat(cx + h, cy + h, STORAGE)
    return [f"{a:.7f},{b:.7f},{c:.7f},{d:.7f}" for a, b, c, d in zip(lon0, lat0, lon1, lat1, strict=True)]


# -- servers -------------------------------------------------------------------------------------------------
def serve_ours(db: str, port: int, scoped: bool) -> None:
    """Run our app (uvicorn, 1 worker) on the store ``db``: anonymous callers read as planners (an intranet
    deployment), no rate limits, no audit; ``scoped`` hands the OGC routes the caller's ScopedStore."""
    import inspect

    import uvicorn

    from api.app import create_app
    from api.ogc import ogc_router, ogc_store
    from cim.settings import Settings

    kwargs: dict[str, object] = {}
    if "security" in inspect.signature(create_app).parameters:
        from cim.security.config import parse_security_config

        kwargs["security"] = parse_security_config({
            "auth": {"anonymous_role": "planner"}, "audit": {"enabled": False},
            "limits": {"requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0}})
    app = create_app(Settings(store=f"duckdb:///{db}"), tiles_dir=Path(db).parent / "tiles", **kwargs)
    if not any(getattr(r, "path", "").startswith("/ogc") for r in app.routes):
        app.include_router(ogc_router())
    if scoped:
        from api.security import scoped_services

        def scoped_store(request: Request) -> object:
            return scoped_services(request).store()

        app.dependency_overrides[ogc_store] = scoped_store
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


def pygeoapi_python(venv: Path) -> Path:
    """The pygeoapi venv's python (created with Debian's GDAL bindings when missing)."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pygeoapi", "gunicorn"], check=True)
    probe = subprocess.run([str(py), "-c", "import pygeoapi, osgeo, gunicorn; print(pygeoapi.__version__)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "gunicorn"], check=True)
    return py


def pygeoapi_config(work: Path, gpkg: Path, port: int, bbox: list[float]) -> tuple[Path, Path]:
    """A pygeoapi config serving the GeoPackage through the OGR provider, and its OpenAPI document."""
    url = f"http://127.0.0.1:{port}"
    contact = {k: "-" for k in ("name", "position", "address", "city", "stateorprovince", "postalcode", "country",
                                "phone", "fax", "email", "url", "hours", "instructions")}
    config = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": url, "mimetype": "application/json; charset=UTF-8",
                   "encoding": "utf-8", "language": "en-US", "cors": False, "pretty_print": False,
                   "limits": {"default_items": 10, "max_items": 10000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "-"}},
        "logging": {"level": "ERROR"},
        "metadata": {"identification": {"title": "bench", "description": "bench", "keywords": ["pipes"],
                                        "keywords_type": "theme", "terms_of_service": "-", "url": url},
                     "license": {"name": "CC-BY 4.0", "url": url}, "provider": {"name": "-", "url": url},
                     "contact": {**contact, "role": "pointOfContact"}},
        "resources": {COLLECTION: {
            "type": "collection", "title": "pipe segments", "description": "current pipe segments",
            "keywords": ["pipes"],
            "extents": {"spatial": {"bbox": bbox, "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{"type": "feature", "name": "OGR", "id_field": "fid", "layer": "pipe_segments",
                           "data": {"source_type": "GPKG", "source": str(gpkg),
                                    "source_capabilities": {"paging": True}}}],
        }},
    }
    cfg = work / "pygeoapi-config.yml"
    cfg.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return cfg, work / "pygeoapi-openapi.yml"


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server; its output goes to ``log`` (a pipe left unread could fill and stall it)."""
    with log.open("a", encoding="utf-8") as fh:
        return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT)


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}: see its log in the workdir")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- load ----------------------------------------------------------------------------------------------------
def run_load(port: int, path: str, boxes: list[str], concurrency: int, limit: int, extra: dict[str, str]
             ) -> dict[str, object]:
    """Every box once, ``concurrency`` threads with keep-alive connections; latencies and counts per box."""
    latencies = np.zeros(len(boxes))
    counts = np.full(len(boxes), -1)
    errors: list[str] = []
    next_index = iter(range(len(boxes)))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            url = f"{path}?{urlencode({'bbox': boxes[i], 'limit': limit, **extra})}"
            t0 = time.perf_counter()
            try:
                conn.request("GET", url)
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{url}: {exc}")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            latencies[i] = time.perf_counter() - t0
            if r.status != 200:
                errors.append(f"{url}: HTTP {r.status} {body[:200]!r}")
                continue
            counts[i] = len(json.loads(body)["features"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = counts >= 0
    ms = latencies[ok] * 1000
    return {"rps": ok.sum() / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "mean_items": float(counts[ok].mean()), "errors": errors, "counts": counts, "wall": wall}


def measure(name: str, port: int, path: str, boxes: list[str], warm: list[str], args: argparse.Namespace,
            extra: dict[str, str]) -> dict[str, object]:
    run_load(port, path, warm, args.concurrency, args.limit, extra)
    res = run_load(port, path, boxes, args.concurrency, args.limit, extra)
    single = run_load(port, path, boxes[: max(50, len(boxes) // 5)], 1, args.limit, extra)
    print(f"{name:9s} c={args.concurrency}: {res['rps']:7.1f} req/s  p50 {res['p50']:6.1f} ms  p99 {res['p99']:6.1f} ms"
          f"  | c=1: {single['rps']:6.1f} req/s  p50 {single['p50']:6.1f} ms  p99 {single['p99']:6.1f} ms"
          f"  | {res['mean_items']:.1f} items/page, {len(res['errors'])} errors", flush=True)
    for e in res["errors"][:3]:
        print("   ", e)
    res["single"] = single
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("/tmp/exc_city/city.duckdb"))
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench" / "ogc")
    ap.add_argument("--pygeoapi-venv", type=Path, default=ROOT / "benchmarks" / ".venv-pygeoapi")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--box-m", type=float, default=150.0)
    ap.add_argument("--only", choices=("ours", "pygeoapi"), default=None)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of both servers")
    ap.add_argument("--scoped", action="store_true", help="serve ours through the security ScopedStore")
    args = ap.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    db = city_store(work, args.segments, args.store)
    gpkg = work / "city.gpkg"
    n = export_gpkg(db, gpkg)
    print(f"store {db} ({db.stat().st_size / 1e6:.0f} MB), GeoPackage {gpkg.stat().st_size / 1e6:.0f} MB"
          f"{f' ({n} segments exported)' if n > 0 else ''}; ready in {time.perf_counter() - t0:.0f} s", flush=True)
    boxes = random_boxes(db, args.requests, args.box_m, seed=1)
    warm = random_boxes(db, max(50, args.requests // 10), args.box_m, seed=2)
    servers = [n for n in ("ours", "pygeoapi") if args.only in (None, n)]
    rounds: list[dict[str, dict[str, object]]] = []
    for r in range(args.rounds):  # alternate the servers: the machine's background load drifts
        print(f"round {r + 1}/{args.rounds} (load average {os.getloadavg()[0]:.1f})", flush=True)
        rounds.append({n: run_server(n, db, gpkg, work, boxes, warm, args) for n in servers})
    if len(servers) == 2:
        same = sum(int((np.asarray(x["ours"]["counts"]) == np.asarray(x["pygeoapi"]["counts"])).sum()) for x in rounds)
        print(f"same item count for {same}/{len(boxes) * len(rounds)} bbox requests")
        ratios = [x["ours"]["rps"] / x["pygeoapi"]["rps"] for x in rounds]
        p99 = [x["ours"]["p99"] for x in rounds]
        p99_1 = [x["ours"]["single"]["p99"] for x in rounds]
        print(f"throughput ratio ours/pygeoapi per round: {', '.join(f'{v:.1f}x' for v in ratios)} "
              f"(median {np.median(ratios):.1f}x, target >= 3x); ours p99 {np.median(p99):.1f} ms at "
              f"c={args.concurrency}, {np.median(p99_1):.1f} ms at c=1 (medians; target <= 50 ms)")


def run_server(name: str, db: Path, gpkg: Path, work: Path, boxes: list[str], warm: list[str],
               args: argparse.Namespace) -> dict[str, object]:
    """Start one server, measure it, stop it."""
    if name == "ours":
        port = 18081
        proc = start([sys.executable, __file__, "--serve-ours", str(db), str(port), str(int(args.scoped))],
                     work / "ours.log")
        try:
            wait_ready(port, "/ogc/collections", proc)
            return measure("ours", port, f"/ogc/collections/{COLLECTION}/items", boxes, warm, args, {})
        finally:
            stop(proc)
    port = 18082
    py = pygeoapi_python(args.pygeoapi_venv)
    from cim.crs import to_lonlat
    from cim.store import DuckDBStore

    s = DuckDBStore(db)
    d = s.datasets()[0]
    s.close()
    lon, lat = to_lonlat(np.array([d["minx"], d["maxx"]]), np.array([d["miny"], d["maxy"]]), STORAGE)
    cfg, oas = pygeoapi_config(work, gpkg, port, [float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1])])
    env = {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oas)}
    if not oas.exists():
        with oas.open("w", encoding="utf-8") as fh:
            subprocess.run([str(py.parent / "pygeoapi"), "openapi", "generate", str(cfg)], stdout=fh, check=True,
                           env={**os.environ, **env})
    proc = start([str(py.parent / "gunicorn"), "-w", "1", "--threads", str(args.concurrency), "-b",
                  f"127.0.0.1:{port}", "--log-level", "error", "pygeoapi.flask_app:APP"], work / "pygeoapi.log", env)
    try:
        wait_ready(port, "/collections", proc)
        return measure("pygeoapi", port, f"/collections/{COLLECTION}/items", boxes, warm, args, {"f": "json"})
    finally:
        stop(proc)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-ours":
        serve_ours(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
