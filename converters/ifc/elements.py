"""Attributes of an IFC model: the spatial hierarchy and one record per element (no geometry here).

Spatial rows: IfcProject → IfcSite → IfcBuilding (IFC4X3: any IfcFacility) → IfcBuildingStorey
(IfcFacilityPart) → IfcSpace, parents through IfcRelAggregates. Element records: every IfcElement except
features (openings, voids) and virtual elements, plus IfcSpace and IfcProxy, with identity, containment,
materials, classifications, property sets and quantities as JSON-safe values. ``properties_hash`` over the
canonical JSON lets two versions be compared element by element.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from converters.ifc.georef import Georeference

#: keys of an element record that make its properties_hash
HASHED_FIELDS = (
    "ifc_class",
    "predefined_type",
    "name",
    "object_type",
    "tag",
    "storey_global_id",
    "building_global_id",
    "space_global_id",
    "materials",
    "classifications",
    "psets",
    "quantities",
)
_EXCLUDED = ("IfcFeatureElement", "IfcVirtualElement")


def _safe_is_a(inst: Any, cls: str) -> bool:
    try:
        return bool(inst.is_a(cls))
    except RuntimeError:  # class not in this schema
        return False


def _by_type(model: Any, cls: str) -> list[Any]:
    try:
        return list(model.by_type(cls))
    except RuntimeError:
        return []


def spatial_class(model: Any) -> str:
    """The supertype of spatial structure in this schema."""
    return "IfcSpatialStructureElement" if model.schema == "IFC2X3" else "IfcSpatialElement"


def is_spatial(inst: Any) -> bool:
    """Any spatial structure element (site, building, storey, space, IFC4X3 facilities)."""
    return _safe_is_a(inst, "IfcSpatialElement") or _safe_is_a(inst, "IfcSpatialStructureElement")


def is_storey(inst: Any) -> bool:
    """Building storey, or its IFC4X3 infrastructure equivalent (IfcFacilityPart)."""
    return _safe_is_a(inst, "IfcBuildingStorey") or _safe_is_a(inst, "IfcFacilityPart")


def is_building(inst: Any) -> bool:
    """Building, or any IFC4X3 facility (bridge, road, railway...)."""
    return _safe_is_a(inst, "IfcBuilding") or _safe_is_a(inst, "IfcFacility")


def element_products(model: Any) -> list[Any]:
    """The products that become ``bim_elements`` rows, in file order."""
    out = [e for e in _by_type(model, "IfcElement") if not any(_safe_is_a(e, c) for c in _EXCLUDED)]
    out += _by_type(model, "IfcSpace") + _by_type(model, "IfcProxy")
    return sorted(out, key=lambda e: e.id())


# -- JSON ---------------------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """A JSON-ready copy: finite floats, lists for tuples, entities by class and name, no step ids."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "is_a"):  # entity_instance: a measure value or a referenced entity
        if hasattr(value, "wrappedValue"):
            return json_safe(value.wrappedValue)
        name = getattr(value, "Name", None) if hasattr(value, "Name") else None
        return f"{value.is_a()}({name})" if name else value.is_a()
    return str(value)


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON (the hashed form)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def properties_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the record's :data:`HASHED_FIELDS`."""
    return hashlib.sha256(canonical_json({k: record.get(k) for k in HASHED_FIELDS}).encode()).hexdigest()


# -- spatial hierarchy --------------------------------------------------------------------------------
def _parent(inst: Any) -> Any | None:
    import ifcopenshell.util.element as ue

    return ue.get_aggregate(inst) or ue.get_container(inst, should_get_direct=True)


