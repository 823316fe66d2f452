"""The scoped store: the data-access rule enforced below every query, by TEMP VIEWs shadowing the tables
(rows of readable datasets only; COARSE rows snapped to the 50 m grid without heights), read-only, and the
tile rule (all or nothing)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.errors import NotFoundError
from cim.security.policy import ANONYMOUS, PUBLIC_GRID_M, Access, ForbiddenError, Principal, Role, coarsen_xy
from cim.security.scope import ScopedStore, tileset_access
from cim.store import DuckDBStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graded import GRADED, build_graded_store  # noqa: E402

PRINCIPALS = {
    "public": ANONYMOUS,
    "planner": Principal("key:p", Role.PLANNER),
    "reviewer": Principal("key:r", Role.REVIEWER),
    "platform": Principal("key:f", Role.PLATFORM),
    "admin": Principal("key:a", Role.ADMIN),
}
#: What each role reads of each graded dataset: written out, not computed from the policy under test.
EXPECTED = {
    "public": {"general": Access.COARSE, "important": Access.NONE, "core": Access.NONE, "secret": Access.NONE},
    "planner": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.FULL},
    "reviewer": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.FULL},
    "platform": {"general": Access.FULL, "important": Access.FULL, "core": Access.NONE, "secret": Access.NONE},
    "admin": {"general": Access.FULL, "important": Access.FULL, "core": Access.FULL, "secret": Access.FULL},
}
TABLES = ("pipe_points", "pipe_segments", "network_nodes", "network_edges", "dataset_versions")


@pytest.fixture(scope="module")
def graded() -> Iterator[DuckDBStore]:
    s = build_graded_store()
    yield s
    s.close()


def _readable(role: str) -> set[str]:
    return {ds for ds, a in EXPECTED[role].items() if a is not Access.NONE}


@pytest.mark.parametrize("role", list(PRINCIPALS))
def test_every_table_shows_only_the_datasets_the_role_may_read(graded: DuckDBStore, role: str) -> None:
    scoped = ScopedStore(graded, PRINCIPALS[role])
    assert {d["id"] for d in scoped.datasets()} == _readable(role)
    cur = scoped.read()
    for table in TABLES:
        got = {r[0] for r in cur.execute(f"SELECT DISTINCT dataset_id FROM {table}").fetchall()}
        assert got == _readable(role), table
    full = {ds for ds, a in EXPECTED[role].items() if a is Access.FULL}
    assert {r[0] for r in cur.execute("SELECT DISTINCT dataset_id FROM qc_findings").fetchall()} == full
    assert scoped.access() == {ds: a for ds, a in EXPECTED[role].items()}
    assert scoped.count("pipe_points") == 765 * len(_readable(role))


@pytest.mark.parametrize("role", ["public", "planner", "platform"])
def test_an_unreadable_dataset_is_indistinguishable_from_a_missing_one(graded: DuckDBStore, role: str) -> None:
    scoped = ScopedStore(graded, PRINCIPALS[role])
    with pytest.raises(NotFoundError) as hidden:
        scoped.get_dataset("core")
    with pytest.raises(NotFoundError) as missing:
        scoped.get_dataset("nosuch")
    assert str(hidden.value).replace("core", "X") == str(missing.value).replace("nosuch", "X")
    assert scoped.count("pipe_segments", "core") == 0
    with pytest.raises(NotFoundError):
        scoped.require("core")


def test_the_public_reads_general_data_snapped_to_the_grid_without_heights(graded: DuckDBStore) -> None:
    cur = ScopedStore(graded, ANONYMOUS).read()
    base = graded.read()
    points = cur.execute("""SELECT feature_id, x, y, ground_h, well_depth, well_bottom_h, attrs, source_file,
                                   ST_X(geom), ST_Y(geom), ST_HasZ(geom) FROM pipe_points ORDER BY feature_id""").fetchall()
    precise = dict(base.execute("SELECT feature_id, [x, y] FROM pipe_points WHERE dataset_id = 'general'").fetchall())
    assert len(points) == len(precise) == 765
    for fid, x, y, *withheld, gx, gy, has_z in points:
        assert (x, y) == coarsen_xy(*precise[fid]) == (gx, gy)
        assert (x % PUBLIC_GRID_M, y % PUBLIC_GRID_M) == (PUBLIC_GRID_M / 2, PUBLIC_GRID_M / 2)
        assert withheld == [None] * 5 and not has_z
    segs = cur.execute("""SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)), ST_X(ST_EndPoint(geom)),
                                 ST_Y(ST_EndPoint(geom)), ST_HasZ(geom), start_z, end_z, start_h, end_h, start_depth,
                                 end_depth, length_3d, slope, attrs FROM pipe_segments""").fetchall()
    assert len(segs) == 840
    for s in segs:
        assert all(v % PUBLIC_GRID_M == PUBLIC_GRID_M / 2 for v in s[:4]) and not s[4]
        assert s[5:] == (None,) * 9
    ds = ScopedStore(graded, ANONYMOUS).get_dataset("general")
    exact = graded.get_dataset("general")
    assert ds["minz"] is None and ds["maxz"] is None and ds["provenance"] is None
    assert ds["minx"] <= exact["minx"] and ds["maxx"] >= exact["maxx"] and ds["minx"] % PUBLIC_GRID_M == 0
    assert cur.execute("SELECT count(*) FROM qc_findings").fetchone()[0] == 0  # QC detail names files and values
    with pytest.raises(ForbiddenError, match="coarsened"):
        ScopedStore(graded, ANONYMOUS).require("general")


def test_full_readers_see_exact_values(graded: DuckDBStore) -> None:
    sql = "SELECT feature_id, x, y, ground_h, attrs FROM pipe_points WHERE dataset_id = 'important' ORDER BY 1"
    assert ScopedStore(graded, PRINCIPALS["planner"]).read().execute(sql).fetchall() == \
        graded.read().execute(sql).fetchall()


def test_security_tables_read_empty_for_everyone_but_admins(graded: DuckDBStore) -> None:
    from cim.security.keys import KeyStore

    KeyStore(graded).issue("somebody", "planner")
    for role, principal in PRINCIPALS.items():
        n = ScopedStore(graded, principal).read().execute("SELECT count(*) FROM api_keys").fetchone()[0]
        assert n == (1 if role == "admin" else 0), role


def test_unknown_tables_and_views_obey_the_rule_too(graded: DuckDBStore) -> None:
    con = graded.read()
    con.execute("CREATE TABLE extra_layer AS SELECT id AS dataset_id, 1 AS v FROM datasets")
    con.execute("CREATE VIEW point_summary AS SELECT dataset_id AS ds, count(*) AS n FROM pipe_points GROUP BY 1")
    try:
        for role, principal in PRINCIPALS.items():
            cur = ScopedStore(graded, principal).read()
            full = {ds for ds, a in EXPECTED[role].items() if a is Access.FULL}
            assert {r[0] for r in cur.execute("SELECT dataset_id FROM extra_layer").fetchall()} == full, role
            assert {r[0] for r in cur.execute("SELECT ds FROM point_summary").fetchall()} == _readable(role), role
    finally:
        con.execute("DROP VIEW point_summary")
        con.execute("DROP TABLE extra_layer")


def test_writes_through_a_scoped_store_are_refused(graded: DuckDBStore) -> None:
    for principal in PRINCIPALS.values():
        scoped = ScopedStore(graded, principal)
        with pytest.raises(ForbiddenError, match="read-only"):
            with scoped.transaction():
                pass
        with pytest.raises(ForbiddenError):
            scoped.write_pipe_network(None, None, None)
    import duckdb

    with pytest.raises(duckdb.Error):  # the shadowing views are not insertable
        ScopedStore(graded, PRINCIPALS["planner"]).read().execute(
            "INSERT INTO pipe_points (dataset_id, feature_id, version_from) VALUES ('core', 'x', 1)")
    assert graded.count("pipe_points", "core") == 765


def test_a_cursor_keeps_its_snapshot_while_grades_change(graded: DuckDBStore) -> None:
    scoped = ScopedStore(graded, PRINCIPALS["platform"])
    before = scoped.read()
    with graded.transaction() as con:
        con.execute("UPDATE datasets SET secret = TRUE WHERE id = 'general'")
    try:
        q = "SELECT DISTINCT dataset_id FROM pipe_points"
        assert {r[0] for r in before.execute(q).fetchall()} == {"general", "important"}  # consistent snapshot
        assert {r[0] for r in scoped.read().execute(q).fetchall()} == {"important"}  # new reads: the new grade
    finally:
        with graded.transaction() as con:
            con.execute("UPDATE datasets SET secret = FALSE WHERE id = 'general'")


def test_admins_keep_rtree_scans_and_everyone_gets_the_same_rows_as_a_filtered_base_query(
        graded: DuckDBStore) -> None:
    env = "ST_Intersects(geom, ST_MakeEnvelope(502000, 4058000, 502200, 4058200))"
    sql = f"SELECT dataset_id, count(*) FROM pipe_segments WHERE version_to IS NULL AND {env} GROUP BY 1 ORDER BY 1"
    admin = ScopedStore(graded, PRINCIPALS["admin"]).read()
    assert "RTREE_INDEX_SCAN" in admin.execute("EXPLAIN " + sql).fetchall()[0][1]
    everything = dict(admin.execute(sql).fetchall())
    planner = dict(ScopedStore(graded, PRINCIPALS["planner"]).read().execute(sql).fetchall())
    assert planner == {ds: n for ds, n in everything.items() if ds in _readable("planner")} and planner


def test_pipe_tiles_need_full_access_to_every_dataset_in_them() -> None:
    sets = {ds: {"grade": g, "secret": s} for ds, (g, s, _) in GRADED.items()}
    general_only = [sets["general"]]
    assert tileset_access(ANONYMOUS, general_only) is Access.NONE  # coarse is not enough for tiles
    assert tileset_access(PRINCIPALS["planner"], [sets["general"], sets["important"]]) is Access.FULL
    assert tileset_access(PRINCIPALS["planner"], list(sets.values())) is Access.NONE
    assert tileset_access(PRINCIPALS["platform"], [sets["general"], sets["secret"]]) is Access.NONE
    assert tileset_access(PRINCIPALS["admin"], list(sets.values())) is Access.FULL
    assert tileset_access(PRINCIPALS["planner"], [{"grade": "机密?", "secret": False}]) is Access.NONE  # 就高从严
