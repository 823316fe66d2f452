"""The ``cim`` command line. Core commands live here; packages add theirs via the ``cim.commands``
entry-point group (each entry point is a ``register(app)`` function), so the core imports none of them.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points

import typer
from rich.console import Console
from rich.table import Table

from cim.errors import CIMError
from cim.settings import get_settings
from cim.store import open_store

app = typer.Typer(help="CIM 3D spatial data service: pipe surveys, BIM, real-scene 3D → store → 3D Tiles / OGC API.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)

StoreOption = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE or duckdb:///cim.duckdb)")


@app.command("datasets")
def datasets_cmd(
    store: str | None = StoreOption,
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue entries as JSON"),
) -> None:
    """List the datasets in the store."""
    s = open_store(store or get_settings().store)
    if as_json:
        print(json.dumps(s.datasets(), ensure_ascii=False, indent=2, default=str))
        return
    table = Table("id", "title", "kind", "grade", "version", "CRS", "updated")
    table.columns[0].no_wrap = True
    for d in s.datasets():
        table.add_row(d["id"], d["title"], d["kind"], d["grade"], str(d["current_version"]), d["storage_crs"],
                      str(d["updated_at"])[:19])
    Console().print(table)


@app.command("info")
def info_cmd(dataset: str, store: str | None = StoreOption) -> None:
    """Show a dataset's catalogue entry and versions as JSON."""
    s = open_store(store or get_settings().store)
    out = {"dataset": s.get_dataset(dataset), "versions": s.versions(dataset),
           "current": {t: s.count(t, dataset) for t in ("pipe_points", "pipe_segments")}}
    print(json.dumps(out, ensure_ascii=False, indent=2, default=str))


def _load_plugins() -> None:
    for ep in entry_points(group="cim.commands"):
        ep.load()(app)


def main() -> None:
    """Entry point: run the app, turning service errors into one clear line and exit code 2."""
    _load_plugins()
    try:
        app()  # standalone: usage errors print and exit by themselves
    except CIMError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(getattr(exc, "exit_code", 2))
