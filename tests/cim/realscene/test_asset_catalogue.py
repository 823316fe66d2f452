"""Asset builds: published atomically, older builds pruned, in-progress builds of a concurrent ingest kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.errors import OutOfRegionError
from cim.realscene.catalogue import BUILDING_MARK, build_dir_of, locate, new_build_dir, register
from cim.settings import Settings
from cim.store import DatasetInfo, DuckDBStore


def test_publishing_keeps_the_new_and_the_replaced_build_and_never_touches_builds_in_progress(tmp_path: Path) -> None:
    settings = Settings(store=f"duckdb:///{tmp_path}/s.duckdb")
    store = DuckDBStore(tmp_path / "s.duckdb")
    extent = locate((500000, 4050000, 0, 500050, 4050050, 5), "EPSG:4548", settings)
    info = DatasetInfo("dom", "dom", "raster", "EPSG:4548", metadata={"role": "dom"})
    builds = []
    in_progress = new_build_dir(settings, "dom", store.path)  # another ingest of the same dataset, still running
    for _ in range(3):
        build = new_build_dir(settings, "dom", store.path)
        assert (build / BUILDING_MARK).exists()
        register(store, info, extent, build)
        assert not (build / BUILDING_MARK).exists()
        builds.append(build)
    assert build_dir_of(settings, store.get_dataset("dom"), store.path) == builds[-1]
    left = {p.name for p in (tmp_path / "s.duckdb.assets" / "dom").iterdir()}
    assert left == {builds[-1].name, builds[-2].name, in_progress.name}
    assert [v["version"] for v in store.versions("dom")] == [1, 2, 3]
    store.close()


def test_assets_outside_the_region_are_refused_naming_the_file() -> None:
    with pytest.raises(OutOfRegionError, match="scan.las.*outside Shandong"):
        locate((500000, 4050000, 0, 500050, 4050050, 5), "EPSG:32610", Settings(), file="scan.las")
