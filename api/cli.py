"""``cim demo``: the main job on the embedded default store — ingest the sample district, tile it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cim.heights import get_geoid
from cim.qc.report import write_report
from cim.settings import get_settings
from cim.store import open_store
from converters.pipes.ingest import SurveyOptions, find_files, ingest_survey
from tiles.pipes import build_pipe_tileset

console = Console(stderr=True)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "jinan_district"


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``cim`` app."""

    @app.command("demo")
    def demo_cmd(
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
        out: Path = typer.Option(Path("out"), "--out", help="Folder for reports and tiles"),
    ) -> None:
        """Ingest the sample district (with QC), report, and build its 3D Tiles."""
        from converters.pipes.cli import _print_summary, _status

        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            with _status("ingesting sample district", len(find_files([SAMPLE])) + 32) as progress:
                version, report = ingest_survey([SAMPLE], s, SurveyOptions(), settings, progress)
            written = write_report(report, out / "qc" / version.dataset_id)
            _print_summary(report, written)
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
