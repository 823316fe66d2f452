"""The point-cloud tiler: exact placement, every point in exactly one tile, the same tiles whether it runs in
one process or in a pool with cells spilled and split again, glTF and pnts content, and bounded cells."""

from __future__ import annotations

import json
from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS

from cim.heights import ConstantGeoid, get_geoid
from tests.tools.validators import gltf_validate, gltf_validator_available, validate_tileset_json
from tiles.pointcloud import PointSource, TilerOptions, build_pointcloud_tileset, morton3, node_xyz, run_job
from tiles.pointcloud_content import points_glb, points_pnts, read_points
from tiles.pointcloud_frame import GridTransform, HeightModel


def _cloud(path: Path, n: int = 60_000, seed: int = 3) -> Path:
    """A small Jinan scan (EPSG:4548, 1985 heights): a sloping ground with a tower of points."""
    rng = np.random.default_rng(seed)
    h = laspy.LasHeader(point_format=3, version="1.2")
    h.scales, h.offsets = np.array([0.001] * 3), np.array([502000.0, 4058000.0, 0.0])
    h.add_crs(CRS("EPSG:4548"))
    las = laspy.LasData(h)
    x = 502000 + rng.random(n) * 300
    y = 4058000 + rng.random(n) * 200
    z = 75 - 0.015 * (y - 4058000) + rng.random(n) * 0.05
    tower = rng.random(n) < 0.1
    z[tower] += rng.random(tower.sum()) * 60
    las.x, las.y, las.z = x, y, z
    las.intensity = rng.integers(0, 4096, n)
    las.classification = np.where(tower, 6, 2)
    las.red = las.green = las.blue = rng.integers(0, 65536, n)
    las.write(str(path))
    return path


def _source(path: Path) -> PointSource:
    return PointSource(path, CRS("EPSG:4548").to_wkt(), HeightModel(), "egm96")


def _all_points(out: Path) -> tuple[np.ndarray, np.ndarray]:
    pts, cls = [], []
    for f in sorted((out / "tiles").iterdir()):
        p = read_points(f.read_bytes())
        pts.append(p["enu"])
        cls.append(p["classification"])
    return np.concatenate(pts), np.concatenate(cls)


def test_grid_transform_matches_the_exact_chain_to_a_millimetre() -> None:
    geoid = get_geoid("egm96")
    for crs, box, upm in (("EPSG:4548", (495000, 4050000, 0, 505000, 4060000, 300), 1.0),
                          ("EPSG:4326", (116.9, 36.6, 0, 117.1, 36.7, 300), 1 / 111_320)):
        t = GridTransform(crs, (box[0], box[1], box[3], box[4]), HeightModel(), geoid, units_per_metre=upm)
        assert t.check(box, 2000) < 0.001
    feet = GridTransform("EPSG:2913", (7_600_000, 680_000, 7_604_000, 684_000), HeightModel(0.3048), geoid,
                         units_per_metre=1 / 0.3048)
    assert feet.check((7_600_000, 680_000, 0, 7_604_000, 684_000, 1000), 500) < 0.001


def test_ellipsoidal_heights_skip_the_geoid() -> None:
    t = GridTransform("EPSG:4548", (500000, 4057000, 500100, 4057100), HeightModel(ellipsoidal=True),
                      ConstantGeoid(-7.3))
    n = GridTransform("EPSG:4548", (500000, 4057000, 500100, 4057100), HeightModel(), ConstantGeoid(-7.3),
                      origin=t.origin)
    a = t.enu(np.array([500050.0]), np.array([4057050.0]), np.array([50.0]))
    b = n.enu(np.array([500050.0]), np.array([4057050.0]), np.array([50.0]))
    assert (a - b)[0, 2] == pytest.approx(7.3, abs=1e-3)


def test_morton_codes_and_node_names() -> None:
    x, y, z = np.array([5]), np.array([3]), np.array([6])
    key = int(morton3(x, y, z)[0])
    assert node_xyz(key, 3) == (5, 3, 6)


def test_content_round_trips_in_glb_and_pnts() -> None:
    rng = np.random.default_rng(0)
    pos = rng.random((100, 3)) * 50 - 25
    centre = np.array([100.0, -200.0, 30.0])
    rgb = rng.integers(0, 256, (100, 3)).astype(np.uint8)
    inten = rng.integers(0, 65535, 100).astype(np.uint16)
    cls = rng.integers(0, 20, 100).astype(np.uint8)
    for writer in (points_glb, points_pnts):
        back = read_points(writer(pos, centre, rgb, inten, cls))
        assert np.abs(back["enu"] - (pos + centre)).max() < 1e-4
        assert (back["rgb"] == rgb).all() and (back["intensity"] == inten).all()
        assert (back["classification"] == cls).all()
    glb = points_glb(pos, centre, rgb, inten, cls)
    gltf = json.loads(glb[20:20 + int.from_bytes(glb[12:16], "little")])
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0 and set(prim["attributes"]) == {"POSITION", "COLOR_0", "_INTENSITY", "_CLASSIFICATION"}
    color = gltf["accessors"][prim["attributes"]["COLOR_0"]]
    assert color["componentType"] == 5121 and color["normalized"] and color["type"] == "VEC3"
    # y-up: ENU up is glTF +y
    assert gltf["nodes"][0]["translation"] == [100.0, 30.0, 200.0]


