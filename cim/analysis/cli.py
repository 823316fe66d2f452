"""``cim analyse …``: the pipe analyses from the command line (same functions the API serves).

Geometries are given inline (GeoJSON or WKT) or as a file path; ``--crs`` names their CRS (default CRS84).
Without ``--out`` the JSON result goes to stdout; with ``--out`` the format follows ``--format`` or the file
suffix (.json, .geojson, .html, .svg, .png).

Example::

    cim analyse excavation --area pit.geojson --depth 3 --out pit.html
    cim analyse isolate JS12 --failed-valve JS7 --out burst.geojson
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cim.analysis.common import Frame
from cim.errors import InvalidInputError
from cim.settings import get_settings
from cim.store import DuckDBStore, open_store

console = Console(stderr=True)
analyse = typer.Typer(help="Pipe network analyses: excavation, sections, clearance, cover, isolation, tracing.",
                      no_args_is_help=True)
valves_app = typer.Typer(help="Isolation valves on network links (valve layers, e.g. for EPANET models).",
                         no_args_is_help=True)
analyse.add_typer(valves_app, name="valves")

FORMATS = {".json": "json", ".geojson": "geojson", ".html": "html", ".svg": "svg", ".png": "png"}
METHODS = {"json": "to_dict", "geojson": "to_geojson", "html": "report_html", "svg": "svg", "png": "png"}

StoreOpt = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)")
DatasetOpt = typer.Option(None, "--dataset", help="Dataset id (default: the only pipe dataset)")
CrsOpt = typer.Option(None, "--crs", help="CRS of the given geometry (default CRS84 lon/lat)")
OutOpt = typer.Option(None, "--out", help="Write the result to this file (format from --format or the suffix)")
FormatOpt = typer.Option(None, "--format", help="json, geojson, html, svg or png (what the analysis offers)")
DemOpt = typer.Option(None, "--dem", help="DEM for the ground: a GeoTIFF file or a catalogued DEM dataset id "
                      "(default: the surveyed ground)")
ToleranceOpt = typer.Option(None, "--ground-tolerance", help="Report DEM vs surveyed ground beyond this (m; default 0.3)")


def read_geometry_arg(value: str | None) -> Any:
    """Inline GeoJSON/WKT, or the content of the file it names."""
    if value is None:
        return None
    path = Path(value)
    if len(value) < 4096 and path.suffix.lower() in (".json", ".geojson", ".wkt", ".txt"):
        if not path.is_file():
            raise InvalidInputError("geometry file does not exist", file=value)
        text = path.read_text(encoding="utf-8-sig")
    else:
        text = value
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"not valid JSON: {exc}", file=value if path.is_file() else None) from None
        if doc.get("type") == "FeatureCollection":
            feats = doc.get("features") or []
            if len(feats) != 1:
                raise InvalidInputError(f"the FeatureCollection has {len(feats)} features; give exactly one")
            doc = feats[0]
        return doc
    return text


def emit(result: Any, out: Path | None, fmt: str | None) -> None:
    """Write ``result`` to ``out`` (or JSON to stdout) in the chosen format."""
    fmt = fmt or (FORMATS.get(out.suffix.lower()) if out else None) or "json"
    method = getattr(result, METHODS.get(fmt, ""), None)
    if method is None:
        have = [k for k, m in METHODS.items() if hasattr(result, m)]
        raise InvalidInputError(f"this analysis has no {fmt!r} output (available: {', '.join(have)})", field="format")
    body = method()
    if isinstance(body, dict | list):
        body = json.dumps(body, ensure_ascii=False, indent=None if out else 2)
    if out is None:
        if isinstance(body, bytes):
            raise InvalidInputError("binary output needs --out FILE", field="out")
        sys.stdout.write(body + "\n")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(body, bytes):
        out.write_bytes(body)
    else:
        out.write_text(body, encoding="utf-8")
    summary = result.to_dict().get("summary") if hasattr(result, "to_dict") else None
    console.print(f"[green]wrote[/] {out}" + (f"  {json.dumps(summary, ensure_ascii=False)}" if summary else ""))


def _open(store: str | None) -> tuple[DuckDBStore, Frame]:
    settings = get_settings()
    return open_store(store or settings.store), Frame.from_settings(settings)


def _ground(store: DuckDBStore, dem: str | None) -> Any:
    from cim.analysis.ground import dem_option

    return dem_option(store, dem, get_settings())


def _contacts() -> Any:
    from cim.analysis.contacts import load_contacts

    path = get_settings().owner_contacts_file
    return load_contacts(path) if path else None


@analyse.command("excavation")
def excavation_cmd(
    area: str = typer.Option(..., "--area", help="Pit polygon: GeoJSON, WKT or a file"),
    depth: float = typer.Option(None, "--depth", help="Depth below ground (m)"),
    bottom: float = typer.Option(None, "--bottom", help="Absolute pit bottom (1985 height)"),
    top: float = typer.Option(None, "--top", help="Absolute pit top (default: ground)"),
    safety: float = typer.Option(None, "--safety", help="Safety distance (m) for every category"),
    crs: str | None = CrsOpt, dataset: str | None = DatasetOpt, out: Path | None = OutOpt,
    fmt: str | None = FormatOpt, store: str | None = StoreOpt,
) -> None:
    """What a planned excavation hits or comes close to (开挖分析), with owners and a printable report."""
    from cim.analysis.excavation import excavate

    s, frame = _open(store)
    try:
        emit(excavate(s, frame, area=read_geometry_arg(area), crs=crs, depth_m=depth, bottom_h=bottom, top_h=top,
                      safety_m=safety, dataset=dataset, contacts=_contacts()), out, fmt)
    finally:
        s.close()


@analyse.command("section")
def section_cmd(
    line: str = typer.Option(..., "--line", help="Section line: GeoJSON LineString, WKT or a file"),
    crs: str | None = CrsOpt, dataset: str | None = DatasetOpt, dem: str | None = DemOpt,
    out: Path | None = OutOpt, fmt: str | None = FormatOpt, store: str | None = StoreOpt,
) -> None:
    """Cross-section (横断面): every pipe crossing a drawn line, with depths and the ground."""
    from cim.analysis.sections import cross_section

    s, frame = _open(store)
    try:
        emit(cross_section(s, frame, line=read_geometry_arg(line), crs=crs, dataset=dataset,
                           ground=_ground(s, dem)), out, fmt)
    finally:
        s.close()


@analyse.command("profile")
def profile_cmd(
    segment: list[str] = typer.Option(None, "--segment", help="Segment ids of the run, in order (repeat)"),
    start: str = typer.Option(None, "--start", help="Start point id (with --end)"),
    end: str = typer.Option(None, "--end", help="End point id"),
    dataset: str | None = DatasetOpt, dem: str | None = DemOpt, tolerance: float | None = ToleranceOpt,
    out: Path | None = OutOpt, fmt: str | None = FormatOpt, store: str | None = StoreOpt,
) -> None:
    """Long profile (纵断面) of a gravity run: inverts, ground, slopes, reversed-slope flags."""
    from cim.analysis.profile import long_profile

    s, frame = _open(store)
    try:
        emit(long_profile(s, frame, segments=segment or None, start=start, end=end, dataset=dataset,
                          ground=_ground(s, dem), ground_tolerance=tolerance), out, fmt)
    finally:
        s.close()


@analyse.command("clearance")
def clearance_cmd(
    area: str = typer.Option(None, "--area", help="Only pipes in this polygon (GeoJSON, WKT or a file)"),
    category: list[str] = typer.Option(None, "--category", help="Pipe category codes (repeat)"),
    check: list[str] = typer.Option(None, "--check", help="parallel and/or crossing (default both)"),
    crs: str | None = CrsOpt, dataset: str | None = DatasetOpt, out: Path | None = OutOpt,
    fmt: str | None = FormatOpt, store: str | None = StoreOpt,
) -> None:
    """Clearances between pipes against GB 50289-2016 tables 4.1.9 (parallel) and 4.1.14 (crossings)."""
    from cim.analysis.clearance import clearance_check

    s, frame = _open(store)
    try:
        emit(clearance_check(s, frame, dataset=dataset, area=read_geometry_arg(area), crs=crs,
                             categories=category or None, checks=tuple(check or ("parallel", "crossing"))), out, fmt)
    finally:
        s.close()


@analyse.command("structure")
def structure_cmd(
    footprint: str = typer.Option(..., "--footprint", help="Footprint polygon: GeoJSON, WKT or a file"),
    bottom: float = typer.Option(..., "--bottom", help="Bottom of the structure (1985 height)"),
    top: float = typer.Option(None, "--top", help="Top of the structure"),
    name: str = typer.Option("structure", "--name"),
    crs: str | None = CrsOpt, dataset: str | None = DatasetOpt, out: Path | None = OutOpt,
    fmt: str | None = FormatOpt, store: str | None = StoreOpt,
) -> None:
    """Clearance between a building/basement footprint and the pipes (GB 50289-2016 table 4.1.9)."""
    from cim.analysis.clearance import structure_clearance

    s, frame = _open(store)
    try:
        emit(structure_clearance(s, frame, footprint=read_geometry_arg(footprint), crs=crs, bottom_h=bottom,
                                 top_h=top, name=name, dataset=dataset), out, fmt)
    finally:
        s.close()


@analyse.command("cover")
def cover_cmd(
    area: str = typer.Option(None, "--area", help="Only pipes in this polygon"),
    road_type: str = typer.Option("carriageway", "--road-type", help="carriageway, footway, ..."),
    crs: str | None = CrsOpt, dataset: str | None = DatasetOpt, dem: str | None = DemOpt,
    tolerance: float | None = ToleranceOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Cover depth (覆土) of every pipe end against the minimum for its category and road type."""
    from cim.analysis.cover import cover_check

    s, frame = _open(store)
    try:
        emit(cover_check(s, frame, dataset=dataset, area=read_geometry_arg(area), crs=crs, road_type=road_type,
                         ground=_ground(s, dem), ground_tolerance=tolerance), out, fmt)
    finally:
        s.close()


