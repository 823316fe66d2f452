"""EPANET ``.inp`` water networks -> raw canonical point and line tables (category JS).

The model is read by WNTR, which converts hydraulic quantities to SI (elevations, lengths, diameters
in metres). A light pre-scan of the file checks numbers and node references first, so a broken file
fails with a line number, and gives the [COORDINATES] (map units, never converted: see ``scale``).

Height convention. EPANET node elevations are taken as the *pipe level* at the node; water mains are
pressure pipes and record the pipe **top** (domain §2.6). With an assumed uniform cover ``cover_m``:

* point ``ground_h`` = model elevation + ``offset[2]`` + ``cover_m``;
* line ``start_h``/``end_h`` = ground − cover = model elevation + ``offset[2]`` (pipe top),
  ``start_depth``/``end_depth`` = ``cover_m``.

The model elevation of a junction is its elevation, of a tank its bottom elevation, of a reservoir
its (fixed) head, since EPANET reservoirs have no elevation. EPANET models contain no isolation
valves; [VALVES] are control valves (PRV, PSV, FCV, ...).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from cim.errors import InvalidInputError, UnsupportedError
from converters.network.model import (
    InpFile,
    NetworkTables,
    Placement,
    check_crs,
    check_subtype,
    extra_json,
    fmt_num,
    lines_table,
    points_table,
)

CATEGORY = "JS"
US_FLOW_UNITS = frozenset({"CFS", "GPM", "MGD", "IMGD", "AFD"})

#: Number fields checked by the pre-scan: section -> ((token index, field name), ...).
_NODE_FIELDS: dict[str, tuple[tuple[int, str], ...]] = {
    "JUNCTIONS": ((1, "Elevation"),),
    "RESERVOIRS": ((1, "Head"),),
    "TANKS": ((1, "Elevation"), (2, "InitLevel"), (3, "MinLevel"), (4, "MaxLevel"), (5, "Diameter")),
}
_LINK_FIELDS: dict[str, tuple[tuple[int, str], ...]] = {
    "PIPES": ((3, "Length"), (4, "Diameter"), (5, "Roughness")),
    "PUMPS": (),
    "VALVES": ((3, "Diameter"),),
}

#: Feature (特征) of a junction by its number of connected links.
_FEATURE_BY_DEGREE = {1: "预留口", 2: "直线点", 3: "三通", 4: "四通"}


def junction_feature(degree: int) -> str | None:
    """特征 for a junction with ``degree`` links: 预留口, 直线点, 三通, 四通, 多通 (None if isolated)."""
    if degree <= 0:
        return None
    return _FEATURE_BY_DEGREE.get(degree, "多通")


def _prescan(inp: InpFile) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    """Check numbers and node references; return node coordinates and element line numbers."""
    inp.require("JUNCTIONS")
    inp.require("PIPES")
    nodes: set[str] = set()
    line_of: dict[str, int] = {}
    for section, fields in _NODE_FIELDS.items():
        for ln in inp.lines(section):
            name = inp.token(ln, 0, section, "ID")
            for idx, fname in fields:
                inp.number(ln, idx, section, fname)
            nodes.add(name)
            line_of[f"{section}:{name}"] = ln.lineno
    for section, fields in _LINK_FIELDS.items():
        for ln in inp.lines(section):
            name = inp.token(ln, 0, section, "ID")
            for idx, fname in ((1, "Node1"), (2, "Node2")):
                ref = inp.token(ln, idx, section, fname)
                if ref not in nodes:
                    raise inp.error(ln, section, fname, f"{fname} {ref!r} of link {name!r} is not a defined node", ref)
            for idx, fname in fields:
                inp.number(ln, idx, section, fname)
            line_of[f"{section}:{name}"] = ln.lineno
    coords: dict[str, tuple[float, float]] = {}
    for ln in inp.lines("COORDINATES"):
        node = inp.token(ln, 0, "COORDINATES", "Node")
        if node not in nodes:
            raise inp.error(ln, "COORDINATES", "Node", f"node {node!r} is not defined", node)
        coords[node] = (inp.number(ln, 1, "COORDINATES", "X"), inp.number(ln, 2, "COORDINATES", "Y"))
    return coords, line_of


def _load(path: Path, name: str) -> Any:
    try:
        import wntr
    except ImportError:
        raise UnsupportedError("reading EPANET models needs wntr: pip install 'cim-service[network]'") from None
    try:
        return wntr.network.WaterNetworkModel(str(path))
    except Exception as exc:  # wntr raises ValueError, KeyError, EpanetException...
        raise InvalidInputError(f"EPANET model could not be read: {exc}", file=name) from None


def read_epanet(
    path: Path,
    *,
    crs_in: str,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    cover_m: float = 1.0,
    subtype: str = "JP",
) -> NetworkTables:
    """Read an EPANET model as raw canonical tables (see the module docstring for conventions).

    Args:
        path: the ``.inp`` file.
        crs_in: CRS of the placed coordinates (``x * scale + offset``).
        offset: (east, north, height) added after scaling; height shifts model elevations (m).
        scale: model map units -> metres (e.g. 0.3048 for map units in feet).
        cover_m: assumed cover from ground to pipe top (m).
        subtype: JS sub-type code put in ``_category`` (default JP, 配水).

    Raises:
        InvalidInputError: missing section, bad number or unknown node (with line), unreadable model.
    """
    crs_in = check_crs(crs_in)
    sub = check_subtype(CATEGORY, subtype)
    place = Placement(tuple(float(v) for v in offset), float(scale))  # type: ignore[arg-type]
    if not (cover_m >= 0):
        raise InvalidInputError("cover_m must be a non-negative number", field="cover_m", value=cover_m)
    inp = InpFile(path)
    coords, line_of = _prescan(inp)
    wn = _load(Path(path), inp.name)

    degree: dict[str, int] = defaultdict(int)
    diameters: dict[str, list[float]] = defaultdict(list)
    for lname in wn.link_name_list:
        link = wn.get_link(lname)
        degree[link.start_node_name] += 1
        degree[link.end_node_name] += 1
        diam = getattr(link, "diameter", None)
        if diam:
            diameters[link.start_node_name].append(diam)
            diameters[link.end_node_name].append(diam)

    base = {"_file": inp.name, "_category": sub, "category": CATEGORY}
    model_h: dict[str, float] = {}
    points: list[dict[str, Any]] = []

    def add_point(section: str, i: int, name: str, elev: float, extra: dict[str, Any], **fields: Any) -> None:
        model_h[name] = elev
        x, y = place.raw_xy(*coords[name]) if name in coords else (None, None)
        extra = {"model_elevation_m": round(elev, 4), "degree": degree[name], "inp_line": line_of.get(f"{section}:{name}"), **extra}
        points.append({
            **base, "_layer": section, "_row": i, "_extra": extra_json(extra),
            "point_id": name, "map_no": name, "x": x, "y": y,
            "ground_h": fmt_num(place.height(elev) + cover_m), "status": "0", **fields,
        })

    for i, name in enumerate(wn.junction_name_list, start=1):
        node = wn.get_node(name)
        feature = junction_feature(degree[name])
        if degree[name] == 2 and len({round(d, 4) for d in diameters[name]}) > 1:
            feature = "变径"  # a two-pipe junction where the diameter changes is a reducer
        add_point("JUNCTIONS", i, name, node.elevation, {"element": "junction"}, feature=feature)
    for i, name in enumerate(wn.reservoir_name_list, start=1):
        node = wn.get_node(name)
        add_point("RESERVOIRS", i, name, node.base_head, {"element": "reservoir", "head_m": round(node.base_head, 4)}, appurtenance="水源")
    for i, name in enumerate(wn.tank_name_list, start=1):
        node = wn.get_node(name)
        extra = {
            "element": "tank", "init_level_m": round(node.init_level, 4), "min_level_m": round(node.min_level, 4),
            "max_level_m": round(node.max_level, 4), "diameter_m": round(node.diameter, 4),
        }
        add_point("TANKS", i, name, node.elevation, extra, appurtenance="水池")

    lines: list[dict[str, Any]] = []

    def add_line(section: str, i: int, link: Any, size_m: float | None, usage: str, extra: dict[str, Any]) -> None:
        s, e = link.start_node_name, link.end_node_name
        extra = {"inp_line": line_of.get(f"{section}:{link.name}"), "initial_status": link.initial_status.name, **extra}
        lines.append({
            **base, "_layer": section, "_row": i, "_extra": extra_json(extra),
            "line_id": link.name, "start_id": s, "end_id": e,
            "start_depth": fmt_num(cover_m), "end_depth": fmt_num(cover_m),
            "start_h": fmt_num(place.height(model_h[s])), "end_h": fmt_num(place.height(model_h[e])),
            "size": fmt_num(size_m * 1000.0, 1) if size_m else None,
            "burial": "ZM", "usage": usage, "status": "0",
        })

    for i, name in enumerate(wn.pipe_name_list, start=1):
        p = wn.get_link(name)
        add_line("PIPES", i, p, p.diameter, "pipe", {
            "element": "pipe", "length_m": round(p.length, 4), "roughness": p.roughness,
            "minor_loss": p.minor_loss, "check_valve": bool(p.check_valve),
        })
    for i, name in enumerate(wn.pump_name_list, start=1):
        p = wn.get_link(name)
        near = diameters.get(p.start_node_name, []) + diameters.get(p.end_node_name, [])
        extra = {
            "element": "pump", "pump_type": p.pump_type, "pump_curve": getattr(p, "pump_curve_name", None),
            "power": getattr(p, "power", None), "size_from": "largest connected pipe/valve" if near else "unknown",
        }
        add_line("PUMPS", i, p, max(near) if near else None, "pump", extra)
    for i, name in enumerate(wn.valve_name_list, start=1):
        v = wn.get_link(name)
        add_line("VALVES", i, v, v.diameter, f"valve:{v.valve_type}", {
            "element": "valve", "valve_type": v.valve_type, "setting": v.initial_setting, "minor_loss": v.minor_loss,
        })

    units = str(wn.options.hydraulic.inpfile_units).upper()
    meta = {
        "counts": {
            "junctions": wn.num_junctions, "reservoirs": wn.num_reservoirs, "tanks": wn.num_tanks,
            "pipes": wn.num_pipes, "pumps": wn.num_pumps, "valves": wn.num_valves,
        },
        "units": {
            "flow": units, "system": "US" if units in US_FLOW_UNITS else "SI",
            "heights": "m", "sizes": "mm", "coordinates": f"map units x {scale}",
            "headloss": str(wn.options.hydraulic.headloss),
        },
        "title": "\n".join(t.strip() for t in (wn.title or []) if t.strip()),
        "cover_m": cover_m,
        "nodes_without_coordinates": sorted(set(model_h) - set(coords)),
    }
    return NetworkTables(points_table(points), lines_table(lines), crs_in=crs_in, meta=meta)
