"""Ground elevation from a catalogued DEM: the same values rasterio's own ``sample`` reads (nearest) or a
bilinear interpolation of the cell centres, in any input CRS, with the DEM's vertical datum turned into 1985
heights; nodata and positions off the DEM give NaN; profiles every ``spacing`` metres; cover checks and long
profiles compare the DEM with the surveyed ground."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod, Transformer
from scipy.interpolate import RegularGridInterpolator

from cim.analysis.common import Frame
from cim.analysis.cover import cover_check
from cim.analysis.ground import catalogued_dem, dem_option
from cim.analysis.profile import long_profile
from cim.errors import InvalidInputError, NotFoundError
from cim.heights import get_geoid
from cim.realscene.elevation import YELLOW_SEA_1956_OFFSET, open_dem, parse_points
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.raster.ingest import RasterOptions, ingest_raster

ROOT = Path(__file__).resolve().parents[3]
SWISS = ROOT / "../shared/data/raster/dem_epsg2056_2p5m.tif"
ORTHO = ROOT / "../shared/data/raster/ortho_rgb_epsg3857_0p6m_cog.tif"
DISTRICT = ROOT / "sample_data"

pytestmark = [pytest.mark.skipif(not SWISS.is_file(), reason="the shared DEM sample is missing"),
              pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid missing")]


@pytest.fixture(scope="module")
def swiss(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("elev")
    settings = Settings(region_name="test", region_bbox=(-180, -90, 180, 90), store=f"duckdb:///{tmp}/s.duckdb",
                        assets_dir=tmp / "assets")
    store = DuckDBStore(tmp / "s.duckdb")
    ingest_raster(SWISS, store, settings, RasterOptions(dataset_id="dem"))
    ingest_raster(SWISS, store, settings, RasterOptions(dataset_id="dem56", vertical_datum="EPSG:5736"))
    ingest_raster(SWISS, store, settings, RasterOptions(dataset_id="dem_ell", vertical_datum="ellipsoidal"))
    ingest_raster(ORTHO, store, settings, RasterOptions(dataset_id="ortho"))
    holes = tmp / "holes.tif"  # the same DEM with a block of nodata cells
    with rasterio.open(SWISS) as src:
        profile, data = src.profile, src.read(1)
    data[100:120, 200:230] = profile["nodata"]
    with rasterio.open(holes, "w", **profile) as dst:
        dst.write(data, 1)
    ingest_raster(holes, store, settings, RasterOptions(dataset_id="holes"))
    yield store, settings
    store.close()


def _points(n: int = 300, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Native positions well inside cells (±0.3 cell from a centre), inside the raster."""
    rng = np.random.default_rng(seed)
    with rasterio.open(SWISS) as src:
        col, row = rng.integers(0, src.width, n), rng.integers(0, src.height, n)
        x, y = src.transform * (col + 0.5 + rng.uniform(-0.3, 0.3, n), row + 0.5 + rng.uniform(-0.3, 0.3, n))
    return np.asarray(x), np.asarray(y)


def _rasterio_sample(x: np.ndarray, y: np.ndarray, path: Path = SWISS) -> np.ndarray:
    with rasterio.open(path) as src:
        values = np.array([v[0] for v in src.sample(zip(x, y, strict=True), masked=True)], dtype=object)
    return np.array([np.nan if v is np.ma.masked else float(v) for v in values])


def test_nearest_samples_equal_rasterios_own_sample_in_any_crs(swiss) -> None:
    store, settings = swiss
    dem = open_dem(store, settings, "dem")
    x, y = _points()
    expected = _rasterio_sample(x, y)
    np.testing.assert_array_equal(dem.sample(x, y, "EPSG:2056", method="nearest"), expected)
    lon, lat = Transformer.from_crs("EPSG:2056", "EPSG:4490", always_xy=True).transform(x, y)
    np.testing.assert_array_equal(dem.sample(lon, lat, "EPSG:4490", method="nearest"), expected)
    assert 1615 < np.nanmin(expected) and np.nanmax(expected) < 2016


