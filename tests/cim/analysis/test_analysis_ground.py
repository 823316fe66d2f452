"""Ground models: the surveyed ground of the sample district and DEM GeoTIFFs sampled in their own CRS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cim.analysis.ground import Ground, RasterGround, SurveyedGround, ground_model
from cim.crs import transform_xy
from cim.errors import CRSError, NotFoundError
from cim.store import DuckDBStore

rasterio = pytest.importorskip("rasterio")
Affine = pytest.importorskip("affine").Affine

#: A tilted plane over the district (storage CRS EPSG:4548): h = 70 + 0.01 (x − 502000) − 0.004 (y − 4058000).
X0, Y0 = 502000.0, 4058000.0


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 70.0 + 0.01 * (np.asarray(x) - X0) - 0.004 * (np.asarray(y) - Y0)


def write_tif(path: Path, data: np.ndarray, transform: object, crs: str | None, nodata: float | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data.astype("float32"), 1)
    return path


def plane_dem_projected(path: Path, *, nodata_cell: tuple[int, int] | None = None) -> Path:
    """2 m cells over 501900–502700 E, 4057900–4058600 N, values = the plane at the cell centres."""
    cols, rows = 400, 350
    west, north = 501900.0, 4058600.0
    cx = west + (np.arange(cols) + 0.5) * 2.0
    cy = north - (np.arange(rows) + 0.5) * 2.0
    data = plane(*np.meshgrid(cx, cy))
    if nodata_cell:
        data[nodata_cell] = -9999.0
    return write_tif(path, data, from_origin(west, north, 2.0, 2.0), "EPSG:4548", nodata=-9999.0)


def plane_dem_lonlat(path: Path) -> Path:
    """The same plane on a CGCS2000 lon/lat grid (EPSG:4490), cell values from each centre's projected position."""
    lon, lat = transform_xy(np.array([501850.0, 502750.0]), np.array([4057850.0, 4058650.0]), "EPSG:4548",
                            "EPSG:4490")
    step = 2e-5  # about 2 m
    west, north = float(lon.min()), float(lat.max())
    cols = int((lon.max() - lon.min()) / step) + 1
    rows = int((lat.max() - lat.min()) / step) + 1
    clon = west + (np.arange(cols) + 0.5) * step
    clat = north - (np.arange(rows) + 0.5) * step
    glon, glat = np.meshgrid(clon, clat)
    ex, ny = transform_xy(glon.ravel(), glat.ravel(), "EPSG:4490", "EPSG:4548")
    data = plane(ex, ny).reshape(glon.shape)
    return write_tif(path, data, from_origin(west, north, step, step), "EPSG:4490")


QUERY_X = np.array([502010.3, 502163.7, 502400.0, 502611.1])
QUERY_Y = np.array([4058070.2, 4058013.5, 4058333.3, 4058480.9])


def test_raster_ground_samples_a_plane_exactly(tmp_path: Path) -> None:
    dem = RasterGround(plane_dem_projected(tmp_path / "dem.tif"))
    assert isinstance(dem, Ground)
    np.testing.assert_allclose(dem.heights(QUERY_X, QUERY_Y), plane(QUERY_X, QUERY_Y), atol=1e-4)
    assert dem.heights(np.array([[502010.3]]), np.array([[4058070.2]])).shape == (1, 1)
    assert "EPSG:4548" in dem.source


def test_raster_in_lonlat_gives_the_same_heights(tmp_path: Path) -> None:
    projected = RasterGround(plane_dem_projected(tmp_path / "a.tif"))
    lonlat = RasterGround(plane_dem_lonlat(tmp_path / "b.tif"))
    got = lonlat.heights(QUERY_X, QUERY_Y)
    np.testing.assert_allclose(got, projected.heights(QUERY_X, QUERY_Y), atol=0.002)
    np.testing.assert_allclose(got, plane(QUERY_X, QUERY_Y), atol=0.002)
    # a raster read without transforming the query points would land nowhere near (lon/lat vs metres)
    assert "EPSG:4490" in lonlat.source


def test_raster_nodata_outside_and_offset(tmp_path: Path) -> None:
    # cell (row 35, col 55) has its centre at (502011, 4058529)
    dem = RasterGround(plane_dem_projected(tmp_path / "dem.tif", nodata_cell=(35, 55)), vertical_offset=-1.5)
    h = dem.heights(np.array([502011.0, 502013.0, 502100.0, 510000.0]),
                    np.array([4058529.0, 4058529.0, 4058100.0, 4058100.0]))
    assert np.isnan(h[0]) and np.isnan(h[3])  # on the nodata cell; off the raster
    assert np.isfinite(h[1])  # one cell away: the nodata corner has no weight there
    assert h[2] == pytest.approx(plane(502100.0, 4058100.0) - 1.5, abs=1e-4)


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "nocrs.tif", np.zeros((4, 4)), from_origin(501900, 4058600, 2, 2), None)
    with pytest.raises(CRSError, match="no CRS"):
        RasterGround(path)
    with pytest.raises(NotFoundError):
        RasterGround(tmp_path / "missing.tif")


def test_surveyed_ground_honours_points_and_is_nan_outside(district: DuckDBStore) -> None:
    ground = SurveyedGround.from_store(district)
    cur = district.read()
    x, y, h = (np.ma.filled(a.astype(float), np.nan) for a in cur.execute(
        """SELECT x, y, ground_h FROM pipe_points WHERE version_to IS NULL AND point_id IN ('YS1', 'YS21', 'RQ22')
           ORDER BY point_id""").fetchnumpy().values())
    np.testing.assert_allclose(ground.heights(x, y), h, atol=1e-6)
    mid = ground.heights(np.array([(x[1] + x[2]) / 2]), np.array([(y[1] + y[2]) / 2]))[0]
    assert min(h[1], h[2]) - 0.5 < mid < max(h[1], h[2]) + 0.5
    assert np.isnan(ground.heights(np.array([505000.0]), np.array([4058100.0]))[0])
    assert "765 points" in ground.source


def test_ground_model_picks_the_dem_when_given(district: DuckDBStore, tmp_path: Path) -> None:
    assert isinstance(ground_model(district), SurveyedGround)
    dem = ground_model(district, dem=plane_dem_projected(tmp_path / "dem.tif"), dataset="jinan_district")
    assert isinstance(dem, RasterGround) and dem.storage_crs == "EPSG:4548"
    with pytest.raises(NotFoundError):
        ground_model(district, dataset="nope")
