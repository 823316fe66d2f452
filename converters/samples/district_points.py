"""A synthetic airborne lidar scan of the Jinan sample district, as a LAZ file a survey contractor delivers.

Example::

    from converters.samples.district_points import generate_district_points
    summary = generate_district_points(Path("sample_data/jinan_realscene/district_points.laz"))

or ``python -m converters.samples.district_points [OUT] [--points 300000]``.

The scan covers the 4 × 3 blocks of :mod:`converters.samples.district` (E 502 000–502 600, N 4 058 000–
4 058 450, EPSG:4548) with a 20 m margin, on the same ground surface (1985 heights): ground (class 2,
grass and asphalt colours, the streets darker in intensity), six building blocks (class 6: flat roofs 12–45 m
above ground and some wall points), street trees (class 5: trunks and round crowns). RGB is 16-bit, intensity
as a 12-bit scanner gives it, GPS time adjusted standard (so the acquisition date, 2025-04-18, is in the
points), and the compound CRS ``CGCS2000 / 3-degree GK CM 117E + Yellow Sea 1985 height`` is written as WKT.
The same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from converters.samples.district import BLOCK, ORIGIN_E, ORIGIN_N, _Grid

DEFAULT_OUT = Path("sample_data/jinan_realscene/district_points.laz")
CRS = "EPSG:4548+5737"
MARGIN = 20.0
SURVEY_DAY = datetime(2025, 4, 18, 2, 30, tzinfo=UTC)  # 10:30 Beijing time
GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)


@dataclass(frozen=True)
class PointsSummary:
    """What :func:`generate_district_points` wrote."""

    path: Path
    points: int
    classes: dict[int, int]
    bbox: tuple[float, float, float, float, float, float]
    crs: str = CRS


def _ground_h(grid: _Grid, e: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return grid.ground(np.asarray(e) * 1000.0, np.asarray(n) * 1000.0, rng) / 1000.0


def _street_distance(e: np.ndarray, n: np.ndarray) -> np.ndarray:
    de = np.abs(((e - ORIGIN_E / 1000) + BLOCK / 2000) % (BLOCK / 1000) - BLOCK / 2000)
    dn = np.abs(((n - ORIGIN_N / 1000) + BLOCK / 2000) % (BLOCK / 1000) - BLOCK / 2000)
    return np.minimum(de, dn)


def _buildings(bx: int, by: int) -> list[tuple[float, float, float, float, float]]:
    """(west, south, east, north, height above ground) of the building blocks, inside the street blocks."""
    b = BLOCK / 1000
    spots = [(0, 0, 24.0), (1, 0, 45.0), (3, 0, 18.0), (0, 2, 12.0), (2, 1, 33.0), (3, 2, 27.0)]
    out = []
    for i, j, h in spots:
        if i < bx and j < by:
            w, s = ORIGIN_E / 1000 + i * b, ORIGIN_N / 1000 + j * b
            out.append((w + 30, s + 35, w + 30 + 60 + 10 * (i % 2), s + 35 + 45 + 8 * (j % 2), h))
    return out


def _colour(base: tuple[int, int, int], count: int, rng: np.random.Generator, spread: int = 18) -> np.ndarray:
    c = np.asarray(base, dtype=np.int64)[None, :] + rng.integers(-spread, spread + 1, (count, 3))
    return (np.clip(c, 0, 255) * 257).astype(np.uint16)


def _scene(points: int, bx: int, by: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = _Grid(bx, by, tuple(float(v) for v in np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)))  # type: ignore[arg-type]
    w, s = ORIGIN_E / 1000 - MARGIN, ORIGIN_N / 1000 - MARGIN
    e_, n_ = ORIGIN_E / 1000 + bx * BLOCK / 1000 + MARGIN, ORIGIN_N / 1000 + by * BLOCK / 1000 + MARGIN
    houses = _buildings(bx, by)
    n_tree, n_bldg = int(points * 0.12), int(points * 0.16)
    n_ground = points - n_tree - n_bldg
    parts: list[dict[str, np.ndarray]] = []
    # ground: everywhere but under the buildings
    ge, gn = rng.uniform(w, e_, n_ground), rng.uniform(s, n_, n_ground)
    for x0, y0, x1, y1, _h in houses:
        inside = (ge > x0) & (ge < x1) & (gn > y0) & (gn < y1)
        ge[inside] = rng.uniform(w, e_, inside.sum())
        gn[inside] = rng.uniform(s, y0 - 1, inside.sum())
    street = _street_distance(ge, gn) < 9.0
    rgb = np.where(street[:, None], _colour((92, 92, 96), n_ground, rng), _colour((96, 128, 70), n_ground, rng))
    parts.append({"e": ge, "n": gn, "h": _ground_h(grid, ge, gn, rng), "cls": np.full(n_ground, 2),
                  "int": np.where(street, rng.integers(300, 600, n_ground), rng.integers(900, 1500, n_ground)),
                  "rgb": rgb})
    # buildings: roofs (4/5) and walls
    per = n_bldg // len(houses)
    for k, (x0, y0, x1, y1, h) in enumerate(houses):
        count = per if k < len(houses) - 1 else n_bldg - per * (len(houses) - 1)
        roof = count * 4 // 5
        be, bn = rng.uniform(x0, x1, count), rng.uniform(y0, y1, count)
        base = float(_ground_h(grid, np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2]), rng)[0])
        bh = base + h + rng.normal(0, 0.03, count)
        wall = np.arange(count) >= roof
        side = rng.integers(0, 4, count)
        be = np.where(wall & (side == 0), x0, np.where(wall & (side == 1), x1, be))
        bn = np.where(wall & (side == 2), y0, np.where(wall & (side == 3), y1, bn))
        bh = np.where(wall, base + rng.uniform(0, h, count), bh)
        parts.append({"e": be, "n": bn, "h": bh, "cls": np.full(count, 6), "int": rng.integers(1200, 2000, count),
                      "rgb": _colour((170, 160, 150), count, rng)})
    # street trees: every 12 m along the streets, 4 m off the centre line
    xs = ORIGIN_E / 1000 + np.arange(0, bx * BLOCK / 1000 + 1, 12.0)
    ys = ORIGIN_N / 1000 + np.arange(0, by * BLOCK / 1000 + 1, 12.0)
    trees = [(x, ORIGIN_N / 1000 + j * BLOCK / 1000 + 4.0) for j in range(by + 1) for x in xs] + \
            [(ORIGIN_E / 1000 + i * BLOCK / 1000 + 4.0, y) for i in range(bx + 1) for y in ys]
    tx = np.array([t[0] for t in trees])
    ty = np.array([t[1] for t in trees])
    pick = rng.integers(0, len(trees), n_tree)
    radius = 2.5 + (pick % 3) * 0.5
    u = rng.normal(size=(n_tree, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    r = radius * rng.random(n_tree) ** (1 / 3)
    trunk = rng.random(n_tree) < 0.08
    te = np.where(trunk, tx[pick] + rng.normal(0, 0.12, n_tree), tx[pick] + u[:, 0] * r)
    tn = np.where(trunk, ty[pick] + rng.normal(0, 0.12, n_tree), ty[pick] + u[:, 1] * r)
    tg = _ground_h(grid, tx[pick], ty[pick], rng)
    th = np.where(trunk, tg + rng.uniform(0, 3.5, n_tree), tg + 3.5 + radius + u[:, 2] * r)
    parts.append({"e": te, "n": tn, "h": th, "cls": np.full(n_tree, 5), "int": rng.integers(200, 800, n_tree),
                  "rgb": np.where(trunk[:, None], _colour((90, 70, 50), n_tree, rng), _colour((50, 110, 45), n_tree, rng))})
    scene = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # flight lines: points ordered west to east in 60 m strips, as the scanner recorded them
    order = np.lexsort((scene["n"], np.floor((scene["e"] - w) / 60.0)))
    return {k: v[order] for k, v in scene.items()}


def generate_district_points(out: Path = DEFAULT_OUT, *, points: int = 300_000, blocks_x: int = 4,
                             blocks_y: int = 3, seed: int = 2025) -> PointsSummary:
    """Write the district scan as LAZ (LAS 1.4, point format 7) to ``out``; its summary."""
    import laspy
    from pyproj import CRS as ProjCRS

    if points < 1000:
        raise ValueError("a district scan needs at least 1000 points")
    scene = _scene(points, blocks_x, blocks_y, seed)
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([502000.0, 4058000.0, 0.0])
    header.add_crs(ProjCRS(CRS))
    header.global_encoding.gps_time_type = laspy.header.GpsTimeType.STANDARD
    header.creation_date = date(2025, 4, 20)
    header.generating_software = "cim-service district_points"
    header.system_identifier = "synthetic ALS"
    las = laspy.LasData(header)
    las.x, las.y, las.z = scene["e"], scene["n"], scene["h"]
    las.classification = scene["cls"].astype(np.uint8)
    las.intensity = scene["int"].astype(np.uint16)
    las.red, las.green, las.blue = scene["rgb"][:, 0], scene["rgb"][:, 1], scene["rgb"][:, 2]
    start = (SURVEY_DAY - GPS_EPOCH).total_seconds() - 1e9
    las.gps_time = start + np.arange(len(scene["e"])) * 1e-4
    las.return_number = np.ones(len(scene["e"]), dtype=np.uint8)
    las.number_of_returns = np.ones(len(scene["e"]), dtype=np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(out), laz_backend=laspy.LazBackend.Lazrs)
    cls, counts = np.unique(scene["cls"], return_counts=True)
    return PointsSummary(out, len(scene["e"]), {int(c): int(k) for c, k in zip(cls, counts, strict=True)},
                         (float(las.x.min()), float(las.y.min()), float(las.z.min()), float(las.x.max()),
                          float(las.y.max()), float(las.z.max())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--points", type=int, default=300_000)
    args = parser.parse_args(argv)
    s = generate_district_points(args.out, points=args.points)
    print(f"wrote {s.path}: {s.points:,} points, classes {s.classes}, {s.path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
