"""Delivery completeness (required element classes per discipline and stage) and georeference plausibility.

These are the submission checks IDS cannot express: IDS tests each element it applies to, but cannot
say "the model must contain doors" per discipline, nor "georeferenced by IfcMapConversion *or*
ePSet_MapConversion *or* IfcSite RefLatitude", nor whether a CRS is CGCS2000 or a point lies in the
region (domain brief §3.2–3.4).

Required classes (:data:`REQUIREMENTS`) — a requirement is met when the model holds at least one
element of one of its classes or their subtypes (``IfcWallStandardCase`` counts as ``IfcWall``,
``IfcPipeSegment`` as ``IfcFlowSegment``); stairs and roofs are warnings because single-storey
buildings and roofs modelled as slabs are legitimate:

============  =================  ==========================================  =====================
discipline    id                 classes (any of)                            drawing_review/handover
============  =================  ==========================================  =====================
architecture  DLV-ARC-WALL       IfcWall, IfcCurtainWall                     error / error
architecture  DLV-ARC-SLAB       IfcSlab                                     error / error
architecture  DLV-ARC-DOOR       IfcDoor                                     error / error
architecture  DLV-ARC-WINDOW     IfcWindow                                   error / error
architecture  DLV-ARC-STAIR      IfcStair, IfcStairFlight, IfcRamp(Flight)   warning / warning
architecture  DLV-ARC-ROOF       IfcRoof                                     warning / warning
architecture  DLV-ARC-SPACE      IfcSpace                                    error / error
architecture  DLV-ARC-RAILING    IfcRailing                                  — / warning
structure     DLV-STR-VERTICAL   IfcColumn, IfcWall (剪力墙)                  error / error
structure     DLV-STR-BEAM       IfcBeam                                     warning / warning
structure     DLV-STR-SLAB       IfcSlab                                     error / error
structure     DLV-STR-FOUNDATION IfcFooting, IfcPile                         error / error
mep           DLV-MEP-SEGMENT    IfcFlowSegment (pipes, ducts, cables)       error / error
mep           DLV-MEP-FITTING    IfcFlowFitting                              warning / warning
mep           DLV-MEP-TERMINAL   IfcFlowTerminal                             error / error
mep           DLV-MEP-CONTROL    IfcFlowController                           warning / error
mep           DLV-MEP-EQUIPMENT  IfcEnergyConversionDevice, IfcFlowMoving-   warning / error
                                 /Storage/TreatmentDevice
============  =================  ==========================================  =====================

Besides: ``DLV-EMPTY`` (error) for a model without physical elements and ``DLV-PROXY`` (warning) when
more than ``proxy_share`` of the elements are IfcBuildingElementProxy (classes not mapped on export).
Spatial structure, openings, virtual elements, ports, annotations and grids are not counted as elements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cim.bim.ids import Finding
from cim.errors import CRSError, InvalidInputError, NotFoundError
from cim.region import Region

DISCIPLINES: tuple[str, ...] = ("architecture", "structure", "mep")
STAGES: tuple[str, ...] = ("drawing_review", "handover")
PROXY = "IfcBuildingElementProxy"
#: Classes (and their subtypes) that are not physical elements: not counted as the model's elements.
_NOT_ELEMENTS = {
    c.lower()
    for c in (
        "IfcProject IfcSpatialStructureElement IfcSpatialElement IfcSite IfcBuilding IfcBuildingStorey IfcSpace "
        "IfcFeatureElement IfcOpeningElement IfcVirtualElement IfcPort IfcAnnotation IfcGrid"
    ).split()
}


@dataclass(frozen=True)
class ClassRequirement:
    """One row of the delivery table: a discipline needs at least one element of ``classes``."""

    id: str
    discipline: str
    label_zh: str
    label_en: str
    classes: tuple[str, ...]
    severity: dict[str, str]  # stage -> error | warning (stage absent: not required)


def _req(
    id_: str, discipline: str, zh: str, en: str, classes: tuple[str, ...], review: str | None, handover: str
) -> ClassRequirement:
    severity = {"handover": handover} | ({"drawing_review": review} if review else {})
    return ClassRequirement(id_, discipline, zh, en, classes, severity)


# fmt: off
REQUIREMENTS: tuple[ClassRequirement, ...] = (
    _req("DLV-ARC-WALL", "architecture", "墙体", "walls", ("IfcWall", "IfcCurtainWall"), "error", "error"),
    _req("DLV-ARC-SLAB", "architecture", "楼板", "slabs", ("IfcSlab",), "error", "error"),
    _req("DLV-ARC-DOOR", "architecture", "门", "doors", ("IfcDoor",), "error", "error"),
    _req("DLV-ARC-WINDOW", "architecture", "窗", "windows", ("IfcWindow",), "error", "error"),
    _req("DLV-ARC-STAIR", "architecture", "楼梯/坡道", "stairs or ramps",
         ("IfcStair", "IfcStairFlight", "IfcRamp", "IfcRampFlight"), "warning", "warning"),
    _req("DLV-ARC-ROOF", "architecture", "屋顶", "roof", ("IfcRoof",), "warning", "warning"),
    _req("DLV-ARC-SPACE", "architecture", "房间/空间", "spaces (rooms)", ("IfcSpace",), "error", "error"),
    _req("DLV-ARC-RAILING", "architecture", "栏杆", "railings", ("IfcRailing",), None, "warning"),
    _req("DLV-STR-VERTICAL", "structure", "竖向构件 (柱/剪力墙)", "columns or structural walls",
         ("IfcColumn", "IfcWall"), "error", "error"),
    _req("DLV-STR-BEAM", "structure", "梁", "beams", ("IfcBeam",), "warning", "warning"),
    _req("DLV-STR-SLAB", "structure", "结构板", "structural slabs", ("IfcSlab",), "error", "error"),
    _req("DLV-STR-FOUNDATION", "structure", "基础", "foundations", ("IfcFooting", "IfcPile"), "error", "error"),
    _req("DLV-MEP-SEGMENT", "mep", "管道/风管/桥架", "flow segments", ("IfcFlowSegment",), "error", "error"),
    _req("DLV-MEP-FITTING", "mep", "管件", "flow fittings", ("IfcFlowFitting",), "warning", "warning"),
    _req("DLV-MEP-TERMINAL", "mep", "末端设备", "flow terminals", ("IfcFlowTerminal",), "error", "error"),
    _req("DLV-MEP-CONTROL", "mep", "阀门/控制器", "flow controllers", ("IfcFlowController",), "warning", "error"),
    _req("DLV-MEP-EQUIPMENT", "mep", "机电设备", "equipment",
         ("IfcEnergyConversionDevice", "IfcFlowMovingDevice", "IfcFlowStorageDevice", "IfcFlowTreatmentDevice"),
         "warning", "error"),
)
# fmt: on


# -- delivery completeness ----------------------------------------------------------------------
def _supertypes(ifc_class: str, schema: str) -> set[str]:
    """Lower-case names of ``ifc_class`` and all its supertypes (just the class when unknown)."""
    names = {ifc_class.lower()}
    try:
        import ifcopenshell.ifcopenshell_wrapper as w

        decl = w.schema_by_name(schema).declaration_by_name(ifc_class).as_entity()
    except Exception:  # noqa: BLE001 - unknown schema or class: compare by name only
        return names
    while decl is not None:
        names.add(decl.name().lower())
        decl = decl.supertype()
    return names


def check_delivery(
    class_counts: Mapping[str, int],
    *,
    discipline: str,
    stage: str,
    schema: str = "IFC4",
    proxy_share: float = 0.1,
) -> list[Finding]:
    """Findings for required classes the model lacks (``class_counts``: IFC class -> element count).

    Raises:
        InvalidInputError: unknown discipline or stage.
    """
    if discipline not in DISCIPLINES:
        raise InvalidInputError(f"discipline {discipline!r} is not one of {DISCIPLINES}", field="discipline")
    if stage not in STAGES:
        raise InvalidInputError(f"stage {stage!r} is not one of {STAGES}", field="stage")
    present = {k: v for k, v in class_counts.items() if v > 0}
    lineage = {cls: _supertypes(cls, schema) for cls in present}
    findings: list[Finding] = []
    elements = sum(n for cls, n in present.items() if not (lineage[cls] & _NOT_ELEMENTS))
    if elements == 0:
        findings.append(
            Finding(
                "delivery",
                "DLV-EMPTY",
                "error",
                "模型没有构件 / the model contains no elements",
                None,
                None,
                "at least one element",
                "0",
            )
        )
    for req in REQUIREMENTS:
        severity = req.severity.get(stage)
        if req.discipline != discipline or severity is None:
            continue
        wanted = {c.lower() for c in req.classes}
        count = sum(n for cls, n in present.items() if lineage[cls] & wanted)
        if count == 0:
            classes = ", ".join(req.classes)
            findings.append(
                Finding(
                    "delivery",
                    req.id,
                    severity,
                    f"缺少{req.label_zh} / no {req.label_en} in the {discipline} model ({stage}): expected {classes}",
                    None,
                    None,
                    f"at least 1 of {classes}",
                    "0",
                )
            )
    proxies = sum(n for cls, n in present.items() if PROXY.lower() in lineage[cls])
    if elements and proxies / elements > proxy_share:
        findings.append(
            Finding(
                "delivery",
                "DLV-PROXY",
                "warning",
                f"{proxies} of {elements} elements are {PROXY}: classes were not mapped on export "
                f"(构件类型未正确映射)",
                None,
                PROXY,
                f"at most {proxy_share:.0%} proxies",
                f"{proxies / elements:.0%}",
            )
        )
    return findings


def model_class_counts(store: Any, dataset_id: str, version: int) -> dict[str, int]:
    """IFC class -> count over a stored model version's elements and spatial structure."""
    rows = (
        store.read()
        .execute(
            """SELECT ifc_class, count(*) FROM bim_elements WHERE dataset_id = ? AND version = ? GROUP BY 1
           UNION ALL
           SELECT ifc_class, count(*) FROM bim_spatial WHERE dataset_id = ? AND version = ? GROUP BY 1""",
            [dataset_id, version, dataset_id, version],
        )
        .fetchall()
    )
    counts: dict[str, int] = {}
    for cls, n in rows:
        counts[cls] = counts.get(cls, 0) + int(n)
    return counts


