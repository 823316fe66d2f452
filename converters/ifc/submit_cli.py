"""``cim bim``: BIM submissions for drawing review and handover — submit, list, show, check, report, review,
compare.

``cim bim submit`` prints the new submission's id alone on stdout (the summary goes to stderr), so scripts
can chain ``cim bim report "$(cim bim submit …)" --format html --out report.html``. Refusals print the reason
and exit with 1 (nothing stored); usage errors exit with 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cim.bim.reports import report_html, report_json, write_bcf
from cim.bim.submissions import STAGES, Submission, events, findings, get_submission, list_submissions, review
from cim.errors import CIMError
from cim.settings import get_settings
from cim.store import DuckDBStore, open_store
from converters.ifc.cli import print_findings
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import GeorefRefusedError
from converters.ifc.submit import (
    check_submission,
    compare_submissions,
    comparison_dict,
    submission_dict,
    submit_model,
)

console = Console(stderr=True, soft_wrap=True)  # messages stay on one line (logs, grep)
_STATUS_STYLE = {"passed": "green", "accepted": "bold green", "failed": "bold red", "rejected": "red"}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
StoreOpt = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)")
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout")


@contextmanager
def _store(url: str | None) -> Any:
    """The store, closed afterwards; service errors end the command with a clear line and exit code 1."""
    s = None
    try:
        s = open_store(url or get_settings().store)
        yield s
    except GeorefRefusedError as exc:
        console.print("[bold red]refused:[/] georeferencing errors; nothing was stored")
        print_findings(exc.findings)
        sys.exit(1)
    except CIMError as exc:
        console.print(f"[bold red]refused:[/] {escape(str(exc))}")
        sys.exit(1)
    finally:
        if s is not None:
            s.close()


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'bold')}]{status}[/]"


def _print_submission(store: DuckDBStore, sub: Submission, *, limit: int = 10) -> None:
    console.print(f"submission [bold]{sub.id}[/] · project {escape(sub.project)} · {sub.stage} · "
                  f"{sub.dataset_id} v{sub.version} · {escape(sub.file_name or '')} · status {_status(sub.status)}")
    found = findings(store, sub.id)
    if not found:
        console.print("  no findings")
        return
    table = Table("check", "errors", "warnings", "infos", title="findings")
    by = Counter((f.check_kind, f.severity) for f in found)
    for kind in sorted({f.check_kind for f in found}):
        table.add_row(kind, *(str(by[(kind, s)]) for s in ("error", "warning", "info")))
    console.print(table)
    for f in found[:limit]:
        where = f" {escape(f.global_id)} ({f.ifc_class})" if f.global_id else ""
        console.print(f"  [{_SEVERITY_STYLE.get(f.severity, 'bold')}]{f.severity}[/] {f.rule_id}{where}: "
                      f"{escape(f.message)}", highlight=False)
    if len(found) > limit:
        console.print(f"  … {len(found) - limit} more (cim bim report {sub.id} --format html --out report.html)")


bim = typer.Typer(help="BIM submissions: drawing review (施工图审查) and handover (竣工交付).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``bim`` command group to the ``cim`` app."""
    app.add_typer(bim, name="bim")


