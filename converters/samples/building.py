"""A small IFC4 office building in Jinan beside the sample pipe district, for the BIM review demo.

Example::

    from converters.samples.building import generate_building
    generate_building(Path("office_v1.ifc"))                  # drawing-review model (施工图审查)
    generate_building(Path("office_v2.ifc"), variant="v2")    # handover model (竣工交付)

or ``python -m converters.samples.building OUT_DIR`` (writes ``office_v1.ifc`` and ``office_v2.ifc``).

**The building.** 千佛山路综合办公楼: a two-storey reinforced-concrete frame office (F1 0.000, F2 3.600, roof
7.200) of 36.0 × 16.8 m on a 7.2 m grid (axes 1–6 along the street, A–D across it: two 7.2 m office bays and
a 2.4 m corridor) over a one-level basement (地下室, B1 −4.200) that reaches 6.0 m further towards the
street under the forecourt (axis E, 36.0 × 22.8 m in all). Walls (basement C35P6 concrete, aerated-block
external walls, partitions), slabs (raft, floors, the forecourt roof slab), 0.5 m columns, 0.3 × 0.6 m
beams, pad footings under the columns and strip footings under the basement walls, fire doors (甲级/乙级) and
ordinary doors (FireRating ``无 (0.00h)``, as the default IDS asks a FireRating of every door), aluminium windows in wall openings, two dog-leg stairs with handrails, a flat roof and one
IfcSpace per room. Every element carries its IFC common property set (IsExternal, LoadBearing and the
耐火极限 of GB 50016 for a 二级 building, 一级 below ground), a material and a GB/T 51269-style
classification reference (system ``GB/T 51269-2017``; the codes follow the standard's ``30-xx.xx.xx`` form
but are **illustrative**, not quoted from its tables).

**Where it is.** East of 千佛山路 (the N–S street at E 502 150 of :mod:`converters.samples.district`, default
4 × 3 blocks), between 文化东路 and 和平路, in EPSG:4548 (CGCS2000 3-degree GK, CM 117°E, no zone prefix).
IfcMapConversion puts the project origin (grid A/1: the building's south-east corner) at E 502 189.5,
N 4 058 206.0; the project X axis runs along the street to grid north (XAxisAbscissa 0, XAxisOrdinate 1:
90° counter-clockwise from grid east), so project +Y points west, towards the street. ±0.000 is
72.30 m (1985 heights, EPSG:5737): the highest surveyed ground over the basement footprint (71.82 m,
interpolated from the district's pipe points; the ground falls 1.5 % northwards) plus 0.48 m.

**Near the pipes.** The basement's street wall (axis E) stands 22.8 m west of the origin, its outer face at
E 502 166.525, 2.725 m clear of the DN600 storm sewer (雨水, centre line E 502 163.5; 2.775 m from its DN500
part) under the pavement of 千佛山路 — above the 2.5 m that GB 50289-2016 Table 4.1.9 asks between a building and a drain. In ``v1`` the strip
footing under that wall is centred on it (1.4 m wide), so its toe reaches 0.525 m beyond the wall: 2.2 m
clear, a GB 50289 clearance finding at drawing review. ``v2`` makes it an eccentric footing (偏心条基) flush
with the wall's outer face.

**Variants.** ``v1`` (施工图审查) carries two planted review defects that the default IDS rules
(``cim/bim/rules/cn_review_lod300.ids``) find: the F2 stair fire door has no ``Pset_DoorCommon.FireRating``
(CN300-FR-02) and the F1 partition on axis 4 between the lobby and office 104 has no GB/T 51269
classification (CN300-CL-01). ``v2`` (竣工交付) keeps the GlobalIds of everything it shares with ``v1`` and changes: the F2 partition
between offices 202 and 203 moved 1.2 m east (axis 4 → 4+1.2; both spaces resized), a corridor-end exit
door added in the F1 north wall, the F2 toilet window removed, the stair door's FireRating filled in (乙级),
the missing classification added and the street-side strip footing made eccentric; IfcProject.Phase says
竣工.

**Determinism.** GlobalIds are UUID5s of a fixed namespace and a stable key per object (relationships and
property sets derive theirs from what they relate), compressed with :mod:`ifcopenshell.guid`; the header
time stamp is fixed. Regenerating gives the same file for the same IfcOpenShell version.
"""

from __future__ import annotations

import argparse
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("v1", "v2")
#: UUID5 namespace of every GlobalId (the "seed").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "cim-service/samples/jinan_building/2025")
TIME_STAMP = "2025-06-01T09:00:00+08:00"

# -- placement (EPSG:4548, 1985 heights) ----------------------------------------------------------------
CRS = "EPSG:4548"
VERTICAL_DATUM = "EPSG:5737"
EASTINGS = 502_189.5
NORTHINGS = 4_058_206.0
#: Highest surveyed ground (1985 height) over the basement footprint, from the district's pipe points.
GROUND_H = 71.82
#: ±0.000 of the building: the ground plus a 0.48 m step up to the ground floor (室内外高差).
ZERO_H = 72.30
#: Project X axis = grid north (90° counter-clockwise from grid east): along 千佛山路.
X_AXIS = (0.0, 1.0)
ADDRESS = ("千佛山路", "济南市", "历下区", "山东省", "250014")

# -- grid and levels (project metres) ---------------------------------------------------------------------
XS = (0.0, 7.2, 14.4, 21.6, 28.8, 36.0)  # axes 1–6, along the street (grid north)
YA, YB, YC, YD, YE = 0.0, 7.2, 9.6, 16.8, 22.8  # axes A–E, towards the street (grid west)
LENGTH = XS[-1]
LEVELS = {"B1": -4.2, "F1": 0.0, "F2": 3.6}
ROOF = 7.2
STOREY_NAMES = {"B1": "地下一层", "F1": "一层 (首层)", "F2": "二层"}
SLAB_T = {"B1": 0.5, "F1": 0.25, "F2": 0.12, "roof": 0.15}  # raft, basement roof, floor, roof
FORECOURT_TOP = -0.45  # the basement roof slab under the forecourt, flush with the paving
FORECOURT_T = 0.3
FOOTING_BOTTOM = -5.5
COLUMN = 0.5
BEAM_W, BEAM_D = 0.3, 0.6
T_BASEMENT, T_EXTERNAL, T_PARTITION, T_INNER = 0.35, 0.25, 0.2, 0.2
#: v2 moves the F2 partition between offices 202 and 203 from axis 4 by this much (east, +X).
MOVED_BY = 1.2

