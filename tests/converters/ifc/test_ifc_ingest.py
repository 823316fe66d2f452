"""IFC ingest through the worker process into the store: contents, versions, refusals and budgets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from ifc_samples import foreign, ifc, jinan_ifc

from cim.errors import (
    CIMError,
    CRSError,
    CRSMissingError,
    InvalidInputError,
    OutOfRegionError,
    StoreError,
    UnsupportedError,
)
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.ifc.geometry import decode
from converters.ifc.georef import UserPlacement
from converters.ifc.ingest import GeorefRefusedError, IfcIngestResult, IfcOptions, ingest_ifc
from converters.ifc.worker import WorkerError, WorkerMemoryError, WorkerTimeoutError

TABLES = ("datasets", "dataset_versions", "bim_models", "bim_spatial", "bim_elements")
DUPLEX = "ifc2x3_revit2011_duplex_architecture.ifc"


def row_counts(store: DuckDBStore) -> dict[str, int]:
    return {t: store.read().execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def duplex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, IfcIngestResult]]:
    """The Duplex ingested once (Chicago: NAD83 / UTM 16N storage, region widened)."""
    store = DuckDBStore(tmp_path_factory.mktemp("duplex") / "cim.duckdb")
    result = ingest_ifc(ifc(DUPLEX), store, IfcOptions(title="Duplex"), foreign("EPSG:26916"))
    yield store, result
    store.close()


def test_duplex_stores_the_documented_element_counts(duplex: tuple[DuckDBStore, IfcIngestResult]) -> None:
    store, result = duplex
    by_class = dict(
        store.read()
        .execute(
            "SELECT ifc_class, count(*) FROM bim_elements WHERE dataset_id = ? GROUP BY 1",
            [result.dataset_id],
        )
        .fetchall()
    )
    assert {
        k: by_class[k]
        for k in (
            "IfcWallStandardCase",
            "IfcWindow",
            "IfcDoor",
            "IfcSpace",
            "IfcFurnishingElement",
            "IfcSlab",
        )
    } == {
        "IfcWallStandardCase": 56,
        "IfcWindow": 24,
        "IfcDoor": 14,
        "IfcSpace": 21,
        "IfcFurnishingElement": 61,
        "IfcSlab": 21,
    }
    assert "IfcOpeningElement" not in by_class and "IfcBuildingStorey" not in by_class
    assert (
        sum(by_class.values()) == result.counts["elements"] == 239
    )  # 295 products − 50 openings − 6 spatial
    assert result.counts["bim_elements"] == {
        "added": 239,
        "modified": 0,
        "deleted": 0,
        "unchanged": 0,
        "total": 239,
    }
    assert result.version == 1 and result.dataset_id == "ifc2x3_revit2011_duplex_architecture"


def test_duplex_spatial_hierarchy_storeys_and_containment(
    duplex: tuple[DuckDBStore, IfcIngestResult],
) -> None:
    store, _ = duplex
    con = store.read()
    rows = {
        r[0]: r
        for r in con.execute(
            "SELECT global_id, ifc_class, name, parent_global_id, elevation FROM bim_spatial"
        ).fetchall()
    }
    storeys = sorted((r[2], r[4]) for r in rows.values() if r[1] == "IfcBuildingStorey")
    assert storeys == [("Level 1", 0.0), ("Level 2", pytest.approx(3.1)), ("Roof", 6.0), ("T/FDN", -1.25)]
    for gid, cls, _, parent, _ in rows.values():  # project → site → building → storey → space
        want = {
            "IfcProject": None,
            "IfcSite": "IfcProject",
            "IfcBuilding": "IfcSite",
            "IfcBuildingStorey": "IfcBuilding",
            "IfcSpace": "IfcBuildingStorey",
        }[cls]
        assert (rows[parent][1] if parent else None) == want, gid
    orphans = con.execute("SELECT count(*) FROM bim_elements WHERE storey_global_id IS NULL").fetchone()[0]
    assert orphans == 0
    assert (
        con.execute("SELECT count(*) FROM bim_elements WHERE space_global_id IS NOT NULL").fetchone()[0] > 0
    )


def test_duplex_properties_materials_and_hashes(duplex: tuple[DuckDBStore, IfcIngestResult]) -> None:
    store, _ = duplex
    con = store.read()
    psets, materials, name, storey, phash = con.execute(
        """SELECT psets, materials, name, storey_name, properties_hash FROM bim_elements
           WHERE global_id = (SELECT min(global_id) FROM bim_elements WHERE ifc_class = 'IfcWallStandardCase'
                              AND materials[1] = 'Masonry - Brick')"""
    ).fetchone()
    psets = json.loads(psets)
    assert psets["Pset_WallCommon"]["IsExternal"] is True and "id" not in psets["Pset_WallCommon"]
    assert materials[0] == "Masonry - Brick" and name.startswith("Basic Wall:Exterior - Brick on Block")
    assert storey in ("Level 1", "Level 2", "T/FDN", "Roof") and len(phash) == 64
    without = con.execute("SELECT ifc_class, name FROM bim_elements WHERE psets::VARCHAR = '{}'").fetchall()
    assert len(without) == 5 and {c for c, _ in without} == {"IfcMember", "IfcSlab"}  # stair parts, roof slab
    areas = [
        json.loads(q)["GSA Space Areas"]["GSA BIM Area"]
        for (q,) in con.execute("SELECT quantities FROM bim_elements WHERE ifc_class = 'IfcSpace'").fetchall()
    ]
    assert len(areas) == 21 and all(a > 1 for a in areas)  # quantities of every space
    hashes = con.execute(
        "SELECT count(DISTINCT geometry_hash), count(geometry_hash) FROM bim_elements"
    ).fetchone()
    assert hashes[1] == 236 and hashes[0] > 100
    colours = [
        c
        for (c,) in con.execute("SELECT DISTINCT color FROM bim_elements WHERE color IS NOT NULL").fetchall()
    ]
    assert len(colours) > 3 and all(len(c) == 9 and c.startswith("#") for c in colours)


def test_duplex_meshes_decode_to_finite_triangles_inside_the_model_bounds(
    duplex: tuple[DuckDBStore, IfcIngestResult],
) -> None:
    store, result = duplex
    con = store.read()
    origin = np.array(con.execute("SELECT origin_x, origin_y, origin_h FROM bim_models").fetchone())
    ds = store.get_dataset(result.dataset_id)
    lo = np.array([ds["minx"], ds["miny"], ds["minz"]])
    hi = np.array([ds["maxx"], ds["maxy"], ds["maxz"]])
    assert (hi - lo)[:2].max() < 60 and (hi - lo)[2] < 15  # a two-storey duplex, not a city
    rows = con.execute(
        """SELECT mesh_positions, mesh_indices, minx, miny, minz, maxx, maxy, maxz, ST_AsWKB(footprint)
           FROM bim_elements WHERE mesh_positions IS NOT NULL"""
    ).fetchall()
    assert len(rows) == 236  # IfcStair ×2 and IfcRoof are aggregates without their own body
    for positions, indices, *bounds, footprint in rows:
        pos, tri = decode(positions, indices)
        assert pos.dtype == np.float32 and tri.dtype == np.uint32 and len(tri) > 0
        assert np.isfinite(pos).all() and int(tri.max()) < len(pos)
        absolute = pos.astype("f8") + origin
        e_lo, e_hi = np.array(bounds[:3]), np.array(bounds[3:])
        assert (absolute >= e_lo - 1e-3).all() and (absolute <= e_hi + 1e-3).all()
        assert (e_lo >= lo - 1e-9).all() and (e_hi <= hi + 1e-9).all()
        hull = shapely.from_wkb(bytes(footprint))
        assert hull.buffer(1e-6).covers(shapely.multipoints(absolute[:, :2]))
        area = np.cross(absolute[tri[:, 1]] - absolute[tri[:, 0]], absolute[tri[:, 2]] - absolute[tri[:, 0]])
        assert np.linalg.norm(area, axis=1).max() > 0  # real triangles, not all degenerate


def test_duplex_model_row_keeps_file_identity_and_georef(duplex: tuple[DuckDBStore, IfcIngestResult]) -> None:
    store, result = duplex
    sha, size, schema, app, unit, georef, count = (
        store.read()
        .execute(
            """SELECT file_sha256, file_size, ifc_schema, authoring_app, length_unit_m, georef, element_count
           FROM bim_models"""
        )
        .fetchone()
    )
    assert (len(sha), size, schema, unit, count) == (64, ifc(DUPLEX).stat().st_size, "IFC2X3", 1.0, 239)
    assert app.startswith("Autodesk Revit Architecture 2011")
    georef = json.loads(georef)
    assert georef["method"] == "ref_latlon" and georef["storage_crs"] == "EPSG:26916"
    assert "georef.approximate" in {f["code"] for f in georef["findings"]}
    assert georef["origin"] == pytest.approx(list(result.origin))
    ds = store.get_dataset(result.dataset_id)
    assert (ds["kind"], ds["title"], ds["current_version"], ds["category"]) == (
        "bim",
        "Duplex",
        1,
        "工程建设项目数据",
    )
    assert result.timings["total_s"] > 0 and result.elements_per_s > 0


# -- a small georeferenced model: placement, failures, versions ---------------------------------------
def test_jinan_model_lands_in_cgcs2000_and_keeps_the_broken_element_without_mesh(jinan: Path) -> None:
    store = DuckDBStore(":memory:")
    result = ingest_ifc(jinan, store, IfcOptions(dataset_id="jinan"), Settings())
    assert result.origin == pytest.approx((500000.0, 4057669.9, 30.5))
    failed = [f for f in result.findings if f.code == "geometry.failed"]
    assert len(failed) == 1 and failed[0].entity == "#83 IfcSlab" and "Broken slab" in failed[0].message
    con = store.read()
    wall = con.execute(
        """SELECT minx, miny, minz, maxx, maxy, maxz, color, materials, classifications, quantities,
                  storey_name FROM bim_elements WHERE name = 'Wall A'"""
    ).fetchone()
    # wall 0..5000 × 0..200 mm at z 3000..6000 mm, rotated by XAxis (0.8, 0.6), Scale 0.001
    assert wall[:6] == pytest.approx((499999.88, 4057669.9, 33.5, 500004.0, 4057673.06, 36.5), abs=1e-6)
    assert wall[6:8] == ("#FF0000FF", ["C30 混凝土"])
    assert json.loads(wall[8]) == [{"system": "GB/T 51269", "code": "30-01.10.00", "name": "墙"}]
    assert json.loads(wall[9]) == {"Qto_WallBaseQuantities": {"Length": 5000.0}} and wall[10] == "F2"
    slab = con.execute(
        "SELECT mesh_positions, footprint FROM bim_elements WHERE name = 'Broken slab'"
    ).fetchone()
    assert slab == (None, None)
    store.close()


def test_a_changed_file_becomes_version_2_with_its_own_rows(tmp_path: Path) -> None:
    store = DuckDBStore(":memory:")
    first = ingest_ifc(jinan_ifc(tmp_path, name="model.ifc"), store, IfcOptions(), Settings())
    (tmp_path / "v2").mkdir()
    second = ingest_ifc(
        jinan_ifc(tmp_path / "v2", wall_name="Wall A (fire wall)", name="model.ifc"),
        store,
        IfcOptions(),
        Settings(),
    )
    assert (first.dataset_id, first.version, second.version) == ("model", 1, 2)
    assert second.counts["bim_elements"] == {
        "added": 0,
        "modified": 1,
        "deleted": 0,
        "unchanged": 1,
        "total": 2,
    }
    con = store.read()
    per_version = con.execute("SELECT version, count(*) FROM bim_elements GROUP BY 1 ORDER BY 1").fetchall()
    assert per_version == [(1, 2), (2, 2)]
    assert con.execute("SELECT version, name FROM bim_elements WHERE tag = 'W-1' ORDER BY 1").fetchall() == [
        (1, "Wall A"),
        (2, "Wall A (fire wall)"),
    ]
    shas = con.execute("SELECT count(DISTINCT file_sha256) FROM bim_models").fetchone()[0]
    assert shas == 2 and store.get_dataset("model")["current_version"] == 2
    assert [v["version"] for v in store.versions("model")] == [1, 2]
    same_geometry = con.execute("""SELECT count(DISTINCT geometry_hash) FROM bim_elements
                                   WHERE tag = 'W-1'""").fetchone()[0]
    assert same_geometry == 1
    store.close()


def test_bsi_utm_proxy_vertices_land_where_the_map_conversion_says() -> None:
    store = DuckDBStore(":memory:")
    result = ingest_ifc(
        ifc("ifc4x3_bsi_georef_utm_epsg25832.ifc"), store, IfcOptions(), foreign("EPSG:25832")
    )
    positions, indices = (
        store.read().execute("SELECT mesh_positions, mesh_indices FROM bim_elements").fetchone()
    )
    pos, _ = decode(positions, indices)
    got = pos.astype("f8") + np.array(result.origin)
    a, b = 0.270600445976, 0.962691746426  # XAxis of the file (already unit length)
    local = [
        (0, 0, 0),
        (-500, -500, 2000),
        (500, -500, 2000),
        (500, 500, 2000),
        (-500, 500, 2000),
        (-500, -500, 4000),
        (500, -500, 4000),
        (500, 500, 4000),
        (-500, 500, 4000),
    ]
    want = np.array(
        [
            (458657.30 + 1e-3 * (a * x - b * y), 5438232.25 + 1e-3 * (b * x + a * y), 113.7 + 1e-3 * z)
            for x, y, z in local
        ]
    )
    for w in want:  # every vertex of the notch is where the map conversion puts it (< 1 mm)
        assert np.abs(got - w).max(axis=1).min() < 1e-3
    store.close()


def test_an_ifc4x3_add1_vendor_file_ingests_through_the_alias() -> None:
    store = DuckDBStore(":memory:")
    result = ingest_ifc(
        ifc("ifc4x3_civil3d_ps01_project_setup.ifc"), store, IfcOptions(), foreign("EPSG:2056")
    )
    schema, stats = store.read().execute("SELECT ifc_schema, stats FROM bim_models").fetchone()
    assert (schema, json.loads(stats)["opened_as"]) == ("IFC4X3_ADD1", "IFC4X3_ADD2")
    assert result.origin == pytest.approx((2689000.0, 1253000.0, 450.0))
    store.close()


# -- refusals leave the store unchanged ---------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    """A store already holding the Jinan model (tests compare its row counts before and after)."""
    store = DuckDBStore(":memory:")
    ingest_ifc(
        jinan_ifc(tmp_path_factory.mktemp("base"), name="base.ifc"),
        store,
        IfcOptions(dataset_id="model"),
        Settings(),
    )
    yield store
    store.close()


def _broken(tmp: Path, kind: str) -> Path:
    real = ifc("ifc4_ifcopenshell_ifcopenhouse.ifc").read_bytes()
    data = {
        "empty": b"",
        "magic": b"Hello, this is not STEP\n" + real,
        "truncated": real[: len(real) // 2],
        "schema": real.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC9'))"),
    }[kind]
    path = tmp / "model.ifc"  # same dataset id as the stored model
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("empty", InvalidInputError, "empty"),
        ("magic", InvalidInputError, "not an IFC-SPF file"),
        ("truncated", InvalidInputError, "truncated"),
        ("schema", UnsupportedError, "unknown IFC schema 'IFC9'"),
    ],
)
def test_broken_files_are_refused_and_the_store_is_unchanged(
    loaded: DuckDBStore, tmp_path: Path, kind: str, error: type, match: str
) -> None:
    before = row_counts(loaded)
    with pytest.raises(error, match=match):
        ingest_ifc(_broken(tmp_path, kind), loaded, IfcOptions(dataset_id="model"), Settings())
    assert row_counts(loaded) == before


def test_georeferencing_errors_refuse_before_geometry(loaded: DuckDBStore) -> None:
    before = row_counts(loaded)
    with pytest.raises(GeorefRefusedError) as exc:
        ingest_ifc(ifc(DUPLEX), loaded, IfcOptions(dataset_id="model"), Settings())
    assert isinstance(exc.value, OutOfRegionError) and "georef.outside_region" in str(exc.value)
    with pytest.raises(CRSMissingError, match="georef.none") as exc:
        ingest_ifc(
            ifc("ifc4_ifcopenshell_ifcopenhouse.ifc"), loaded, IfcOptions(dataset_id="model"), Settings()
        )
    assert any(f.code == "georef.none" for f in exc.value.findings)
    assert row_counts(loaded) == before


def test_a_user_placement_lets_an_ungeoreferenced_model_in(loaded: DuckDBStore) -> None:
    placement = UserPlacement(
        crs="EPSG:4548", easting=500200.0, northing=4057800.0, height=28.0, rotation_deg=30.0
    )
    result = ingest_ifc(
        ifc("ifc4_ifcopenshell_ifcopenhouse.ifc"),
        loaded,
        IfcOptions(dataset_id="openhouse", placement=placement),
        Settings(),
    )
    assert result.origin == pytest.approx((500200.0, 4057800.0, 28.0)) and result.counts["meshes"] > 20
    assert loaded.get_dataset("openhouse")["minx"] > 500100


def test_an_unknown_placement_crs_is_refused_before_any_work(loaded: DuckDBStore, tmp_path: Path) -> None:
    before = row_counts(loaded)
    with pytest.raises(CRSError, match="EPSG:99999"):
        ingest_ifc(
            jinan_ifc(tmp_path),
            loaded,
            IfcOptions(placement=UserPlacement(crs="EPSG:99999", easting=1.0, northing=2.0)),
            Settings(),
        )
    with pytest.raises(InvalidInputError, match="easting must be a finite number"):
        ingest_ifc(
            jinan_ifc(tmp_path),
            loaded,
            IfcOptions(placement=UserPlacement(easting=float("nan"), northing=2.0)),
            Settings(),
        )
    assert row_counts(loaded) == before


def test_a_worker_past_its_time_budget_is_stopped_and_the_service_goes_on(
    loaded: DuckDBStore, tmp_path: Path
) -> None:
    before = row_counts(loaded)
    with pytest.raises(WorkerTimeoutError, match="time budget of 0.2 s"):
        ingest_ifc(
            jinan_ifc(tmp_path, name="slow.ifc"),
            loaded,
            IfcOptions(dataset_id="model", time_budget_s=0.2),
            Settings(),
        )
    assert row_counts(loaded) == before
    current = loaded.get_dataset("model")["current_version"]
    ok = ingest_ifc(jinan_ifc(tmp_path, name="again.ifc"), loaded, IfcOptions(dataset_id="model"), Settings())
    assert ok.version == current + 1


def test_a_worker_out_of_memory_is_a_clear_error(loaded: DuckDBStore, tmp_path: Path) -> None:
    before = row_counts(loaded)
    with pytest.raises(WorkerMemoryError, match="more than its memory budget of 64 MB") as exc:
        ingest_ifc(
            jinan_ifc(tmp_path, name="big.ifc"),
            loaded,
            IfcOptions(dataset_id="model", memory_budget_mb=64),
            Settings(),
        )
    assert isinstance(exc.value, WorkerError) and isinstance(exc.value, CIMError)
    assert row_counts(loaded) == before


def test_a_failure_inside_the_write_rolls_everything_back(
    loaded: DuckDBStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = row_counts(loaded)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise StoreError("disk full (simulated) after the element rows were inserted")

    monkeypatch.setattr(DuckDBStore, "_upsert_dataset", fail)
    with pytest.raises(StoreError, match="simulated"):
        ingest_ifc(jinan_ifc(tmp_path, name="model.ifc"), loaded, IfcOptions(dataset_id="model"), Settings())
    assert row_counts(loaded) == before
    monkeypatch.undo()
    with loaded.transaction() as con:
        con.execute(
            "INSERT INTO datasets (id, title, kind, storage_crs, grade, current_version, created_at, "
            "updated_at) VALUES ('pipes', 'pipes', 'pipe_survey', 'EPSG:4548', '重要', 1, now(), now())"
        )
    with pytest.raises(InvalidInputError, match="exists with kind 'pipe_survey', not 'bim'"):
        ingest_ifc(jinan_ifc(tmp_path, name="model.ifc"), loaded, IfcOptions(dataset_id="pipes"), Settings())
    assert (
        loaded.read().execute("SELECT count(*) FROM bim_elements WHERE dataset_id = 'pipes'").fetchone()[0]
        == 0
    )
