"""Hand-made BIM store rows for tiler tests: datasets, bim_models and bim_elements with numpy box meshes.

Meshes follow :mod:`cim.bim.schema`: float32 (x, y, z) metres along the storage CRS axes relative to the
model origin, uint32 triangles; element bounds and footprints are absolute storage coordinates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from cim.store import DuckDBStore

#: A Jinan position in EPSG:4548 (CGCS2000 3-degree GK, CM 117°E), near the sample pipe district.
JINAN_ORIGIN = (502_100.0, 4_058_100.0, 72.5)

# the 12 outward (counter-clockwise seen from outside) triangles of a box over its 8 corners
_BOX_TRIANGLES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
     [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]],
    dtype=np.uint32,
)


def box_mesh(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box (model-relative corners): (8, 3) float32 positions, (12, 3) uint32 triangles."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    corners = np.array(
        [[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
         [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]],
        dtype=np.float32,
    )
    return corners, _BOX_TRIANGLES.copy()


@dataclass
class Element:
    """One bim_elements row before insertion; ``positions`` are model-relative float32 metres."""

    global_id: str
    ifc_class: str
    positions: np.ndarray
    indices: np.ndarray
    name: str | None = None
    predefined_type: str | None = None
    storey_name: str | None = None
    materials: list[str] | None = None
    psets: dict[str, Any] | None = None
    color: str | None = None

    @classmethod
    def box(cls, global_id: str, ifc_class: str, lo: tuple[float, float, float],
            hi: tuple[float, float, float], **kw: Any) -> Element:
        """An element drawn as one box."""
        positions, indices = box_mesh(lo, hi)
        return cls(global_id, ifc_class, positions, indices, **kw)


@dataclass
class Model:
    """One model version of a BIM dataset."""

    dataset_id: str
    origin: tuple[float, float, float]
    elements: list[Element] = field(default_factory=list)


def _gid(prefix: str, n: int) -> str:
    """A 22-character IFC-like GlobalId."""
    return f"{prefix}{n:04d}".ljust(22, "x")[:22]


def house(dataset_id: str = "bim_house", origin: tuple[float, float, float] = JINAN_ORIGIN,
          *, storeys: int = 2, width: float = 20.0, depth: float = 12.0) -> Model:
    """A box-shaped building: four 0.24 m walls and a slab per storey, a roof, a window, a door, a space."""
    t, h = 0.24, 3.0
    elements: list[Element] = []
    common_wall = {"Pset_WallCommon": {"IsExternal": True, "LoadBearing": True, "FireRating": "REI90"},
                   "Custom": {"Note": "x"}}
    for s in range(storeys):
        z0 = s * h
        storey = f"{s + 1}F"
        walls = [((0, 0, z0), (width, t, z0 + h)), ((0, depth - t, z0), (width, depth, z0 + h)),
                 ((0, t, z0), (t, depth - t, z0 + h)), ((width - t, t, z0), (width, depth - t, z0 + h))]
        for i, (lo, hi) in enumerate(walls):
            elements.append(Element.box(
                _gid(f"W{s}", i), "IfcWall", lo, hi, name=f"Wall {s}-{i}", storey_name=storey,
                predefined_type="SOLIDWALL", materials=["Concrete C30", "Plaster"], psets=common_wall))
        elements.append(Element.box(
            _gid(f"S{s}", 0), "IfcSlab", (0, 0, z0 - 0.2), (width, depth, z0), name=f"Floor {storey}",
            storey_name=storey, predefined_type="FLOOR", materials=["Concrete C30"],
            psets={"Pset_SlabCommon": {"IsExternal": False, "LoadBearing": True}}))
        elements.append(Element.box(
            _gid(f"P{s}", 0), "IfcSpace", (t, t, z0), (width - t, depth - t, z0 + h), name=f"Room {storey}",
            storey_name=storey))
    top = storeys * h
    elements.append(Element.box(_gid("R", 0), "IfcSlab", (0, 0, top), (width, depth, top + 0.3), name="Roof",
                                predefined_type="ROOF", storey_name=f"{storeys}F", materials=["Tiles"]))
    elements.append(Element.box(
        _gid("N", 0), "IfcWindow", (4.0, -0.01, 1.0), (5.5, t + 0.01, 2.4), name="Window W1",
        storey_name="1F", color="#88BBEE66",
        psets={"Pset_WindowCommon": {"IsExternal": "TRUE", "FireRating": ""}}))
    elements.append(Element.box(_gid("D", 0), "IfcDoor", (8.0, -0.01, 0.0), (9.0, t + 0.01, 2.1),
                                name="Door D1", storey_name="1F", color=None))
    return Model(dataset_id, origin, elements)


def insert_model(store: DuckDBStore, model: Model, *, version: int | None = None,
                 title: str | None = None) -> int:
    """Insert ``model`` as a new version of its dataset (creating the dataset); return the version."""
    now = datetime(2025, 5, 1, 12, 0, 0)
    ox, oy, oh = model.origin
    with store.transaction() as con:
        row = con.execute("SELECT current_version FROM datasets WHERE id = ?", [model.dataset_id]).fetchone()
        version = version or ((row[0] if row else 0) + 1)
        if row:
            con.execute("UPDATE datasets SET current_version = ?, updated_at = ? WHERE id = ?",
                        [version, now, model.dataset_id])
        else:
            con.execute(
                """INSERT INTO datasets (id, title, kind, storage_crs, vertical_crs, grade, current_version,
                   created_at, updated_at) VALUES (?, ?, 'bim', 'EPSG:4548', 'EPSG:5737', '一般', ?, ?, ?)""",
                [model.dataset_id, title or model.dataset_id, version, now, now],
            )
        con.execute(
            """INSERT INTO bim_models (dataset_id, version, file_sha256, file_name, ifc_schema, length_unit_m,
               georef, origin_x, origin_y, origin_h, element_count, created_at)
               VALUES (?, ?, ?, ?, 'IFC4', 1.0, ?, ?, ?, ?, ?, ?)""",
            [model.dataset_id, version, f"sha-{model.dataset_id}-{version}", f"{model.dataset_id}.ifc",
             json.dumps({"method": "user"}), ox, oy, oh, len(model.elements), now],
        )
        for e in model.elements:
            pos = np.asarray(e.positions, dtype="<f4").reshape(-1, 3)
            lo, hi = pos.astype("f8").min(axis=0) + model.origin, pos.astype("f8").max(axis=0) + model.origin
            footprint = (f"POLYGON(({lo[0]} {lo[1]}, {hi[0]} {lo[1]}, {hi[0]} {hi[1]}, {lo[0]} {hi[1]}, "
                         f"{lo[0]} {lo[1]}))")
            con.execute(
                """INSERT INTO bim_elements (dataset_id, version, global_id, ifc_class, predefined_type, name,
                   storey_name, materials, psets, color, minx, miny, minz, maxx, maxy, maxz, footprint,
                   mesh_positions, mesh_indices)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ST_GeomFromText(?), ?, ?)""",
                [model.dataset_id, version, e.global_id, e.ifc_class, e.predefined_type, e.name,
                 e.storey_name, e.materials, json.dumps(e.psets) if e.psets is not None else None, e.color,
                 *map(float, lo), *map(float, hi), footprint,
                 pos.tobytes(), np.asarray(e.indices, dtype="<u4").tobytes()],
            )
    return version


def city(rows: int, cols: int, *, spacing: float = 60.0, prefix: str = "city") -> list[Model]:
    """``rows × cols`` small houses on a grid around the Jinan origin, one dataset each."""
    ox, oy, oh = JINAN_ORIGIN
    return [house(f"{prefix}_{r}_{c}", (ox + c * spacing, oy + r * spacing, oh + 0.1 * r),
                  storeys=1 + (r + c) % 3, width=12.0 + 2 * (c % 4), depth=10.0)
            for r in range(rows) for c in range(cols)]
