"""Version comparison by GlobalId over bim_elements rows written by the test itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cim.bim.compare import compare_versions, diff_property_sets
from cim.errors import InvalidInputError, NotFoundError
from cim.store import DuckDBStore

WALL = "2XPyKWY018sA1ygZKgQPtU"
DOOR = "1Oms875aH3Wg$9l65H2ZGw"
SLAB = "1pPHnf7cXCpPsNEnQf8_6B"
BEAM = "3tCgZT92j6fw8fXgwCL3Jm"
WINDOW = "1srAI$R4T8ihLXSNHmUSET"
STAIR = "0aBcDeFgHiJkLmNoPqRsTu"


def _row(gid: str, cls: str, geom: str, props: str, psets: dict | None = None, **kw: object) -> dict:
    return {
        "global_id": gid,
        "ifc_class": cls,
        "geometry_hash": geom,
        "properties_hash": props,
        "psets": psets or {},
        "name": kw.pop("name", cls),
        **kw,
    }


@pytest.fixture
def versions(
    store: DuckDBStore, add_model: Callable[..., None], add_elements: Callable[..., None]
) -> DuckDBStore:
    common = {"Pset_WallCommon": {"IsExternal": True, "LoadBearing": False}}
    add_model(store, "fzk", 1)
    add_model(store, "fzk", 2)
    add_elements(
        store,
        "fzk",
        1,
        [
            _row(WALL, "IfcWallStandardCase", "g1", "p1", common, storey_name="EG"),
            _row(DOOR, "IfcDoor", "g2", "p2", {"Pset_DoorCommon": {"FireRating": ""}}),
            _row(SLAB, "IfcSlab", "g3", "p3"),
            _row(BEAM, "IfcBeam", "g4", "p4", quantities={"Qto_BeamBaseQuantities": {"Length": 4.0}}),
            _row(WINDOW, "IfcWindow", "g5", "p5", name="Fenster"),
        ],
    )
    add_elements(
        store,
        "fzk",
        2,
        [
            _row(WALL, "IfcWallStandardCase", "g1-moved", "p1", common, storey_name="EG"),  # geometry only
            _row(
                DOOR,
                "IfcDoor",
                "g2",
                "p2b",
                {"Pset_DoorCommon": {"FireRating": "乙级"}, "Pset_Fire": {"EI": 60}},
            ),
            _row(BEAM, "IfcBeam", "g4b", "p4b", quantities={"Qto_BeamBaseQuantities": {"Length": 4.5}}),
            _row(WINDOW, "IfcWindow", "g5", "p5", name="Fenster"),  # unchanged
            _row(STAIR, "IfcStair", "g6", "p6"),  # added; SLAB removed
        ],
    )
    return store


def test_compare_versions(versions: DuckDBStore) -> None:
    c = compare_versions(versions, "fzk", 1, 2)
    assert [e.global_id for e in c.added] == [STAIR] and c.added[0].ifc_class == "IfcStair"
    assert [e.global_id for e in c.removed] == [SLAB]
    assert c.unchanged == 1
    changes = {e.global_id: e for e in c.changed}
    assert set(changes) == {WALL, DOOR, BEAM}
    wall, door, beam = changes[WALL], changes[DOOR], changes[BEAM]
    assert (wall.geometry_changed, wall.properties_changed, wall.changed_properties) == (True, False, ())
    assert (door.geometry_changed, door.properties_changed) == (False, True)
    assert door.changed_properties == ("Pset_DoorCommon.FireRating", "Pset_Fire.EI")
    assert beam.geometry_changed and beam.changed_properties == ("Qto_BeamBaseQuantities.Length",)
    assert c.summary() == {
        "added": 1,
        "removed": 1,
        "changed": 3,
        "geometry_changed": 2,
        "properties_changed": 2,
        "unchanged": 1,
    }
    back = compare_versions(versions, "fzk", 2, 1)  # the reverse swaps added and removed
    assert [e.global_id for e in back.added] == [SLAB] and [e.global_id for e in back.removed] == [STAIR]


def test_attribute_changes_count_even_with_equal_hashes(
    store: DuckDBStore, add_model: Callable[..., None], add_elements: Callable[..., None]
) -> None:
    add_model(store, "m", 1)
    add_model(store, "m", 2)
    add_elements(store, "m", 1, [_row(WALL, "IfcWall", "g", "p", name="W1", storey_global_id="S1")])
    add_elements(store, "m", 2, [_row(WALL, "IfcWall", "g", "p", name="W1-a", storey_global_id="S2")])
    (change,) = compare_versions(store, "m", 1, 2).changed
    assert change.changed_attributes == ("name", "storey_global_id")
    assert not change.geometry_changed and not change.properties_changed


def test_compare_errors(versions: DuckDBStore) -> None:
    with pytest.raises(NotFoundError, match="no stored version 3"):
        compare_versions(versions, "fzk", 1, 3)
    with pytest.raises(NotFoundError, match="'nope'"):
        compare_versions(versions, "nope", 1, 2)
    with pytest.raises(InvalidInputError, match="both are 2"):
        compare_versions(versions, "fzk", 2, 2)


def test_diff_property_sets() -> None:
    assert diff_property_sets('{"A": {"x": 1}}', {"A": {"x": 1}}) == []
    assert diff_property_sets({"A": {"x": 1, "y": 2}}, {"A": {"x": 1}, "B": {"z": 3}}) == ["A.y", "B.z"]
    assert diff_property_sets({"A": 1}, {"A": 2}) == ["A"]
    assert diff_property_sets(None, {}) == []
    assert diff_property_sets([1], [2]) == ["*"]
