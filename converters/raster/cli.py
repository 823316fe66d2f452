"""``cim raster ingest``: a GeoTIFF DEM or orthophoto into the real-scene catalogue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from cim.errors import CIMError
from cim.settings import get_settings
from cim.store import open_store

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``raster`` command group."""
    raster = typer.Typer(help="Terrain (DEM) and orthophotos (DOM) from GeoTIFF.", no_args_is_help=True)
    app.add_typer(raster, name="raster")

    @raster.command("ingest")
    def ingest_cmd(
        path: Path = typer.Argument(..., help="GeoTIFF file"),
        dataset: str | None = typer.Option(None, "--id", help="Dataset id (default: the file name)"),
        title: str | None = typer.Option(None, "--title"),
        role: str | None = typer.Option(None, "--role", help="dem or dom (default: from the bands)"),
        crs: str | None = typer.Option(None, "--crs", help="CRS for a file without one (EPSG:4548, WKT)"),
        vertical_datum: str | None = typer.Option(
            None, "--vertical-datum", help="Heights of a DEM: EPSG:5737 (1985, default), EPSG:5736 (1956), "
            "EPSG:5773 (EGM96) or ellipsoidal"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Copy a GeoTIFF as a Cloud-Optimized GeoTIFF and catalogue it (kind raster, role dem or dom)."""
        from converters.raster.ingest import RasterOptions, ingest_raster

        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            result = ingest_raster(path, s, settings, RasterOptions(dataset, title, role, crs, vertical_datum, grade))
        except CIMError as exc:
            console.print(f"[bold red]refused:[/] {escape(str(exc))}")
            sys.exit(1)
        finally:
            s.close()
        if as_json:
            print(json.dumps({"dataset": result.dataset_id, "version": result.version, "role": result.role,
                              "lonlat": result.lonlat, "metadata": result.metadata, "notes": result.notes},
                             ensure_ascii=False, indent=2))
        for note in result.notes:
            console.print(f"  [yellow]note[/] {escape(note)}")
        f = result.facts
        console.print(f"[green]stored[/] {result.dataset_id} version {result.version}: {result.role.upper()} "
                      f"{f.width}×{f.height}×{f.count} {f.dtypes[0]} in {escape(f.crs_name[:60])}, cells "
                      f"{f.res[0]:g}×{f.res[1]:g}, {result.metadata['cog']} as COG, at "
                      f"{result.lonlat[0]:.5f}–{result.lonlat[2]:.5f}°E {result.lonlat[1]:.5f}–"
                      f"{result.lonlat[3]:.5f}°N")