@analyse.command("isolate")
def isolate_cmd(
    segment: str = typer.Argument(..., help="The failed segment (feature or line id)"),
    failed_valve: list[str] = typer.Option(None, "--failed-valve", help="A valve that fails to close (repeat)"),
    dataset: str | None = DatasetOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Burst isolation (爆管关阀): valves to close, isolated pipes, secondary outage, affected users."""
    from cim.analysis.isolation import isolate

    s, frame = _open(store)
    try:
        emit(isolate(s, frame, segment=segment, dataset=dataset, failed_valves=tuple(failed_valve or ())), out, fmt)
    finally:
        s.close()


@analyse.command("connectivity")
def connectivity_cmd(
    category: str = typer.Option(None, "--category", help="Only this pipe category"),
    dataset: str | None = DatasetOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Connected sub-networks and dangling ends."""
    from cim.analysis.tracing import connectivity

    s, frame = _open(store)
    try:
        emit(connectivity(s, frame, dataset=dataset, category=category), out, fmt)
    finally:
        s.close()


@analyse.command("trace")
def trace_cmd(
    start: str = typer.Argument(..., help="Point or segment id"),
    direction: str = typer.Option("downstream", "--direction", help="upstream or downstream"),
    dataset: str | None = DatasetOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Trace the network upstream or downstream of a point or segment."""
    from cim.analysis.tracing import trace

    if direction not in ("upstream", "downstream"):
        raise InvalidInputError("direction must be upstream or downstream", field="direction", value=direction)
    s, frame = _open(store)
    try:
        emit(trace(s, frame, start=start, direction=direction, dataset=dataset), out, fmt)  # type: ignore[arg-type]
    finally:
        s.close()


@analyse.command("pollution")
def pollution_cmd(
    at: str = typer.Argument(..., help="Point or segment where pollution was found"),
    dataset: str | None = DatasetOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Pollution source tracing (污染溯源): the upstream inlets that can reach a drainage point."""
    from cim.analysis.tracing import pollution_sources

    s, frame = _open(store)
    try:
        emit(pollution_sources(s, frame, at=at, dataset=dataset), out, fmt)
    finally:
        s.close()


@analyse.command("gas-risk")
def gas_risk_cmd(
    distance: float = typer.Option(5.0, "--distance", help="Search distance from gas mains (m)"),
    limit: int = typer.Option(None, "--limit", help="Only the highest-ranked N chambers"),
    dataset: str | None = DatasetOpt, out: Path | None = OutOpt, fmt: str | None = FormatOpt,
    store: str | None = StoreOpt,
) -> None:
    """Chambers of other utilities near gas mains, ranked as candidate methane-sensor sites."""
    from cim.analysis.gas_risk import gas_adjacent_chambers

    s, frame = _open(store)
    try:
        emit(gas_adjacent_chambers(s, frame, distance_m=distance, dataset=dataset, limit=limit), out, fmt)
    finally:
        s.close()


@valves_app.command("import")
def valves_import_cmd(
    path: Path = typer.Argument(..., help="CSV with columns valve_id, link, node"),
    dataset: str = typer.Option(..., "--dataset", help="The network dataset the valves belong to"),
    store: str | None = StoreOpt,
) -> None:
    """Replace a dataset's edge valves with the ones in a CSV file (one transaction)."""
    from cim.analysis.valves import import_valves, read_valve_csv

    s, _ = _open(store)
    try:
        n = import_valves(s, dataset, read_valve_csv(path), source=path.name)
    finally:
        s.close()
    console.print(f"[green]imported[/] {n} valves into {dataset}")


@valves_app.command("generate")
def valves_generate_cmd(
    inp: Path = typer.Argument(..., help="The EPANET .inp the dataset was ingested from"),
    dataset: str = typer.Option(..., "--dataset"),
    placement: str = typer.Option("strategic", "--placement", help="strategic or random (WNTR valve layer)"),
    n: int = typer.Option(2, "--n", help="N of the strategic N-1 placement, or the number of random valves"),
    seed: int = typer.Option(123, "--seed"),
    store: str | None = StoreOpt,
) -> None:
    """Place valves as WNTR's valve layer does (seeded) and store them for the dataset."""
    from cim.analysis.valves import import_valves, wntr_valve_layer

    s, _ = _open(store)
    try:
        count = import_valves(s, dataset, wntr_valve_layer(inp, placement, n, seed),
                              source=f"wntr:{placement}:n={n}:seed={seed}:{inp.name}")
    finally:
        s.close()
    console.print(f"[green]placed[/] {count} valves ({placement}, n={n}, seed={seed}) in {dataset}")


def register(app: typer.Typer) -> None:
    """Add ``analyse`` to the ``cim`` app."""
    app.add_typer(analyse, name="analyse")