def delivery_findings(
    store: Any, dataset_id: str, version: int, *, discipline: str, stage: str
) -> list[Finding]:
    """:func:`check_delivery` over a stored model version (``bim_models`` gives its schema)."""
    row = (
        store.read()
        .execute(
            "SELECT ifc_schema FROM bim_models WHERE dataset_id = ? AND version = ?", [dataset_id, version]
        )
        .fetchone()
    )
    if row is None:
        raise NotFoundError(f"BIM model {dataset_id!r} version {version} does not exist")
    counts = model_class_counts(store, dataset_id, version)
    return check_delivery(counts, discipline=discipline, stage=stage, schema=row[0] or "IFC4")


# -- georeference plausibility ------------------------------------------------------------------
_VERTICAL_1985 = re.compile(r"5737|1985|yellow\s*sea|黄海", re.IGNORECASE)
_GEOREF_METHODS = ("map_conversion", "epset", "epset_map_conversion", "ref_latlon", "user", "none")


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, ""):
            return value
    return None


def _georef_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInputError("georef is not valid JSON", field="georef") from None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"georef must be a JSON object, not {type(value).__name__}", field="georef")
    return dict(value)


def _crs_finding(crs_text: str) -> Finding | None:
    """None when the CRS is CGCS2000 (or a configured city system), else the finding."""
    from cim.crs import get_crs
    from cim.localcrs import find_local

    horizontal = re.split(r"[,;+]", crs_text)[0].strip()
    if find_local(horizontal) is not None:
        return None
    try:
        crs = get_crs(horizontal)
    except CRSError as exc:
        return Finding(
            "georef",
            "GEO-CRS-UNKNOWN",
            "error",
            f"坐标系无法识别 / unknown CRS {crs_text!r}: {exc}",
            None,
            "IfcProjectedCRS",
            "an EPSG code of CGCS2000 or a configured city system",
            crs_text,
        )
    geodetic = crs.geodetic_crs
    datum = geodetic.datum.name if geodetic is not None else "unknown datum"
    if datum != "China 2000":
        return Finding(
            "georef",
            "GEO-CRS",
            "error",
            f"坐标系不是 CGCS2000 / CRS {crs_text} ({crs.name}) is on datum {datum}, not CGCS2000",
            None,
            "IfcProjectedCRS",
            "CGCS2000 (e.g. EPSG:4548) or a configured city system",
            f"{crs_text} ({datum})",
        )
    return None


