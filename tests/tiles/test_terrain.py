"""Cesium quantized-mesh terrain from the real Swiss DEM and the district DEM: tiles decode (decoder below,
written from the quantized-mesh-1.0 specification), their heights equal DEM + geoid within the mesh error
bound, edge lists and triangle winding are right, tiles off the DEM are flat ellipsoid tiles, and layer.json
has what CesiumTerrainProvider reads."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cim.heights import ConstantGeoid, get_geoid
from cim.realscene.elevation import DEM
from tiles.terrain import GRID, TerrainSource, max_error, tile_bounds, tile_range, valid_tile

ROOT = Path(__file__).resolve().parents[2]
SWISS = ROOT / "../shared/data/raster/dem_epsg2056_2p5m.tif"
DISTRICT_DEM = ROOT / "sample_data" / "jinan_realscene" / "district_dem.tif"

pytestmark = [pytest.mark.skipif(not SWISS.is_file(), reason="the shared DEM sample is missing"),
              pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid missing")]


@dataclass
class QuantizedMesh:
    """A decoded quantized-mesh-1.0 tile."""

    header: dict[str, float]
    u: np.ndarray
    v: np.ndarray
    h: np.ndarray
    triangles: np.ndarray
    edges: dict[str, np.ndarray]
    extensions: dict[int, bytes] = field(default_factory=dict)

    def positions(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Vertices as lon, lat, height (m)."""
        w, s, e, n = bounds
        lo, hi = self.header["minimumHeight"], self.header["maximumHeight"]
        return np.column_stack([w + (e - w) * self.u / 32767, s + (n - s) * self.v / 32767,
                                lo + (hi - lo) * self.h / 32767])


HEADER = ("centerX", "centerY", "centerZ", "minimumHeight", "maximumHeight", "boundingSphereCenterX",
          "boundingSphereCenterY", "boundingSphereCenterZ", "boundingSphereRadius", "horizonOcclusionPointX",
          "horizonOcclusionPointY", "horizonOcclusionPointZ")


def decode(data: bytes) -> QuantizedMesh:
    """Decode a quantized-mesh-1.0 tile (header, zig-zag delta vertices, high-water-mark indices, edges,
    extensions)."""
    header = dict(zip(HEADER, struct.unpack_from("<3d2f4d3d", data, 0), strict=True))
    off = 88
    (n,) = struct.unpack_from("<I", data, off)
    off += 4

    def unzigzag(raw: np.ndarray) -> np.ndarray:
        a = raw.astype(np.int64)
        return np.cumsum((a >> 1) ^ -(a & 1))

    u, v, h = (unzigzag(np.frombuffer(data, "<u2", n, off + 2 * n * i)) for i in range(3))
    off += 6 * n
    wide = n > 65536
    size, dtype = (4, "<u4") if wide else (2, "<u2")
    off += (-off) % size
    (count,) = struct.unpack_from("<I", data, off)
    off += 4
    codes = np.frombuffer(data, dtype, count * 3, off).astype(np.int64)
    off += count * 3 * size
    indices, highest = np.empty_like(codes), 0
    for i, code in enumerate(codes):
        indices[i] = highest - code
        if code == 0:
            highest += 1
    edges = {}
    for name in ("west", "south", "east", "north"):
        (k,) = struct.unpack_from("<I", data, off)
        off += 4
        edges[name] = np.frombuffer(data, dtype, k, off).astype(np.int64)
        off += k * size
    extensions = {}
    while off < len(data):
        ext_id, length = struct.unpack_from("<BI", data, off)
        extensions[ext_id] = data[off + 5: off + 5 + length]
        off += 5 + length
    assert off == len(data)
    return QuantizedMesh(header, u, v, h, indices.reshape(-1, 3), edges, extensions)


def mesh_heights_at(mesh: QuantizedMesh, pos: np.ndarray, qu: np.ndarray, qv: np.ndarray) -> np.ndarray:
    """Heights of the mesh (barycentric in u/v) at the query u/v positions."""
    tri = mesh.triangles
    a, b, c = (np.column_stack([mesh.u[tri[:, i]], mesh.v[tri[:, i]]]).astype("f8") for i in range(3))
    out = np.full(qu.shape, np.nan)
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    for k, (x, y) in enumerate(zip(qu, qv, strict=True)):
        l1 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
        l2 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
        l3 = 1 - l1 - l2
        inside = np.where((l1 >= -1e-9) & (l2 >= -1e-9) & (l3 >= -1e-9))[0]
        if inside.size:
            j = inside[0]
            out[k] = l1[j] * pos[tri[j, 0], 2] + l2[j] * pos[tri[j, 1], 2] + l3[j] * pos[tri[j, 2], 2]
    return out


@pytest.fixture(scope="module")
def swiss() -> TerrainSource:
    return TerrainSource(SWISS, "EPSG:5737", get_geoid("egm96"), name="swiss")


