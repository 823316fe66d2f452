"""Terrain and orthophoto of the synthetic Jinan district (:mod:`converters.samples.district`).

* ``district_dem.tif``: the district's ground surface (the same function the survey's 地面高程 come from,
  so DEM and surveyed ground agree to millimetres) on 2 m cells with a 100 m margin, float32, CRS
  EPSG:4548 with 1985 national heights (EPSG:5737, written as a compound CRS), nodata −9999, DEFLATE COG.
* ``district_dom.tif``: a deterministic synthetic orthophoto on 0.5 m pixels over the same area: soil and
  grass texture, asphalt streets along every pipe corridor (the street grid) with kerbs, pavements and lane
  markings, and blocks of buildings (roofs with shadows), courtyards and trees. RGB, JPEG-compressed COG.

Example::

    python -m converters.samples.district_rasters sample_data/jinan_realscene
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.samples.district import BLOCK, ORIGIN_E, ORIGIN_N, _Grid

CRS = "EPSG:4548"
COMPOUND_CRS = "EPSG:4548+5737"
MARGIN_M = 100.0
DEM_CELL_M = 2.0
DOM_PIXEL_M = 0.5
NODATA = -9999.0
ROAD_HALF_M = 16.0  # carriageway: the pipe corridors lie within ±13.5 m of the centre line
WALK_M = 4.5  # pavement beyond the kerb


@dataclass(frozen=True)
class RasterSummary:
    """What :func:`generate_rasters` wrote: paths, bounds (EPSG:4548) and sizes."""

    dem: Path
    dom: Path
    bounds: tuple[float, float, float, float]
    dem_shape: tuple[int, int]
    dom_shape: tuple[int, int]
    bytes: int


def district_grid(blocks_x: int = 4, blocks_y: int = 3, seed: int = 2025) -> _Grid:
    """The street grid and ground surface :func:`~converters.samples.district.generate_district` uses."""
    rng = np.random.default_rng(seed)
    return _Grid(blocks_x, blocks_y, tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 3)))  # type: ignore[arg-type]


def district_bounds(blocks_x: int, blocks_y: int) -> tuple[float, float, float, float]:
    """West, south, east, north (m, EPSG:4548) of the street grid plus :data:`MARGIN_M`."""
    e0, n0 = ORIGIN_E / 1000, ORIGIN_N / 1000
    return (e0 - MARGIN_M, n0 - MARGIN_M, e0 + blocks_x * BLOCK / 1000 + MARGIN_M,
            n0 + blocks_y * BLOCK / 1000 + MARGIN_M)


def dem_array(grid: _Grid, bounds: tuple[float, float, float, float], cell: float, seed: int) -> np.ndarray:
    """Ground heights (1985, m) at the cell centres, row 0 at the north."""
    w, s, e, n = bounds
    cols, rows = round((e - w) / cell), round((n - s) / cell)
    east = (w + cell * (np.arange(cols) + 0.5)) * 1000
    north = (n - cell * (np.arange(rows) + 0.5)) * 1000
    ee, nn = np.meshgrid(east, north)
    return (grid.ground(ee, nn, np.random.default_rng([seed, 99])) / 1000.0).astype("f4")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled bilinearly to ``shape`` (range about 0–1)."""
    from scipy.ndimage import zoom

    coarse = rng.random((shape[0] // scale + 2, shape[1] // scale + 2))
    out = zoom(coarse, scale, order=1)
    return out[: shape[0], : shape[1]]


def dom_array(blocks_x: int, blocks_y: int, bounds: tuple[float, float, float, float], pixel: float,
              seed: int) -> np.ndarray:
    """RGB (3, rows, cols) uint8 of the synthetic orthophoto."""
    rng = np.random.default_rng([seed, 7])
    w, s, e, n = bounds
    cols, rows = round((e - w) / pixel), round((n - s) / pixel)
    x = w + pixel * (np.arange(cols) + 0.5)
    y = n - pixel * (np.arange(rows) + 0.5)
    xx, yy = np.meshgrid(x, y)
    # ground: soil and grass patches with fine grain
    patch = _smooth_noise(rng, (rows, cols), 80)
    grain = rng.normal(0, 1, (rows, cols))
    soil, grass = np.array([150, 135, 105], "f4"), np.array([95, 120, 70], "f4")
    mix = np.clip((patch - 0.35) * 2.5, 0, 1)[..., None]
    img = soil * (1 - mix) + grass * mix + grain[..., None] * 6
    e0, n0 = ORIGIN_E / 1000, ORIGIN_N / 1000
    block = BLOCK / 1000
    # distance to the nearest N–S and E–W street centre line
    dx = np.abs(((xx - e0 + block / 2) % block) - block / 2)
    dy = np.abs(((yy - n0 + block / 2) % block) - block / 2)
    ns = (xx > e0 - 60) & (xx < e0 + blocks_x * block + 60)
    ew = (yy > n0 - 60) & (yy < n0 + blocks_y * block + 60)
    in_x = (xx >= e0 - ROAD_HALF_M) & (xx <= e0 + blocks_x * block + ROAD_HALF_M)
    in_y = (yy >= n0 - ROAD_HALF_M) & (yy <= n0 + blocks_y * block + ROAD_HALF_M)
    d_street = np.minimum(np.where(in_y & ns, dx, np.inf), np.where(in_x & ew, dy, np.inf))
    walk = d_street <= ROAD_HALF_M + WALK_M
    road = d_street <= ROAD_HALF_M
    img[walk] = np.array([178, 174, 166], "f4") + grain[walk][:, None] * 5
    img[road] = np.array([72, 74, 78], "f4") + grain[road][:, None] * 4 + patch[road][:, None] * 10
    # lane markings: dashed centre lines, solid edge lines (not across junctions)
    junction = (dx <= ROAD_HALF_M + WALK_M) & (dy <= ROAD_HALF_M + WALK_M)
    dash_ns = (dx < 0.3) & (((yy - n0) % 12) < 6) & road & ~junction
    dash_ew = (dy < 0.3) & (((xx - e0) % 12) < 6) & road & ~junction
    edge = (np.abs(np.minimum(dx, dy) - (ROAD_HALF_M - 0.6)) < 0.3) & road & ~junction
    img[dash_ns | dash_ew | edge] = (235, 235, 225)
    _buildings(img, xx, yy, blocks_x, blocks_y, rng)
    return np.clip(img, 0, 255).astype("uint8").transpose(2, 0, 1)


def _buildings(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, blocks_x: int, blocks_y: int,
               rng: np.random.Generator) -> None:
    """Buildings (roofs with a south-east shadow), courtyards and trees inside each block."""
    e0, n0, block = ORIGIN_E / 1000, ORIGIN_N / 1000, BLOCK / 1000
    inner = ROAD_HALF_M + WALK_M + 3.0
    roofs = np.array([[150, 150, 155], [170, 95, 80], [110, 120, 135], [200, 196, 188], [125, 110, 100]], "f4")
    px = xx[0, 1] - xx[0, 0]
    for i in range(blocks_x):
        for j in range(blocks_y):
            bw, bs = e0 + i * block + inner, n0 + j * block + inner
            size = block - 2 * inner
            if rng.random() < 0.15:  # a park: trees on grass
                _trees(img, xx, yy, (bw, bs, bw + size, bs + size), rng, 40)
                continue
            for _ in range(int(rng.integers(3, 7))):
                wdt, hgt = rng.uniform(14, 45), rng.uniform(12, 30)
                x0, y0 = bw + rng.uniform(0, size - wdt), bs + rng.uniform(0, size - hgt)
                shadow = (xx >= x0 + 3) & (xx < x0 + wdt + 3) & (yy >= y0 - 4) & (yy < y0 + hgt - 4)
                img[shadow] *= 0.55
                roof = (xx >= x0) & (xx < x0 + wdt) & (yy >= y0) & (yy < y0 + hgt)
                colour = roofs[int(rng.integers(len(roofs)))]
                ridge = np.abs(yy[roof] - (y0 + hgt / 2)) < px
                img[roof] = colour
                img[np.where(roof)[0][ridge], np.where(roof)[1][ridge]] = colour * 0.8
            _trees(img, xx, yy, (bw, bs, bw + size, bs + size), rng, 8)


def _trees(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, box: tuple[float, float, float, float],
           rng: np.random.Generator, count: int) -> None:
    w, s, e, n = box
    for _ in range(count):
        cx, cy, r = rng.uniform(w, e), rng.uniform(s, n), rng.uniform(2.0, 4.5)
        near = (np.abs(xx - cx) < r + 2) & (np.abs(yy - cy) < r + 2)
        d = np.hypot(xx[near] - cx, yy[near] - cy)
        shade = np.clip(1 - d / r, 0, 1)[:, None]
        tree = d < r
        pix = img[near]
        pix[tree] = (np.array([40, 80, 35], "f4") + 40 * shade[tree])
        img[near] = pix


def _write_cog(path: Path, data: np.ndarray, bounds: tuple[float, float, float, float], crs: str,
               **options: object) -> None:
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import from_bounds

    count, rows, cols = data.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": count, "dtype": data.dtype.name,
               "transform": from_bounds(*bounds, cols, rows), "nodata": options.pop("nodata", None)}
    with rasterio.Env(GTIFF_REPORT_COMPD_CS=True), MemoryFile() as mem:
        with mem.open(**profile, crs=rasterio.crs.CRS.from_user_input(crs)) as dst:
            dst.write(data)
        rio_copy(mem.name, str(path), driver="COG", blocksize=256, overviews="AUTO", **options)


def generate_rasters(out_dir: Path, *, blocks_x: int = 4, blocks_y: int = 3, seed: int = 2025) -> RasterSummary:
    """Write ``district_dem.tif`` and ``district_dom.tif`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = district_bounds(blocks_x, blocks_y)
    dem = dem_array(district_grid(blocks_x, blocks_y, seed), bounds, DEM_CELL_M, seed)
    dem_path, dom_path = out_dir / "district_dem.tif", out_dir / "district_dom.tif"
    _write_cog(dem_path, dem[None], bounds, COMPOUND_CRS, nodata=NODATA, compress="DEFLATE", predictor="3",
               resampling="BILINEAR")
    dom = dom_array(blocks_x, blocks_y, bounds, DOM_PIXEL_M, seed)
    _write_cog(dom_path, dom, bounds, CRS, compress="JPEG", quality=82, resampling="AVERAGE")
    size = dem_path.stat().st_size + dom_path.stat().st_size
    return RasterSummary(dem_path, dom_path, bounds, dem.shape, dom.shape[1:], size)


def main(argv: list[str] | None = None) -> int:
    """``python -m converters.samples.district_rasters OUT_DIR [--blocks-x 4 --blocks-y 3 --seed 2025]``."""
    parser = argparse.ArgumentParser(description="Write the district's DEM and orthophoto (EPSG:4548 COGs).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--blocks-x", type=int, default=4)
    parser.add_argument("--blocks-y", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    summary = generate_rasters(args.out_dir, blocks_x=args.blocks_x, blocks_y=args.blocks_y, seed=args.seed)
    print(f"DEM {summary.dem_shape[1]}×{summary.dem_shape[0]}, DOM {summary.dom_shape[1]}×{summary.dom_shape[0]} "
          f"over {summary.bounds} in {math.ceil(summary.bytes / 1024)} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