def _psets(inst: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import ifcopenshell.util.element as ue

    try:
        return (
            json_safe(ue.get_psets(inst, psets_only=True)) or {},
            json_safe(ue.get_psets(inst, qtos_only=True)) or {},
        )
    except Exception:  # noqa: BLE001 - a broken pset must not stop the conversion
        return {}, {}


def _placement(inst: Any) -> list[float] | None:
    import ifcopenshell.util.placement as up

    if getattr(inst, "ObjectPlacement", None) is None:
        return None
    try:
        return [float(v) for v in np.asarray(up.get_local_placement(inst.ObjectPlacement))[:3, 3]]
    except Exception:  # noqa: BLE001
        return None


def spatial_rows(model: Any, georef: Georeference) -> list[dict[str, Any]]:
    """``bim_spatial`` rows (without dataset/version): project, sites, buildings, storeys, spaces..."""
    rows = []
    for inst in _by_type(model, "IfcProject") + _by_type(model, spatial_class(model)):
        parent = _parent(inst) if not inst.is_a("IfcProject") else None
        xyz = _placement(inst)
        elevation = None
        if is_storey(inst):
            attr = getattr(inst, "Elevation", None)
            z = xyz[2] if xyz is not None else None
            if z is None or (abs(z) < 1e-9 and attr is not None):
                z = attr
            if z is not None:
                x, y = (xyz[0], xyz[1]) if xyz else (0.0, 0.0)
                elevation = float(georef.to_source([x], [y], [float(z)])[2][0])
        psets, qtos = _psets(inst) if not inst.is_a("IfcProject") else ({}, {})
        attrs = {
            "step_id": inst.id(),
            "description": getattr(inst, "Description", None),
            "object_type": getattr(inst, "ObjectType", None),
            "composition_type": getattr(inst, "CompositionType", None),
            "predefined_type": getattr(inst, "PredefinedType", None),
            "elevation_attr": getattr(inst, "Elevation", None),
            "placement": xyz,
            "psets": psets,
            "quantities": qtos,
        }
        rows.append(
            {
                "global_id": inst.GlobalId,
                "ifc_class": inst.is_a(),
                "name": inst.Name,
                "long_name": getattr(inst, "LongName", None),
                "parent_global_id": getattr(parent, "GlobalId", None) if parent is not None else None,
                "elevation": elevation,
                "attrs": json_safe({k: v for k, v in attrs.items() if v not in (None, {}, [])}),
            }
        )
    return rows


# -- elements -----------------------------------------------------------------------------------------
class Containment:
    """Memoised walk from an element to its space, storey and building."""

    def __init__(self) -> None:
        self._cache: dict[int, dict[str, Any]] = {}

    def of(self, element: Any) -> dict[str, Any]:
        """storey_global_id, storey_name, building_global_id, space_global_id of an element."""
        import ifcopenshell.util.element as ue

        if element.is_a("IfcSpace"):
            start = ue.get_aggregate(element) or ue.get_container(element, should_get_direct=True)
        else:
            start = ue.get_container(element)
            node, hops = element, 0
            while start is None and node is not None and hops < 16:  # parts of assemblies, stairs, nests
                node = ue.get_aggregate(node) or ue.get_nest(node)
                hops += 1
                if node is not None and is_spatial(node):
                    start = node
                elif node is not None:
                    start = ue.get_container(node)
        if start is None:
            return {
                "storey_global_id": None,
                "storey_name": None,
                "building_global_id": None,
                "space_global_id": None,
            }
        key = start.id()
        if key not in self._cache:
            self._cache[key] = self._walk(start)
        return self._cache[key]

    @staticmethod
    def _walk(start: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "storey_global_id": None,
            "storey_name": None,
            "building_global_id": None,
            "space_global_id": None,
        }
        node, hops = start, 0
        while node is not None and hops < 32:
            if node.is_a("IfcSpace") and out["space_global_id"] is None:
                out["space_global_id"] = node.GlobalId
            elif is_storey(node) and out["storey_global_id"] is None:
                out["storey_global_id"], out["storey_name"] = node.GlobalId, node.Name
            elif is_building(node) and out["building_global_id"] is None:
                out["building_global_id"] = node.GlobalId
            node = _parent(node) if not node.is_a("IfcProject") else None
            hops += 1
        return out


def predefined_type(element: Any) -> str | None:
    """PredefinedType (USERDEFINED → ObjectType; NOTDEFINED/unset → the type object's)."""
    import ifcopenshell.util.element as ue

    for inst in (element, ue.get_type(element)):
        if inst is None:
            continue
        value = getattr(inst, "PredefinedType", None) if hasattr(inst, "PredefinedType") else None
        if value == "USERDEFINED":
            custom = getattr(inst, "ObjectType", None) or getattr(inst, "ElementType", None)
            return custom or value
        if value and value != "NOTDEFINED":
            return value
    return None


def materials(element: Any) -> list[str]:
    """Names of the element's materials (layers, profiles, constituents; inherited from its type)."""
    import ifcopenshell.util.element as ue

    try:
        found = ue.get_materials(element)
    except Exception:  # noqa: BLE001
        return []
    names: list[str] = []
    for m in found:
        name = getattr(m, "Name", None)
        if name and name not in names:
            names.append(name)
    return names


def classifications(element: Any) -> list[dict[str, Any]]:
    """[{system, code, name}] of the element's classification references (sorted)."""
    import ifcopenshell.util.classification as uc

    out = []
    try:
        refs: Iterable[Any] = uc.get_references(element)
    except Exception:  # noqa: BLE001
        return []
    for ref in refs:
        code = getattr(ref, "Identification", None) if hasattr(ref, "Identification") else None
        code = code or getattr(ref, "ItemReference", None)
        try:
            system = uc.get_classification(ref)
        except Exception:  # noqa: BLE001
            system = None
        out.append({"system": getattr(system, "Name", None), "code": code, "name": ref.Name})
    return sorted(out, key=lambda c: canonical_json(c))


def element_record(element: Any, containment: Containment) -> dict[str, Any]:
    """One ``bim_elements`` record without geometry (``step_id`` links it to its mesh)."""
    psets, qtos = _psets(element)
    record = {
        "step_id": element.id(),
        "global_id": element.GlobalId,
        "ifc_class": element.is_a(),
        "predefined_type": predefined_type(element),
        "name": element.Name,
        "object_type": getattr(element, "ObjectType", None),
        "tag": getattr(element, "Tag", None) if hasattr(element, "Tag") else None,
        **containment.of(element),
        "materials": materials(element),
        "classifications": classifications(element),
        "psets": psets,
        "quantities": qtos,
    }
    record["properties_hash"] = properties_hash(record)
    return record


def element_records(model: Any, products: list[Any] | None = None) -> list[dict[str, Any]]:
    """Records of every element product (see :func:`element_products`)."""
    containment = Containment()
    return [
        element_record(e, containment)
        for e in (products if products is not None else element_products(model))
    ]
