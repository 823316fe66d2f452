"""Real EPANET and SWMM models through staging, QC and the store, and back out again."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.settings import Settings
from cim.store import DuckDBStore
from converters.network.ingest import detect_model_format, ingest_model, read_model
from converters.pipes.ingest import SurveyOptions

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the repository")

OFFSET = (500000.0, 4057000.0, 30.0)


def _placing_offset(path: Path, scale: float) -> tuple[float, float, float]:
    """An offset that puts the model's lower-left corner at OFFSET (Jinan), whatever its local origin."""
    _, raw = read_model(path, crs_in="EPSG:4548", scale=scale)
    east = [float(v) for v in raw.points.column("y").to_pylist() if v is not None]
    north = [float(v) for v in raw.points.column("x").to_pylist() if v is not None]
    return (OFFSET[0] - min(east), OFFSET[1] - min(north), OFFSET[2])


@pytest.mark.parametrize(
    ("name", "fmt", "points", "segments", "scale"),
    [
        ("water_network/Net1.inp", "epanet", 11, 13, 1.0),
        ("water_network/Net2.inp", "epanet", 36, 40, 1.0),
        ("water_network/Net3.inp", "epanet", 97, 119, 1.0),
        ("water_network/ky4.inp", "epanet", 964, 1158, 0.3048),
        ("water_network/Net6.inp", "epanet", 3356, 3892, 0.3048),
        ("sewer/swmm_Example1.inp", "swmm", 14, 13, 1.0),
        ("sewer/swmm_site_drainage_model.inp", "swmm", 12, 11, 0.3048),
    ],
)
def test_real_models_round_trip_through_the_store(name: str, fmt: str, points: int, segments: int, scale: float) -> None:
    path = SHARED / name
    assert detect_model_format(path) == fmt
    offset = _placing_offset(path, scale)
    _, tables = read_model(path, crs_in="EPSG:4548", offset=offset, scale=scale)
    store = DuckDBStore(":memory:")
    version, report = ingest_model(path, store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), offset=offset,
                                   scale=scale, settings=Settings())
    assert version.counts["pipe_points"]["total"] == points
    assert version.counts["pipe_segments"]["total"] == segments
    assert store.get_dataset(path.stem)["kind"] == {"epanet": "water_model", "swmm": "drainage_model"}[fmt]
    # every stored point sits where the reader placed it (raw x = northing, y = easting)
    placed = {
        pid: (float(e), float(n))
        for pid, n, e in zip(tables.points.column("point_id").to_pylist(), tables.points.column("x").to_pylist(),
                             tables.points.column("y").to_pylist(), strict=True)
        if n is not None
    }
    stored = dict(
        (pid, (x, y)) for pid, x, y in store.read().execute(
            "SELECT point_id, ST_X(geom), ST_Y(geom) FROM pipe_points WHERE version_to IS NULL").fetchall()
    )
    assert stored.keys() == placed.keys()
    for pid, xy in placed.items():
        assert stored[pid] == pytest.approx(xy, abs=1e-6)
    # the topology connects every segment
    assert store.read().execute("SELECT count(*) FROM network_edges").fetchone()[0] == segments


def test_swmm_gravity_inverts_become_centre_lines_above_the_invert() -> None:
    path = SHARED / "sewer" / "swmm_Example1.inp"
    store = DuckDBStore(":memory:")
    ingest_model(path, store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), offset=OFFSET, settings=Settings())
    rows = store.read().execute(
        "SELECT kind, start_h, start_z, coalesce(height_mm, diameter_mm) FROM pipe_segments"
    ).fetchall()
    assert {r[0] for r in rows} == {"gravity"}
    for _, invert, centre, size in rows:
        assert centre == pytest.approx(invert + size / 2000.0)


def test_a_model_without_a_crs_is_refused_clearly(tmp_path: Path) -> None:
    from cim.errors import CRSMissingError

    with pytest.raises(CRSMissingError, match="--crs"):
        ingest_model(SHARED / "water_network" / "Net1.inp", DuckDBStore(":memory:"), SurveyOptions(), settings=Settings())
