"""``cim ingest``, ``cim qc``, ``cim sample`` and ``cim demo``: pipe surveys and network models."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cim.errors import InvalidInputError, OutOfRegionError, QCRefusedError
from cim.qc.report import QCReport, write_report
from cim.settings import get_settings
from cim.store import open_store
from converters.pipes.ingest import SurveyOptions, find_files, ingest_survey, qc_survey

console = Console(stderr=True)


@contextmanager
def progress_bar(what: str, steps: int = 40) -> Iterator:
    """A rich progress bar advanced by each pipeline message (files read, normalising, each QC rule, writing)."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=steps)

        def advance(msg: str) -> None:
            bar.update(task, advance=1, description=f"{what}: {msg}")

        yield advance
        bar.update(task, completed=steps)


def _options(crs: str | None, vertical: str, axis_order: str, encoding: str | None, mapping: Path | None,
             dataset: str | None, title: str | None, grade: str, keep_errors: bool) -> SurveyOptions:
    return SurveyOptions(crs_in=crs, vertical_in=vertical, axis_order=axis_order, encoding=encoding, mapping=mapping,
                         dataset_id=dataset, title=title, grade=grade, keep_errors=keep_errors)


def print_qc_summary(report: QCReport, paths: dict[str, Path] | None) -> None:
    table = Table("rule", "title", "errors", "warnings", "infos", title="QC findings by rule")
    for rule_id, counts in report.counts_by_rule().items():
        if sum(counts.values()):
            from cim.qc.catalogue import RULES_BY_ID

            r = RULES_BY_ID[rule_id]
            table.add_row(rule_id, r.title_zh, str(counts["error"]), str(counts["warning"]), str(counts["info"]))
    s = report.summary()
    if s["findings"]:
        console.print(table)
    console.print(f"QC: [bold]{s['errors']}[/] errors, {s['warnings']} warnings, {s['infos']} infos")
    if paths:
        console.print("reports: " + ", ".join(str(p) for p in paths.values()))


def ingest_steps(paths: list[Path]) -> int:
    """Progress steps of an ingest: one per file, normalising, the QC rules, network and write."""
    return 34 if len(paths) == 1 and paths[0].suffix.lower() == ".inp" else len(find_files(paths)) + 32


def _parse_offset(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"--offset {text!r} must be E,N or E,N,H in metres") from None
    if len(parts) not in (2, 3):
        raise InvalidInputError(f"--offset {text!r} must be E,N or E,N,H in metres")
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else 0.0)


def register(app: typer.Typer) -> None:
    """Add the pipe commands to the ``cim`` app."""

    @app.command("ingest")
    def ingest_cmd(
        paths: list[Path] = typer.Argument(..., help="Pipe tables, folders of them, or an EPANET/SWMM .inp"),
        crs: str | None = typer.Option(None, "--crs", help="CRS of the coordinates, e.g. EPSG:4548"),
        vertical: str = typer.Option("EPSG:5737", "--vertical", help="Height system of the source (5737=1985, 5736=1956)"),
        axis_order: str = typer.Option("ne", "--axis-order", help="'ne': X column is the northing (Chinese); 'en'"),
        encoding: str | None = typer.Option(None, "--encoding", help="Text encoding of CSV files (auto: UTF-8/GB18030)"),
        mapping: Path | None = typer.Option(None, "--mapping", help="TOML/JSON file mapping a city's column names"),
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: folder or file name)"),
        title: str | None = typer.Option(None, "--title"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        keep_errors: bool = typer.Option(False, "--keep-errors", help="Store data with QC errors, rows flagged"),
        offset: str = typer.Option("0,0,0", "--offset", help="E,N,H added to model coordinates (.inp only)"),
        scale: float = typer.Option(1.0, "--scale", help="Model map units to metres (.inp only)"),
        report_dir: Path = typer.Option(Path("qc-reports"), "--report-dir", help="Where QC reports go"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Check and ingest a pipe survey (or network model) into the store as a new version."""
        settings = get_settings()
        s = open_store(store or settings.store)
        opts = _options(crs, vertical, axis_order, encoding, mapping, dataset, title, grade, keep_errors)
        try:
            with progress_bar("ingesting", ingest_steps(paths)) as progress:
                if len(paths) == 1 and paths[0].suffix.lower() == ".inp":
                    from converters.network.ingest import ingest_model

                    version, report = ingest_model(paths[0], s, opts, offset=_parse_offset(offset), scale=scale,
                                                   settings=settings, progress=progress)
                else:
                    version, report = ingest_survey(paths, s, opts, settings, progress)
        except OutOfRegionError as exc:
            console.print(f"[bold red]refused:[/] {exc}")
            sys.exit(1)
        except QCRefusedError as exc:
            console.print(f"[bold red]refused:[/] {exc}")
            for f in exc.findings[:15]:
                console.print(f"  [{f.severity}] {f.rule_id} {f.file} row {f.row} {f.field or ''}: {f.message}")
            sys.exit(1)
        finally:
            s.close()
        paths_out = write_report(report, report_dir / version.dataset_id)
        print_qc_summary(report, paths_out)
        console.print(f"[green]stored[/] {version.dataset_id} version {version.version}: "
                      + json.dumps(version.counts, ensure_ascii=False))

    @app.command("qc")
    def qc_cmd(
        paths: list[Path] = typer.Argument(..., help="Pipe tables or folders of them"),
        crs: str | None = typer.Option(None, "--crs"),
        vertical: str = typer.Option("EPSG:5737", "--vertical"),
        axis_order: str = typer.Option("ne", "--axis-order"),
        encoding: str | None = typer.Option(None, "--encoding"),
        mapping: Path | None = typer.Option(None, "--mapping"),
        out: Path = typer.Option(Path("qc-report"), "--out", help="Folder for qc-report.json/.html/.csv"),
    ) -> None:
        """Check a pipe survey against the CJJ 61 QC catalogue; exit 1 when it has errors."""
        opts = _options(crs, vertical, axis_order, encoding, mapping, None, None, "重要", False)
        with progress_bar("checking", len(find_files(paths)) + 30) as progress:
            checked = qc_survey(paths, opts, get_settings(), progress)
        checked.con.close()
        written = write_report(checked.report, out)
        print_qc_summary(checked.report, written)
        if checked.report.summary()["errors"]:
            sys.exit(1)

    @app.command("sample")
    def sample_cmd(
        out: Path = typer.Argument(..., help="Output folder"),
        blocks_x: int = typer.Option(4, "--blocks-x"),
        blocks_y: int = typer.Option(3, "--blocks-y"),
        segments: int | None = typer.Option(None, "--segments", help="Target size in segments (overrides blocks)"),
        dirty: bool = typer.Option(False, "--dirty", help="Inject one defect per QC rule"),
        layout: str = typer.Option("per_category", "--layout", help="per_category or single"),
        seed: int = typer.Option(2025, "--seed"),
    ) -> None:
        """Generate a Jinan survey district (EPSG:4548, 1985 heights)."""
        from converters.samples.district import blocks_for_segments, generate_district

        if segments:
            blocks_x, blocks_y = blocks_for_segments(segments)
        with progress_bar("generating"):
            summary = generate_district(out, blocks_x=blocks_x, blocks_y=blocks_y, seed=seed, dirty=dirty, layout=layout)
        console.print(f"[green]wrote[/] {out}: {summary}")