def test_serial_and_pooled_runs_with_split_cells_write_the_same_points(tmp_path: Path) -> None:
    src = _source(_cloud(tmp_path / "c.las"))
    serial = build_pointcloud_tileset(src, tmp_path / "serial", TilerOptions(leaf_points=5000))
    pooled = build_pointcloud_tileset(src, tmp_path / "pooled", TilerOptions(
        leaf_points=5000, parallel_from=0, workers=2, chunk_points=7000, cell_points=5000, max_cell_points=12_000))
    assert serial.extra["serial"] and not pooled.extra["serial"] and pooled.extra["spill_level"] >= 1
    assert serial.points == pooled.points == 60_000
    assert serial.classes == pooled.classes == {2: serial.classes[2], 6: serial.classes[6]}
    a, ca = _all_points(tmp_path / "serial")
    b, cb = _all_points(tmp_path / "pooled")
    assert len(a) == len(b) == 60_000  # refine ADD: every point in exactly one tile
    ka, kb = np.lexsort(np.round(a, 3).T), np.lexsort(np.round(b, 3).T)
    assert np.abs(a[ka] - b[kb]).max() < 1e-3 and (ca[ka] == cb[kb]).all()
    for out in (tmp_path / "serial", tmp_path / "pooled"):
        assert validate_tileset_json(out / "tileset.json") == []
        assert not (out / ".spill").exists()
        index = json.loads((out / "points" / "index.json").read_text())
        assert sum(n["count"] for n in index["nodes"]) == 60_000
    if gltf_validator_available():
        reports = gltf_validate(sorted((tmp_path / "pooled" / "tiles").glob("*.glb")))
        assert sum(r["numErrors"] for r in reports.values()) == 0


def test_tiles_respect_the_leaf_size_and_lod_is_spatially_even(tmp_path: Path) -> None:
    src = _source(_cloud(tmp_path / "c.las", n=120_000))
    build_pointcloud_tileset(src, tmp_path / "o", TilerOptions(leaf_points=10_000))
    doc = json.loads((tmp_path / "o" / "tileset.json").read_text())
    root = read_points((tmp_path / "o" / doc["root"]["content"]["uri"]).read_bytes())["enu"]
    assert 1000 < len(root) < 120_000 * 0.5
    # the root's sample covers the whole ground evenly: every 30 m × 20 m cell holds some of its points
    e, n = root[:, 0], root[:, 1]
    hist, _, _ = np.histogram2d(e, n, bins=(10, 10))
    assert (hist > 0).all()

    def leaves(t: dict) -> list[dict]:
        return [t] if "children" not in t else [x for c in t["children"] for x in leaves(c)]
    for leaf in leaves(doc["root"]):
        assert len(read_points((tmp_path / "o" / leaf["content"]["uri"]).read_bytes())["enu"]) <= 10_000


def test_pnts_content_and_the_job_command(tmp_path: Path) -> None:
    path = _cloud(tmp_path / "c.las", n=20_000)
    result = run_job({"source": {"path": str(path), "crs_wkt": CRS("EPSG:4548").to_wkt()},
                      "out": str(tmp_path / "p"), "options": {"content": "pnts", "leaf_points": 5000}})
    assert result["points"] == 20_000 and result["classes"]["6"] > 0
    uris = list((tmp_path / "p" / "tiles").iterdir())
    assert uris and all(u.suffix == ".pnts" for u in uris)
    assert validate_tileset_json(tmp_path / "p" / "tileset.json") == []
    assert sum(len(read_points(u.read_bytes())["enu"]) for u in uris) == 20_000


def test_a_dask_cluster_run_writes_the_same_files_as_local_processes(tmp_path: Path) -> None:
    src = _source(_cloud(tmp_path / "c.las"))
    opts = {"leaf_points": 5000, "parallel_from": 0, "workers": 2, "chunk_points": 7000, "cell_points": 5000,
            "max_cell_points": 12_000}
    pooled = build_pointcloud_tileset(src, tmp_path / "pooled", TilerOptions(**opts))
    dask = build_pointcloud_tileset(src, tmp_path / "dask", TilerOptions(**opts, dask="local"))
    assert dask.points == pooled.points == 60_000 and dask.tiles == pooled.tiles

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "dask") == files(tmp_path / "pooled")
