"""``cim demo`` (the main job: ingest the sample district, tile it, serve the viewer) and ``cim serve``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cim.errors import InvalidInputError
from cim.heights import get_geoid
from cim.qc.report import write_report
from cim.settings import Settings, get_settings
from cim.store import DuckDBStore, open_store
from converters.pipes.cli import ingest_steps, print_qc_summary, progress_bar
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tiles.pipes import build_pipe_tileset

console = Console(stderr=True)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "jinan_district"
SAMPLE_BUILDINGS = Path(__file__).resolve().parents[1] / "sample_data" / "jinan_building"
#: The sample office at drawing review (with planted defects), then at handover (fixed).
SAMPLE_SUBMISSIONS = (("office_v1.ifc", "drawing_review"), ("office_v2.ifc", "handover"))
SAMPLE_PROJECT = "历下区综合办公楼"
SAMPLE_REALSCENE = Path(__file__).resolve().parents[1] / "sample_data" / "jinan_realscene"
#: The district's real-scene samples: (file, dataset id, title, kind, role).
SAMPLE_ASSETS = (
    ("district_dem.tif", "jinan_dem", "样例区数字高程模型 DEM (2 m)", "raster", "dem"),
    ("district_dom.tif", "jinan_dom", "样例区数字正射影像 DOM", "raster", "dom"),
    ("district_points.laz", "jinan_points", "样例区机载激光点云 LiDAR", "pointcloud", "pointcloud"),
)


def local_security(role: str = "reviewer") -> Any:
    """Access rules for a service on 127.0.0.1: anonymous visitors act as ``role`` (never admin); everything
    else as configured (audit on). The demo uses a plan reviewer, who sees the 重要 sample data and may review."""
    from cim.security.config import parse_security_config

    return parse_security_config({"auth": {"anonymous_role": role}})


def serve(settings: Settings, tiles: Path, host: str, port: int, buildings: Path | None = None,
          security: Any = None) -> None:
    """Run the API and the viewer with uvicorn until interrupted (the store is opened on first use). The
    buildings tileset lives beside the pipes' (``tiles/../buildings``) unless given; ``security`` defaults to
    ``CIM_SECURITY_FILE`` (anonymous callers are the public role)."""
    import uvicorn

    from api.app import create_app

    console.print(f"[green]viewer[/] http://{host}:{port}/viewer  (API under /api, tiles under /tiles; "
                  "Ctrl+C stops)")
    app = create_app(settings, tiles_dir=tiles, buildings_tiles_dir=buildings or tiles.parent / "buildings",
                     security=security)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def ingest_sample_realscene(store: DuckDBStore, settings: Settings) -> None:
    """Catalogue the district's DEM, orthophoto and point cloud (3D Tiles) unless the store has them already."""
    from converters.pointcloud.ingest import PointCloudOptions, ingest_pointcloud
    from converters.raster.ingest import RasterOptions, ingest_raster

    have = {d["id"] for d in store.datasets()}
    for name, dataset_id, title, kind, role in SAMPLE_ASSETS:
        path = SAMPLE_REALSCENE / name
        if dataset_id in have:
            console.print(f"[green]real-scene[/] {dataset_id} already in the store")
            continue
        if not path.is_file():
            console.print(f"[yellow]no sample {name}[/] ({path} is missing): skipped")
            continue
        with console.status(f"cataloguing {name}"):
            if kind == "raster":
                ingest_raster(path, store, settings, RasterOptions(dataset_id=dataset_id, title=title, role=role))
            else:
                ingest_pointcloud(path, store, settings, PointCloudOptions(dataset_id=dataset_id, title=title))
        console.print(f"[green]real-scene[/] {name} → {dataset_id} ({role})")


