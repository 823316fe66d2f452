"""Ingest of every real LAS/LAZ sample: catalogue facts, a valid 3D Tiles 1.1 tileset whose points land where the
file says, queries that agree with brute force on the source file, and nothing stored when a file is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import laspy
import numpy as np
import pytest
import shapely
from pc_samples import WITH_CRS, WORLD, sample
from pyproj import Transformer

from cim.errors import CRSMissingError, InvalidInputError, OutOfRegionError
from cim.realscene.points import PointIndex
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pointcloud.ingest import PointCloudOptions, ingest_pointcloud
from tests.tools.validators import gltf_validate, gltf_validator_available, validate_tileset_json
from tiles.frames import ecef_to_enu, enu_to_ecef
from tiles.pointcloud_content import read_points


@pytest.fixture
def world(tmp_path: Path) -> tuple[DuckDBStore, Settings]:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets", region_bbox=WORLD)
    store = DuckDBStore(tmp_path / "s.duckdb")
    yield store, settings
    store.close()


def _ecef_to_lonlat(ecef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
    return t.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])


def _tile_points(build: Path) -> tuple[dict, np.ndarray, int]:
    doc = json.loads((build / "tileset.json").read_text(encoding="utf-8"))
    m = np.array(doc["root"]["transform"]).reshape(4, 4).T
    enu, n = [], 0
    for f in sorted((build / "tiles").iterdir()):
        p = read_points(f.read_bytes())
        enu.append(p["enu"])
        n += len(p["enu"])
    return doc, enu_to_ecef(np.concatenate(enu), m), n


@pytest.mark.parametrize("name", WITH_CRS)
def test_every_sample_converts_to_a_valid_tileset_in_the_right_place(
        world: tuple[DuckDBStore, Settings], name: str) -> None:
    store, settings = world
    path = sample(name)
    r = ingest_pointcloud(path, store, settings, PointCloudOptions(dataset_id="pc"))
    meta = r.metadata
    las = laspy.read(str(path))
    assert meta["point_count"] == len(las.points) == r.tiles["points"]
    hist = np.bincount(np.asarray(las.classification), minlength=256)
    assert meta["classification"] == {str(c): int(hist[c]) for c in np.flatnonzero(hist)}
    assert meta["density_per_m2"] > 0 and meta["placement_error_m"] < 0.002
    row = store.get_dataset("pc")
    assert row["kind"] == "pointcloud" and row["current_version"] == 1
    # the tileset: schema-valid, every glTF valid, every point exactly once, inside the source extent
    assert validate_tileset_json(r.build_dir / "tileset.json") == []
    tiles = sorted((r.build_dir / "tiles").glob("*.glb"))
    if gltf_validator_available():
        reports = gltf_validate(tiles)
        assert {p.name: rep["numErrors"] for p, rep in reports.items() if rep["numErrors"]} == {}
        assert all(m["code"] == "UNSUPPORTED_EXTENSION" for rep in reports.values() for m in rep["messages"])
    doc, ecef, n = _tile_points(r.build_dir)
    assert n == len(las.points)
    lon, lat, _h = _ecef_to_lonlat(ecef)
    west, south, east, north = meta["bbox_lonlat"]
    tol = 3e-5  # the catalogue's extent goes through CGCS2000 (a null datum shift); tiles through WGS 84 (NAD83: ~1 m)
    assert lon.min() >= west - tol and lon.max() <= east + tol and lat.min() >= south - tol and lat.max() <= north + tol
    # refinement and errors are consistent: ADD at the root, leaves 0, errors shrink downwards
    assert doc["root"]["refine"] == "ADD" and doc["asset"]["version"] == "1.1"

    def walk(t: dict, parent: float) -> None:
        assert t["geometricError"] <= parent
        if "children" not in t:
            assert t["geometricError"] == 0
        for c in t.get("children", []):
            walk(c, t["geometricError"])
    walk(doc["root"], doc["geometricError"])


def test_positions_match_the_exact_crs_chain(world: tuple[DuckDBStore, Settings]) -> None:
    """Each decoded tile point equals pyproj + geoid + ECEF on its source point, to a few millimetres."""
    store, settings = world
    path = sample("simple.copc.laz")  # compound CRS, heights in US survey feet
    r = ingest_pointcloud(path, store, settings)
    las = laspy.read(str(path))
    from cim.heights import get_geoid

    t = Transformer.from_crs(las.header.parse_crs().sub_crs_list[0], "EPSG:4326", always_xy=True)
    lon, lat = t.transform(np.asarray(las.x), np.asarray(las.y))
    h = np.asarray(las.z) * 1200 / 3937 + get_geoid("egm96").undulation(lon, lat)
    from tiles.frames import geodetic_to_ecef

    exact = geodetic_to_ecef(lon, lat, h)
    doc, ecef, _ = _tile_points(r.build_dir)
    m = np.array(doc["root"]["transform"]).reshape(4, 4).T
    a, b = ecef_to_enu(ecef, m), ecef_to_enu(exact, m)
    key = lambda p: np.lexsort(np.round(p, 1).T)  # noqa: E731 - sort both sets the same way
    assert np.abs(a[key(a)] - b[key(b)]).max() < 0.005


def test_las_and_laz_give_the_same_catalogue_facts(world: tuple[DuckDBStore, Settings]) -> None:
    store, settings = world
    a = ingest_pointcloud(sample("autzen_trim.las"), store, settings, PointCloudOptions(dataset_id="a")).metadata
    b = ingest_pointcloud(sample("autzen_trim.laz"), store, settings, PointCloudOptions(dataset_id="b")).metadata
    skip = {"compressed", "conversion_seconds", "build"}
    assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    assert a["acquisition_date"] == "2015-09-10" and a["heights"]["z_to_metres"] == pytest.approx(0.3048)


def _nothing_stored(store: DuckDBStore, settings: Settings) -> None:
    assert store.datasets() == []
    root = settings.assets_dir
    assert not root.exists() or not any(root.rglob("*.json")), list(root.rglob("*"))


def test_no_crs_is_refused_and_nothing_is_stored(world: tuple[DuckDBStore, Settings]) -> None:
    store, settings = world
    with pytest.raises(CRSMissingError, match="ripple_no_crs.las"):
        ingest_pointcloud(sample("ripple_no_crs.las"), store, settings)
    _nothing_stored(store, settings)
    r = ingest_pointcloud(sample("ripple_no_crs.las"), store, settings, PointCloudOptions(crs="EPSG:4548+5737"))
    assert r.metadata["crs_source"] == "given" and r.metadata["point_count"] == 10_201


def test_outside_the_region_is_refused(tmp_path: Path) -> None:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb", assets_dir=tmp_path / "assets")  # Shandong
    store = DuckDBStore(tmp_path / "s.duckdb")
    with pytest.raises(OutOfRegionError, match="autzen_trim.laz.*outside Shandong"):
        ingest_pointcloud(sample("autzen_trim.laz"), store, settings)
    _nothing_stored(store, settings)
    store.close()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "magic", "empty"])
def test_corrupt_files_leave_nothing_stored(world: tuple[DuckDBStore, Settings], tmp_path: Path, kind: str) -> None:
    store, settings = world
    data = bytearray(sample("autzen_trim.laz").read_bytes())
    if kind == "garbage":  # compressed points overwritten mid-file: found only while decoding
        rnd = random.Random(1)
        for i in range(300_000, 300_400):
            data[i] = rnd.randrange(256)
    elif kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "magic":
        data[:4] = b"PK\x03\x04"
    else:
        data = bytearray()
    bad = tmp_path / f"{kind}.laz"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match=f"{kind}.laz"):
        ingest_pointcloud(bad, store, settings)
    _nothing_stored(store, settings)


def test_queries_agree_with_brute_force_on_the_source(world: tuple[DuckDBStore, Settings]) -> None:
    store, settings = world
    path = sample("benchmark/lambert93_epsg2154_extra_bytes_697k.laz")
    r = ingest_pointcloud(path, store, settings)
    las = laspy.read(str(path))
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    cls = np.asarray(las.classification)
    index = PointIndex(r.build_dir)
    cx, cy = float(x.mean()), float(y.mean())
    poly = shapely.Polygon([(cx - 120, cy - 90), (cx + 100, cy - 60), (cx + 40, cy + 110), (cx - 90, cy + 40)])
    brute = shapely.intersects_xy(poly, x, y)
    region = index.region(polygon=poly.__geo_interface__, crs="EPSG:2154")
    assert index.count(region) == int(brute.sum())
    assert index.count(region, {6}) == int((brute & (cls == 6)).sum())
    # the same polygon given in lon/lat (transformed and densified) gives nearly the same count
    to_ll = Transformer.from_crs("EPSG:2154", "OGC:CRS84", always_xy=True)
    ll = shapely.transform(shapely.segmentize(poly, 5), lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1])))
    assert abs(index.count(index.region(polygon=ll.__geo_interface__)) - int(brute.sum())) < brute.sum() * 0.002
    # a 3D box (heights in metres) with a class filter; extraction returns the same points
    box = (cx - 50, cy - 50, 100.0, cx + 50, cy + 50, 105.0)
    inbox = (x >= box[0]) & (x <= box[3]) & (y >= box[1]) & (y <= box[4]) & (z >= box[2]) & (z <= box[5])
    region = index.region(bbox=box, crs="EPSG:2154")
    assert index.count(region, {2}) == int((inbox & (cls == 2)).sum())
    sel = index.select(region, {2}, limit=10 ** 6)
    assert sel.matched == sel.returned == int((inbox & (cls == 2)).sum()) and not sel.truncated
    assert sorted(np.round(sel.x, 2)) == sorted(np.round(x[inbox & (cls == 2)], 2))
    small = index.select(region, None, limit=100)
    assert small.returned == 100 and small.truncated and small.matched == int(inbox.sum())
    back = laspy.read(__import__("io").BytesIO(index.to_las(sel)))
    assert len(back.points) == sel.returned and back.header.parse_crs().to_epsg() == 2154
    assert np.allclose(np.sort(np.asarray(back.z)), np.sort(sel.z))
