"""Compare two stored versions of a BIM dataset element by element (IFC GlobalId).

An element is *added* (only in the new version), *removed* (only in the old), *changed* or
*unchanged*. A changed element says whether its geometry changed (``geometry_hash``), whether its
properties changed (``properties_hash``) and, from the ``psets``/``quantities`` JSON of both
versions, which ``Pset.Property`` names differ; changes of class, predefined type, name, type, tag,
storey, materials and classifications are listed as changed attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cim.errors import InvalidInputError, NotFoundError
from cim.store.duckdb_ import json_value

#: bim_elements columns compared as attributes (besides the hashes).
ATTRIBUTES: tuple[str, ...] = (
    "ifc_class",
    "predefined_type",
    "name",
    "object_type",
    "tag",
    "storey_global_id",
    "materials",
    "classifications",
)


@dataclass(frozen=True)
class ElementRef:
    """An element of one version."""

    global_id: str
    ifc_class: str
    name: str | None


@dataclass(frozen=True)
class ElementChange:
    """How one element differs between the versions."""

    global_id: str
    ifc_class: str  # in the new version
    name: str | None
    geometry_changed: bool
    properties_changed: bool
    changed_properties: tuple[str, ...] = ()  # "Pset_WallCommon.FireRating", "Qto_WallBaseQuantities.Length"
    changed_attributes: tuple[str, ...] = ()


@dataclass
class Comparison:
    """Differences from version ``v1`` to version ``v2`` of a dataset."""

    dataset_id: str
    v1: int
    v2: int
    added: list[ElementRef] = field(default_factory=list)
    removed: list[ElementRef] = field(default_factory=list)
    changed: list[ElementChange] = field(default_factory=list)
    unchanged: int = 0

    @property
    def geometry_changed(self) -> list[ElementChange]:
        """Changed elements whose geometry changed."""
        return [c for c in self.changed if c.geometry_changed]

    @property
    def properties_changed(self) -> list[ElementChange]:
        """Changed elements whose properties changed."""
        return [c for c in self.changed if c.properties_changed]

    def summary(self) -> dict[str, int]:
        """Counts of each kind of change."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "geometry_changed": len(self.geometry_changed),
            "properties_changed": len(self.properties_changed),
            "unchanged": self.unchanged,
        }


def diff_property_sets(old: Any, new: Any) -> list[str]:
    """``Set.Property`` names whose value differs (a set present on one side only lists all its properties).

    Accepts ``{"Pset_X": {"Prop": value}}`` objects (or their JSON text); other shapes are compared by
    top-level key.
    """
    old, new = json_value(old) or {}, json_value(new) or {}
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else ["*"]
    changed: list[str] = []
    for pset in sorted(set(old) | set(new)):
        a, b = old.get(pset), new.get(pset)
        if a == b:
            continue
        if isinstance(a, dict) or isinstance(b, dict):
            a = a if isinstance(a, dict) else {}
            b = b if isinstance(b, dict) else {}
            changed.extend(f"{pset}.{prop}" for prop in sorted(set(a) | set(b)) if a.get(prop) != b.get(prop))
        else:
            changed.append(pset)
    return changed


def _version_exists(store: Any, dataset_id: str, version: int) -> bool:
    row = (
        store.read()
        .execute(
            """SELECT (SELECT count(*) FROM bim_models WHERE dataset_id = ? AND version = ?)
                + (SELECT count(*) FROM bim_elements WHERE dataset_id = ? AND version = ?)""",
            [dataset_id, version, dataset_id, version],
        )
        .fetchone()
    )
    return bool(row and row[0])


def compare_versions(store: Any, dataset_id: str, v1: int, v2: int) -> Comparison:
    """Elements added, removed and changed from ``v1`` to ``v2`` of a BIM dataset.

    Raises:
        NotFoundError: a version has no stored model.
        InvalidInputError: ``v1 == v2``.
    """
    if v1 == v2:
        raise InvalidInputError(f"compare two different versions (both are {v1})", field="v2")
    for v in (v1, v2):
        if not _version_exists(store, dataset_id, v):
            raise NotFoundError(f"BIM dataset {dataset_id!r} has no stored version {v}")
    cols = ", ".join(f"a.{c} AS a_{c}, b.{c} AS b_{c}" for c in (*ATTRIBUTES, "psets", "quantities"))
    cur = store.read().execute(
        f"""SELECT coalesce(a.global_id, b.global_id) AS global_id,
                   a.global_id IS NOT NULL AS in_a, b.global_id IS NOT NULL AS in_b,
                   a.geometry_hash IS DISTINCT FROM b.geometry_hash AS geometry_changed,
                   a.properties_hash IS DISTINCT FROM b.properties_hash AS properties_changed, {cols}
            FROM (SELECT * FROM bim_elements WHERE dataset_id = ? AND version = ?) a
            FULL OUTER JOIN (SELECT * FROM bim_elements WHERE dataset_id = ? AND version = ?) b
              ON a.global_id = b.global_id
            ORDER BY 1""",
        [dataset_id, v1, dataset_id, v2],
    )
    names = [d[0] for d in cur.description]
    result = Comparison(dataset_id, v1, v2)
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        gid = row["global_id"]
        if not row["in_a"]:
            result.added.append(ElementRef(gid, row["b_ifc_class"], row["b_name"]))
            continue
        if not row["in_b"]:
            result.removed.append(ElementRef(gid, row["a_ifc_class"], row["a_name"]))
            continue
        attributes = tuple(c for c in ATTRIBUTES if json_value(row[f"a_{c}"]) != json_value(row[f"b_{c}"]))
        if not (row["geometry_changed"] or row["properties_changed"] or attributes):
            result.unchanged += 1
            continue
        changed_props: list[str] = []
        if row["properties_changed"]:
            changed_props = diff_property_sets(row["a_psets"], row["b_psets"]) + diff_property_sets(
                row["a_quantities"], row["b_quantities"]
            )
        result.changed.append(
            ElementChange(
                gid,
                row["b_ifc_class"],
                row["b_name"],
                bool(row["geometry_changed"]),
                bool(row["properties_changed"]),
                tuple(changed_props),
                attributes,
            )
        )
    return result