def test_bilinear_samples_interpolate_the_cell_centres(swiss) -> None:
    store, settings = swiss
    dem = open_dem(store, settings, "dem")
    with rasterio.open(SWISS) as src:
        z = src.read(1).astype("f8")
        xc = src.transform.c + src.transform.a * (np.arange(src.width) + 0.5)
        yc = src.transform.f + src.transform.e * (np.arange(src.height) + 0.5)
    interp = RegularGridInterpolator((yc[::-1], xc), z[::-1])
    x, y = _points(seed=9)
    inner = (x > xc[0]) & (x < xc[-1]) & (y < yc[0]) & (y > yc[-1])
    got = dem.sample(x[inner], y[inner], "EPSG:2056")
    np.testing.assert_allclose(got, interp(np.column_stack([y[inner], x[inner]])), atol=1e-3)


def test_the_vertical_datum_is_turned_into_1985_heights(swiss) -> None:
    store, settings = swiss
    x, y = _points(50)
    raw = _rasterio_sample(x, y)
    h56 = open_dem(store, settings, "dem56").sample(x, y, "EPSG:2056", method="nearest")
    np.testing.assert_allclose(h56, raw + YELLOW_SEA_1956_OFFSET, atol=1e-9)
    lon, lat = Transformer.from_crs("EPSG:2056", "EPSG:4490", always_xy=True).transform(x, y)
    n = get_geoid("egm96").undulation(lon, lat)
    assert 45 < n.mean() < 55  # EGM96 in the Swiss Alps: about +50 m
    h_ell = open_dem(store, settings, "dem_ell").sample(x, y, "EPSG:2056", method="nearest")
    np.testing.assert_allclose(h_ell, raw - n, atol=1e-6)


def test_nodata_and_positions_off_the_dem_are_nan(swiss) -> None:
    store, settings = swiss
    dem = open_dem(store, settings, "holes")
    with rasterio.open(SWISS) as src:
        hole_x, hole_y = src.transform * (215.5, 110.5)
        edge_x, edge_y = src.transform * (199.6, 110.5)  # bilinear weight on a nodata neighbour
        far_x, far_y = src.transform * (300.5, 300.5)
    h = dem.sample([hole_x, edge_x, far_x, 2_000_000.0], [hole_y, edge_y, far_y, 1_000_000.0], "EPSG:2056")
    assert np.isnan(h[0]) and np.isnan(h[1]) and np.isfinite(h[2]) and np.isnan(h[3])
    nearest = dem.sample([hole_x, edge_x], [hole_y, edge_y], "EPSG:2056", method="nearest")
    assert np.isnan(nearest[0]) and np.isfinite(nearest[1])
    np.testing.assert_array_equal(nearest, _rasterio_sample(np.array([hole_x, edge_x]), np.array([hole_y, edge_y]),
                                                            dem.path))


def test_a_profile_has_a_station_every_spacing_metres(swiss) -> None:
    store, settings = swiss
    dem = open_dem(store, settings, "dem")
    line = [[2573100.0, 1085100.0], [2573500.0, 1085400.0], [2574300.0, 1085400.0]]  # leaves the DEM at E 2574000
    stations = dem.profile(line, "EPSG:2056", spacing=25.0)
    d = np.array([s["distance"] for s in stations])
    assert d[0] == 0 and np.all(np.diff(d) > 0) and np.all(np.diff(d) <= 25.0 + 1e-6)
    lon, lat = Transformer.from_crs("EPSG:2056", "EPSG:4490", always_xy=True).transform(*np.array(line).T)
    total = Geod(ellps="GRS80").line_length(lon, lat)
    assert d[-1] == pytest.approx(total, abs=1e-3) and 1290 < total < 1310
    assert stations[-1]["x"] == pytest.approx(2574300.0, abs=1e-3) and stations[-1]["h"] is None
    known = [s for s in stations if s["h"] is not None]
    off = [s for s in stations if s["x"] >= 2574000.0]
    assert off and all(s["h"] is None for s in off) and len(known) == len(stations) - len(off)
    again = dem.sample([s["x"] for s in known], [s["y"] for s in known], "EPSG:2056")
    np.testing.assert_allclose([s["h"] for s in known], again, atol=2e-3)
    with pytest.raises(InvalidInputError, match="spacing"):
        dem.profile(line, "EPSG:2056", spacing=0)
    with pytest.raises(InvalidInputError, match="at least two"):
        dem.profile(line[:1], "EPSG:2056")


