"""A stable quadtree over the storage CRS: cells depend only on a fixed anchor grid, not on the data extent,
so adding a pipe at the edge of a district never shifts every tile (incremental rebuilds stay small).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Cell:
    """One quadtree cell: level, column/row on its level's grid, bounds, the items it holds."""

    level: int
    col: int
    row: int
    bounds: tuple[float, float, float, float]  # minx, miny, maxx, maxy in the storage CRS
    items: np.ndarray  # indices into the caller's item arrays
    children: list[Cell] = field(default_factory=list)

    @property
    def key(self) -> str:
        """A stable name: ``level_col_row``."""
        return f"{self.level}_{self.col}_{self.row}"

    @property
    def size(self) -> float:
        """Edge length (m)."""
        return self.bounds[2] - self.bounds[0]

    def walk(self):
        """This cell and every descendant, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()


def root_cell(x: np.ndarray, y: np.ndarray, *, anchor: float = 0.0, min_size: float = 256.0) -> Cell:
    """The smallest anchored power-of-two cell (≥ ``min_size``) covering every point."""
    if len(x) == 0:
        return Cell(0, 0, 0, (0.0, 0.0, min_size, min_size), np.array([], dtype=np.int64))
    minx, miny, maxx, maxy = float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))
    if not all(np.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise ValueError("tile positions must be finite numbers (a NaN or infinite coordinate reached the tiler)")
    size = min_size
    while True:
        x0 = np.floor((minx - anchor) / size) * size + anchor
        y0 = np.floor((miny - anchor) / size) * size + anchor
        if x0 + size >= maxx and y0 + size >= maxy:
            break
        size *= 2
    return Cell(0, int(x0 // size), int(y0 // size), (x0, y0, x0 + size, y0 + size), np.arange(len(x)))


def split(cell: Cell, x: np.ndarray, y: np.ndarray, *, capacity: int, max_level: int) -> Cell:
    """Split ``cell`` recursively until each leaf holds at most ``capacity`` items (by their x/y)."""
    if len(cell.items) <= capacity or cell.level >= max_level:
        return cell
    minx, miny, maxx, maxy = cell.bounds
    midx, midy = (minx + maxx) / 2, (miny + maxy) / 2
    ix, iy = x[cell.items], y[cell.items]
    east = ix >= midx
    north = iy >= midy
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        mask = (east == bool(dx)) & (north == bool(dy))
        if not mask.any():
            continue
        bounds = (
            midx if dx else minx, midy if dy else miny, maxx if dx else midx, maxy if dy else midy,
        )
        child = Cell(cell.level + 1, cell.col * 2 + dx, cell.row * 2 + dy, bounds, cell.items[mask])
        cell.children.append(split(child, x, y, capacity=capacity, max_level=max_level))
    return cell
