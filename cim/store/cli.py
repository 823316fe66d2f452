"""``cim store``: move a store between backends, back it up, restore it, check it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from cim.store.backup import backup_store, restore_store
from cim.store.migrate import MoveReport, inspect_store, migrate_store, report_dict

console = Console(stderr=True)


def _print(report: MoveReport, seconds: float) -> None:
    print(json.dumps(report_dict(report), ensure_ascii=False, indent=1))
    console.print(f"[green]verified[/] {len(report.tables)} tables, {report.rows} rows, counts and checksums "
                  f"equal ({report.source} → {report.target}) in {seconds:.1f} s")


def register(app: typer.Typer) -> None:
    """Add ``store migrate|backup|restore|check`` to the ``cim`` app."""
    store_app = typer.Typer(help="Store backends: DuckDB file ↔ PostGIS moves, backup, restore, check.",
                            no_args_is_help=True)

    @store_app.command("migrate")
    def migrate_cmd(
        src_url: str = typer.Argument(..., help="Source store: duckdb:///path or postgresql://user@host/db"),
        dst_url: str = typer.Argument(..., help="Target store URL"),
        replace: bool = typer.Option(False, "--replace", help="Overwrite a non-empty target"),
    ) -> None:
        """Copy every table of a store into another (either backend), verified by counts and checksums."""
        t0 = time.perf_counter()
        _print(migrate_store(src_url, dst_url, replace=replace), time.perf_counter() - t0)

    @store_app.command("backup")
    def backup_cmd(
        url: str = typer.Argument(..., help="Store URL"),
        out: Path = typer.Argument(..., help="New folder for the backup (Parquet per table + manifest.json)"),
    ) -> None:
        """Back up a store (one consistent snapshot) into a new folder."""
        t0 = time.perf_counter()
        manifest = backup_store(url, out)
        rows = sum(t["rows"] for t in manifest["tables"].values())
        console.print(f"[green]backup[/] {out}: {len(manifest['tables'])} tables, {rows} rows "
                      f"in {time.perf_counter() - t0:.1f} s")

    @store_app.command("restore")
    def restore_cmd(
        backup: Path = typer.Argument(..., help="Backup folder written by `cim store backup`"),
        url: str = typer.Argument(..., help="Target store URL"),
        replace: bool = typer.Option(False, "--replace", help="Overwrite a non-empty target"),
    ) -> None:
        """Restore a backup into a store (either backend), verified against the backup's manifest."""
        t0 = time.perf_counter()
        _print(restore_store(backup, url, replace=replace), time.perf_counter() - t0)

    @store_app.command("check")
    def check_cmd(url: str = typer.Argument(..., help="Store URL")) -> None:
        """Print backend, schema state and rows + checksum per table (compare two sites or a replica)."""
        info = inspect_store(url)
        print(json.dumps(info, ensure_ascii=False, indent=1))
        if info["missing_tables"] or info.get("schema_current") is False:
            console.print("[yellow]schema not current[/]: opening the store with the service migrates it")
            raise typer.Exit(1)

    app.add_typer(store_app, name="store")