def test_bad_requests_are_refused(swiss) -> None:
    store, settings = swiss
    with pytest.raises(NotFoundError, match="not a DEM"):
        open_dem(store, settings, "ortho")
    with pytest.raises(InvalidInputError, match="point 2 '7.1' is not 'x,y'"):
        parse_points("7.1,45.9;7.1")
    with pytest.raises(InvalidInputError, match="no points"):
        parse_points(" ; ")
    assert [list(a) for a in parse_points("7.1,45.9; 7.2,46")] == [[7.1, 7.2], [45.9, 46.0]]


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory):
    from converters.pipes.ingest import SurveyOptions, ingest_survey

    tmp = tmp_path_factory.mktemp("district")
    settings = Settings(store=f"duckdb:///{tmp}/s.duckdb", assets_dir=tmp / "assets")
    store = DuckDBStore(tmp / "s.duckdb")
    ingest_survey([DISTRICT / "jinan_district"], store, SurveyOptions(), settings)
    ingest_raster(DISTRICT / "jinan_realscene" / "district_dem.tif", store, settings,
                  RasterOptions(dataset_id="district_dem"))
    yield store, settings
    store.close()


def test_the_district_dem_agrees_with_the_surveyed_ground(district) -> None:
    store, settings = district
    dem = catalogued_dem(store, "district_dem", settings)
    cur = store.read()
    x, y, g = np.array(cur.execute("SELECT x, y, ground_h FROM pipe_points WHERE version_to IS NULL "
                                   "AND isfinite(ground_h)").fetchall()).T
    cur.close()
    assert len(x) > 700
    np.testing.assert_allclose(dem.heights(x, y), g, atol=0.01)
    assert dem_option(store, "district_dem", settings).name == "DEM district_dem"
    with pytest.raises(NotFoundError, match="does not exist"):
        dem_option(store, "missing/dem.tif", settings)


def test_cover_and_long_profile_report_dem_beside_survey(district) -> None:
    store, settings = district
    frame = Frame.from_settings(settings)
    dem = catalogued_dem(store, "district_dem", settings)
    res = cover_check(store, frame, dataset="jinan_district", ground=dem)
    ends = res.findings + res.above_ground + res.unknown
    summary = res.to_dict()["summary"]
    assert summary["ground_model"] == "DEM district_dem" and summary["ground_tolerance_m"] == 0.3
    assert res.mismatches == [] and res.checked > 1000
    assert all(e.ground_model is not None and abs(e.ground_model - e.ground) < 0.01 for e in ends)
    strict = cover_check(store, frame, dataset="jinan_district", ground=dem, ground_tolerance=0.002)
    assert len(strict.mismatches) > 100  # the survey's millimetre noise against the smooth DEM
    assert all(abs(e.ground_model - e.ground) > 0.002 for e in strict.mismatches)
    with pytest.raises(InvalidInputError, match="ground tolerance"):
        cover_check(store, frame, dataset="jinan_district", ground=dem, ground_tolerance=-1)
    cur = store.read()
    segment = cur.execute("SELECT feature_id FROM pipe_segments WHERE version_to IS NULL AND subtype = 'YS' "
                          "AND kind = 'gravity' ORDER BY feature_id LIMIT 1").fetchone()[0]
    cur.close()
    prof = long_profile(store, frame, segments=[segment], dataset="jinan_district", ground=dem)
    assert prof.nodes and all(n.ground_model is not None and not n.ground_mismatch for n in prof.nodes)
    assert all(abs(n.ground_model - n.ground) < 0.01 for n in prof.nodes)
    assert prof.to_dict()["summary"]["ground_mismatches"] == 0
