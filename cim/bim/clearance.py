"""Clearance (净距) of a submitted building's below-ground part against the existing pipes, GB 50289-2016.

The below-ground part of a stored model version is made of its physical elements (not spaces, openings,
virtual elements, annotations, grids, terrain or furniture) that satisfy any of:

* the class is a foundation (``IfcFooting``, ``IfcPile``, ``IfcDeepFoundation``, ``IfcCaissonFoundation``);
* ``minz`` lies more than :data:`BELOW_TOLERANCE_M` below the building's **ground floor**: the lowest
  ``IfcBuildingStorey`` whose elevation is at or above the project's ±0.000 (the model origin height), or
  ±0.000 itself when no storey qualifies;
* ``minz`` lies more than :data:`BELOW_TOLERANCE_M` below the **surveyed ground** at the element's
  footprint: the highest of the ground heights interpolated (:class:`~cim.analysis.ground.SurveyedGround`,
  from the pipe points' ``ground_h``) at the footprint's vertices — unknown outside the surveyed hull.

So basement walls and slabs, foundations and a slab on grade count; a building set into a slope counts
where the ground is above its floor. The footprints of these elements are united per building
(``building_global_id``) into one structure whose bottom is their lowest ``minz`` and whose top is open
(the building stands on it), and each structure is checked with
:func:`cim.analysis.clearance.structure_clearance` (Table 4.1.9 building row; clash/under/over in plan).
A model with no element below ground is checked with the footprint of all its physical elements (the
building still has a foundation in reality); ``summary["basis"]`` says which.

Each finding's ``details`` carry ``global_ids``/``ifc_classes``: the below-ground elements nearest to the
pipe (every element the pipe passes under or through for a contact, else those within
:data:`NEAR_SLACK_M` of the nearest), and ``pipes_dataset``.

As submission findings (:func:`clearance_findings`, check kind ``clearance``): rule ``GB50289-4.1.9`` for a
pipe outside the footprint closer than its building value, ``GB50289-4.1.9-CLASH`` for a pipe inside the
footprint within the height range, ``-UNDER``/``-OVER`` for one passing below/above it. Severity: a
clearance ``warn`` (deficit beyond survey tolerance, nothing assumed, or a clash) is an ``error`` the design
must resolve; an ``info`` (within tolerance, unknown size/pressure class, low-confidence cell) a ``warning``.
The finding names the nearest element (its GlobalId and class). No pipe network near the model gives one
``info`` finding ``GB50289-NO-PIPES``.

Example::

    res = bim_pipe_clearance(store, frame, dataset="bim-jinan-tower")
    [(f.feature_id, f.check, f.details["global_ids"][0]) for f in res.findings]
    clearance_findings(res)   # -> [Finding("clearance", "GB50289-4.1.9-CLASH", "error", ...), ...]
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from cim.analysis.clearance import ClearanceFinding, ClearanceResult, Structure, structure_clearance
from cim.analysis.common import Frame, pipe_datasets
from cim.analysis.ground import SurveyedGround
from cim.bim.ids import Finding
from cim.errors import InvalidInputError, NotFoundError
from cim.pipes.clearance import largest_building_clearance
from cim.store import DuckDBStore

#: Classes always taken as below ground.
FOUNDATION_CLASSES = frozenset({"IfcFooting", "IfcPile", "IfcDeepFoundation", "IfcCaissonFoundation"})
#: Classes that are not part of the building's body (never a structure).
NOT_STRUCTURE = frozenset(
    {
        "IfcSpace",
        "IfcOpeningElement",
        "IfcOpeningStandardCase",
        "IfcVirtualElement",
        "IfcAnnotation",
        "IfcGrid",
        "IfcGeographicElement",
        "IfcFurnishingElement",
        "IfcFurniture",
        "IfcSystemFurnitureElement",
        "IfcDistributionPort",
    }
)
#: An element counts as below ground when its bottom is deeper than this under the reference (m).
BELOW_TOLERANCE_M = 0.05
#: Elements within this (m) of the element nearest a pipe are named with it.
NEAR_SLACK_M = 0.5
#: Most elements named per finding.
MAX_NAMED = 10
#: How far around the model surveyed ground points are read (m).
GROUND_MARGIN_M = 100.0
_COLLECTION = "bim_below_ground"


@dataclass
class _Elements:
    """The model's physical elements with a footprint."""

    gid: list[str]
    cls: list[str]
    building: list[str | None]
    minz: np.ndarray
    fp: np.ndarray  # shapely polygons (storage CRS)


