"""The pipe tileset built on a Dask cluster, partitioned by tile region, identical to the serial build.

The driver loads the network and lays out the quadtree exactly as :func:`tiles.pipes.build_pipe_tileset`
does, then cuts the tree into disjoint subtrees (regions). Each region's rows (in feature order) and its
subtree go to a Dask task that writes that region's tiles with the serial code; the driver writes the few
tiles above the cut, splices the returned tile JSON in place and writes tileset.json and manifest.json.
Every tile is computed from the same rows in the same order with the same frames, so the output is
byte-identical to the serial build. Workers write ``tiles/*.glb`` themselves: on a multi-machine cluster
``out_dir`` must be a shared folder (NFS, CephFS) mounted at the same path on every worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cim.heights import GeoidModel
from cim.store import DuckDBStore
from tiles.pipes import (
    BuildPlan,
    BuildResult,
    TilingOptions,
    _Network,
    _tile_json,
    finish_build,
    plan_build,
)
from tiles.quadtree import Cell


def partition(root: Cell, target: int) -> list[Cell]:
    """Disjoint subtrees covering the tree: split the fullest splittable cell until ``target`` regions."""
    regions = [root]
    while len(regions) < target:
        splittable = [i for i, c in enumerate(regions) if c.children]
        if not splittable:
            break
        i = max(splittable, key=lambda j: (len(regions[j].items), -j))
        regions[i:i + 1] = regions[i].children
    return regions


def _subnet(net: _Network, cell: Cell) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Cell]:
    """A region's rows (feature order kept) and its subtree with item indices renumbered to them."""
    items = np.sort(cell.items)
    segs = items[items < net.ns]
    pts = items[items >= net.ns] - net.ns
    seg = {k: v[segs] for k, v in net.seg.items()}
    pt = {k: v[pts] for k, v in net.pts.items()}

    def renumber(c: Cell) -> Cell:
        it = c.items
        s = np.searchsorted(segs, it[it < net.ns])
        p = np.searchsorted(pts, it[it >= net.ns] - net.ns) + len(segs)
        new = np.empty(len(it), dtype=it.dtype)
        new[it < net.ns], new[it >= net.ns] = s, p
        return replace(c, items=new, children=[renumber(ch) for ch in c.children])

    return seg, pt, renumber(cell)


def build_region(
    seg: dict[str, np.ndarray], pts: dict[str, np.ndarray], cell: Cell, parent_matrix: np.ndarray | None,
    out_dir: Path, opts: TilingOptions, storage_crs: str, geoid: GeoidModel, old_tiles: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], BuildResult]:
    """One Dask task: write a region's tiles; return its tile JSON, manifest entries and counts."""
    net = _Network(seg, pts)
    net.compress = opts.compress
    manifest: dict[str, Any] = {"tiles": {}}
    result = BuildResult(Path(out_dir), 0, 0, 0, 0, 0)
    tile = _tile_json(cell, net, Path(out_dir), opts, storage_crs, geoid, parent_matrix, old_tiles, manifest, result)
    return tile, manifest["tiles"], result


@contextmanager
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1) -> Iterator[Any]:
    """A dask.distributed LocalCluster and its Client (processes, no dashboard), closed on exit."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def build_pipe_tileset_dask(
    store: DuckDBStore,
    out_dir: Path,
    *,
    storage_crs: str,
    geoid: GeoidModel,
    options: TilingOptions | None = None,
    client: Any = None,
    regions: int | None = None,
) -> BuildResult:
    """:func:`tiles.pipes.build_pipe_tileset` with the tile regions built as tasks on a Dask ``client``.

    Without a client a ``LocalCluster(n_workers=2)`` is started for the build. ``regions`` defaults to
    four per worker.
    """
    if client is None:
        with local_cluster() as own:
            return build_pipe_tileset_dask(store, out_dir, storage_crs=storage_crs, geoid=geoid, options=options,
                                           client=own, regions=regions)
    plan = plan_build(store, out_dir, storage_crs=storage_crs, geoid=geoid, options=options)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    cut = partition(plan.root, regions or 4 * workers)
    cut_keys = {c.key for c in cut}
    futures: dict[str, Any] = {}

    def submit(cell: Cell, parent_matrix: np.ndarray | None) -> dict[str, Any] | None:
        if cell.key not in cut_keys:
            return None
        seg, pts, sub = _subnet(plan.net, cell)
        old = {c.key: plan.old_tiles[c.key] for c in cell.walk() if c.key in plan.old_tiles}
        rows = client.scatter([seg, pts], hash=False)  # rows travel as data, not inside the task graph
        futures[cell.key] = client.submit(
            build_region, *rows, sub, parent_matrix, plan.out_dir, plan.opts, storage_crs, geoid, old,
            key=f"pipe-region-{cell.key}", pure=False,
        )
        return {"__region__": cell.key}

    root_json = _tile_json(plan.root, plan.net, plan.out_dir, plan.opts, storage_crs, geoid, None, plan.old_tiles,
                           plan.manifest, plan.result, submit)
    done = dict(zip(futures, client.gather(list(futures.values())), strict=True))
    root_json = _splice(root_json, done, plan)
    _reorder(plan)
    return finish_build(plan, root_json, geoid)


def _splice(node: dict[str, Any], done: dict[str, tuple], plan: BuildPlan) -> dict[str, Any]:
    """Put each region's tile JSON where its region marker stands and add its manifest entries and counts."""
    key = node.get("__region__")
    if key is not None:
        tile, entries, result = done[key]
        plan.manifest["tiles"].update(entries)
        plan.result.tiles += result.tiles
        plan.result.written += result.written
        plan.result.skipped += result.skipped
        plan.result.keys_written.extend(result.keys_written)
        return tile
    if "children" in node:
        node["children"] = [_splice(c, done, plan) for c in node["children"]]
    return node


def _reorder(plan: BuildPlan) -> None:
    """Manifest entries and written keys in the serial build's order (parents first, depth first)."""
    order = {c.key: i for i, c in enumerate(plan.root.walk())}
    plan.manifest["tiles"] = dict(sorted(plan.manifest["tiles"].items(), key=lambda kv: order[kv[0]]))
    plan.result.keys_written.sort(key=order.__getitem__)