def georef_plausibility(
    model: Mapping[str, Any] | str | None,
    *,
    storage_crs: str | None = None,
    region: Region | None = None,
) -> list[Finding]:
    """Findings about a model's georeferencing: a ``bim_models`` row, or its ``georef`` JSON alone.

    Reads from the georef object (written by the IFC converter): ``method`` (map_conversion | epset |
    ref_latlon | user | none), ``crs`` (or ``target_crs``/``name``, also under ``parameters``),
    ``vertical_datum`` and ``findings`` (the converter's own, e.g. a double offset: dicts with
    ``code``/``rule_id``, ``severity``, ``message``, or plain strings). A row's ``origin_x``/``origin_y``
    (storage CRS) are tested against the region.
    """
    from cim.settings import get_settings

    settings = get_settings()
    row = dict(model) if isinstance(model, Mapping) and "georef" in model else None
    georef = _georef_dict(row["georef"] if row is not None else model)
    params = georef.get("parameters") if isinstance(georef.get("parameters"), Mapping) else {}
    method = str(georef.get("method") or "none").lower()
    findings: list[Finding] = []
    if method not in _GEOREF_METHODS:
        findings.append(
            Finding("georef", "GEO-METHOD", "warning", f"unknown georeferencing method {method!r}")
        )
    if method == "none":
        findings.append(
            Finding(
                "georef",
                "GEO-NONE",
                "error",
                "模型未地理配准 / the model is not georeferenced: no IfcMapConversion, ePSet_MapConversion "
                "or IfcSite RefLatitude/RefLongitude",
                None,
                None,
                "IfcMapConversion + IfcProjectedCRS (CGCS2000)",
                "none",
            )
        )
    elif method == "ref_latlon":
        findings.append(
            Finding(
                "georef",
                "GEO-LATLON-ONLY",
                "warning",
                "仅有场地经纬度 / only IfcSite RefLatitude/RefLongitude (LoGeoRef 20): approximate, no CRS "
                "or rotation; provide IfcMapConversion to CGCS2000",
                None,
                "IfcSite",
                "IfcMapConversion + IfcProjectedCRS",
                "RefLatitude/RefLongitude",
            )
        )
    elif method == "user":
        findings.append(
            Finding("georef", "GEO-USER", "info", "placed with user-given parameters, not from the file")
        )
    crs_text = _first(georef, "crs", "target_crs", "crs_name") or _first(params, "crs", "target_crs", "name")
    if not crs_text and method in ("map_conversion", "epset", "epset_map_conversion", "user"):
        crs_text = georef.get("source_crs")  # the converter's name for the model's CRS (not for ref_latlon)
    if method in ("map_conversion", "epset", "epset_map_conversion"):
        if not crs_text:
            findings.append(
                Finding(
                    "georef",
                    "GEO-CRS-MISSING",
                    "error",
                    "坐标系名称为空 / the projected CRS has no name",
                    None,
                    "IfcProjectedCRS",
                    "a CRS name such as EPSG:4548",
                    "empty",
                )
            )
    if crs_text and method != "none":
        crs_finding = _crs_finding(str(crs_text))
        if crs_finding:
            findings.append(crs_finding)
        vertical = _first(georef, "vertical_datum", "vertical_crs") or _first(params, "vertical_datum")
        parts = re.split(r"[,;+]", str(crs_text))
        vertical = vertical or (parts[1].strip() if len(parts) > 1 else None)
        if vertical and not _VERTICAL_1985.search(str(vertical)):
            findings.append(
                Finding(
                    "georef",
                    "GEO-VDATUM",
                    "warning",
                    f"高程基准不是1985国家高程基准 / vertical datum {vertical!r} is not 1985 heights (EPSG:5737)",
                    None,
                    "IfcProjectedCRS",
                    "EPSG:5737 (1985国家高程基准)",
                    str(vertical),
                )
            )
    if row is not None and method != "none":
        findings.extend(
            _region_findings(
                row,
                storage_crs or settings.storage_crs,
                region or Region(settings.region_name, settings.region_bbox),
            )
        )
    findings.extend(_converter_findings(georef.get("findings")))
    return findings