def _current_version(store: DuckDBStore, dataset: str) -> int:
    info = store.get_dataset(dataset)
    if info["kind"] != "bim":
        raise InvalidInputError(f"dataset {dataset!r} is a {info['kind']!r} dataset, not a BIM model", field="dataset")
    return int(info["current_version"])


def _load(store: DuckDBStore, dataset: str, version: int) -> tuple[_Elements, float, dict[str, float]]:
    """Elements, the model's ±0.000 height and each building's ground-floor height."""
    cur = store.read()
    try:
        model = cur.execute(
            "SELECT origin_h FROM bim_models WHERE dataset_id = ? AND version = ?", [dataset, version]
        ).fetchone()
        if model is None:
            raise NotFoundError(f"BIM model {dataset!r} version {version} does not exist")
        rows = cur.execute(
            """SELECT global_id, ifc_class, building_global_id, minz, ST_AsWKB(footprint) FROM bim_elements
               WHERE dataset_id = ? AND version = ? AND footprint IS NOT NULL AND isfinite(minz)
               ORDER BY global_id""",
            [dataset, version],
        ).fetchall()
        storeys = cur.execute(
            """SELECT parent_global_id, elevation FROM bim_spatial
               WHERE dataset_id = ? AND version = ? AND ifc_class = 'IfcBuildingStorey' AND isfinite(elevation)""",
            [dataset, version],
        ).fetchall()
    finally:
        cur.close()
    rows = [r for r in rows if r[1] not in NOT_STRUCTURE]
    fps = shapely.from_wkb([bytes(r[4]) for r in rows]) if rows else np.array([], dtype=object)
    fps = np.array([g if g.is_valid else shapely.make_valid(g) for g in fps], dtype=object)
    elements = _Elements([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                         np.array([r[3] for r in rows], dtype="f8"), fps)
    zero = float(model[0]) if model[0] is not None and math.isfinite(model[0]) else 0.0
    floors: dict[str, float] = {}
    for building, elevation in storeys:
        if elevation >= zero - 1e-3 and building is not None:
            floors[building] = min(floors.get(building, math.inf), float(elevation))
    return elements, zero, floors


def _surveyed_ground(store: DuckDBStore, el: _Elements) -> np.ndarray:
    """Highest surveyed ground height at each element's footprint vertices (NaN where unknown)."""
    out = np.full(len(el.gid), np.nan)
    if not len(el.gid):
        return out
    x0, y0, x1, y1 = shapely.total_bounds(el.fp)
    m = GROUND_MARGIN_M
    ground = SurveyedGround.from_store(store, bbox=(x0 - m, y0 - m, x1 + m, y1 + m))
    coords, index = shapely.get_coordinates(el.fp, return_index=True)
    h = ground.heights(coords[:, 0], coords[:, 1])
    ok = np.isfinite(h)
    if ok.any():
        np.fmax.at(out, index[ok], h[ok])
    return out


def below_ground_mask(store: DuckDBStore, dataset: str, version: int) -> tuple[list[str], np.ndarray]:
    """GlobalIds of the model's physical elements with a footprint, and which of them are below ground."""
    el, zero, floors = _load(store, dataset, version)
    return el.gid, _below(store, el, zero, floors)


def _below(store: DuckDBStore, el: _Elements, zero: float, floors: dict[str, float]) -> np.ndarray:
    floor = np.array([floors.get(b, zero) if b is not None else zero for b in el.building], dtype="f8")
    ground = _surveyed_ground(store, el)
    tol = BELOW_TOLERANCE_M
    with np.errstate(invalid="ignore"):
        below = (el.minz < floor - tol) | (np.isfinite(ground) & (el.minz < ground - tol))
    return below | np.array([c in FOUNDATION_CLASSES for c in el.cls], dtype=bool)


def _structures(el: _Elements, mask: np.ndarray, dataset: str) -> dict[str, tuple[Structure, np.ndarray]]:
    """One structure per building over the masked elements: name -> (structure, element indices)."""
    groups: dict[str | None, list[int]] = defaultdict(list)
    for k in np.flatnonzero(mask):
        groups[el.building[k]].append(int(k))
    out: dict[str, tuple[Structure, np.ndarray]] = {}
    for building, members in groups.items():
        idx = np.array(members)
        fp = shapely.union_all(el.fp[idx])
        fp = shapely.make_valid(fp) if not fp.is_valid else fp
        fp = _polygonal(fp)
        if fp is None:
            continue
        name = building or dataset
        st = Structure(name, fp, float(el.minz[idx].min()), None, building, dataset, _COLLECTION)
        out[name] = (st, idx)
    return out


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygonal part of ``geom`` (None when it has no area)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return None if geom.is_empty or geom.area <= 0 else geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    return shapely.union_all(parts) if parts else None


def _pipe_datasets_near(store: DuckDBStore, bounds: tuple[float, float, float, float], reach: float) -> list[str]:
    """Pipe datasets whose catalogue extent comes within ``reach`` of ``bounds``."""
    ids = pipe_datasets(store)
    if not ids:
        return []
    x0, y0, x1, y1 = bounds
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT id FROM datasets WHERE id IN ({', '.join('?' * len(ids))})
                AND (minx IS NULL OR (minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?)) ORDER BY id""",
            [*ids, x1 + reach, x0 - reach, y1 + reach, y0 - reach],
        ).fetchall()
    finally:
        cur.close()
    return [r[0] for r in rows]


def _pipe_lines(store: DuckDBStore, dataset: str, ids: list[str]) -> dict[str, BaseGeometry]:
    if not ids:
        return {}
    cur = store.read()
    try:
        rows = cur.execute(
            f"""SELECT feature_id, ST_AsWKB(ST_Force2D(geom)) FROM pipe_segments
                WHERE dataset_id = ? AND version_to IS NULL AND geom IS NOT NULL
                  AND feature_id IN ({', '.join('?' * len(ids))})""",
            [dataset, *ids],
        ).fetchall()
    finally:
        cur.close()
    return {fid: shapely.from_wkb(bytes(wkb)) for fid, wkb in rows}


def _name_elements(
    findings: list[ClearanceFinding], lines: dict[str, BaseGeometry], el: _Elements, idx: np.ndarray, pipes_ds: str
) -> list[ClearanceFinding]:
    """Findings with the nearest elements of the structure (``idx``) named in their details."""
    out = []
    for f in findings:
        line = lines.get(f.feature_id)
        target = line if line is not None else shapely.Point(f.location[:2])
        d = shapely.distance(el.fp[idx], target)
        order = np.argsort(d, kind="stable")
        near = [int(idx[k]) for k in order if d[k] <= d[order[0]] + NEAR_SLACK_M][:MAX_NAMED]
        details = {**f.details, "global_ids": [el.gid[k] for k in near],
                   "ifc_classes": [el.cls[k] for k in near], "pipes_dataset": pipes_ds}
        out.append(replace(f, details=details))
    return out


def bim_pipe_clearance(
    store: DuckDBStore,
    frame: Frame,
    *,
    dataset: str,
    version: int | None = None,
    pipes_dataset: str | None = None,
) -> ClearanceResult:
    """The below-ground part of BIM model ``dataset`` (``version``, default current) against the pipes.

    ``pipes_dataset`` None checks every pipe dataset whose extent comes within the largest building value
    of Table 4.1.9 (13.5 m) of the model; the result's ``dataset`` then joins their ids with ``+`` (empty
    when none is near, with no findings). Findings are sorted clashes first, then by deficit.

    Raises:
        NotFoundError: no such dataset/version, or ``pipes_dataset`` does not exist.
        InvalidInputError: ``dataset`` is not a BIM model.
    """
    version = version if version is not None else _current_version(store, dataset)
    el, zero, floors = _load(store, dataset, version)
    if not el.gid:
        raise NotFoundError(f"BIM model {dataset!r} version {version} has no element with a footprint")
    mask = _below(store, el, zero, floors)
    basis = "below_ground"
    if not mask.any():
        mask, basis = np.ones(len(el.gid), dtype=bool), "whole_building"
    structures = _structures(el, mask, dataset)
    reach = largest_building_clearance()
    if pipes_dataset is not None:
        store.get_dataset(pipes_dataset)
        datasets = [pipes_dataset]
    else:
        bounds = tuple(shapely.total_bounds([s.footprint for s, _ in structures.values()]))
        datasets = _pipe_datasets_near(store, bounds, reach)  # type: ignore[arg-type]
    findings: list[ClearanceFinding] = []
    per: list[dict[str, Any]] = []
    near = 0
    for ds in datasets:
        for st, idx in structures.values():
            res = structure_clearance(store, frame, footprint=st.footprint, crs=frame.storage_crs,
                                      bottom_h=st.bottom_h, name=st.name, dataset=ds)
            lines = _pipe_lines(store, ds, sorted({f.feature_id for f in res.findings}))
            findings += _name_elements(res.findings, lines, el, idx, ds)
            near += int(res.summary.get("segments_near", 0))
            per += [s | {"pipes_dataset": ds, "bottom_h": st.bottom_h, "elements": len(idx),
                         "area_m2": st.footprint.area} for s in res.summary.get("structures", [])]
    findings.sort(key=lambda f: (f.check != "clash", f.severity != "warn", -(f.deficit_m or 0.0)))
    summary = {
        "model": dataset, "version": version, "basis": basis, "below_ground_elements": int(mask.sum()),
        "pipe_datasets": datasets, "structures": per, "segments_near": near,
        "findings": {"warn": sum(f.severity == "warn" for f in findings),
                     "info": sum(f.severity == "info" for f in findings),
                     "clash": sum(f.check == "clash" for f in findings)},
    }
    params = {"below_tolerance_m": BELOW_TOLERANCE_M, "largest_building_clearance_m": reach}
    return ClearanceResult("+".join(datasets), frame, ("structure",), findings, summary,
                           [st for st, _ in structures.values()], params)


_RULES = {"structure": "GB50289-4.1.9", "clash": "GB50289-4.1.9-CLASH", "under": "GB50289-4.1.9-UNDER",
          "over": "GB50289-4.1.9-OVER"}


def _m(value: Any) -> str:
    return "?" if value is None or not math.isfinite(value) else f"{value:.2f} m"


def _finding(f: ClearanceFinding) -> Finding:
    d = f.details
    pipe = f"{f.category or ''} {f.pipe_class} {f.feature_id}".strip()
    label = f.cell.cell.label() if f.cell else None
    expected = (f"≥ {_m(f.required_m)} horizontal (GB 50289-2016 Table 4.1.9{', ' + label if label else ''})"
                if f.required_m is not None else "no pipe inside the footprint")
    if f.check == "clash":
        overlap = d.get("vertical_overlap_m")
        message = (f"管线穿越建筑地下部分 / pipe {pipe} runs through the building's below-ground part (bottom "
                   f"{_m(d.get('structure_bottom_h'))}, pipe {_m(d.get('pipe_bottom_h'))} to {_m(d.get('pipe_top_h'))})")
        found = "inside the footprint, " + (f"vertical overlap {_m(overlap)}" if overlap is not None
                                            else "pipe height unknown")
    elif f.check in ("under", "over"):
        zh, side = ("下方", "below") if f.check == "under" else ("上方", "above")
        message = (f"管线从建筑{zh}穿过 / pipe {pipe} passes {_m(d.get('vertical_gap_m'))} {side} the building's "
                   "below-ground part, inside its footprint in plan")
        found = f"0.00 m horizontal, {_m(d.get('vertical_gap_m'))} {side}"
    else:
        message = (f"管线与建筑地下部分水平净距不足 / pipe {pipe} is {_m(f.actual_m)} from the building's below-ground "
                   f"part, GB 50289-2016 Table 4.1.9 requires {_m(f.required_m)}")
        found = f"{_m(f.actual_m)} horizontal"
    ids, classes = d.get("global_ids") or [None], d.get("ifc_classes") or [None]
    if len(ids) > 1:
        message += f"; nearest elements: {', '.join(ids)}"
    severity = "error" if f.severity == "warn" else "warning"
    return Finding("clearance", _RULES.get(f.check, "GB50289-4.1.9"), severity, message, ids[0], classes[0],
                   expected, found)


def clearance_findings(result: ClearanceResult) -> list[Finding]:
    """The submission findings of a :func:`bim_pipe_clearance` result (see the module docstring)."""
    if not result.summary.get("pipe_datasets"):
        reach = result.parameters.get("largest_building_clearance_m")
        return [Finding("clearance", "GB50289-NO-PIPES", "info",
                        f"附近无管线数据 / no pipe survey in the store within {reach:g} m of the model: "
                        "clearance to existing pipes not checked", None, None,
                        "a pipe survey covering the site", "none")]
    return [_finding(f) for f in result.findings]
