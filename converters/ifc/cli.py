"""``cim ifc ingest``: an IFC model into the store, with a summary and the georeferencing findings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cim.errors import CIMError
from cim.settings import get_settings
from cim.store import open_store
from converters.ifc.georef import Finding, UserPlacement
from converters.ifc.ingest import GeorefRefusedError, IfcOptions, ingest_ifc

console = Console(stderr=True)
_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def print_findings(findings: list[Finding]) -> None:
    """One line per finding, errors first."""
    order = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(findings, key=lambda f: order.get(f.severity, 3)):
        where = f" {escape(f.entity)}:" if f.entity else ""
        console.print(
            f"  [{_STYLE.get(f.severity, 'bold')}]{f.severity}[/] {f.code}{where} {escape(f.message)}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the ``ifc`` command group to the ``cim`` app."""
    ifc = typer.Typer(help="BIM models (IFC2X3, IFC4, IFC4X3) into the store.", no_args_is_help=True)
    app.add_typer(ifc, name="ifc")

    @ifc.command("ingest")
    def ingest_cmd(
        file: Path = typer.Argument(..., help="IFC-SPF file (.ifc)"),
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the file name)"),
        title: str | None = typer.Option(None, "--title"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        crs: str | None = typer.Option(
            None,
            "--crs",
            help="CRS of the placement (or of the file's map conversion when given alone), e.g. EPSG:4548",
        ),
        easting: float | None = typer.Option(None, "--easting", help="Easting of the project origin"),
        northing: float | None = typer.Option(None, "--northing", help="Northing of the project origin"),
        height: float = typer.Option(0.0, "--height", help="1985 height of the project origin (m)"),
        rotation: float = typer.Option(0.0, "--rotation", help="Project X axis from grid east, degrees CCW"),
        time_budget: float = typer.Option(1800.0, "--time-budget", help="Seconds the conversion may take"),
        memory_budget: int = typer.Option(
            6144, "--memory-budget", help="MB of memory the conversion may use"
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Convert an IFC model (worker process) and store it as a new dataset version."""
        if (easting is None) != (northing is None):
            console.print("[bold red]error:[/] give --easting and --northing together")
            sys.exit(2)
        settings = get_settings()
        options = IfcOptions(
            dataset_id=dataset,
            title=title,
            grade=grade,
            placement=UserPlacement(
                crs=crs, easting=easting, northing=northing, height=height, rotation_deg=rotation
            ),
            time_budget_s=time_budget,
            memory_budget_mb=memory_budget,
        )
        s = open_store(store or settings.store)
        try:
            with console.status("converting IFC") as status:
                result = ingest_ifc(file, s, options, settings, progress=lambda m: status.update(f"IFC: {m}"))
        except GeorefRefusedError as exc:
            console.print(f"[bold red]refused:[/] {file}: georeferencing errors; the store is unchanged")
            print_findings(exc.findings)
            sys.exit(1)
        except CIMError as exc:
            console.print(f"[bold red]refused:[/] {exc}")
            sys.exit(1)
        finally:
            s.close()
        if as_json:
            print(
                json.dumps(
                    {
                        "dataset": result.dataset_id,
                        "version": result.version,
                        "counts": result.counts,
                        "timings": result.timings,
                        "origin": result.origin,
                        "findings": [f.to_dict() for f in result.findings],
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
        table = Table("class", "elements", title=f"{result.dataset_id} version {result.version}")
        for cls, n in result.counts["by_class"].items():
            table.add_row(cls, str(n))
        console.print(table)
        g = result.georef
        console.print(
            f"georeference: {g['method']} from {g['source_crs']} → {g['storage_crs']}, "
            f"origin {tuple(round(v, 3) for v in result.origin or ())}"
        )
        print_findings(result.findings)
        changes = result.counts["bim_elements"]
        console.print(
            f"[green]stored[/] {result.counts['elements']} elements ({result.counts['meshes']} meshes), "
            f"{result.counts['spatial']} spatial rows in {result.timings['total_s']:.1f} s "
            f"({result.elements_per_s:.0f} elements/s); vs previous version: "
            f"{changes['added']} added, {changes['modified']} modified, {changes['deleted']} deleted"
        )