@bim.command("submit")
def submit_cmd(
    file: Path = typer.Argument(..., help="IFC-SPF file (.ifc)"),
    project: str = typer.Option(..., "--project", help="Project name; each submission is a new version"),
    stage: str = typer.Option(..., "--stage", help=f"One of {', '.join(STAGES)}"),
    ids: Path | None = typer.Option(None, "--ids", help="IDS rule set (default: the Chinese LOD3.0 rules)"),
    by: str | None = typer.Option(None, "--by", help="Who submits"),
    discipline: str = typer.Option("architecture", "--discipline", help="architecture, structure or mep"),
    note: str | None = typer.Option(None, "--note"),
    crs: str | None = typer.Option(None, "--crs", help="CRS of the placement, e.g. EPSG:4548"),
    easting: float | None = typer.Option(None, "--easting", help="Easting of the project origin"),
    northing: float | None = typer.Option(None, "--northing", help="Northing of the project origin"),
    height: float = typer.Option(0.0, "--height", help="1985 height of the project origin (m)"),
    rotation: float = typer.Option(0.0, "--rotation", help="Project X axis from grid east, degrees CCW"),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """Store, ingest and check a model as the next version of the project's BIM dataset."""
    if (easting is None) != (northing is None):
        console.print("[bold red]error:[/] give --easting and --northing together")
        sys.exit(2)
    placement = UserPlacement(crs=crs, easting=easting, northing=northing, height=height, rotation_deg=rotation)
    settings = get_settings()
    with _store(store) as s, console.status("submitting") as status:
        status.update("storing, converting and checking the model")
        out = submit_model(file, s, project=project, stage=stage, settings=settings, submitted_by=by,
                           placement=placement, ids=ids, discipline=discipline, note=note)
        _print_submission(s, out.submission)
    console.print(f"{out.counts['elements']} elements in {out.timings['total_s']:.1f} s "
                  f"(ingest {out.timings['ingest_s']:.1f} s, checks {out.timings['checks_s']:.1f} s)")
    if as_json:
        print(json.dumps({"submission": submission_dict(out.submission), "counts": out.counts,
                          "timings": out.timings}, ensure_ascii=False, indent=2))
    else:
        print(out.submission.id)


@bim.command("list")
def list_cmd(
    project: str | None = typer.Option(None, "--project"),
    stage: str | None = typer.Option(None, "--stage"),
    status: str | None = typer.Option(None, "--status"),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """List submissions, oldest first."""
    with _store(store) as s:
        subs = list_submissions(s, project=project, stage=stage, status=status)
    if as_json:
        print(json.dumps([submission_dict(x) for x in subs], ensure_ascii=False, indent=2))
        return
    table = Table("id", "project", "stage", "version", "status", "by", "submitted", "errors")
    for x in subs:
        table.add_row(x.id, x.project, x.stage, str(x.version), _status(x.status), x.submitted_by or "",
                      str(x.submitted_at)[:19], str((x.summary or {}).get("errors", "")))
    Console().print(table)


@bim.command("show")
def show_cmd(submission_id: str = typer.Argument(...), as_json: bool = JsonOpt,
             store: str | None = StoreOpt) -> None:
    """One submission: status, findings by check and its history."""
    with _store(store) as s:
        sub = get_submission(s, submission_id)
        if as_json:
            print(json.dumps({"submission": submission_dict(sub),
                              "findings": [f.to_dict() for f in findings(s, sub.id)],
                              "events": [{**e.__dict__, "event_at": str(e.event_at)} for e in events(s, sub.id)]},
                             ensure_ascii=False, indent=2))
            return
        _print_submission(s, sub, limit=20)
        for e in events(s, sub.id):
            console.print(f"  {str(e.event_at)[:19]} {e.from_status or '·'} → {e.to_status} "
                          f"{escape(e.actor or '')} {escape(e.comment or '')}", highlight=False)


@bim.command("check")
def check_cmd(
    submission_id: str = typer.Argument(...),
    ids: Path | None = typer.Option(None, "--ids", help="A new IDS (default: the one of the last check)"),
    discipline: str | None = typer.Option(None, "--discipline"),
    store: str | None = StoreOpt,
) -> None:
    """Run the checks of a submission again (not once it is accepted or rejected)."""
    with _store(store) as s:
        sub = check_submission(s, submission_id, settings=get_settings(), ids=ids, discipline=discipline)
        _print_submission(s, sub)


@bim.command("report")
def report_cmd(
    submission_id: str = typer.Argument(...),
    fmt: str = typer.Option("html", "--format", "-f", help="json, html or bcf"),
    out: Path = typer.Option(..., "--out", "-o", help="File to write"),
    store: str | None = StoreOpt,
) -> None:
    """Write the review report: JSON, printable HTML or a BCF 2.1 zip of the findings."""
    if fmt not in ("json", "html", "bcf"):
        console.print(f"[bold red]error:[/] --format must be json, html or bcf, not {fmt!r}")
        sys.exit(2)
    with _store(store) as s:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            out.write_text(json.dumps(report_json(s, submission_id), ensure_ascii=False, indent=2),
                           encoding="utf-8")
            what = "JSON report"
        elif fmt == "html":
            out.write_text(report_html(s, submission_id), encoding="utf-8")
            what = "HTML report"
        else:
            what = f"BCF 2.1 ({write_bcf(s, submission_id, out)} topics)"
    console.print(f"[green]wrote[/] {what} of {submission_id} to {out}")


@bim.command("review")
def review_cmd(
    submission_id: str = typer.Argument(...),
    accept: bool = typer.Option(False, "--accept", help="Accept (only a passed submission)"),
    reject: bool = typer.Option(False, "--reject", help="Reject (a passed or failed submission)"),
    by: str = typer.Option(..., "--by", help="The reviewer's name"),
    comment: str | None = typer.Option(None, "--comment", help="The reviewer's comment"),
    store: str | None = StoreOpt,
) -> None:
    """Record a reviewer's decision."""
    if accept == reject:
        console.print("[bold red]error:[/] give exactly one of --accept and --reject")
        sys.exit(2)
    with _store(store) as s:
        sub = review(s, submission_id, actor=by, decision="accept" if accept else "reject", comment=comment)
    console.print(f"submission {sub.id} is now {_status(sub.status)} ({escape(by)})")


@bim.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help="A submission id"),
    b: str = typer.Argument(..., help="Another submission of the same project"),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """Elements added, removed and changed (by GlobalId) between two submissions of one project."""
    with _store(store) as s:
        cmp = compare_submissions(s, a, b)
        data = comparison_dict(cmp, s)
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    n = data["summary"]
    console.print(f"{cmp.dataset_id}: version {cmp.v1} → {cmp.v2}: {n['added']} added, {n['removed']} removed, "
                  f"{n['changed']} changed ({n['geometry_changed']} geometry, {n['properties_changed']} "
                  f"properties), {n['unchanged']} unchanged")
    for c in cmp.changed[:20]:
        what = ", ".join([*c.changed_attributes, *c.changed_properties]) or \
            ("geometry" if c.geometry_changed else "properties")
        console.print(f"  changed {c.global_id} {c.ifc_class} {escape(c.name or '')}: {escape(what)}")
