"""``cim mesh ingest`` (OSGB production, OBJ, PLY → 3D Tiles) and ``cim tileset register`` (existing tilesets)."""

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


def _origin(text: str | None) -> tuple[float, float, float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        console.print("[bold red]error:[/] --origin must be lon,lat,height")
        sys.exit(2)
    return values[0], values[1], values[2]


def register(app: typer.Typer) -> None:
    """Add the ``mesh`` and ``tileset`` command groups."""
    mesh = typer.Typer(help="Photogrammetry meshes (OSGB, OBJ, PLY) into 3D Tiles.", no_args_is_help=True)
    tileset = typer.Typer(help="Existing 3D Tiles tilesets into the catalogue.", no_args_is_help=True)
    app.add_typer(mesh, name="mesh")
    app.add_typer(tileset, name="tileset")

    @mesh.command("ingest")
    def ingest_cmd(
        path: Path = typer.Argument(..., help="OSGB production folder (Data/ + metadata.xml), .obj or .ply"),
        metadata: Path | None = typer.Option(None, "--metadata", help="ContextCapture metadata.xml"),
        crs: str | None = typer.Option(None, "--crs", help="SRS when there is no metadata.xml: EPSG:4548, WKT "
                                       "or ENU:lat,lon"),
        origin: str | None = typer.Option(None, "--origin", help="SRS origin x,y,z added to every vertex"),
        dataset: str | None = typer.Option(None, "--id", help="Dataset id (default: the file or folder name)"),
        title: str | None = typer.Option(None, "--title"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Convert a mesh into a 3D Tiles 1.1 tileset and catalogue it (kind mesh)."""
        from converters.mesh.ingest import MeshOptions, ingest_mesh

        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            with console.status("converting the mesh"):
                result = ingest_mesh(path, s, settings, MeshOptions(dataset, title, grade, metadata, crs, origin))
        except CIMError as exc:
            console.print(f"[bold red]refused:[/] {escape(str(exc))}")
            sys.exit(1)
        finally:
            s.close()
        if as_json:
            print(json.dumps({"dataset": result.dataset_id, "version": result.version, "counts": result.counts,
                              "lonlat": result.lonlat, "notes": result.notes}, ensure_ascii=False, indent=2))
        for note in result.notes:
            console.print(f"  [yellow]note[/] {escape(note)}")
        c = result.counts
        console.print(f"[green]stored[/] {result.dataset_id} version {result.version}: {c['tiles']} tiles, "
                      f"depth {c['tileset_depth']}, {c['triangles']} triangles, {c['textures']} textures at "
                      f"{result.lonlat[0]:.5f}–{result.lonlat[2]:.5f}°E {result.lonlat[1]:.5f}–"
                      f"{result.lonlat[3]:.5f}°N in {c['total_s']:.1f} s")

    @tileset.command("register")
    def register_cmd(
        folder: Path = typer.Argument(..., help="Folder with tileset.json"),
        dataset: str | None = typer.Option(None, "--id", help="Dataset id (default: the folder name)"),
        title: str | None = typer.Option(None, "--title"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        origin: str | None = typer.Option(None, "--origin", help="lon,lat,height (ellipsoidal) for a local "
                                          "tileset: where the centre of its root volume goes"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Validate an existing 3D Tiles tileset and catalogue it as it is (kind tileset)."""
        from converters.mesh.external_tileset import register_tileset

        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            result = register_tileset(folder, s, settings, dataset_id=dataset, title=title, grade=grade,
                                      origin=_origin(origin))
        except CIMError as exc:
            console.print(f"[bold red]refused:[/] {escape(str(exc))}")
            sys.exit(1)
        finally:
            s.close()
        c = result.counts
        console.print(f"[green]registered[/] {result.dataset_id} version {result.version}: 3D Tiles "
                      f"{'/'.join(c['versions'])}, {c['tiles']} tiles, {c['contents']} contents"
                      + (" (placed by --origin)" if result.wrapped else ""))
