"""GeoTIFF DEMs and orthophotos into the catalogue: every real sample raster with facts equal to rasterio's,
a COG copy in the build folder, and bad input (no CRS, empty, truncated, not a TIFF, out of region) refused
with one clear message and nothing stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from cim.errors import CRSError, CRSMissingError, InvalidInputError, OutOfRegionError
from cim.settings import Settings
from cim.store import DuckDBStore
from cim.store.duckdb_ import json_value
from converters.raster.ingest import RasterOptions, ingest_raster

ROOT = Path(__file__).resolve().parents[3]
RASTERS = ROOT / "../shared/data/raster"
DISTRICT = ROOT / "sample_data" / "jinan_realscene"
SAMPLES = sorted(RASTERS.glob("*.tif"))

pytestmark = pytest.mark.skipif(not SAMPLES, reason="the shared raster samples are missing")


def world(tmp: Path, *, anywhere: bool = True) -> tuple[DuckDBStore, Settings]:
    extra = {"region_name": "test", "region_bbox": (-180, -90, 180, 90)} if anywhere else {}
    settings = Settings(store=f"duckdb:///{tmp}/s.duckdb", assets_dir=tmp / "assets", **extra)
    return DuckDBStore(tmp / "s.duckdb"), settings


def assert_nothing_stored(store: DuckDBStore, settings: Settings) -> None:
    assert store.datasets() == []
    root = Path(settings.assets_dir)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory):
    store, settings = world(tmp_path_factory.mktemp("rasters"))
    results = {f.name: ingest_raster(f, store, settings) for f in SAMPLES}
    yield store, settings, results
    store.close()


@pytest.mark.parametrize("name", [f.name for f in SAMPLES])
def test_every_sample_raster_is_catalogued_with_the_facts_rasterio_reads(catalogued, name: str) -> None:
    store, settings, results = catalogued
    result = results[name]
    row = store.get_dataset(result.dataset_id)
    meta = json_value(row["metadata"])
    assert row["kind"] == "raster" and row["category"] == "时空基础数据"
    with rasterio.open(RASTERS / name) as src:
        expected_role = "dem" if src.count == 1 else "dom"
        assert meta["role"] == expected_role
        assert (meta["width"], meta["height"], meta["bands"], meta["dtype"]) == (src.width, src.height, src.count,
                                                                                   src.dtypes[0])
        assert meta["nodata"] == src.nodata
        assert meta["transform"] == pytest.approx(list(src.transform)[:6])
        assert meta["resolution"] == pytest.approx([abs(src.res[0]), abs(src.res[1])])
        assert meta["bbox_native"][0::3] == pytest.approx([src.bounds.left, src.bounds.right])
        assert meta["bbox_native"][1::3] == pytest.approx([src.bounds.bottom, src.bounds.top])
        assert meta["crs"] == f"EPSG:{src.crs.to_epsg()}"
        west, south, east, north = transform_bounds(src.crs, "EPSG:4490", *src.bounds)
        if expected_role == "dem":
            data = src.read(1, masked=True)
            assert meta["height_range"] == pytest.approx([float(data.min()), float(data.max())])
            assert meta["vertical_datum"] == "EPSG:5737" and meta["vertical_datum_from"] == "assumed"
            assert any("vertical datum" in n for n in result.notes)
            assert row["vertical_crs"] == "EPSG:5737"
    lw, ls, le, ln = meta["bbox_lonlat"]  # corners and edge midpoints: within the densified bounds
    assert west - 1e-3 <= lw < le <= east + 1e-3 and south - 1e-3 <= ls < ln <= north + 1e-3
    cog = result.build_dir / meta["file"]
    with rasterio.open(cog) as copy, rasterio.open(RASTERS / name) as src:
        assert copy.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" or meta["cog"] == "copied"
        assert copy.profile["tiled"] and (copy.width, copy.height, copy.count) == (src.width, src.height, src.count)
        np.testing.assert_array_equal(copy.read(), src.read())  # lossless: served pixels are the source's
        assert copy.crs == src.crs and copy.transform == src.transform
    assert meta["cog"] == ("copied" if "cog" in name or name.startswith("dem") else "converted")


def test_the_district_dem_names_its_1985_heights_and_lies_in_shandong(tmp_path: Path) -> None:
    store, settings = world(tmp_path, anywhere=False)  # the default region: Shandong
    dem = ingest_raster(DISTRICT / "district_dem.tif", store, settings, RasterOptions(dataset_id="dem"))
    dom = ingest_raster(DISTRICT / "district_dom.tif", store, settings, RasterOptions(dataset_id="dom"))
    assert dem.role == "dem" and dem.metadata["vertical_datum"] == "EPSG:5737"
    assert dem.metadata["vertical_datum_from"] == "file" and dem.notes == []
    assert dom.role == "dom" and dom.metadata["cog"] == "copied" and dom.metadata["compression"] == "jpeg"
    west, south, east, north = dem.lonlat
    assert 117.0 < west < east < 117.04 and 36.64 < south < north < 36.67
    total = (DISTRICT / "district_dem.tif").stat().st_size + (DISTRICT / "district_dom.tif").stat().st_size
    assert total <= 3 * 1024 * 1024
    store.close()


def _write(path: Path, *, crs: str | None, count: int = 1, dtype: str = "float32") -> Path:
    data = np.arange(count * 20 * 30, dtype=dtype).reshape(count, 20, 30)
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=count, dtype=dtype, crs=crs,
                       transform=from_origin(502000, 4058100, 2, 2)) as dst:
        dst.write(data)
    return path


def test_a_raster_without_crs_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store, settings = world(tmp_path, anywhere=False)
    bare = _write(tmp_path / "bare.tif", crs=None)
    with pytest.raises(CRSMissingError, match=r"bare\.tif.*has no CRS: give one \(--crs"):
        ingest_raster(bare, store, settings)
    assert_nothing_stored(store, settings)
    # the CRS given on the command line is written into the COG copy
    result = ingest_raster(bare, store, settings, RasterOptions(crs="EPSG:4548", vertical_datum="EPSG:5736"))
    with rasterio.open(result.build_dir / "dem.tif") as cog:
        assert CRS.from_wkt(cog.crs.to_wkt()).to_epsg() == 4548
    assert result.metadata["vertical_datum"] == "EPSG:5736" and result.metadata["cog"] == "converted"
    store.close()


def test_a_given_crs_contradicting_the_file_is_refused(tmp_path: Path) -> None:
    store, settings = world(tmp_path, anywhere=False)
    f = _write(tmp_path / "dem.tif", crs="EPSG:4548")
    with pytest.raises(CRSError, match="the file says .* but EPSG:4527 was given"):
        ingest_raster(f, store, settings, RasterOptions(crs="EPSG:4527"))
    with pytest.raises(InvalidInputError, match="vertical datum 'EPSG:5728'"):
        ingest_raster(f, store, settings, RasterOptions(vertical_datum="EPSG:5728"))
    assert_nothing_stored(store, settings)
    store.close()


def test_broken_files_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    store, settings = world(tmp_path)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    png = tmp_path / "photo.tif"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    source = (RASTERS / "landsat_rgb_epsg32618.tif").read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(source[: len(source) // 2])
    cases = {empty: r"empty\.tif: is empty \(0 bytes\)", png: r"photo\.tif: is not a GeoTIFF: it starts with",
             truncated: r"truncated\.tif: is (truncated or corrupt|not a readable GeoTIFF)",
             tmp_path / "missing.tif": "missing.tif: does not exist"}
    for path, message in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            ingest_raster(path, store, settings)
    assert_nothing_stored(store, settings)
    store.close()


def test_bands_that_are_neither_dem_nor_orthophoto_are_refused(tmp_path: Path) -> None:
    store, settings = world(tmp_path, anywhere=False)
    two = _write(tmp_path / "two.tif", crs="EPSG:4548", count=2)
    with pytest.raises(InvalidInputError, match="2 band.*neither a DEM .* nor an orthophoto"):
        ingest_raster(two, store, settings)
    rgb16 = _write(tmp_path / "rgb16.tif", crs="EPSG:4548", count=3, dtype="uint16")
    with pytest.raises(InvalidInputError, match="an orthophoto needs 1, 3 or 4 uint8 bands"):
        ingest_raster(rgb16, store, settings, RasterOptions(role="dom"))
    assert_nothing_stored(store, settings)
    store.close()


def test_a_foreign_raster_is_out_of_region_under_the_default_settings(tmp_path: Path) -> None:
    store, settings = world(tmp_path, anywhere=False)
    with pytest.raises(OutOfRegionError, match=r"dem_epsg2056_2p5m\.tif.*outside Shandong"):
        ingest_raster(RASTERS / "dem_epsg2056_2p5m.tif", store, settings)
    assert_nothing_stored(store, settings)
    store.close()


def test_the_cli_ingests_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from cim.settings import get_settings
    from converters.raster.cli import register

    app = typer.Typer()
    register(app)

    monkeypatch.setenv("CIM_ASSETS_DIR", str(tmp_path / "assets"))
    get_settings.cache_clear()
    runner = CliRunner()
    store_url = f"duckdb:///{tmp_path}/cli.duckdb"
    ok = runner.invoke(app, ["raster", "ingest", str(DISTRICT / "district_dem.tif"), "--id", "terrain", "--title",
                             "地形", "--store", store_url])
    assert ok.exit_code == 0, ok.output
    assert "stored terrain version 1: DEM 400×325×1 float32" in ok.output.replace("\n", " ")
    bad = runner.invoke(app, ["raster", "ingest", str(DISTRICT / "district_dom.tif"), "--role", "dem",
                              "--store", store_url])
    assert bad.exit_code == 1 and "a DEM needs one numeric band" in bad.output
    get_settings.cache_clear()
    s = DuckDBStore(tmp_path / "cli.duckdb")
    assert [d["id"] for d in s.datasets()] == ["terrain"]
    s.close()