def _region_findings(row: Mapping[str, Any], storage_crs: str, region: Region) -> list[Finding]:
    import numpy as np

    from cim.region import diagnose

    x, y = row.get("origin_x"), row.get("origin_y")
    if x is None or y is None:
        return []
    if bool(region.contains(np.array([x]), np.array([y]), storage_crs)[0]):
        return []
    why = diagnose(float(x), float(y), storage_crs, region)
    return [
        Finding(
            "georef",
            "GEO-REGION",
            "error",
            f"模型位置不在{region.name}范围内 / model origin outside {region.name}: {why}",
            None,
            None,
            f"origin inside {region.name} {region.bbox}",
            f"({x:.3f}, {y:.3f}) in {storage_crs}",
        )
    ]


def _converter_findings(items: Any) -> list[Finding]:
    out = []
    for item in items or []:
        if isinstance(item, Mapping):
            code = str(_first(item, "code", "rule_id", "rule", "id") or "converter")
            message = str(_first(item, "message", "text") or code)
            severity = str(item.get("severity") or "warning").lower()
        else:
            code, message, severity = "converter", str(item), "warning"
        if re.search(r"double[\s_-]*offset", f"{code} {message}", re.IGNORECASE):
            out.append(
                Finding(
                    "georef",
                    "GEO-DOUBLE-OFFSET",
                    "error",
                    f"坐标重复偏移 / double offset: {message}",
                    None,
                    None,
                    "real coordinates in IfcMapConversion or in the site placement, not both",
                    message,
                )
            )
            continue
        rule = "GEO-" + re.sub(r"[^A-Z0-9]+", "-", code.upper()).strip("-")
        out.append(
            Finding(
                "georef", rule, severity if severity in ("error", "warning", "info") else "warning", message
            )
        )
    return out
