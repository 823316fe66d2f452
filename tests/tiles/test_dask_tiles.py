"""The pipe tileset built on a Dask LocalCluster (two worker processes), region by region, is byte-identical
to the single-process build, first and after an incremental change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.heights import get_geoid
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tiles.dask_tiles import build_pipe_tileset_dask, local_cluster, partition
from tiles.pipes import TilingOptions, build_pipe_tileset, plan_build

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "jinan_district"
STORAGE = "EPSG:4548"
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")


@pytest.fixture(scope="module")
def geoid():
    return get_geoid("egm96")


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], s, SurveyOptions(), Settings(store="duckdb:///:memory:"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_cluster(n_workers=2) as c:
        yield c


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_regions_are_disjoint_and_cover_every_item(store: DuckDBStore, geoid, tmp_path: Path) -> None:
    plan = plan_build(store, tmp_path, storage_crs=STORAGE, geoid=geoid, options=TilingOptions(leaf_capacity=150))
    regions = partition(plan.root, 8)
    assert len(regions) >= 8
    items = np.concatenate([r.items for r in regions])
    assert len(items) == len(np.unique(items)) == len(plan.root.items)
    keys = [c.key for r in regions for c in r.walk()]
    assert len(keys) == len(set(keys))


def test_the_dask_build_is_byte_identical_to_the_serial_build(
    store: DuckDBStore, geoid, client: Any, tmp_path: Path
) -> None:
    opts = TilingOptions(leaf_capacity=150)
    serial = build_pipe_tileset(store, tmp_path / "serial", storage_crs=STORAGE, geoid=geoid, options=opts)
    dask = build_pipe_tileset_dask(store, tmp_path / "dask", storage_crs=STORAGE, geoid=geoid, options=opts,
                                   client=client, regions=6)
    assert serial.written > 10 and dask.written == serial.written and dask.tiles == serial.tiles
    assert dask.keys_written == serial.keys_written and dask.bytes == serial.bytes
    a, b = _files(tmp_path / "serial"), _files(tmp_path / "dask")
    assert a.keys() == b.keys() and "tileset.json" in a and "manifest.json" in a
    assert [k for k in a if a[k] != b[k]] == []

    # an incremental rebuild after one change rewrites the same tiles both ways, identically
    fid = store.read().execute(
        "SELECT feature_id FROM pipe_segments WHERE version_to IS NULL ORDER BY 1 LIMIT 1 OFFSET 7").fetchone()[0]
    with store.transaction() as con:
        con.execute("UPDATE pipe_segments SET material = 'PVC', row_hash = 'changed' WHERE feature_id = ? "
                    "AND version_to IS NULL", [fid])
    serial2 = build_pipe_tileset(store, tmp_path / "serial", storage_crs=STORAGE, geoid=geoid, options=opts)
    dask2 = build_pipe_tileset_dask(store, tmp_path / "dask", storage_crs=STORAGE, geoid=geoid, options=opts,
                                    client=client, regions=6)
    assert 1 <= serial2.written < serial.written
    assert (dask2.written, dask2.skipped, dask2.keys_written) == (serial2.written, serial2.skipped,
                                                                  serial2.keys_written)
    a, b = _files(tmp_path / "serial"), _files(tmp_path / "dask")
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []


def test_one_region_or_more_regions_than_tiles_still_build_the_same(
    store: DuckDBStore, geoid, client: Any, tmp_path: Path
) -> None:
    opts = TilingOptions(leaf_capacity=600)
    build_pipe_tileset(store, tmp_path / "serial", storage_crs=STORAGE, geoid=geoid, options=opts)
    ref = _files(tmp_path / "serial")
    for regions in (1, 500):
        out = tmp_path / f"dask-{regions}"
        build_pipe_tileset_dask(store, out, storage_crs=STORAGE, geoid=geoid, options=opts, client=client,
                                regions=regions)
        assert _files(out) == ref


def test_cim_tile_dask_local_writes_the_same_tileset_as_without(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cim.cli import _load_plugins, app

    db = tmp_path / "city.duckdb"
    s = DuckDBStore(db)
    ingest_survey([SAMPLE], s, SurveyOptions(), Settings(store="duckdb:///:memory:"))
    s.close()
    _load_plugins()
    runner = CliRunner()
    common = ["tile", "--store", f"duckdb:///{db}", "--leaf-capacity", "200"]
    done = runner.invoke(app, [*common, "--out", str(tmp_path / "dask"), "--dask", "local", "--workers", "2"])
    assert done.exit_code == 0, done.output
    assert runner.invoke(app, [*common, "--out", str(tmp_path / "serial")]).exit_code == 0
    dask, serial = _files(tmp_path / "dask"), _files(tmp_path / "serial")
    assert len(serial) > 3 and dask == serial