def test_layer_json_has_what_cesium_reads(swiss: TerrainSource) -> None:
    layer = swiss.layer_json(version="3")
    assert layer["format"] == "quantized-mesh-1.0" and layer["scheme"] == "tms"
    assert layer["projection"] == "EPSG:4326" and layer["tiles"] == ["{z}/{x}/{y}.terrain?v=3"]
    assert layer["maxzoom"] == 17 and len(layer["available"]) == 18  # 2.5 m cells: level 17 (≈1.9 m steps)
    assert layer["available"][0] == [{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    w, s, e, n = layer["bounds"]
    assert 7.09 < w < e < 7.11 and 45.91 < s < n < 45.93
    for z, ranges in enumerate(layer["available"][1:], start=1):
        (r,) = ranges
        assert 0 <= r["startX"] <= r["endX"] < 2 << z and 0 <= r["startY"] <= r["endY"] < 1 << z
        for lon, lat in ((w, s), (e, n), ((w + e) / 2, (s + n) / 2)):  # every DEM corner lies in a listed tile
            x, y = int((lon + 180) // (180 / (1 << z))), int((lat + 90) // (180 / (1 << z)))
            assert r["startX"] <= x <= r["endX"] and r["startY"] <= y <= r["endY"]
    assert valid_tile(0, 1, 0) and not valid_tile(0, 2, 0) and not valid_tile(3, 0, 8)


def _inner_tile(source: TerrainSource, z: int) -> tuple[int, int]:
    x0, y0, x1, y1 = tile_range(source.lonlat, z)
    return (x0 + x1) // 2, (y0 + y1) // 2


def test_deepest_tile_heights_equal_dem_plus_geoid_within_the_error_bound(swiss: TerrainSource) -> None:
    z = swiss.maxzoom
    x, y = _inner_tile(swiss, z)
    bounds = tile_bounds(z, x, y)
    mesh = decode(swiss.tile(z, x, y))
    pos = mesh.positions(bounds)
    dem = DEM(SWISS, "swiss", "EPSG:5737", None)
    geoid = get_geoid("egm96")
    expected = dem.sample(pos[:, 0], pos[:, 1], "EPSG:4326") + geoid.undulation(pos[:, 0], pos[:, 1])
    quantum = (mesh.header["maximumHeight"] - mesh.header["minimumHeight"]) / 32767
    assert np.isfinite(expected).all() and len(pos) > 100
    np.testing.assert_allclose(pos[:, 2], expected, atol=quantum + 0.01)  # vertices sit on the DEM
    # between vertices: the mesh stays within max_error of DEM + geoid at every grid point
    gu, gv = np.meshgrid(np.rint(np.arange(GRID) / (GRID - 1) * 32767), np.rint(np.arange(GRID) / (GRID - 1) * 32767))
    gu, gv = gu.ravel(), gv.ravel()
    lon = bounds[0] + (bounds[2] - bounds[0]) * gu / 32767
    lat = bounds[1] + (bounds[3] - bounds[1]) * gv / 32767
    truth = dem.sample(lon, lat, "EPSG:4326") + geoid.undulation(lon, lat)
    got = mesh_heights_at(mesh, pos, gu, gv)
    err = np.abs(got - truth)
    assert np.isfinite(err).all() and err.max() <= max_error(z) + quantum + 0.01, err.max()
    assert 1615 + 45 < mesh.header["minimumHeight"] < mesh.header["maximumHeight"] < 2016 + 55


def test_tiles_are_well_formed(swiss: TerrainSource) -> None:
    for z in (0, 8, 14, swiss.maxzoom):
        x, y = _inner_tile(swiss, z)
        mesh = decode(swiss.tile(z, x, y, normals=True))
        for name, sel in (("west", mesh.u == 0), ("east", mesh.u == 32767), ("south", mesh.v == 0),
                          ("north", mesh.v == 32767)):
            assert sorted(mesh.edges[name]) == sorted(np.where(sel)[0]) and len(mesh.edges[name]) >= 2
        t = mesh.triangles
        assert t.max() < len(mesh.u) and len(np.unique(t)) == len(mesh.u)  # every vertex is used
        a, b, c = (np.column_stack([mesh.u[t[:, i]], mesh.v[t[:, i]]]) for i in range(3))
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        assert (cross > 0).all()  # counter-clockwise seen from above, as Cesium draws
        assert len(mesh.extensions[1]) == 2 * len(mesh.u)  # octvertexnormals: two bytes per vertex
        h = mesh.header
        assert h["boundingSphereRadius"] > 0 and np.isfinite([h["centerX"], h["centerY"], h["centerZ"]]).all()
    assert 1 not in decode(swiss.tile(14, *_inner_tile(swiss, 14))).extensions


def test_tiles_off_the_dem_are_flat_and_follow_the_globe(swiss: TerrainSource) -> None:
    for z, x, y in ((0, 0, 0), (3, 2, 5), (17, 1000, 1000)):
        mesh = decode(swiss.tile(z, x, y))
        assert mesh.header["minimumHeight"] == mesh.header["maximumHeight"] == 0.0
        assert (mesh.h == 0).all()
    # a root tile spans 180°: enough vertices that no chord cuts deep below the ellipsoid
    root = decode(swiss.tile(0, 1, 0))
    assert len(root.u) > 100


def test_district_terrain_is_in_ellipsoidal_heights(tmp_path: Path) -> None:
    source = TerrainSource(DISTRICT_DEM, "EPSG:5737", ConstantGeoid(-7.3))
    z = source.maxzoom
    x, y = _inner_tile(source, z)
    pos = decode(source.tile(z, x, y)).positions(tile_bounds(z, x, y))
    dem = DEM(DISTRICT_DEM, "district", "EPSG:5737", None)
    np.testing.assert_allclose(pos[:, 2], dem.sample(pos[:, 0], pos[:, 1], "EPSG:4326") - 7.3, atol=0.01)
    assert 60 < pos[:, 2].min() < pos[:, 2].max() < 75
