"""``cim demo`` (the main job: ingest the sample district, tile it, serve the viewer) and ``cim serve``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cim.heights import get_geoid
from cim.qc.report import write_report
from cim.settings import Settings, get_settings
from cim.store import open_store
from converters.pipes.cli import ingest_steps, print_qc_summary, progress_bar
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tiles.pipes import build_pipe_tileset

console = Console(stderr=True)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "jinan_district"


def serve(settings: Settings, tiles: Path, host: str, port: int) -> None:
    """Run the API and the viewer with uvicorn until interrupted (the store is opened on first use)."""
    import uvicorn

    from api.app import create_app

    console.print(f"[green]viewer[/] http://{host}:{port}/viewer  (API under /api, tiles under /tiles/pipes; "
                  "Ctrl+C stops)")
    uvicorn.run(create_app(settings, tiles_dir=tiles), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``serve`` to the ``cim`` app."""

    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
        port: int = typer.Option(8000, "--port", help="TCP port"),
        tiles: Path = typer.Option(Path("out/tiles/pipes"), "--tiles", help="Pipe tileset folder to serve"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Serve the API and the planners' viewer (http://HOST:PORT/viewer)."""
        settings = get_settings()
        serve(settings.model_copy(update={"store": store or settings.store}), tiles, host, port)

    @app.command("demo")
    def demo_cmd(
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
        out: Path = typer.Option(Path("out"), "--out", help="Folder for reports and tiles"),
        no_serve: bool = typer.Option(False, "--no-serve", help="Stop after building; do not serve the viewer"),
        port: int = typer.Option(8000, "--port", help="Port of the viewer on 127.0.0.1"),
    ) -> None:
        """Ingest the sample district (with QC), report, build its 3D Tiles, then serve the viewer."""
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
        finally:
            s.close()
        if not no_serve:
            serve(settings.model_copy(update={"store": store or settings.store}), out / "tiles" / "pipes",
                  "127.0.0.1", port)
