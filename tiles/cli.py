"""``cim tile``: build or refresh the pipe network 3D Tiles tileset from the store."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from cim.errors import InvalidInputError
from cim.heights import get_geoid
from cim.settings import get_settings
from cim.store import open_store
from tiles.pipes import TilingOptions, build_pipe_tileset

console = Console(stderr=True)


def _build_on_dask(store: object, out: Path, dask: str, workers: int, kwargs: dict) -> object:
    """The tileset built region by region on a Dask cluster (:mod:`tiles.dask_tiles`)."""
    from tiles.dask_tiles import build_pipe_tileset_dask, local_cluster

    if dask == "local":
        with local_cluster(n_workers=workers) as client, console.status(f"tiling on {workers} Dask workers"):
            return build_pipe_tileset_dask(store, out, client=client, **kwargs)
    from distributed import Client

    try:
        client = Client(dask, timeout=30)
    except OSError as exc:
        raise InvalidInputError(f"no Dask scheduler at {dask}: {exc}", field="dask") from None
    with client, console.status(f"tiling on the Dask cluster at {dask}"):
        return build_pipe_tileset_dask(store, out, client=client, **kwargs)


def register(app: typer.Typer) -> None:
    """Add ``tile`` to the ``cim`` app."""

    @app.command("tile")
    def tile_cmd(
        out: Path = typer.Option(Path("out/tiles/pipes"), "--out", help="Folder for tileset.json and tiles/"),
        dataset: list[str] = typer.Option(None, "--dataset", help="Only these datasets (repeat); default all"),
        leaf_capacity: int = typer.Option(4000, "--leaf-capacity", help="Features per leaf tile"),
        compress: bool = typer.Option(False, "--compress", help="EXT_meshopt_compression on vertex and index data"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
        dask: str | None = typer.Option(
            None, "--dask", help="Build tile regions on a Dask cluster: 'local' (a LocalCluster on this machine) or "
            "a scheduler address (tcp://host:8786; workers need the store and --out at the same paths)"),
        workers: int = typer.Option(2, "--workers", min=1, help="Workers of a local Dask cluster"),
    ) -> None:
        """Build the pipe network tileset (3D Tiles 1.1, glTF + EXT_mesh_features/EXT_structural_metadata)."""
        settings = get_settings()
        s = open_store(store or settings.store)
        t0 = time.perf_counter()
        kwargs = {"storage_crs": settings.storage_crs, "geoid": get_geoid(settings.geoid, settings.geoid_path),
                  "options": TilingOptions(leaf_capacity=leaf_capacity, datasets=dataset or None, compress=compress)}
        try:
            if dask:
                result = _build_on_dask(s, out, dask, workers, kwargs)
            else:
                with console.status("tiling the pipe network"):
                    result = build_pipe_tileset(s, out, **kwargs)
        finally:
            s.close()
        console.print(
            f"[green]tileset[/] {out / 'tileset.json'}: {result.tiles} tiles, {result.written} written, "
            f"{result.skipped} unchanged, {result.features} features, {result.bytes / 1e6:.1f} MB "
            f"in {time.perf_counter() - t0:.1f} s"
        )
