"""``cim tile-bim``: build or refresh the buildings 3D Tiles tileset from the BIM models in the store."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from cim.heights import get_geoid
from cim.settings import get_settings
from cim.store import open_store
from tiles.buildings import BuildingTilingOptions, build_buildings_tileset

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``tile-bim`` to the ``cim`` app."""

    @app.command("tile-bim")
    def tile_bim_cmd(
        out: Path = typer.Option(Path("out/tiles/buildings"), "--out",
                                 help="Folder for tileset.json and tiles/"),
        dataset: list[str] = typer.Option(None, "--dataset",
                                          help="Only these BIM datasets (repeat); default all"),
        leaf_capacity: int = typer.Option(2000, "--leaf-capacity", help="Elements per quadtree leaf tile"),
        include_spaces: bool = typer.Option(False, "--include-spaces",
                                            help="Draw IfcSpace volumes (translucent)"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Build the buildings tileset (3D Tiles 1.1, one feature per BIM element with its IFC attributes)."""
        settings = get_settings()
        s = open_store(store or settings.store)
        t0 = time.perf_counter()
        try:
            with console.status("tiling the BIM models"):
                geoid = get_geoid(settings.geoid, settings.geoid_path)
                result = build_buildings_tileset(
                    s, out, storage_crs=settings.storage_crs, geoid=geoid, datasets=dataset or None,
                    options=BuildingTilingOptions(leaf_capacity=leaf_capacity, include_spaces=include_spaces),
                )
        finally:
            s.close()
        console.print(
            f"[green]tileset[/] {out / 'tileset.json'}: {result.tiles} tiles, {result.written} written, "
            f"{result.skipped} unchanged, {result.features} elements, {result.bytes / 1e6:.1f} MB "
            f"in {time.perf_counter() - t0:.1f} s"
        )