def submit_sample_building(store: DuckDBStore, settings: Settings, out: Path) -> None:
    """Submit the sample office at drawing review and at handover (each file once), then refresh the buildings
    tileset."""
    from cim.bim.submissions import list_submissions
    from converters.ifc.submit import submit_model
    from tiles.buildings import build_buildings_tileset

    for name, stage in SAMPLE_SUBMISSIONS:
        path = SAMPLE_BUILDINGS / name
        if not path.is_file():
            console.print(f"[yellow]no sample building[/] ({path} is missing): skipped")
            return
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        done = [x for x in list_submissions(store, project=SAMPLE_PROJECT) if x.file_sha256 == sha]
        if done:
            console.print(f"[green]BIM[/] {name} already submitted as {done[-1].id} ({done[-1].status})")
            continue
        with console.status(f"submitting {name} ({stage}): ingest + IDS, georef, delivery, clearance checks"):
            outcome = submit_model(path, store, project=SAMPLE_PROJECT, stage=stage, settings=settings,
                                   submitted_by="demo")
        sub = outcome.submission
        console.print(f"[green]BIM[/] {name} ({stage}) → submission {sub.id}: {sub.status}, "
                      f"{outcome.counts.get('elements')} elements, {outcome.counts.get('errors')} errors, "
                      f"{outcome.counts.get('warnings')} warnings (cim bim report {sub.id} --format html --out r.html)")
    with console.status("building the buildings tileset"):
        tiles = build_buildings_tileset(store, out / "tiles" / "buildings", storage_crs=settings.storage_crs,
                                        geoid=get_geoid(settings.geoid, settings.geoid_path))
    console.print(f"[green]tileset[/] {out / 'tiles' / 'buildings' / 'tileset.json'}: {tiles.tiles} tiles, "
                  f"{tiles.written} written")


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``serve`` to the ``cim`` app."""

    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
        port: int = typer.Option(8000, "--port", help="TCP port"),
        tiles: Path = typer.Option(Path("out/tiles/pipes"), "--tiles", help="Pipe tileset folder to serve"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
        local_role: str = typer.Option(None, "--local-role", help="On a loopback host only: anonymous visitors act "
                                       "as this role (planner, reviewer, platform) instead of the public"),
    ) -> None:
        """Serve the API and the planners' viewer (http://HOST:PORT/viewer); access rules from $CIM_SECURITY_FILE."""
        settings = get_settings()
        security = None
        if local_role:
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise InvalidInputError("--local-role is for a loopback host only; give callers API keys or tokens "
                                        "(CIM_SECURITY_FILE) on a network interface", field="local_role")
            security = local_security(local_role)
        serve(settings.model_copy(update={"store": store or settings.store}), tiles, host, port, security=security)

    @app.command("demo")
    def demo_cmd(
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
        out: Path = typer.Option(Path("out"), "--out", help="Folder for reports and tiles"),
        no_serve: bool = typer.Option(False, "--no-serve", help="Stop after building; do not serve the viewer"),
        port: int = typer.Option(8000, "--port", help="Port of the viewer on 127.0.0.1"),
    ) -> None:
        """Ingest the sample district (with QC), submit the sample building, build the 3D Tiles, serve the viewer."""
        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            with progress_bar("ingesting sample district", ingest_steps([SAMPLE])) as progress:
                version, report = ingest_survey([SAMPLE], s, SurveyOptions(), settings, progress)
            written = write_report(report, out / "qc" / version.dataset_id)
            print_qc_summary(report, written)
            console.print(f"[green]stored[/] {version.dataset_id} version {version.version} in {s.path}: "
                          + json.dumps(version.counts, ensure_ascii=False))
            rows = s.read().execute(
                """SELECT category, count(*), round(sum(length_3d) / 1000, 3) FROM pipe_segments
                   WHERE dataset_id = ? AND version_to IS NULL GROUP BY 1 ORDER BY 1""", [version.dataset_id]
            ).fetchall()
            table = Table("category", "segments", "length km", title="pipe network in the store")
            for cat, n, km in rows:
                table.add_row(str(cat), str(n), str(km))
            Console().print(table)
            with console.status("building 3D Tiles"):
                tiles = build_pipe_tileset(s, out / "tiles" / "pipes", storage_crs=settings.storage_crs,
                                           geoid=get_geoid(settings.geoid, settings.geoid_path))
            console.print(f"[green]tileset[/] {out / 'tiles' / 'pipes' / 'tileset.json'}: {tiles.tiles} tiles, "
                          f"{tiles.written} written, {tiles.skipped} unchanged")
            submit_sample_building(s, settings, out)
            ingest_sample_realscene(s, settings)
        finally:
            s.close()
        if not no_serve:
            serve(settings.model_copy(update={"store": store or settings.store}), out / "tiles" / "pipes",
                  "127.0.0.1", port, security=local_security("reviewer"))
