"""``cim doctor``: check a store and tile folders for what a crash or a bad file may have left behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from cim.doctor import run_doctor
from cim.settings import get_settings

console = Console(stderr=True)
_STYLE = {"error": "bold red", "warning": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to the ``cim`` app."""

    @app.command("doctor")
    def doctor_cmd(
        store: str | None = typer.Option(None, "--store", help="Store URL or file (default: $CIM_STORE)"),
        tiles: list[Path] = typer.Option(None, "--tiles", help="A tile output folder to check (repeat)"),
        no_store: bool = typer.Option(False, "--no-store", help="Check only the --tiles folders"),
        fix: bool = typer.Option(False, "--fix", help="Remove unreferenced leftovers (files and folders only)"),
        min_age: float = typer.Option(3600.0, "--min-age", help="--fix keeps leftovers touched this recently (s)"),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout"),
    ) -> None:
        """Check a store (counts, checksums, orphans, assets) and tile folders; exit 1 on inconsistencies."""
        settings = get_settings()
        report = run_doctor(None if no_store else (store or settings.store), tiles or [], settings=settings,
                            fix=fix, min_age_s=min_age)
        if as_json:
            print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        for p in report.problems:
            console.print(f"[{_STYLE.get(p.severity, 'bold')}]{p.severity}[/] {p.code} {escape(p.where)}: "
                          f"{escape(p.message)}", highlight=False)
        for path in report.fixed:
            console.print(f"[green]removed[/] {escape(path)}", highlight=False)
        checked = ", ".join(f"{n} {what}" for what, n in report.checked.items())
        state = "[green]ok[/]" if report.ok else f"[bold red]{len(report.errors)} inconsistencies[/]"
        console.print(f"doctor: {state}, {len(report.problems) - len(report.errors)} warnings; checked {checked}")
        if not report.ok:
            sys.exit(1)