CLASSIFICATION = "GB/T 51269-2017"
#: (code, name) per element kind — the 30-xx.xx.xx form of GB/T 51269, illustrative codes.
CODES: dict[str, tuple[str, str]] = {
    "wall_basement": ("30-01.10.30", "地下室外墙"),
    "wall_external": ("30-01.10.10", "外墙"),
    "wall_inner": ("30-01.10.20", "内墙"),
    "column": ("30-01.20.10", "柱"),
    "beam": ("30-01.30.10", "梁"),
    "slab": ("30-01.40.10", "楼板"),
    "raft": ("30-01.40.20", "基础底板"),
    "roof": ("30-01.50.10", "屋面"),
    "stair": ("30-01.60.10", "楼梯"),
    "railing": ("30-01.60.20", "栏杆扶手"),
    "door": ("30-02.10.10", "门"),
    "fire_door": ("30-02.10.20", "防火门"),
    "window": ("30-02.20.10", "窗"),
    "pad_footing": ("30-03.10.10", "独立基础"),
    "strip_footing": ("30-03.10.20", "条形基础"),
}
MATERIALS: dict[str, str] = {
    "C35P6": "concrete",  # waterproof concrete: basement walls, raft, footings
    "C35": "concrete",
    "C30": "concrete",
    "加气混凝土砌块 B06": "block",
    "钢 Q235": "steel",
    "铝合金 断桥": "aluminium",
    "钢质防火门": "steel",
    "木门": "wood",
    "玻璃门": "glass",
}


@dataclass(frozen=True)
class BuildingSummary:
    """What :func:`generate_building` wrote: file, variant and counts of elements by IFC class."""

    path: Path
    variant: str
    elements: dict[str, int]
    origin: tuple[float, float, float] = (EASTINGS, NORTHINGS, ZERO_H)
    crs: str = CRS


def global_id(key: str) -> str:
    """The GlobalId of an object key: UUID5 in :data:`NAMESPACE`, compressed to 22 characters."""
    import ifcopenshell.guid

    return ifcopenshell.guid.compress(uuid.uuid5(NAMESPACE, key).hex)


