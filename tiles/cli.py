"""``cim tile``: build or refresh the pipe network 3D Tiles tileset from the store."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from cim.heights import get_geoid
from cim.settings import get_settings
from cim.store import open_store
from tiles.pipes import TilingOptions, build_pipe_tileset

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``tile`` to the ``cim`` app."""

    @app.command("tile")
    def tile_cmd(
        out: Path = typer.Option(Path("out/tiles/pipes"), "--out", help="Folder for tileset.json and tiles/"),
        dataset: list[str] = typer.Option(None, "--dataset", help="Only these datasets (repeat); default all"),
        leaf_capacity: int = typer.Option(4000, "--leaf-capacity", help="Features per leaf tile"),
        compress: bool = typer.Option(False, "--compress", help="EXT_meshopt_compression on vertex and index data"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Build the pipe network tileset (3D Tiles 1.1, glTF + EXT_mesh_features/EXT_structural_metadata)."""
        settings = get_settings()
        s = open_store(store or settings.store)
        t0 = time.perf_counter()
        try:
            with console.status("tiling the pipe network"):
                result = build_pipe_tileset(
                    s, out, storage_crs=settings.storage_crs, geoid=get_geoid(settings.geoid, settings.geoid_path),
                    options=TilingOptions(leaf_capacity=leaf_capacity, datasets=dataset or None, compress=compress),
                )
        finally:
            s.close()
        console.print(
            f"[green]tileset[/] {out / 'tileset.json'}: {result.tiles} tiles, {result.written} written, "
            f"{result.skipped} unchanged, {result.features} features, {result.bytes / 1e6:.1f} MB "
            f"in {time.perf_counter() - t0:.1f} s"
        )
