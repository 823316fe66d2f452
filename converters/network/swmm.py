"""SWMM 5 ``.inp`` drainage networks -> raw canonical point and line tables (category PS).

A small own parser of the sections that describe the pipe network: [OPTIONS] (FLOW_UNITS,
LINK_OFFSETS), [JUNCTIONS], [OUTFALLS], [STORAGE], [DIVIDERS], [CONDUITS], [XSECTIONS] and
[COORDINATES]; everything else (hydrology, [VERTICES], pumps/weirs/orifices) is ignored, the skipped
link counts are reported in ``meta``.

Units: FLOW_UNITS CFS/GPM/MGD (SWMM's default is CFS) mean lengths in feet, CMS/LPS/MLD metres.
Elevations, depths and offsets become metres, section sizes millimetres (rounded to 0.1 mm, so a
1.5 ft pipe is ``457.2``). Coordinates are in map units and only scaled by ``scale``.

Height convention (domain §2.6, gravity pipes record **inverts**):

* junction/storage/divider: ``well_bottom_h`` = invert, ``ground_h`` = invert + max depth,
  ``well_depth`` = ground − invert. A max depth of 0 (SWMM: "up to the highest connected crown") is
  replaced by the highest crown of the connected conduits + 1.0 m cover, flagged ``ground_estimated``
  in ``_extra``;
* outfall: ``ground_h`` = invert + highest connected crown (the outfall sits at the pipe end, no
  cover), flagged ``ground_estimated``;
* conduit ``start_h``/``end_h`` = node invert + inlet/outlet offset (LINK_OFFSETS DEPTH, the default)
  or the offset itself (ELEVATION; ``*`` means the node invert); ``start_depth``/``end_depth`` = node
  ground − pipe invert.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.errors import InvalidInputError
from converters.network.model import (
    InpFile,
    InpLine,
    NetworkTables,
    Placement,
    check_crs,
    check_subtype,
    extra_json,
    fmt_num,
    lines_table,
    points_table,
)

CATEGORY = "PS"
FEET = 0.3048
US_FLOW_UNITS = frozenset({"CFS", "GPM", "MGD"})
SI_FLOW_UNITS = frozenset({"CMS", "LPS", "MLD"})
#: Cover assumed above the highest crown when a node's max depth is 0 (m).
DEFAULT_COVER_M = 1.0
#: Parameters between a divider's type and its max depth.
_DIVIDER_PARAMS = {"OVERFLOW": 0, "CUTOFF": 1, "TABULAR": 1, "WEIR": 3}
_SKIPPED_LINKS = ("PUMPS", "ORIFICES", "WEIRS", "OUTLETS")
#: Shapes whose Geom1 is not a number (a transect or street name).
_NAMED_SHAPES = frozenset({"IRREGULAR", "STREET"})


@dataclass
class _Node:
    section: str
    row: int
    name: str
    line: InpLine
    invert: float  # m, target datum
    max_depth: float | None  # m; None for outfalls
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Conduit:
    row: int
    name: str
    line: InpLine
    start: str
    end: str
    length: float  # m
    roughness: float
    offsets: tuple[float | None, float | None]  # as given, m (None for "*")
    shape: str = ""
    size: str | None = None
    height: float | None = None  # m
    extra: dict[str, Any] = field(default_factory=dict)


def _options(inp: InpFile) -> dict[str, str]:
    return {ln.tokens[0].upper(): " ".join(ln.tokens[1:]).upper() for ln in inp.lines("OPTIONS") if ln.tokens}


def _nodes(inp: InpFile, f: float, place: Placement) -> dict[str, _Node]:
    """All node sections, keyed by name; inverts in metres on the target datum."""
    nodes: dict[str, _Node] = {}

    def add(section: str, row: int, ln: InpLine, max_depth: float | None, extra: dict[str, Any]) -> None:
        name = inp.token(ln, 0, section, "Name")
        if name in nodes:
            raise inp.error(ln, section, "Name", f"node {name!r} is defined twice", name)
        invert = place.height(inp.number(ln, 1, section, "Elevation") * f)
        nodes[name] = _Node(section, row, name, ln, invert, max_depth, extra)

    for i, ln in enumerate(inp.lines("JUNCTIONS"), start=1):
        add("JUNCTIONS", i, ln, inp.number(ln, 2, "JUNCTIONS", "MaxDepth", 0.0) * f, {"element": "junction"})
    for i, ln in enumerate(inp.lines("OUTFALLS"), start=1):
        kind = inp.token(ln, 2, "OUTFALLS", "Type").upper()
        add("OUTFALLS", i, ln, None, {"element": "outfall", "outfall_type": kind})
    for i, ln in enumerate(inp.lines("STORAGE"), start=1):
        add("STORAGE", i, ln, inp.number(ln, 2, "STORAGE", "MaxDepth") * f, {"element": "storage"})
    for i, ln in enumerate(inp.lines("DIVIDERS"), start=1):
        kind = inp.token(ln, 3, "DIVIDERS", "Type").upper()
        if kind not in _DIVIDER_PARAMS:
            raise inp.error(ln, "DIVIDERS", "Type", f"unknown divider type {kind!r}", kind)
        depth = inp.number(ln, 4 + _DIVIDER_PARAMS[kind], "DIVIDERS", "MaxDepth", 0.0) * f
        add("DIVIDERS", i, ln, depth, {"element": "divider", "divider_type": kind, "diverted_link": ln.tokens[2]})
    return nodes


def _section_size(inp: InpFile, ln: InpLine, to_mm: float) -> tuple[str, str | None, float | None, dict[str, Any]]:
    """(shape, size text, full height in model units, extra) of one [XSECTIONS] line."""
    shape = inp.token(ln, 1, "XSECTIONS", "Shape").upper()
    if shape in _NAMED_SHAPES:
        return shape, None, None, {"shape": shape, "section_name": inp.token(ln, 2, "XSECTIONS", "Geom1")}
    g1 = inp.number(ln, 2, "XSECTIONS", "Geom1")
    extra: dict[str, Any] = {"shape": shape}
    if shape == "CUSTOM":
        extra["shape_curve"] = inp.token(ln, 3, "XSECTIONS", "Geom2")
        barrels_at = 4
    else:
        extra["geom"] = [inp.number(ln, k, "XSECTIONS", f"Geom{k - 1}", 0.0) for k in (2, 3, 4, 5)]
        barrels_at = 6
    barrels = inp.number(ln, barrels_at, "XSECTIONS", "Barrels", 1.0)
    if barrels != 1:
        extra["barrels"] = barrels
    if shape in ("CIRCULAR", "FORCE_MAIN"):
        size = fmt_num(g1 * to_mm, 1)
    elif shape in ("RECT_CLOSED", "RECT_OPEN"):
        width = extra["geom"][1]
        size = f"{fmt_num(width * to_mm, 1)}×{fmt_num(g1 * to_mm, 1)}"
    else:
        size = fmt_num(g1 * to_mm, 1)
    return shape, size, g1, extra


def _conduits(inp: InpFile, nodes: dict[str, _Node], f: float) -> list[_Conduit]:
    """[CONDUITS] joined with [XSECTIONS]; lengths and offsets in metres."""
    conduits: list[_Conduit] = []
    by_name: dict[str, _Conduit] = {}
    for i, ln in enumerate(inp.require("CONDUITS"), start=1):
        name = inp.token(ln, 0, "CONDUITS", "Name")
        ends = []
        for idx, fname in ((1, "FromNode"), (2, "ToNode")):
            ref = inp.token(ln, idx, "CONDUITS", fname)
            if ref not in nodes:
                raise inp.error(ln, "CONDUITS", fname, f"{fname} {ref!r} of conduit {name!r} is not a defined node", ref)
            ends.append(ref)
        offs: list[float | None] = []
        for idx, fname in ((5, "InOffset"), (6, "OutOffset")):
            tok = ln.tokens[idx] if idx < len(ln.tokens) else "0"
            offs.append(None if tok == "*" else inp.number(ln, idx, "CONDUITS", fname) * f)
        c = _Conduit(
            i, name, ln, ends[0], ends[1],
            inp.number(ln, 3, "CONDUITS", "Length") * f, inp.number(ln, 4, "CONDUITS", "Roughness"),
            (offs[0], offs[1]),
        )
        conduits.append(c)
        by_name[name] = c
    for ln in inp.require("XSECTIONS"):
        c = by_name.get(inp.token(ln, 0, "XSECTIONS", "Link"))
        if c is None:
            continue  # cross-sections of weirs/orifices
        c.shape, c.size, g1, c.extra = _section_size(inp, ln, f * 1000.0)
        c.height = None if g1 is None else g1 * f
    for c in conduits:
        if not c.shape:
            raise inp.error(c.line, "XSECTIONS", "Link", f"conduit {c.name!r} has no [XSECTIONS] entry", c.name)
    return conduits


def read_swmm(
    path: Path,
    *,
    crs_in: str,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    subtype: str = "YS",
) -> NetworkTables:
    """Read a SWMM 5 model as raw canonical tables (see the module docstring for conventions).

    Args:
        path: the ``.inp`` file.
        crs_in: CRS of the placed coordinates (``x * scale + offset``).
        offset: (east, north, height) added after scaling; height shifts model elevations (m).
        scale: model map units -> metres (e.g. 0.3048 for ``[MAP] Units Feet``).
        subtype: PS sub-type put in ``_category``: YS 雨水 (default), WS 污水, HS 合流.

    Raises:
        InvalidInputError: missing section, unparseable number or unknown node reference (with line).
    """
    crs_in = check_crs(crs_in)
    sub = check_subtype(CATEGORY, subtype)
    place = Placement(tuple(float(v) for v in offset), float(scale))  # type: ignore[arg-type]
    inp = InpFile(path)
    opts = _options(inp)
    flow_units = opts.get("FLOW_UNITS", "CFS")
    if flow_units not in US_FLOW_UNITS | SI_FLOW_UNITS:
        raise InvalidInputError(f"unknown FLOW_UNITS {flow_units!r}", file=inp.name, field="OPTIONS.FLOW_UNITS", value=flow_units)
    f = FEET if flow_units in US_FLOW_UNITS else 1.0
    offsets_mode = opts.get("LINK_OFFSETS", "DEPTH")
    if offsets_mode not in ("DEPTH", "ELEVATION"):
        raise InvalidInputError(f"unknown LINK_OFFSETS {offsets_mode!r}", file=inp.name, field="OPTIONS.LINK_OFFSETS")
    if not any(inp.has(s) for s in ("JUNCTIONS", "OUTFALLS", "STORAGE", "DIVIDERS")):
        inp.require("JUNCTIONS")
    nodes = _nodes(inp, f, place)
    conduits = _conduits(inp, nodes, f)
    coords: dict[str, tuple[float, float]] = {}
    for ln in inp.require("COORDINATES"):
        name = inp.token(ln, 0, "COORDINATES", "Node")
        xy = (inp.number(ln, 1, "COORDINATES", "X"), inp.number(ln, 2, "COORDINATES", "Y"))
        if name in nodes:  # rain gauges and others may have coordinates too in old files
            coords[name] = xy

    # pipe inverts (target datum) at each end, and the highest crown above each node's invert
    def pipe_invert(node: _Node, given: float | None) -> float:
        if given is None:
            return node.invert
        return node.invert + given if offsets_mode == "DEPTH" else place.height(given)

    inverts: dict[str, tuple[float, float]] = {}
    crown: dict[str, float] = defaultdict(float)
    for c in conduits:
        pair = (pipe_invert(nodes[c.start], c.offsets[0]), pipe_invert(nodes[c.end], c.offsets[1]))
        inverts[c.name] = pair
        for node_name, inv in zip((c.start, c.end), pair, strict=True):
            crown[node_name] = max(crown[node_name], inv - nodes[node_name].invert + (c.height or 0.0))

    ground: dict[str, float] = {}
    points: list[dict[str, Any]] = []
    appurtenance = {"OUTFALLS": "排放口", "STORAGE": "调蓄池"}
    for node in sorted(nodes.values(), key=lambda n: n.line.lineno):
        extra = {**node.extra, "inp_line": node.line.lineno, "invert_m": round(node.invert, 4)}
        if node.max_depth is None:
            depth = crown[node.name]
            extra["ground_estimated"] = "outfall: invert + highest connected crown"
        elif node.max_depth > 0:
            depth = node.max_depth
        else:
            depth = crown[node.name] + DEFAULT_COVER_M
            extra["ground_estimated"] = f"max depth 0: highest connected crown + {DEFAULT_COVER_M} m"
            extra["max_depth_model"] = 0
        ground[node.name] = node.invert + depth
        x, y = place.raw_xy(*coords[node.name]) if node.name in coords else (None, None)
        is_well = node.max_depth is not None
        points.append({
            "_file": inp.name, "_layer": node.section, "_row": node.row, "_category": sub, "_extra": extra_json(extra),
            "point_id": node.name, "map_no": node.name, "category": CATEGORY,
            "appurtenance": appurtenance.get(node.section, "检修井"), "x": x, "y": y,
            "ground_h": fmt_num(ground[node.name]),
            "well_depth": fmt_num(depth) if is_well else None,
            "well_bottom_h": fmt_num(node.invert) if is_well else None,
            "status": "0",
        })

    lines: list[dict[str, Any]] = []
    for c in conduits:
        s_inv, e_inv = inverts[c.name]
        extra = {
            **c.extra, "inp_line": c.line.lineno, "length_m": round(c.length, 4), "roughness": c.roughness,
            "offsets": [c.offsets[0], c.offsets[1]], "link_offsets": offsets_mode,
        }
        lines.append({
            "_file": inp.name, "_layer": "CONDUITS", "_row": c.row, "_category": sub, "_extra": extra_json(extra),
            "line_id": c.name, "start_id": c.start, "end_id": c.end, "category": CATEGORY,
            "start_h": fmt_num(s_inv), "end_h": fmt_num(e_inv),
            "start_depth": fmt_num(ground[c.start] - s_inv), "end_depth": fmt_num(ground[c.end] - e_inv),
            "size": c.size, "burial": "ZM", "flow_dir": "start→end", "status": "0",
        })

    counts = {s.lower(): len(inp.lines(s)) for s in ("JUNCTIONS", "OUTFALLS", "STORAGE", "DIVIDERS", "CONDUITS")}
    skipped = {s.lower(): len(inp.lines(s)) for s in _SKIPPED_LINKS if inp.lines(s)}
    meta = {
        "counts": counts,
        "skipped_links": skipped,
        "units": {
            "flow": flow_units, "lengths_in": "ft" if f == FEET else "m", "heights": "m", "sizes": "mm",
            "coordinates": f"map units x {scale}", "link_offsets": offsets_mode,
        },
        "title": "\n".join(" ".join(ln.tokens) for ln in inp.lines("TITLE")),
        "nodes_without_coordinates": sorted(set(nodes) - set(coords)),
    }
    return NetworkTables(points_table(points), lines_table(lines), crs_in=crs_in, meta=meta)
