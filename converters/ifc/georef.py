"""IFC georeferencing, every level, reduced to one similarity transform plus a PROJ step.

Whatever the file uses, project coordinates (project length units) map to a *source CRS* by::

    E = E0 + s·(a·x − b·y),   N = N0 + s·(b·x + a·y),   H = H0 + s_z·z

with (a, b) the normalised XAxisAbscissa/XAxisOrdinate (cos θ, sin θ of the project X axis from grid east),
``s`` source-CRS units per project unit (the IfcMapConversion Scale *and* the unit conversion), then PROJ
takes (E, N) from the source CRS to the storage CRS. Heights are the file's (OrthogonalHeight + z) and are
taken as 1985 heights; a different declared vertical datum is reported, never converted.

Methods, in order of preference: ``user`` (a placement given with the upload), ``map_conversion``
(IFC4+ IfcMapConversion → IfcProjectedCRS), ``epset_map_conversion`` (IFC2X3 ePSet_MapConversion and
ePSet_ProjectedCRS on IfcSite), ``ref_latlon`` (IfcSite RefLatitude/RefLongitude/RefElevation, placed with
a transverse Mercator tangent at that point and oriented by the context's TrueNorth), ``none``.
Problems become :class:`Finding` s; an ``error`` finding refuses the ingest.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cim.crs import crs_code, get_crs, to_lonlat, transform_xy
from cim.errors import CIMError
from cim.localcrs import find_local
from cim.region import Region, diagnose
from cim.settings import Settings

METHODS = ("user", "map_conversion", "epset_map_conversion", "ref_latlon", "none")
CGCS2000_CODES = frozenset([4490, *range(4513, 4555)])
HEIGHTS_1985 = "EPSG:5737"
#: a site/building placement (or the geometry) this far (m) from the project origin, while the map
#: conversion also moves the origin this far, is a double offset (real coordinates written twice)
DOUBLE_OFFSET_M = 10_000.0
LARGE_EASTINGS_M = 10_000.0
#: IfcSite RefLatitude/RefLongitude further than this from the map conversion's position: warning
REF_LATLON_TOLERANCE_M = 500.0
_UNIT_LABELS = {
    "m": 1.0,
    "metre": 1.0,
    "meter": 1.0,
    "metres": 1.0,
    "meters": 1.0,
    "mm": 1e-3,
    "millimetre": 1e-3,
    "millimeter": 1e-3,
    "millimetres": 1e-3,
    "millimeters": 1e-3,
    "cm": 1e-2,
    "centimetre": 1e-2,
    "centimeter": 1e-2,
    "km": 1e3,
    "kilometre": 1e3,
    "kilometer": 1e3,
    "ft": 0.3048,
    "foot": 0.3048,
    "feet": 0.3048,
    "usfoot": 1200 / 3937,
    "ussurveyfoot": 1200 / 3937,
    "ftus": 1200 / 3937,
}


@dataclass(frozen=True)
class Finding:
    """One georeferencing (or conversion) problem: ``error`` refuses the ingest."""

    severity: str  # error | warning | info
    code: str  # e.g. georef.double_offset
    message: str
    entity: str | None = None  # '#292 IfcProjectedCRS.Name'

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class UserPlacement:
    """Placement given with the upload: the project origin at (easting, northing, height) in ``crs``.

    ``rotation_deg`` is the angle of the project X axis from grid east, counter-clockwise. With only
    ``crs`` set, it names the CRS of the file's own map conversion (empty or wrong IfcProjectedCRS.Name).
    """

    crs: str | None = None
    easting: float | None = None
    northing: float | None = None
    height: float = 0.0
    rotation_deg: float = 0.0

    @property
    def positioned(self) -> bool:
        """True when easting and northing are both given."""
        return self.easting is not None and self.northing is not None


@dataclass
class Georeference:
    """How project coordinates reach the storage CRS (see the module docstring for the formula)."""

    method: str
    storage_crs: str
    source_crs: str | None = None  # 'EPSG:25832', a configured city system, or a PROJ string (ref_latlon)
    vertical_datum: str | None = None  # as declared by the file
    eastings: float = 0.0  # E0 in source CRS units
    northings: float = 0.0  # N0 in source CRS units
    orthogonal_height: float = 0.0  # H0 in metres
    x_axis_abscissa: float = 1.0  # a, normalised
    x_axis_ordinate: float = 0.0  # b, normalised
    scale: float = 1.0  # source CRS units per project length unit
    scale_z: float = 1.0  # metres of height per project length unit
    scale_attr: float | None = None  # Scale as written in the file
    length_unit_m: float = 1.0  # metres per project length unit
    map_unit_m: float | None = None  # metres per map unit (IfcProjectedCRS.MapUnit)
    ref_latlon: tuple[float, float, float | None] | None = None  # IfcSite lat, lon (deg), elevation (m)
    entity: str | None = None  # '#2 IfcMapConversion'
    found: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def rotation_deg(self) -> float:
        """Angle of the project X axis from grid east, counter-clockwise, degrees."""
        return math.degrees(math.atan2(self.x_axis_ordinate, self.x_axis_abscissa))

    @property
    def errors(self) -> list[Finding]:
        """The findings that refuse an ingest."""
        return [f for f in self.findings if f.severity == "error"]

    def add(self, severity: str, code: str, message: str, entity: str | None = None) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, code, message, entity))

    def to_source(self, x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project coordinates (project units) → source CRS easting, northing and height (m)."""
        x, y, z = (np.asarray(v, dtype="f8") for v in (x, y, z))
        a, b, s = self.x_axis_abscissa, self.x_axis_ordinate, self.scale
        return (
            self.eastings + s * (a * x - b * y),
            self.northings + s * (b * x + a * y),
            self.orthogonal_height + self.scale_z * z,
        )

    def to_storage(self, x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project coordinates (project units) → storage CRS easting, northing and 1985 height."""
        e, n, h = self.to_source(x, y, z)
        if self.source_crs is None or self.source_crs == self.storage_crs:
            return e, n, h
        ex, ny = transform_xy(e, n, self.source_crs, self.storage_crs)
        return np.asarray(ex, dtype="f8"), np.asarray(ny, dtype="f8"), h

    def metres_to_storage(self, xyz_m: np.ndarray) -> np.ndarray:
        """(n, 3) project-frame coordinates in metres (IfcOpenShell output) → (n, 3) storage coordinates."""
        p = np.asarray(xyz_m, dtype="f8").reshape(-1, 3) / self.length_unit_m
        return np.column_stack(self.to_storage(p[:, 0], p[:, 1], p[:, 2]))

    def to_json(self) -> dict[str, Any]:
        """The record kept in ``bim_models.georef``."""
        out = asdict(self)
        out["rotation_deg"] = self.rotation_deg
        out["findings"] = [f.to_dict() for f in self.findings]
        return out


# -- entry point --------------------------------------------------------------------------------------
def georeference(model: Any, settings: Settings, placement: UserPlacement | None = None) -> Georeference:
    """Read every georeferencing level of ``model`` and choose one; findings for every problem seen.

    ``model`` is an open ``ifcopenshell.file``; ``settings`` gives the storage CRS and the region.
    """
    import ifcopenshell.util.unit

    if settings.local_crs_file:
        from cim.localcrs import load_file

        load_file(settings.local_crs_file)
    unit = float(ifcopenshell.util.unit.calculate_unit_scale(model))
    placement = placement or UserPlacement()
    conversion = _map_conversion(model)
    site = _main_site(model)
    epset = _epset(site) if site is not None and conversion is None else None
    latlon = _ref_latlon(site) if site is not None else None
    found = [
        name
        for name, present in (
            ("map_conversion", conversion is not None),
            ("epset_map_conversion", epset is not None),
            ("ref_latlon", latlon is not None),
        )
        if present
    ]
    g = Georeference(
        method="none",
        storage_crs=crs_code(settings.storage_crs),
        length_unit_m=unit,
        found=found,
        ref_latlon=latlon,
    )
    if placement.positioned:
        _from_user(g, placement)
    elif conversion is not None:
        _from_map_conversion(g, conversion, placement)
    elif epset is not None:
        _from_epset(g, site, epset, placement)
    elif latlon is not None:
        _from_ref_latlon(g, model, site, latlon, placement)
    else:
        _none(g, placement)
    _check_crs(g)
    _check_double_offset(g, model)
    _check_region(g, model, settings)
    _cross_check_latlon(g, site)
    return g


# -- reading the file ---------------------------------------------------------------------------------
def _map_conversion(model: Any) -> Any | None:
    """The IfcMapConversion (or IFC4X3 IfcRigidOperation) of the 3D model context, if any."""
    try:
        ops = list(model.by_type("IfcCoordinateOperation"))
    except RuntimeError:  # IFC2X3 has no such entity
        return None
    if not ops:
        return None

    def rank(op: Any) -> tuple[int, int]:
        src = op.SourceCRS
        is_model = bool(
            src is not None
            and src.is_a("IfcGeometricRepresentationContext")
            and src.ContextType == "Model"
            and getattr(src, "CoordinateSpaceDimension", 3) == 3
        )
        return (0 if op.is_a("IfcMapConversion") else 1, 0 if is_model else 1)

    return sorted(ops, key=rank)[0]


def _main_site(model: Any) -> Any | None:
    sites = model.by_type("IfcSite")
    if not sites:
        return None
    import ifcopenshell.util.element

    top = [
        s
        for s in sites
        if (p := ifcopenshell.util.element.get_aggregate(s)) is not None and p.is_a("IfcProject")
    ]
    return (top or sites)[0]


def _epset(site: Any) -> dict[str, dict[str, Any]] | None:
    import ifcopenshell.util.element

    psets = {k.lower(): v for k, v in ifcopenshell.util.element.get_psets(site).items()}
    conv = psets.get("epset_mapconversion")
    if conv is None:
        return None
    return {"conversion": conv, "crs": psets.get("epset_projectedcrs") or {}}


def dms_to_degrees(value: Any) -> float | None:
    """IfcCompoundPlaneAngleMeasure (deg, min, s, millionths of s; all with the same sign) → degrees."""
    if value is None:
        return None
    parts = [float(v) for v in value]
    if not parts:
        return None
    sign = -1.0 if any(p < 0 for p in parts) else 1.0
    scale = (1.0, 60.0, 3600.0, 3.6e9)
    return sign * sum(abs(p) / scale[i] for i, p in enumerate(parts[:4]))


def _ref_latlon(site: Any) -> tuple[float, float, float | None] | None:
    lat, lon = dms_to_degrees(site.RefLatitude), dms_to_degrees(site.RefLongitude)
    if lat is None or lon is None:
        return None
    elev = site.RefElevation
    return (lat, lon, float(elev) if elev is not None else None)


def _entity(inst: Any, attr: str | None = None) -> str:
    return f"#{inst.id()} {inst.is_a()}" + (f".{attr}" if attr else "")


def _placement_xyz(product: Any) -> np.ndarray | None:
    """World position of a product's placement, project units."""
    if product is None or getattr(product, "ObjectPlacement", None) is None:
        return None
    import ifcopenshell.util.placement

    try:
        return np.asarray(ifcopenshell.util.placement.get_local_placement(product.ObjectPlacement))[:3, 3]
    except Exception:  # noqa: BLE001 - unusual placements (grid, linear) are not needed for checks
        return None


# -- CRS names ----------------------------------------------------------------------------------------
def parse_crs_name(name: str | None) -> tuple[str | None, str | None, str | None]:
    """(horizontal CRS, vertical CRS, problem) from an IfcProjectedCRS.Name.

    Accepts 'EPSG:4548', '4548', URNs/URIs, CRS names PROJ knows, compounds ('EPSG:2056+5728') and the
    comma list some tools write ('EPSG:2056,EPSG:5728'), and configured city systems.
    """
    text = (name or "").strip()
    if not text:
        return None, None, "empty"
    if find_local(text) is not None:
        return text, None, None
    parts = [text] + ([p for p in re.split(r"\s*[,;]\s*", text) if p] if re.search(r"[,;]", text) else [])
    horizontal = vertical = None
    for part in parts:
        try:
            crs = get_crs(part if not part.isdigit() else f"EPSG:{part}")
        except CIMError:
            continue
        if crs.is_compound:
            horizontal, vertical = crs_code(crs.sub_crs_list[0]), crs_code(crs.sub_crs_list[1])
            break
        if crs.is_vertical:
            vertical = vertical or crs_code(crs)
        elif horizontal is None:
            horizontal = crs_code(crs)
        if part is text and horizontal:
            break
    if horizontal is None:
        return None, vertical, "unparseable"
    return horizontal, vertical, None


def _crs_unit_m(crs: str) -> float:
    if find_local(crs) is not None:
        return 1.0
    c = get_crs(crs)
    return float(c.axis_info[0].unit_conversion_factor) if c.axis_info else 1.0


def unit_label_m(label: Any) -> float | None:
    """Metres per unit for a MapUnit written as text ('METRE', '.MILLI..METRE.', 'mm', 'US survey foot')."""
    if label is None:
        return None
    key = re.sub(r"[\s._\-]", "", str(label)).lower()
    if key in _UNIT_LABELS:
        return _UNIT_LABELS[key]
    for prefix, factor in (("milli", 1e-3), ("centi", 1e-2), ("kilo", 1e3)):
        if key.startswith(prefix) and key[len(prefix) :] in ("metre", "meter"):
            return factor
    return None


def effective_scale(
    scale_attr: float | None, project_unit_m: float, map_unit_m: float
) -> tuple[float, str, str]:
    """Map units per project unit from a Scale attribute, read the way the writing tool meant it.

    IFC defines Scale as the factor from project units to map units, unit conversion included (Bonsai:
    project m, map mm, Scale 1000). Other tools write its inverse (bSI UTM sample: project mm, map m,
    Scale 1000) or leave units out (Scale 1 with mm vs m). Returns (scale, reading, message) with reading
    ``ifc`` | ``grid_factor`` | ``inverse`` | ``units_added`` | ``inconsistent``.
    """
    r = project_unit_m / map_unit_m
    s = 1.0 if scale_attr is None else float(scale_attr)
    written = "omitted (1)" if scale_attr is None else f"{s:g}"
    units = f"project unit {project_unit_m:g} m, map unit {map_unit_m:g} m"
    if not math.isfinite(s) or s <= 0:
        return (
            r,
            "inconsistent",
            f"Scale {written} is not a positive number; used the unit ratio {r:g} ({units})",
        )
    if math.isclose(s, r, rel_tol=1e-9):
        return s, "ifc", ""
    if abs(s / r - 1) <= 0.01:
        return (
            s,
            "grid_factor",
            f"Scale {written} = unit ratio {r:g} × grid scale factor {s / r:.8f} ({units})",
        )
    if abs(s * r - 1) <= 0.01:
        return (
            1 / s,
            "inverse",
            (
                f"Scale {written} is written as project units per map unit, the inverse of the IFC "
                f"definition ({units}); used 1/Scale = {1 / s:g}"
            ),
        )
    if abs(s - 1) <= 0.01:
        return (
            s * r,
            "units_added",
            (
                f"Scale {written} does not include the unit conversion ({units}); "
                f"used Scale × {r:g} = {s * r:g}"
            ),
        )
    return (
        s,
        "inconsistent",
        (
            f"unit mismatch: Scale {written} fits neither the unit ratio {r:g} nor its inverse ({units}); "
            "positions would be off by orders of magnitude"
        ),
    )


# -- methods ------------------------------------------------------------------------------------------
def _axis(a: Any, b: Any, g: Georeference, entity: str) -> None:
    a = 1.0 if a is None else float(a)
    b = 0.0 if b is None else float(b)
    norm = math.hypot(a, b)
    if not math.isfinite(norm) or norm == 0:
        g.add("error", "georef.rotation", f"XAxisAbscissa/XAxisOrdinate ({a}, {b}) give no direction", entity)
        a, b, norm = 1.0, 0.0, 1.0
    elif abs(norm - 1) > 1e-6:
        g.add("info", "georef.rotation", f"XAxis ({a:g}, {b:g}) normalised (length {norm:g})", entity)
    g.x_axis_abscissa, g.x_axis_ordinate = a / norm, b / norm


def _apply_conversion(g: Georeference, values: dict[str, Any], map_unit_m: float | None, entity: str) -> None:
    """Eastings/Northings/OrthogonalHeight/XAxis/Scale (map units) → the transform, in source CRS units."""
    crs_unit = _crs_unit_m(g.source_crs) if g.source_crs else 1.0
    map_m = map_unit_m or crs_unit
    g.map_unit_m = map_m
    g.scale_attr = None if values.get("Scale") is None else float(values["Scale"])
    s, reading, message = effective_scale(g.scale_attr, g.length_unit_m, map_m)
    if reading in ("inverse", "units_added"):
        g.add("warning", "georef.unit_mismatch", message, entity + ".Scale")
    elif reading == "inconsistent":
        g.add("error", "georef.unit_mismatch", message, entity + ".Scale")
    elif reading == "grid_factor":
        g.add("info", "georef.scale", message, entity + ".Scale")
    c = map_m / crs_unit
    g.eastings = float(values.get("Eastings") or 0.0) * c
    g.northings = float(values.get("Northings") or 0.0) * c
    g.orthogonal_height = float(values.get("OrthogonalHeight") or 0.0) * map_m
    g.scale = s * c
    g.scale_z = s * map_m
    _axis(values.get("XAxisAbscissa"), values.get("XAxisOrdinate"), g, entity)


def _resolve_source_crs(g: Georeference, name: str | None, entity: str, placement: UserPlacement) -> None:
    horizontal, vertical, problem = parse_crs_name(name)
    if placement.crs:
        given = placement.crs if find_local(placement.crs) else crs_code(placement.crs)
        if problem or horizontal != given:
            g.add(
                "info",
                "georef.crs_given",
                f"CRS {given} given with the upload is used for the file's "
                f"map conversion (the file names {name!r})",
                entity,
            )
        g.source_crs = given
        g.vertical_datum = g.vertical_datum or vertical
        return
    g.source_crs = horizontal
    g.vertical_datum = g.vertical_datum or vertical
    if problem == "empty":
        g.add(
            "error",
            "georef.crs_empty",
            "the CRS name is empty, so Eastings/Northings have no known CRS; "
            "give the CRS with the upload (--crs EPSG:…) or a placement",
            entity,
        )
    elif problem:
        g.add(
            "error",
            "georef.crs_unparseable",
            f"CRS name {name!r} names no CRS PROJ knows (expected e.g. "
            "'EPSG:4548'); give the CRS with the upload (--crs)",
            entity,
        )


def _from_map_conversion(g: Georeference, conv: Any, placement: UserPlacement) -> None:
    import ifcopenshell.util.unit

    g.method = "map_conversion"
    g.entity = _entity(conv)
    target = conv.TargetCRS
    if target is not None and not target.is_a("IfcProjectedCRS"):
        g.add(
            "error",
            "georef.crs_geographic",
            f"TargetCRS is a {target.is_a()}, not an IfcProjectedCRS: "
            "a map conversion needs a projected CRS in metres",
            _entity(target),
        )
    g.vertical_datum = getattr(target, "VerticalDatum", None) if target is not None else None
    _resolve_source_crs(
        g, getattr(target, "Name", None), _entity(target, "Name") if target else g.entity, placement
    )
    map_unit = getattr(target, "MapUnit", None) if target is not None else None
    map_m = float(ifcopenshell.util.unit.get_unit_scale(map_unit)) if map_unit is not None else None
    if conv.is_a("IfcRigidOperation"):
        values = {
            "Eastings": _measure(conv.FirstCoordinate),
            "Northings": _measure(conv.SecondCoordinate),
            "OrthogonalHeight": conv.Height,
        }
    else:
        values = {
            k: getattr(conv, k)
            for k in ("Eastings", "Northings", "OrthogonalHeight", "XAxisAbscissa", "XAxisOrdinate", "Scale")
        }
    _apply_conversion(g, values, map_m, g.entity)
    if conv.is_a("IfcMapConversionScaled"):
        fx, fy, fz = (float(conv.FactorX), float(conv.FactorY), float(conv.FactorZ))
        if not math.isclose(fx, fy, rel_tol=1e-9):
            g.add("warning", "georef.scale", f"FactorX {fx:g} ≠ FactorY {fy:g}: used their mean", g.entity)
        g.scale *= (fx + fy) / 2
        g.scale_z *= fz


def _measure(value: Any) -> float:
    return float(getattr(value, "wrappedValue", value) or 0.0)


def _from_epset(
    g: Georeference, site: Any, epset: dict[str, dict[str, Any]], placement: UserPlacement
) -> None:
    g.method = "epset_map_conversion"
    g.entity = _entity(site) + " ePSet_MapConversion"
    crs = {k.lower(): v for k, v in epset["crs"].items()}
    conv = {k.lower(): v for k, v in epset["conversion"].items()}
    if not epset["crs"]:
        g.add("warning", "georef.crs_missing", "ePSet_MapConversion without ePSet_ProjectedCRS", g.entity)
    g.vertical_datum = crs.get("verticaldatum")
    _resolve_source_crs(g, crs.get("name"), _entity(site) + " ePSet_ProjectedCRS.Name", placement)
    map_m = unit_label_m(crs.get("mapunit"))
    if crs.get("mapunit") is not None and map_m is None:
        g.add(
            "warning",
            "georef.map_unit",
            f"MapUnit {crs.get('mapunit')!r} not understood; used the CRS unit",
            _entity(site) + " ePSet_ProjectedCRS.MapUnit",
        )
    keys = ("Eastings", "Northings", "OrthogonalHeight", "XAxisAbscissa", "XAxisOrdinate", "Scale")
    _apply_conversion(g, {k: conv.get(k.lower()) for k in keys}, map_m, g.entity)


def _true_north(model: Any, g: Georeference) -> tuple[float, float]:
    """TrueNorth (x, y) of the 3D 'Model' context; (0, 1) when absent. Odd vectors get a warning."""
    for project in model.by_type("IfcProject"):
        for ctx in project.RepresentationContexts or ():
            if ctx.is_a("IfcGeometricRepresentationSubContext") or ctx.ContextType != "Model":
                continue
            tn = getattr(ctx, "TrueNorth", None)
            if tn is None:
                continue
            ratios = [float(v) for v in tn.DirectionRatios]
            tx, ty = ratios[0], ratios[1]
            if math.hypot(tx, ty) == 0:
                continue
            if abs(math.hypot(tx, ty) - 1) > 1e-6 or any(abs(v) > 1e-9 for v in ratios[2:]):
                g.add(
                    "warning",
                    "georef.true_north",
                    f"TrueNorth {tuple(ratios)} is not a unit horizontal "
                    "direction; its horizontal part was used — check the model's orientation",
                    _entity(tn),
                )
            return tx, ty
    return 0.0, 1.0


def _from_ref_latlon(
    g: Georeference,
    model: Any,
    site: Any,
    latlon: tuple[float, float, float | None],
    placement: UserPlacement,
) -> None:
    lat, lon, elev = latlon
    g.method = "ref_latlon"
    g.entity = _entity(site, "RefLatitude/RefLongitude")
    g.source_crs = (
        f"+proj=tmerc +lat_0={lat!r} +lon_0={lon!r} +k=1 +x_0=0 +y_0=0 +datum=WGS84 "
        "+units=m +no_defs +type=crs"
    )
    tx, ty = _true_north(model, g)
    g.x_axis_abscissa, g.x_axis_ordinate = ty / math.hypot(tx, ty), tx / math.hypot(tx, ty)
    origin = _placement_xyz(site)
    sx, sy, sz = (float(v) for v in origin) if origin is not None else (0.0, 0.0, 0.0)
    s = g.scale = g.scale_z = g.length_unit_m
    a, b = g.x_axis_abscissa, g.x_axis_ordinate
    g.eastings, g.northings = -s * (a * sx - b * sy), -s * (b * sx + a * sy)
    g.orthogonal_height = (elev or 0.0) - s * sz
    g.add(
        "warning",
        "georef.approximate",
        f"placed only by IfcSite RefLatitude {lat:.7f}° / RefLongitude "
        f"{lon:.7f}° (LoGeoRef 20, WGS84, orientation from TrueNorth): not survey-grade; expect metres",
        g.entity,
    )
    if elev is None:
        g.add("warning", "georef.height", "IfcSite RefElevation is not set: heights start at 0 m", g.entity)
    if placement.crs:
        g.add(
            "warning",
            "georef.crs_ignored",
            f"--crs {placement.crs} without --easting/--northing is ignored: "
            "the file has no map conversion to apply it to",
            g.entity,
        )


def _from_user(g: Georeference, p: UserPlacement) -> None:
    g.method = "user"
    g.entity = "upload placement"
    g.source_crs = (p.crs if find_local(p.crs or "") else crs_code(p.crs)) if p.crs else g.storage_crs
    unit = _crs_unit_m(g.source_crs)
    g.eastings, g.northings, g.orthogonal_height = float(p.easting), float(p.northing), float(p.height)
    theta = math.radians(p.rotation_deg)
    g.x_axis_abscissa, g.x_axis_ordinate = math.cos(theta), math.sin(theta)
    g.scale, g.scale_z = g.length_unit_m / unit, g.length_unit_m
    if g.found:
        g.add(
            "info", "georef.user_overrides", f"the upload placement overrides the file's {', '.join(g.found)}"
        )


def _none(g: Georeference, placement: UserPlacement) -> None:
    g.method = "none"
    g.source_crs = g.storage_crs
    g.scale = g.scale_z = g.length_unit_m
    hint = f" (--crs {placement.crs} alone places nothing)" if placement.crs else ""
    g.add(
        "error",
        "georef.none",
        "the model is not georeferenced: no IfcMapConversion, no ePSet_MapConversion, "
        "no IfcSite RefLatitude/RefLongitude; give a placement with the upload "
        f"(--crs, --easting, --northing, --height, --rotation){hint}",
    )


# -- checks -------------------------------------------------------------------------------------------
def _check_crs(g: Georeference) -> None:
    if g.method in ("none", "ref_latlon") or not g.source_crs:
        _check_vertical(g)
        return
    local = find_local(g.source_crs)
    if local is not None:
        g.add("info", "georef.crs_local", f"{g.source_crs} is a configured city system (base {local.base})")
    else:
        crs = get_crs(g.source_crs)
        code = crs.to_epsg()
        if crs.is_geographic:
            g.add(
                "error",
                "georef.crs_geographic",
                f"{g.source_crs} is geographic (degrees): Eastings/Northings need a projected CRS in metres",
                g.entity,
            )
        elif code not in CGCS2000_CODES:
            g.add(
                "warning",
                "georef.crs_not_cgcs2000",
                f"{g.source_crs} ({crs.name}) is not a CGCS2000 "
                "3-degree zone (EPSG:4513–4554) or EPSG:4490; transformed to the storage CRS with PROJ",
                g.entity,
            )
    if g.source_crs != g.storage_crs:
        g.add("info", "georef.transformed", f"positions transformed from {g.source_crs} to {g.storage_crs}")
    _check_vertical(g)


def is_1985(datum: str) -> bool:
    """True for names of the 1985 national height datum (EPSG:5737)."""
    text = datum.replace(" ", "").lower()
    return "5737" in text or "1985" in text or "黄海85" in text


def _check_vertical(g: Georeference) -> None:
    if g.method == "none":
        return
    datum = (g.vertical_datum or "").strip()
    if not datum:
        g.add(
            "info",
            "georef.vertical_undeclared",
            "no vertical datum declared: heights are taken as 1985 national heights (EPSG:5737)",
        )
    elif not is_1985(datum):
        g.add(
            "warning",
            "georef.vertical_datum",
            f"vertical datum {datum!r} is not the 1985 national height "
            "datum (EPSG:5737): heights are stored as given, not converted",
            g.entity,
        )


def _check_double_offset(g: Georeference, model: Any) -> None:
    if g.method not in ("map_conversion", "epset_map_conversion", "user"):
        return
    worst, where = 0.0, ""
    for cls in ("IfcSite", "IfcBuilding"):
        for product in model.by_type(cls)[:20]:
            xyz = _placement_xyz(product)
            if xyz is not None and (d := float(np.hypot(xyz[0], xyz[1])) * g.length_unit_m) > worst:
                worst, where = d, _entity(product, "ObjectPlacement")
    check_double_offset(g, worst, where)


def check_double_offset(g: Georeference, distance_m: float, where: str) -> None:
    """A finding when something sits ``distance_m`` from the project origin while E0/N0 are also large."""
    if g.method not in ("map_conversion", "epset_map_conversion", "user") or distance_m <= DOUBLE_OFFSET_M:
        return
    offset_km = (
        math.hypot(g.eastings, g.northings) * (_crs_unit_m(g.source_crs) if g.source_crs else 1.0) / 1e3
    )
    if offset_km * 1e3 <= LARGE_EASTINGS_M:
        return
    g.add(
        "error",
        "georef.double_offset",
        f"double offset: {where} lies {distance_m / 1e3:.1f} km from the "
        f"project origin while {g.entity} also adds ({g.eastings:.1f}, {g.northings:.1f}) "
        f"({offset_km:.1f} km): real coordinates were written twice",
        where,
    )


def storage_lonlat(g: Georeference, e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Storage coordinates → CGCS2000 lon/lat (deg)."""
    return to_lonlat(np.asarray(e, dtype="f8"), np.asarray(n, dtype="f8"), g.storage_crs)


def check_region(g: Georeference, e: np.ndarray, n: np.ndarray, settings: Settings, what: str) -> None:
    """An error finding when storage points ``e``/``n`` fall outside the configured region."""
    region = Region(settings.region_name, tuple(settings.region_bbox))
    e, n = np.atleast_1d(np.asarray(e, dtype="f8")), np.atleast_1d(np.asarray(n, dtype="f8"))
    try:
        inside = region.contains(e, n, g.storage_crs)
    except CIMError as exc:
        g.add("error", "georef.transform", f"{what} cannot be placed in {g.storage_crs}: {exc}", g.entity)
        return
    if inside.all():
        return
    i = int(np.flatnonzero(~inside)[0])
    try:
        lon, lat = storage_lonlat(g, e[i : i + 1], n[i : i + 1])
        where = f"lon {lon[0]:.5f}°, lat {lat[0]:.5f}°"
    except Exception:  # noqa: BLE001
        where = "a position PROJ cannot compute"
    hint = ""
    if (
        g.method in ("map_conversion", "epset_map_conversion", "user")
        and g.source_crs
        and not find_local(g.source_crs)
    ):
        try:
            hint = "; " + diagnose(g.eastings, g.northings, g.source_crs, region)
        except Exception:  # noqa: BLE001
            hint = ""
    g.add(
        "error",
        "georef.outside_region",
        f"{what} lies outside {settings.region_name} {tuple(region.bbox)} at "
        f"{where} (storage {g.storage_crs} E {e[i]:.2f}, N {n[i]:.2f}){hint}. Fix the georeferencing, or "
        "widen CIM_REGION_BBOX to load foreign data on purpose",
        g.entity,
    )


def _check_region(g: Georeference, model: Any, settings: Settings) -> None:
    if g.method == "none" or g.errors:
        return
    xyz = _placement_xyz(_main_site(model))
    point = xyz if xyz is not None else np.zeros(3)
    e, n, _ = g.to_storage([point[0]], [point[1]], [point[2]])
    check_region(g, e, n, settings, "the site origin" if xyz is not None else "the project origin")


def _cross_check_latlon(g: Georeference, site: Any) -> None:
    if g.ref_latlon is None or g.method in ("ref_latlon", "none") or g.errors:
        return
    from pyproj import Geod

    xyz = _placement_xyz(site)
    point = xyz if xyz is not None else np.zeros(3)
    e, n, _ = g.to_storage([point[0]], [point[1]], [point[2]])
    lon, lat = storage_lonlat(g, e, n)
    ref_lat, ref_lon, _ = g.ref_latlon
    _, _, dist = Geod(ellps="WGS84").inv(float(lon[0]), float(lat[0]), ref_lon, ref_lat)
    severity = "warning" if dist > REF_LATLON_TOLERANCE_M else "info"
    g.add(
        severity,
        "georef.ref_latlon_disagrees" if severity == "warning" else "georef.ref_latlon_agrees",
        f"IfcSite RefLatitude/RefLongitude ({ref_lat:.6f}°, {ref_lon:.6f}°) lies {dist:.1f} m from where "
        f"{g.method} puts the site origin ({float(lat[0]):.6f}°, {float(lon[0]):.6f}°)",
        _entity(site),
    )


__all__ = [
    "METHODS",
    "Finding",
    "Georeference",
    "UserPlacement",
    "check_double_offset",
    "check_region",
    "dms_to_degrees",
    "effective_scale",
    "georeference",
    "is_1985",
    "parse_crs_name",
    "unit_label_m",
]