def to_map(x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
    """Project coordinates (m) → EPSG:4548 easting, northing and 1985 height, as the map conversion says."""
    a, b = X_AXIS
    return EASTINGS + a * x - b * y, NORTHINGS + b * x + a * y, ZERO_H + z


def basement_outline() -> list[tuple[float, float]]:
    """Plan outline (project metres) of the basement's outer wall faces, counter-clockwise."""
    h = T_BASEMENT / 2
    return [(-h, -h), (LENGTH + h, -h), (LENGTH + h, YE + h), (-h, YE + h)]


def _matrix(x: float, y: float, z: float, angle_deg: float = 0.0) -> np.ndarray:
    """4×4 placement: origin (x, y, z), local X axis turned ``angle_deg`` counter-clockwise about Z."""
    m = np.eye(4)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    m[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    m[:3, 3] = [x, y, z]
    return np.round(m, 12) + 0.0


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _dms(value: float) -> tuple[int, int, int, int]:
    """Decimal degrees → IfcCompoundPlaneAngleMeasure (degrees, minutes, seconds, millionths of seconds)."""
    micro = round(abs(value) * 3600 * 1_000_000)
    sign = -1 if value < 0 else 1
    deg, rest = divmod(micro, 3600 * 1_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000)
    seconds, millionths = divmod(rest, 1_000_000)
    return sign * deg, sign * minutes, sign * seconds, sign * millionths


class _Builder:
    """Builds one variant; keys every object so that :meth:`finish` can give it a stable GlobalId."""

    def __init__(self, variant: str) -> None:
        import ifcopenshell.api.project

        self.v2 = variant == "v2"
        self.f = ifcopenshell.api.project.create_file(version="IFC4")
        self.keys: dict[int, str] = {}
        self.materials: dict[str, Any] = {}
        self.by_material: dict[str, list[Any]] = {}
        self.by_code: dict[str, list[Any]] = {}
        self.storeys: dict[str, Any] = {}
        self.body: Any = None
        self.walls: dict[int, tuple[float, float, float, float, float]] = {}  # axis start x, y, z, angle, t
        self.openings: dict[str, Any] = {}

    # -- generic helpers ------------------------------------------------------------------------------
    def api(self, module: str, function: str, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"ifcopenshell.api.{module}"), function)(self.f, **kwargs)

    def entity(self, ifc_class: str, key: str, name: str | None, **attrs: Any) -> Any:
        predefined = attrs.pop("predefined_type", None)
        e = self.api("root", "create_entity", ifc_class=ifc_class, predefined_type=predefined, name=name)
        for attr, value in attrs.items():
            setattr(e, attr, value)
        self.keys[e.id()] = key
        return e

    def pset(self, product: Any, name: str, props: dict[str, Any]) -> None:
        qto = name.startswith("Qto_")
        ps = self.api("pset", "add_qto" if qto else "add_pset", product=product, name=name)
        self.api(
            "pset", "edit_qto" if qto else "edit_pset", **{"qto" if qto else "pset": ps}, properties=props
        )

    def place(self, product: Any, matrix: np.ndarray) -> None:
        self.api("geometry", "edit_object_placement", product=product, matrix=matrix, is_si=True)

    def represent(self, product: Any, rep: Any) -> None:
        self.api("geometry", "assign_representation", product=product, representation=rep)

    def classify(self, product: Any, kind: str) -> None:
        self.by_code.setdefault(kind, []).append(product)

    def material(self, product: Any, name: str) -> None:
        self.by_material.setdefault(name, []).append(product)

    def element(
        self,
        ifc_class: str,
        key: str,
        name: str,
        storey: str,
        matrix: np.ndarray,
        rep: Any,
        *,
        predefined: str | None = None,
        tag: str | None = None,
        material: str | None = None,
        kind: str | None = None,
    ) -> Any:
        """A physical element contained in ``storey``, placed by ``matrix`` (relative to the project)."""
        e = self.entity(ifc_class, key, name, predefined_type=predefined)
        if tag is not None:
            e.Tag = tag
        self.api("spatial", "assign_container", products=[e], relating_structure=self.storeys[storey])
        self.place(e, matrix)
        self.represent(e, rep)
        if material:
            self.material(e, material)
        if kind:
            self.classify(e, kind)
        return e

    # -- project, site, building, storeys ---------------------------------------------------------------
    def project(self) -> None:
        project = self.entity(
            "IfcProject",
            "project",
            "千佛山路综合办公楼",
            LongName="济南市历下区千佛山路综合办公楼 (示例 sample)",
            Phase="竣工" if self.v2 else "施工图设计",
            Description="Generated by cim-service (converters/samples/building.py); not a real project.",
        )
        length = self.api("unit", "add_si_unit", unit_type="LENGTHUNIT")
        area = self.api("unit", "add_si_unit", unit_type="AREAUNIT")
        volume = self.api("unit", "add_si_unit", unit_type="VOLUMEUNIT")
        angle = self.api("unit", "add_si_unit", unit_type="PLANEANGLEUNIT")
        assignment = self.api("unit", "assign_unit", units=[length, area, volume, angle])
        assignment.Units = [length, area, volume, angle]  # assign_unit keeps a set: fix the written order
        model = self.api("context", "add_context", context_type="Model")
        self.body = self.api(
            "context",
            "add_context",
            context_type="Model",
            context_identifier="Body",
            target_view="MODEL_VIEW",
            parent=model,
        )
        self.api("georeference", "add_georeferencing", ifc_class="IfcMapConversion", name=CRS)
        self.api(
            "georeference",
            "edit_georeferencing",
            coordinate_operation={
                "Eastings": EASTINGS,
                "Northings": NORTHINGS,
                "OrthogonalHeight": ZERO_H,
                "XAxisAbscissa": X_AXIS[0],
                "XAxisOrdinate": X_AXIS[1],
                "Scale": 1.0,
            },
            projected_crs={
                "Description": "CGCS2000 / 3-degree Gauss-Kruger CM 117E",
                "GeodeticDatum": "CGCS2000",
                "VerticalDatum": VERTICAL_DATUM,
                "MapProjection": "Gauss-Kruger (3-degree)",
                "MapZone": "39 (CM 117E, no prefix)",
            },
        )
        crs = self.f.by_type("IfcProjectedCRS")[0]
        crs.MapUnit = length

        lon, lat = self._lonlat()
        site = self.entity(
            "IfcSite",
            "site",
            "千佛山路东侧 A-03 地块",
            LongName="济南市历下区千佛山路东侧办公用地",
            CompositionType="ELEMENT",
            RefLatitude=_dms(lat),
            RefLongitude=_dms(lon),
            RefElevation=ZERO_H,
            SiteAddress=self._address(),
        )
        self.api("aggregate", "assign_object", products=[site], relating_object=project)
        self.place(site, _matrix(0, 0, 0))
        building = self.entity(
            "IfcBuilding",
            "building",
            "千佛山路综合办公楼",
            LongName="综合办公楼 1#",
            CompositionType="ELEMENT",
            ElevationOfRefHeight=ZERO_H,
            ElevationOfTerrain=GROUND_H,
            BuildingAddress=self._address(),
        )
        self.api("aggregate", "assign_object", products=[building], relating_object=site)
        self.place(building, _matrix(0, 0, 0))
        self.pset(
            building,
            "Pset_BuildingCommon",
            {
                "BuildingID": "JN-LX-QFS-01",
                "NumberOfStoreys": 3,
                "OccupancyType": "办公",
                "YearOfConstruction": "2026",
                "FireProtectionClass": "二级 (地下一级)",
                "ConstructionMethod": "现浇钢筋混凝土框架",
                "GrossPlannedArea": round(2 * LENGTH * YD + LENGTH * YE, 2),
            },
        )
        for name, elevation in LEVELS.items():
            storey = self.entity(
                "IfcBuildingStorey",
                f"storey/{name}",
                name,
                LongName=STOREY_NAMES[name],
                CompositionType="ELEMENT",
                Elevation=elevation,
            )
            self.api("aggregate", "assign_object", products=[storey], relating_object=building)
            self.place(storey, _matrix(0, 0, elevation))
            self.pset(
                storey,
                "Pset_BuildingStoreyCommon",
                {
                    "AboveGround": self.f.create_entity("IfcLogical", elevation >= 0),
                    "EntranceLevel": name == "F1",
                },
            )
            self.storeys[name] = storey

    def _lonlat(self) -> tuple[float, float]:
        from cim.crs import to_lonlat

        lon, lat = to_lonlat(np.array([EASTINGS]), np.array([NORTHINGS]), CRS)
        return float(lon[0]), float(lat[0])

    def _address(self) -> Any:
        road, town, district, region, post = ADDRESS
        return self.f.create_entity(
            "IfcPostalAddress",
            Purpose="SITE",
            AddressLines=[f"{district}{road}东侧"],
            Town=town,
            Region=region,
            PostalCode=post,
            Country="中国",
        )

    # -- building elements ------------------------------------------------------------------------------
    def wall(
        self,
        key: str,
        storey: str,
        start: tuple[float, float],
        end: tuple[float, float],
        *,
        kind: str,
        thickness: float,
        top: float,
        bottom: float | None = None,
        fire: str,
        external: bool,
        load_bearing: bool,
        material: str,
        name: str,
        classify: bool = True,
    ) -> Any:
        """A straight wall on the axis ``start``→``end`` from ``bottom`` to ``top`` (storey-relative)."""
        (x0, y0), (x1, y1) = start, end
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        length = math.hypot(x1 - x0, y1 - y0)
        z0 = 0.0 if bottom is None else bottom
        axis = (x0, y0, LEVELS[storey] + z0, angle, thickness)
        if external:  # close the corners: run on by half a thickness at both ends
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            x0, y0, length = x0 - ux * thickness / 2, y0 - uy * thickness / 2, length + thickness
        rep = self.api(
            "geometry",
            "add_wall_representation",
            context=self.body,
            length=length,
            height=top - z0,
            thickness=thickness,
            offset=-thickness / 2,
        )
        predefined = {"wall_basement": "SOLIDWALL", "wall_external": "STANDARD"}.get(kind, "PARTITIONING")
        w = self.element(
            "IfcWall",
            f"wall/{key}",
            name,
            storey,
            _matrix(x0, y0, LEVELS[storey] + z0, angle),
            rep,
            predefined=predefined,
            tag=key.replace("/", "-"),
            material=material,
            kind=kind if classify else None,
        )
        self.pset(
            w,
            "Pset_WallCommon",
            {"Reference": name, "IsExternal": external, "LoadBearing": load_bearing, "FireRating": fire},
        )
        self.pset(
            w,
            "Qto_WallBaseQuantities",
            {"Length": round(length, 3), "Height": round(top - z0, 3), "Width": thickness},
        )
        self.walls[w.id()] = axis
        return w

    def opening_in(
        self, wall: Any, key: str, along: float, width: float, height: float, sill: float
    ) -> np.ndarray:
        """Cut a rectangular opening in ``wall`` at ``along`` (centre, m from its start); returns the filler's
        placement (at the opening's bottom-left corner on the wall's start face)."""
        x0, y0, z0, angle, t = self.walls[wall.id()]
        base = _matrix(x0, y0, z0, angle)
        local = _matrix(along - width / 2, 0.0, sill)
        opening = self.entity("IfcOpeningElement", f"opening/{key}", f"洞口 {key}", predefined_type="OPENING")
        rep = self.api(
            "geometry",
            "add_wall_representation",
            context=self.body,
            length=width,
            height=height,
            thickness=t + 0.2,
            offset=-(t + 0.2) / 2,
        )
        self.place(opening, base @ local)
        self.represent(opening, rep)
        self.api("feature", "add_feature", feature=opening, element=wall)
        self.openings[key] = opening
        return base @ _matrix(along - width / 2, -t / 2, sill)

    def door(
        self,
        key: str,
        storey: str,
        wall: Any,
        along: float,
        *,
        width: float,
        height: float = 2.1,
        fire: str | None,
        external: bool = False,
        double: bool = False,
        material: str = "木门",
        name: str,
    ) -> Any:
        matrix = self.opening_in(wall, key, along, width, height, 0.0)
        t = self.walls[wall.id()][4]
        rep = self.api(
            "geometry",
            "add_door_representation",
            context=self.body,
            overall_height=height,
            overall_width=width,
            operation_type="DOUBLE_DOOR_DOUBLE_SWING" if double else "SINGLE_SWING_LEFT",
            lining_properties={"LiningDepth": t, "LiningThickness": 0.05},
        )
        is_fire = material == "钢质防火门"
        d = self.element(
            "IfcDoor",
            f"door/{key}",
            name,
            storey,
            matrix,
            rep,
            predefined="DOOR",
            tag=key.replace("/", "-"),
            material=material,
            kind="fire_door" if is_fire else "door",
        )
        d.OverallHeight, d.OverallWidth = height, width
        d.OperationType = "DOUBLE_DOOR_DOUBLE_SWING" if double else "SINGLE_SWING_LEFT"
        props: dict[str, Any] = {
            "Reference": name.split()[0],
            "IsExternal": external,
            "HandicapAccessible": width >= 0.9,
        }
        if fire is not None:
            props["FireRating"] = fire
        if is_fire:
            props["SelfClosing"] = True
        self.pset(d, "Pset_DoorCommon", props)
        self.api("feature", "add_filling", opening=self.openings[key], element=d)
        return d

    def window(
        self,
        key: str,
        storey: str,
        wall: Any,
        along: float,
        *,
        width: float = 1.8,
        height: float = 1.8,
        sill: float = 0.9,
    ) -> Any:
        matrix = self.opening_in(wall, key, along, width, height, sill)
        t = self.walls[wall.id()][4]
        rep = self.api(
            "geometry",
            "add_window_representation",
            context=self.body,
            overall_height=height,
            overall_width=width,
            partition_type="DOUBLE_PANEL_VERTICAL",
            lining_properties={"LiningDepth": 0.08, "LiningOffset": (t - 0.08) / 2},
            panel_properties=[{"FrameDepth": 0.06, "FrameThickness": 0.05}] * 2,
        )
        code = f"C{round(width * 10):02d}{round(height * 10):02d}"
        w = self.element(
            "IfcWindow",
            f"window/{key}",
            f"{code} 断桥铝合金窗",
            storey,
            matrix,
            rep,
            predefined="WINDOW",
            tag=key.replace("/", "-"),
            material="铝合金 断桥",
            kind="window",
        )
        w.OverallHeight, w.OverallWidth = height, width
        w.PartitioningType = "DOUBLE_PANEL_VERTICAL"
        self.pset(
            w, "Pset_WindowCommon", {"Reference": code, "IsExternal": True, "ThermalTransmittance": 2.2}
        )
        self.api("feature", "add_filling", opening=self.openings[key], element=w)
        return w

    def slab_like(
        self,
        ifc_class: str,
        key: str,
        name: str,
        storey: str,
        outline: Sequence[tuple[float, float]],
        top: float,
        depth: float,
        *,
        predefined: str,
        material: str | None,
        kind: str | None,
    ) -> Any:
        """An extruded plan polygon whose top is at ``top`` (project height); slabs, beams, footings."""
        rep = self.api(
            "geometry",
            "add_slab_representation",
            context=self.body,
            depth=depth,
            polyline=[(round(x, 6), round(y, 6)) for x, y in outline],
        )
        return self.element(
            ifc_class,
            key,
            name,
            storey,
            _matrix(0, 0, top - depth),
            rep,
            predefined=predefined,
            tag=key.split("/", 1)[1].replace("/", "-"),
            material=material,
            kind=kind,
        )

    def column(self, storey: str, x: float, y: float, axis: str, height: float, fire: str) -> Any:
        profile = self.f.create_entity(
            "IfcRectangleProfileDef", ProfileType="AREA", ProfileName="KZ 500x500", XDim=COLUMN, YDim=COLUMN
        )
        rep = self.api(
            "geometry", "add_profile_representation", context=self.body, profile=profile, depth=height
        )
        c = self.element(
            "IfcColumn",
            f"column/{storey}/{axis}",
            f"KZ1 框架柱 500×500 {axis}",
            storey,
            _matrix(x, y, LEVELS[storey]),
            rep,
            predefined="COLUMN",
            tag=f"KZ-{storey}-{axis}",
            material="C35",
            kind="column",
        )
        self.pset(
            c,
            "Pset_ColumnCommon",
            {"Reference": "KZ1", "IsExternal": False, "LoadBearing": True, "FireRating": fire},
        )
        return c

    def space(
        self, storey: str, number: str, long_name: str, outline: Sequence[tuple[float, float]], height: float
    ) -> Any:
        rep = self.api(
            "geometry",
            "add_slab_representation",
            context=self.body,
            depth=height,
            polyline=[(round(x, 6), round(y, 6)) for x, y in outline],
        )
        s = self.entity(
            "IfcSpace",
            f"space/{number}",
            number,
            LongName=long_name,
            CompositionType="ELEMENT",
            predefined_type="INTERNAL",
        )
        self.api("aggregate", "assign_object", products=[s], relating_object=self.storeys[storey])
        self.place(s, _matrix(0, 0, LEVELS[storey]))
        self.represent(s, rep)
        xs, ys = np.array(outline).T
        area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
        self.pset(
            s,
            "Pset_SpaceCommon",
            {
                "Reference": number,
                "IsExternal": False,
                "PubliclyAccessible": long_name in ("门厅", "走廊", "楼梯间"),
            },
        )
        self.pset(s, "Qto_SpaceBaseQuantities", {"NetFloorArea": round(area, 2), "Height": round(height, 3)})
        return s

    def stair(self, storey: str, key: str, height: float) -> None:
        """A dog-leg stair (two flights and a half landing) in the stair hall, axes 1–2 / C–D."""
        risers = round(height / 0.15) // 2 * 2
        rise, tread, width = height / risers, 0.27, 1.5
        n = risers // 2
        x_start = 1.5
        run = (n - 1) * tread
        y1, y2 = YC + 0.15, YC + 0.15 + width + 0.2  # flight bands: up along +X, back along -X
        z0 = LEVELS[storey]
        f = self.f

        def flight(x_origin: float, direction: int, z_base: float, y_band: float) -> Any:
            # n - 1 risers and treads; the landing's (or the floor's) edge is the last riser
            pts = [(0.0, 0.0)]
            for i in range(n - 1):
                pts += [(i * tread, (i + 1) * rise), ((i + 1) * tread, (i + 1) * rise)]
            pts += [(run, (n - 1) * rise - 0.18), (0.0, -0.18)]
            pts = [(round(x, 6), round(z, 6)) for x, z in pts]
            polyline = f.create_entity(
                "IfcIndexedPolyCurve",
                Points=f.create_entity("IfcCartesianPointList2D", CoordList=pts + [pts[0]]),
                SelfIntersect=False,
            )
            profile = f.create_entity("IfcArbitraryClosedProfileDef", ProfileType="AREA", OuterCurve=polyline)
            # profile (run, rise) in the local XZ plane: local y = Axis × RefDirection must point up
            y_at = y_band + width if direction > 0 else y_band
            position = f.create_entity(
                "IfcAxis2Placement3D",
                Location=f.create_entity("IfcCartesianPoint", Coordinates=(x_origin, y_at, z_base)),
                Axis=f.create_entity("IfcDirection", DirectionRatios=(0.0, -float(direction), 0.0)),
                RefDirection=f.create_entity("IfcDirection", DirectionRatios=(float(direction), 0.0, 0.0)),
            )
            return f.create_entity(
                "IfcExtrudedAreaSolid",
                SweptArea=profile,
                Position=position,
                ExtrudedDirection=f.create_entity("IfcDirection", DirectionRatios=(0.0, 0.0, 1.0)),
                Depth=width,
            )

        landing_x = x_start + run
        items = [flight(x_start, 1, 0.0, y1)]
        landing_profile = f.create_entity(
            "IfcRectangleProfileDef",
            ProfileType="AREA",
            XDim=1.6,
            YDim=2 * width + 0.2,
            Position=f.create_entity(
                "IfcAxis2Placement2D",
                Location=f.create_entity(
                    "IfcCartesianPoint", Coordinates=(landing_x + 0.8, (y1 + y2 + width) / 2)
                ),
            ),
        )
        items.append(
            f.create_entity(
                "IfcExtrudedAreaSolid",
                SweptArea=landing_profile,
                Position=f.create_entity(
                    "IfcAxis2Placement3D",
                    Location=f.create_entity("IfcCartesianPoint", Coordinates=(0.0, 0.0, n * rise - 0.18)),
                ),
                ExtrudedDirection=f.create_entity("IfcDirection", DirectionRatios=(0.0, 0.0, 1.0)),
                Depth=0.18,
            )
        )
        # the second flight climbs back towards -X: its profile runs along -X from the landing edge
        items.append(flight(landing_x, -1, n * rise, y2))
        rep = f.create_entity(
            "IfcShapeRepresentation",
            ContextOfItems=self.body,
            RepresentationIdentifier="Body",
            RepresentationType="SweptSolid",
            Items=items,
        )
        s = self.element(
            "IfcStair",
            f"stair/{key}",
            f"LT1 双跑楼梯 {storey}",
            storey,
            _matrix(0, 0, z0),
            rep,
            predefined="HALF_TURN_STAIR",
            tag=f"LT1-{storey}",
            material="C30",
            kind="stair",
        )
        self.pset(
            s,
            "Pset_StairCommon",
            {
                "Reference": "LT1",
                "NumberOfRiser": risers,
                "NumberOfTreads": risers - 2,
                "RiserHeight": round(rise, 4),
                "TreadLength": tread,
                "FireExit": True,
                "IsExternal": False,
                "FireRating": "1.00h",
            },
        )
        path = [(x_start, YC + 0.15, 0.9 + rise), (landing_x, YC + 0.15, 0.9 + n * rise)]
        rail = self.api(
            "geometry",
            "add_railing_representation",
            context=self.body,
            railing_path=path,
            height=0.9,
            terminal_type="TO_WALL",
        )
        r = self.element(
            "IfcRailing",
            f"railing/{key}",
            f"靠墙扶手 {storey}",
            storey,
            _matrix(0, 0, z0),
            rail,
            predefined="HANDRAIL",
            tag=f"FS-{storey}",
            material="钢 Q235",
            kind="railing",
        )
        self.pset(r, "Pset_RailingCommon", {"Reference": "FS1", "Height": 0.9, "IsExternal": False})

    # -- finishing --------------------------------------------------------------------------------------
    def associate(self) -> None:
        """One material and one classification relationship per material/code, products in creation order."""
        for name in MATERIALS:
            products = self.by_material.get(name)
            if not products:
                continue
            mat = self.api("material", "add_material", name=name, category=MATERIALS[name])
            self.api("material", "assign_material", products=products, type="IfcMaterial", material=mat)
        system = self.api("classification", "add_classification", classification=CLASSIFICATION)
        system.Source, system.Edition = "住房和城乡建设部 MOHURD", "2017"
        system.Description = "建筑信息模型分类和编码标准 (codes in this sample are illustrative)"
        for kind, (code, name) in CODES.items():
            products = self.by_code.get(kind)
            if products:
                self.api(
                    "classification",
                    "add_reference",
                    products=products,
                    identification=code,
                    name=name,
                    classification=system,
                )

    def finish(self) -> None:
        """Give every IfcRoot its GlobalId from its key (objects) or from what it relates (the rest)."""
        f = self.f
        seen: dict[str, int] = {}
        for e in sorted(f.by_type("IfcRoot"), key=lambda e: e.id()):
            key = self.keys.get(e.id()) or self._derived_key(e)
            gid = global_id(key)
            if gid in seen:
                raise RuntimeError(f"two objects share key {key!r}: #{seen[gid]} and #{e.id()}")
            seen[gid] = e.id()
            e.GlobalId = gid
        f.header.file_name.time_stamp = TIME_STAMP
        f.header.file_name.author = ("cim-service",)
        f.header.file_name.organization = ("cim-service sample data",)
        f.header.file_name.originating_system = "cim-service converters.samples.building"
        f.header.file_name.authorization = "generated sample, Apache-2.0"

    def _key(self, e: Any) -> str:
        key = self.keys.get(e.id())
        if key is None:
            raise RuntimeError(f"#{e.id()} {e.is_a()} has no key")
        return key

    def _derived_key(self, e: Any) -> str:
        cls = e.is_a()
        if e.is_a("IfcPropertySetDefinition"):
            owner = e.DefinesOccurrence[0].RelatedObjects[0]
            return f"pset/{e.Name}/{self._key(owner)}"
        if cls == "IfcRelDefinesByProperties":
            return f"rel/{self._derived_key(e.RelatingPropertyDefinition)}"
        if cls == "IfcRelAggregates":
            return f"rel/aggregates/{self._key(e.RelatingObject)}"
        if cls == "IfcRelContainedInSpatialStructure":
            return f"rel/contains/{self._key(e.RelatingStructure)}"
        if cls == "IfcRelAssociatesMaterial":
            return f"rel/material/{e.RelatingMaterial.Name}"
        if cls == "IfcRelAssociatesClassification":
            ref = e.RelatingClassification  # a reference, or the system itself (associated with the project)
            return f"rel/classification/{ref.Identification if ref.is_a('IfcClassificationReference') else ref.Name}"
        if cls == "IfcRelVoidsElement":
            return f"rel/voids/{self._key(e.RelatedOpeningElement)}"
        if cls == "IfcRelFillsElement":
            return f"rel/fills/{self._key(e.RelatedBuildingElement)}"
        raise RuntimeError(f"no GlobalId rule for #{e.id()} {cls}")


def _build(b: _Builder) -> None:
    """The whole building; ``b.v2`` switches the handover changes."""
    b.project()
    _basement(b)
    for storey in ("F1", "F2"):
        _storey(b, storey)
    _structure(b)
    _roof(b)
    b.associate()
    b.finish()


def _basement(b: _Builder) -> None:
    top = -SLAB_T["F1"] - LEVELS["B1"]  # walls up to the underside of the F1 slab (storey-relative)
    forecourt = FORECOURT_TOP - FORECOURT_T - LEVELS["B1"]
    common = {
        "kind": "wall_basement",
        "thickness": T_BASEMENT,
        "fire": "3.00h",
        "external": True,
        "load_bearing": True,
        "material": "C35P6",
        "name": "地下室外墙 Q1 C35P6 350",
    }
    b.wall("B1/ext-A", "B1", (0, YA), (LENGTH, YA), top=top, **common)
    b.wall("B1/ext-6", "B1", (LENGTH, YA), (LENGTH, YE), top=top, **common)
    b.wall("B1/ext-E", "B1", (LENGTH, YE), (0, YE), top=forecourt, **common)
    b.wall("B1/ext-1", "B1", (0, YE), (0, YA), top=top, **common)
    inner = {
        "kind": "wall_inner",
        "thickness": T_INNER,
        "top": top,
        "external": False,
        "load_bearing": False,
        "material": "C30",
        "name": "防火隔墙 C30 200",
    }
    corridor = b.wall("B1/C", "B1", (0, YC), (LENGTH, YC), fire="2.00h", **inner)
    stair_x = b.wall("B1/stair-2", "B1", (XS[1], YC), (XS[1], YD), fire="2.00h", **inner)
    b.wall("B1/stair-D", "B1", (XS[1], YD), (0, YD), fire="2.00h", **inner)
    b.wall("B1/3-AC", "B1", (XS[2], YA), (XS[2], YC), fire="2.00h", **inner)
    b.wall("B1/4-AC", "B1", (XS[3], YA), (XS[3], YC), fire="2.00h", **inner)
    fire_door = {"width": 1.0, "material": "钢质防火门"}
    b.door(
        "B1/B101", "B1", stair_x, (YD - YC) / 2, fire="甲级", name="FM甲1021 钢质防火门 (楼梯间)", **fire_door
    )
    b.door("B1/B102", "B1", corridor, 10.8, fire="甲级", name="FM甲1021 钢质防火门 (水泵房)", **fire_door)
    b.door("B1/B103", "B1", corridor, 18.0, fire="甲级", name="FM甲1021 钢质防火门 (配电室)", **fire_door)
    b.door("B1/B104", "B1", corridor, 28.8, fire="甲级", name="FM甲1021 钢质防火门 (储藏室)", **fire_door)
    h = -LEVELS["B1"] - SLAB_T["F1"]
    b.space("B1", "B101", "楼梯间", _rect(0, YC, XS[1], YD), h)
    b.space("B1", "B102", "水泵房", _rect(0, YA, XS[2], YC), h)
    b.space("B1", "B103", "配电室", _rect(XS[2], YA, XS[3], YC), h)
    b.space("B1", "B104", "储藏室", _rect(XS[3], YA, LENGTH, YC), h)
    b.space("B1", "B105", "库房", [(XS[1], YC), (LENGTH, YC), (LENGTH, YE), (0, YE), (0, YD), (XS[1], YD)], h)
    b.stair("B1", "B1", -LEVELS["B1"])


def _storey(b: _Builder, s: str) -> None:
    level_above = LEVELS["F2"] if s == "F1" else ROOF
    thickness_above = SLAB_T["F2"] if s == "F1" else SLAB_T["roof"]
    top = level_above - thickness_above - LEVELS[s]
    ext = {
        "kind": "wall_external",
        "thickness": T_EXTERNAL,
        "top": top,
        "fire": "1.00h",
        "external": True,
        "load_bearing": False,
        "material": "加气混凝土砌块 B06",
        "name": "外墙 加气混凝土砌块 250",
    }
    wall_a = b.wall(f"{s}/ext-A", s, (0, YA), (LENGTH, YA), **ext)
    wall_6 = b.wall(f"{s}/ext-6", s, (LENGTH, YA), (LENGTH, YD), **ext)
    wall_d = b.wall(f"{s}/ext-D", s, (LENGTH, YD), (0, YD), **ext)
    b.wall(f"{s}/ext-1", s, (0, YD), (0, YA), **ext)
    part = {
        "kind": "wall_inner",
        "thickness": T_PARTITION,
        "top": top,
        "external": False,
        "load_bearing": False,
        "material": "加气混凝土砌块 B06",
    }
    corridor = {"fire": "1.00h", "name": "疏散走道隔墙 加气混凝土砌块 200", **part}
    wall_b = b.wall(f"{s}/B", s, (0, YB), (LENGTH, YB), **corridor)
    wall_c = b.wall(f"{s}/C", s, (0, YC), (LENGTH, YC), **corridor)
    b.wall(
        f"{s}/stair-2", s, (XS[1], YC), (XS[1], YD), fire="2.00h", name="楼梯间墙 加气混凝土砌块 200", **part
    )
    room = {"fire": "0.50h", "name": "房间隔墙 加气混凝土砌块 200", **part}
    b.wall(f"{s}/3-AB", s, (XS[2], YA), (XS[2], YB), **room)
    b.wall(f"{s}/5-AB", s, (XS[4], YA), (XS[4], YB), **room)
    h = level_above - thickness_above - LEVELS[s]
    door = {"width": 1.0, "fire": "无 (0.00h)", "name": "M1021 木门"}
    stair_door_fire = "乙级" if (s == "F1" or b.v2) else None  # v1 defect: the F2 stair door lacks FireRating
    b.door(
        f"{s}/stair",
        s,
        wall_c,
        3.6,
        width=1.0,
        fire=stair_door_fire,
        material="钢质防火门",
        name="FM乙1021 钢质防火门 (楼梯间)",
    )
    if s == "F1":
        b.wall("F1/3-CD", "F1", (XS[2], YC), (XS[2], YD), **room)
        # v1 defect: the partition between the lobby and office 104 has no classification
        b.wall("F1/4-CD", "F1", (XS[3], YC), (XS[3], YD), classify=b.v2, **room)
        b.door(
            "F1/entrance",
            "F1",
            wall_d,
            LENGTH - 18.0,
            width=1.8,
            height=2.4,
            fire="无 (0.00h)",
            external=True,
            double=True,
            material="玻璃门",
            name="M1824 双扇玻璃门 (主入口)",
        )
        b.door("F1/102", "F1", wall_c, 10.8, **door)
        b.door("F1/104", "F1", wall_c, 28.8, **door)
        b.door("F1/106", "F1", wall_b, 10.8, **door)
        b.door("F1/107", "F1", wall_b, 18.0, **door)
        b.door("F1/108", "F1", wall_b, 32.4, **door)
        if b.v2:  # handover: an exit door at the north end of the corridor
            b.door(
                "F1/exit-6",
                "F1",
                wall_6,
                (YB + YC) / 2,
                width=1.2,
                fire="乙级",
                external=True,
                material="钢质防火门",
                name="FM乙1221 钢质防火门 (走廊尽端疏散门)",
            )
        rooms = [
            ("101", "楼梯间", _rect(0, YC, XS[1], YD)),
            ("102", "办公室", _rect(XS[1], YC, XS[2], YD)),
            ("103", "门厅", _rect(XS[2], YC, XS[3], YD)),
            ("104", "办公室", _rect(XS[3], YC, LENGTH, YD)),
            ("105", "走廊", _rect(0, YB, LENGTH, YC)),
            ("106", "会议室", _rect(0, YA, XS[2], YB)),
            ("107", "开敞办公室", _rect(XS[2], YA, XS[4], YB)),
            ("108", "卫生间", _rect(XS[4], YA, LENGTH, YB)),
        ]
    else:
        x = XS[3] + (MOVED_BY if b.v2 else 0.0)  # v2: the partition between 202 and 203 moved east
        b.wall("F2/4-CD", "F2", (x, YC), (x, YD), **room)
        b.door("F2/202", "F2", wall_c, 14.4, **door)
        b.door("F2/203", "F2", wall_c, 28.8, **door)
        b.door("F2/205", "F2", wall_b, 10.8, **door)
        b.door("F2/206", "F2", wall_b, 21.6, **door)
        b.door("F2/207", "F2", wall_b, 32.4, **door)
        rooms = [
            ("201", "楼梯间", _rect(0, YC, XS[1], YD)),
            ("202", "办公室", _rect(XS[1], YC, x, YD)),
            ("203", "办公室", _rect(x, YC, LENGTH, YD)),
            ("204", "走廊", _rect(0, YB, LENGTH, YC)),
            ("205", "会议室", _rect(0, YA, XS[2], YB)),
            ("206", "开敞办公室", _rect(XS[2], YA, XS[4], YB)),
            ("207", "卫生间", _rect(XS[4], YA, LENGTH, YB)),
        ]
    for i, xc in enumerate((3.6, 10.8, 18.0, 25.2, 32.4)):
        if not (s == "F2" and xc == 32.4 and b.v2):  # v2: the F2 toilet window is removed
            b.window(f"{s}/A{i + 1}", s, wall_a, xc)
    street = (10.8, 25.2, 32.4) if s == "F1" else (3.6, 10.8, 18.0, 25.2, 32.4)
    for i, xc in enumerate(street):
        b.window(f"{s}/D{i + 1}", s, wall_d, LENGTH - xc)
    for number, name, outline in rooms:
        b.space(s, number, name, outline, h)
    if s == "F1":
        b.stair("F1", "F1", LEVELS["F2"] - LEVELS["F1"])


def _structure(b: _Builder) -> None:
    """Slabs, columns, beams and footings."""
    slab = {"predefined": "FLOOR", "kind": "slab"}
    raft = b.slab_like(
        "IfcSlab",
        "slab/B1-raft",
        "基础底板 C35P6 500",
        "B1",
        _rect(0, YA, LENGTH, YE),
        LEVELS["B1"],
        SLAB_T["B1"],
        predefined="BASESLAB",
        material="C35P6",
        kind="raft",
    )
    well = _rect(1.4, YC + 0.1, 1.5 + 13 * 0.27 + 1.7, YC + 3.4)  # stair well, cut from the floors above
    for s, level in (("F1", 0.0), ("F2", LEVELS["F2"])):
        label = "地下室顶板 C35 250" if s == "F1" else "楼板 C35 120"
        floor = b.slab_like(
            "IfcSlab",
            f"slab/{s}",
            label,
            s,
            _rect(0, YA, LENGTH, YD),
            level,
            SLAB_T[s],
            material="C35",
            **slab,
        )
        _slab_opening(b, floor, f"well/{s}", well, level, SLAB_T[s])
        b.pset(
            floor,
            "Pset_SlabCommon",
            {
                "Reference": label.split()[0],
                "IsExternal": False,
                "LoadBearing": True,
                "FireRating": "1.50h" if s == "F1" else "1.00h",
            },
        )
    court = b.slab_like(
        "IfcSlab",
        "slab/B1-forecourt",
        "地下室顶板 (入口广场下) C35 300",
        "B1",
        _rect(0, YD, LENGTH, YE),
        FORECOURT_TOP,
        FORECOURT_T,
        material="C35",
        **slab,
    )
    b.pset(
        raft,
        "Pset_SlabCommon",
        {"Reference": "基础底板", "IsExternal": True, "LoadBearing": True, "FireRating": "1.50h"},
    )
    b.pset(
        court,
        "Pset_SlabCommon",
        {"Reference": "地下室顶板", "IsExternal": True, "LoadBearing": True, "FireRating": "1.50h"},
    )
    axes_y = {"A": YA, "B": YB, "C": YC, "D": YD}
    for s in ("B1", "F1", "F2"):
        height = (LEVELS["F1"] if s == "B1" else LEVELS["F2"] if s == "F1" else ROOF) - LEVELS[s]
        for i, x in enumerate(XS):
            for a, y in axes_y.items():
                b.column(s, x, y, f"{a}{i + 1}", height, "3.00h" if s == "B1" else "2.50h")
    for s, level in (("B1", 0.0), ("F1", LEVELS["F2"]), ("F2", ROOF)):
        for a, y in axes_y.items():
            _beam(b, s, f"{a}", _rect(0, y - BEAM_W / 2, LENGTH, y + BEAM_W / 2), level)
        for i, x in enumerate(XS):
            _beam(b, s, f"{i + 1}", _rect(x - BEAM_W / 2, YA, x + BEAM_W / 2, YD), level)
    raft_bottom = LEVELS["B1"] - SLAB_T["B1"]
    pad = 1.2
    for i, x in enumerate(XS[1:-1], start=1):  # axes 1 and 6 stand on the strip footings
        for a, y in (("B", YB), ("C", YC), ("D", YD)):
            _footing(
                b,
                f"pad-{a}{i + 1}",
                f"DJ1 独立基础 2400×2400 {a}{i + 1}",
                _rect(x - pad, y - pad, x + pad, y + pad),
                raft_bottom,
                "PAD_FOOTING",
                "pad_footing",
            )
    w = 0.6  # strip footings 1.2 m wide under the basement walls
    hb = T_BASEMENT / 2
    _footing(
        b,
        "strip-A",
        "TJ1 条形基础 1200 A轴",
        _rect(-hb, YA - w, LENGTH + hb, YA + w),
        raft_bottom,
        "STRIP_FOOTING",
        "strip_footing",
    )
    _footing(
        b,
        "strip-1",
        "TJ1 条形基础 1200 1轴",
        _rect(-w, YA - hb, w, YE + hb),
        raft_bottom,
        "STRIP_FOOTING",
        "strip_footing",
    )
    _footing(
        b,
        "strip-6",
        "TJ1 条形基础 1200 6轴",
        _rect(LENGTH - w, YA - hb, LENGTH + w, YE + hb),
        raft_bottom,
        "STRIP_FOOTING",
        "strip_footing",
    )
    if b.v2:  # handover: eccentric strip footing flush with the outer face (GB 50289 clearance to the drain)
        outline, name = _rect(-hb, YE + hb - 1.35, LENGTH + hb, YE + hb), "TJ2 偏心条形基础 1350 E轴"
    else:
        outline, name = _rect(-hb, YE - 0.7, LENGTH + hb, YE + 0.7), "TJ1 条形基础 1400 E轴"
    _footing(b, "strip-E", name, outline, raft_bottom, "STRIP_FOOTING", "strip_footing")


def _slab_opening(
    b: _Builder, slab: Any, key: str, outline: list[tuple[float, float]], top: float, depth: float
) -> None:
    opening = b.entity("IfcOpeningElement", f"opening/{key}", f"楼梯洞口 {key}", predefined_type="OPENING")
    rep = b.api(
        "geometry",
        "add_slab_representation",
        context=b.body,
        depth=depth + 0.2,
        polyline=[(round(x, 6), round(y, 6)) for x, y in outline],
    )
    b.place(opening, _matrix(0, 0, top - depth - 0.1))
    b.represent(opening, rep)
    b.api("feature", "add_feature", feature=opening, element=slab)


def _beam(b: _Builder, storey: str, axis: str, outline: list[tuple[float, float]], level: float) -> None:
    beam = b.slab_like(
        "IfcBeam",
        f"beam/{storey}/{axis}",
        f"KL 框架梁 300×600 {axis}轴",
        storey,
        outline,
        level,
        BEAM_D,
        predefined="BEAM",
        material="C35",
        kind="beam",
    )
    b.pset(
        beam,
        "Pset_BeamCommon",
        {"Reference": "KL", "IsExternal": False, "LoadBearing": True, "FireRating": "1.50h", "Span": 7.2},
    )


def _footing(
    b: _Builder,
    key: str,
    name: str,
    outline: list[tuple[float, float]],
    top: float,
    predefined: str,
    kind: str,
) -> None:
    footing = b.slab_like(
        "IfcFooting",
        f"footing/{key}",
        name,
        "B1",
        outline,
        top,
        top - FOOTING_BOTTOM,
        predefined=predefined,
        material="C35P6",
        kind=kind,
    )
    b.pset(footing, "Pset_FootingCommon", {"Reference": name.split()[0], "LoadBearing": True})


def _roof(b: _Builder) -> None:
    roof = b.slab_like(
        "IfcRoof",
        "roof/main",
        "平屋面 (上人屋面) C35 150",
        "F2",
        _rect(-0.3, YA - 0.3, LENGTH + 0.3, YD + 0.3),
        ROOF,
        SLAB_T["roof"],
        predefined="FLAT_ROOF",
        material="C35",
        kind="roof",
    )
    b.pset(roof, "Pset_RoofCommon", {"Reference": "WM1", "IsExternal": True, "FireRating": "1.00h"})


def _canonical_order(f: Any) -> None:
    """Sort every relationship's entity lists by step id: ifcopenshell.api keeps some of them in sets, whose
    order depends on the process's memory layout, and the committed files must regenerate byte for byte."""
    for rel in f.by_type("IfcRelationship"):
        info = rel.get_info(recursive=False)
        for name, value in info.items():
            if isinstance(value, tuple) and len(value) > 1 and all(hasattr(v, "id") and callable(v.id) for v in value):
                setattr(rel, name, sorted(value, key=lambda v: v.id()))


def generate_building(path: Path | str, *, variant: str = "v1") -> BuildingSummary:
    """Write the office building as IFC4 to ``path``; ``variant`` ``v1`` (drawing review) or ``v2`` (handover)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    b = _Builder(variant)
    _build(b)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _canonical_order(b.f)
    b.f.write(str(path))
    counts: dict[str, int] = {}
    for e in b.f.by_type("IfcElement"):
        if not e.is_a("IfcFeatureElement"):
            counts[e.is_a()] = counts.get(e.is_a(), 0) + 1
    counts["IfcSpace"] = len(b.f.by_type("IfcSpace"))
    return BuildingSummary(path=path, variant=variant, elements=dict(sorted(counts.items())))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m converters.samples.building OUT_DIR`` writes office_v1.ifc and office_v2.ifc."""
    parser = argparse.ArgumentParser(description="Write the sample Jinan office building (IFC4, EPSG:4548).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--variant", choices=(*VARIANTS, "both"), default="both")
    args = parser.parse_args(argv)
    for variant in VARIANTS if args.variant == "both" else (args.variant,):
        summary = generate_building(args.out_dir / f"office_{variant}.ifc", variant=variant)
        print(f"{summary.path}: {sum(summary.elements.values())} elements {summary.elements}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
