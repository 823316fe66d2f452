"""End-to-end: small deliveries through read → stage → QC → store, and the ways input goes wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.errors import CRSMissingError, InvalidInputError, QCRefusedError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey, qc_survey

POINT_HEADER = "物探点号,图上点号,特征,附属物,点编码,X,Y,地面高程,道路名称"
LINE_HEADER = "起点点号,终点点号,起点埋深,终点埋深,起点高程,终点高程,管径,材质,埋设方式,保护材料,权属单位,建设年代,道路名称"
POINTS = [
    "JS1,JS1,预留口,,51042101,4058000.000,502000.000,60.000,经十路",
    "JS2,JS2,直线点,,51042101,4058000.000,502040.000,60.200,经十路",
    "JS3,JS3,,阀门,51042204,4058000.000,502080.000,60.400,经十路",
]
LINES = [
    "JS1,JS2,1.200,1.200,58.800,59.000,DN300,球墨铸铁,直埋,无,济南水务集团,2015,经十路",
    "JS2,JS3,1.200,1.200,59.000,59.200,DN300,QM,ZM,无,济南水务集团,2015,经十路",
]


def write_delivery(folder: Path, points: list[str] = POINTS, lines: list[str] = LINES, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "JSPOINT.csv").write_text("\n".join([POINT_HEADER, *points]) + "\n", encoding=encoding)
    (folder / "JSLINE.csv").write_text("\n".join([LINE_HEADER, *lines]) + "\n", encoding=encoding)
    return folder


@pytest.fixture
def settings() -> Settings:
    return Settings(store="duckdb:///:memory:")


def snapshot(store: DuckDBStore) -> dict[str, list]:
    con = store.read()
    return {t: con.execute(f"SELECT * EXCLUDE (geom) FROM {t} ORDER BY ALL").fetchall()
            if t in ("pipe_points", "pipe_segments") else con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("datasets", "dataset_versions", "pipe_points", "pipe_segments", "network_nodes", "qc_findings")}


def test_a_clean_delivery_is_stored_with_3d_centre_lines_and_topology(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    version, report = ingest_survey([write_delivery(tmp_path / "d")], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    assert report.summary()["findings"] == 0
    assert version.version == 1 and version.counts["pipe_segments"]["added"] == 2
    # pressure pipe: recorded top 58.8, DN300 → centre 58.65; X column is the northing
    row = store.read().execute(
        "SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)), start_z FROM pipe_segments WHERE feature_id = 'JS1-JS2'"
    ).fetchone()
    assert row == pytest.approx((502000.0, 4058000.0, 58.65))
    nodes = store.read().execute("SELECT point_id, degree, component FROM network_nodes ORDER BY point_id").fetchall()
    assert nodes == [("JS1", 1, 0), ("JS2", 2, 0), ("JS3", 1, 0)]


def test_reingesting_the_same_files_records_a_version_with_nothing_changed(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    folder = write_delivery(tmp_path / "d")
    ingest_survey([folder], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    version, _ = ingest_survey([folder], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    assert version.version == 2
    assert version.counts["pipe_points"] == {"added": 0, "modified": 0, "deleted": 0, "unchanged": 3, "total": 3}
    assert store.count("pipe_points", current=False) == 3


def test_a_changed_material_closes_the_old_row_and_adds_the_new(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    ingest_survey([write_delivery(tmp_path / "a", encoding="utf-8")], store,
                  SurveyOptions(crs_in="EPSG:4548", dataset_id="d"), settings)
    changed = [LINES[0].replace("球墨铸铁", "钢"), LINES[1]]
    version, _ = ingest_survey([write_delivery(tmp_path / "b", lines=changed)], store,
                               SurveyOptions(crs_in="EPSG:4548", dataset_id="d"), settings)
    assert version.counts["pipe_segments"]["modified"] == 1
    rows = store.read().execute(
        "SELECT material, version_from, version_to FROM pipe_segments WHERE feature_id = 'JS1-JS2' ORDER BY version_from"
    ).fetchall()
    assert rows == [("QM", 1, 2), ("G", 2, None)]


def test_gbk_files_read_the_same_as_utf8(tmp_path: Path, settings: Settings) -> None:
    utf8 = qc_survey([write_delivery(tmp_path / "u")], SurveyOptions(crs_in="EPSG:4548"), settings)
    gbk = qc_survey([write_delivery(tmp_path / "g", encoding="gbk")], SurveyOptions(crs_in="EPSG:4548"), settings)
    a = utf8.con.execute("SELECT material, burial, start_z FROM stg_segments ORDER BY ALL").fetchall()
    b = gbk.con.execute("SELECT material, burial, start_z FROM stg_segments ORDER BY ALL").fetchall()
    assert a == b and a[0][0] == "QM"
    assert {s["encoding"] for s in gbk.report.sources} == {"gb18030"}


def test_swapped_axes_are_refused_with_the_reason_and_the_store_is_unchanged(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    ingest_survey([write_delivery(tmp_path / "ok")], store, SurveyOptions(crs_in="EPSG:4548", dataset_id="d"), settings)
    before = snapshot(store)
    swapped = [",".join(p.split(",")[:5] + [p.split(",")[6], p.split(",")[5]] + p.split(",")[7:]) for p in POINTS]
    from cim.errors import OutOfRegionError

    with pytest.raises(OutOfRegionError) as err:
        ingest_survey([write_delivery(tmp_path / "swapped", points=swapped)], store,
                      SurveyOptions(crs_in="EPSG:4548", dataset_id="d"), settings)
    assert "3 points lie outside Shandong" in str(err.value)
    assert "JSPOINT.csv row 2: X=" in str(err.value) and "swapped" in str(err.value)
    assert snapshot(store) == before


def test_the_axis_order_option_reads_easting_first_tables(tmp_path: Path, settings: Settings) -> None:
    swapped = [",".join(p.split(",")[:5] + [p.split(",")[6], p.split(",")[5]] + p.split(",")[7:]) for p in POINTS]
    checked = qc_survey([write_delivery(tmp_path / "en", points=swapped)],
                        SurveyOptions(crs_in="EPSG:4548", axis_order="en"), settings)
    assert checked.report.summary()["findings"] == 0
    assert checked.con.execute("SELECT x, y FROM stg_points WHERE point_id = 'JS1'").fetchone() == (502000.0, 4058000.0)


def test_a_zone_prefix_given_to_a_prefixless_crs_is_named(tmp_path: Path, settings: Settings) -> None:
    prefixed = [p.replace(",502", ",39502") for p in POINTS]
    checked = qc_survey([write_delivery(tmp_path / "p", points=prefixed)], SurveyOptions(crs_in="EPSG:4548"), settings)
    messages = [f.message for f in checked.report.findings if f.rule_id == "crs_region"]
    assert messages and "EPSG:4527" in messages[0]
    # and the same file with the right CRS is fine
    ok = qc_survey([tmp_path / "p"], SurveyOptions(crs_in="EPSG:4527"), settings)
    assert not [f for f in ok.report.findings if f.rule_id == "crs_region"]


def test_coordinates_are_transformed_from_another_zone_into_the_storage_crs(tmp_path: Path, settings: Settings) -> None:
    # the same points expressed in EPSG:4527 (zone prefix 39) land on the same storage coordinates
    prefixed = [p.replace(",502", ",39502") for p in POINTS]
    checked = qc_survey([write_delivery(tmp_path / "p", points=prefixed)], SurveyOptions(crs_in="EPSG:4527"), settings)
    x, y = checked.con.execute("SELECT x, y FROM stg_points WHERE point_id = 'JS1'").fetchone()
    assert (x, y) == pytest.approx((502000.0, 4058000.0), abs=1e-6)


def test_a_missing_crs_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(CRSMissingError, match="--crs"):
        qc_survey([write_delivery(tmp_path / "d")], SurveyOptions(), settings)


def test_a_broken_csv_row_names_file_and_line_and_stores_nothing(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    bad = [*LINES, "JS3,JS4,1.2"]
    with pytest.raises(InvalidInputError) as err:
        ingest_survey([write_delivery(tmp_path / "d", lines=bad)], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    assert "JSLINE.csv" in str(err.value) and "4" in str(err.value)
    assert store.datasets() == []


def test_text_in_a_numeric_field_is_reported_with_file_row_and_field(tmp_path: Path, settings: Settings) -> None:
    bad = [LINES[0].replace("1.200,1.200,58.800", "1.2米,1.200,58.800"), LINES[1]]
    checked = qc_survey([write_delivery(tmp_path / "d", lines=bad)], SurveyOptions(crs_in="EPSG:4548"), settings)
    numeric = [f for f in checked.report.findings if f.rule_id == "numeric"]
    assert len(numeric) == 1
    f = numeric[0]
    assert (Path(f.file).name, f.row, f.field, f.value) == ("JSLINE.csv", 2, "start_depth", "1.2米")


def test_keep_errors_stores_the_rows_with_their_qc_flags(tmp_path: Path, settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    bad = [LINES[0].replace("58.800", "58.600"), LINES[1]]  # elevation identity broken at the start
    with pytest.raises(QCRefusedError):
        ingest_survey([write_delivery(tmp_path / "d", lines=bad)], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    assert store.datasets() == []
    ingest_survey([tmp_path / "d"], store, SurveyOptions(crs_in="EPSG:4548", keep_errors=True), settings)
    flags = store.read().execute("SELECT qc_flags FROM pipe_segments WHERE feature_id = 'JS1-JS2'").fetchone()[0]
    assert "elevation_identity" in flags
    assert store.read().execute("SELECT count(*) FROM qc_findings WHERE rule_id = 'elevation_identity'").fetchone()[0] == 1


def test_an_empty_folder_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no pipe tables"):
        qc_survey([tmp_path / "empty"], SurveyOptions(crs_in="EPSG:4548"), settings)


def test_a_manifest_supplies_crs_id_and_grade(tmp_path: Path, settings: Settings) -> None:
    folder = write_delivery(tmp_path / "d")
    (folder / "dataset.toml").write_text('id = "lixia"\ntitle = "历下区"\ncrs = "EPSG:4548"\ngrade = "核心"\n', encoding="utf-8")
    store = DuckDBStore(":memory:")
    version, _ = ingest_survey([folder], store, SurveyOptions(), settings)
    d = store.get_dataset("lixia")
    assert (version.dataset_id, d["title"], d["grade"], d["source_crs"]) == ("lixia", "历下区", "核心", "EPSG:4548")


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"


def test_an_xlsx_workbook_with_point_and_line_sheets_reads_like_the_csv_files(tmp_path: Path, settings: Settings) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name in ("JSPOINT", "JSLINE"):
        header, rows = _csv_rows(SAMPLE / f"{name}.csv")
        sheet = book.create_sheet(name)
        sheet.append(header)
        for row in rows:  # numbers as numbers, the way Excel users deliver them
            sheet.append([float(v) if v.replace(".", "", 1).replace("-", "", 1).isdigit() and "." in v else v for v in row])
    book.save(tmp_path / "给水.xlsx")
    from_xlsx = qc_survey([tmp_path / "给水.xlsx"], SurveyOptions(crs_in="EPSG:4548"), settings)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for name in ("JSPOINT", "JSLINE"):
        (csv_dir / f"{name}.csv").write_bytes((SAMPLE / f"{name}.csv").read_bytes())
    from_csv = qc_survey([csv_dir], SurveyOptions(crs_in="EPSG:4548"), settings)
    query = "SELECT start_id, end_id, material, start_z, end_z, x1, y1 FROM stg_segments ORDER BY ALL"
    assert from_xlsx.con.execute(query).fetchall() == from_csv.con.execute(query).fetchall()
    assert from_xlsx.report.summary()["findings"] == 0


def test_a_geopackage_point_layer_with_geometry_only_takes_xy_from_the_geometry(tmp_path: Path, settings: Settings) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    import numpy as np
    import pyarrow as pa
    import shapely

    header, rows = _csv_rows(SAMPLE / "JSPOINT.csv")
    ix, iy = header.index("X坐标"), header.index("Y坐标")
    keep = [i for i in range(len(header)) if i not in (ix, iy)]
    table = {header[i]: pa.array([r[i] or None for r in rows], pa.string()) for i in keep}
    geoms = shapely.points(np.array([[float(r[iy]), float(r[ix])] for r in rows]))  # (easting, northing)
    pyogrio.write_arrow(
        pa.table({**table, "geometry": pa.array(shapely.to_wkb(geoms))}),
        tmp_path / "js.gpkg", layer="JSPOINT", driver="GPKG", geometry_name="geometry", geometry_type="Point",
        crs="EPSG:4548",
    )
    header_l, rows_l = _csv_rows(SAMPLE / "JSLINE.csv")
    pyogrio.write_arrow(
        pa.table({h: pa.array([r[i] or None for r in rows_l], pa.string()) for i, h in enumerate(header_l)}),
        tmp_path / "js.gpkg", layer="JSLINE", driver="GPKG", append=True,
    )
    checked = qc_survey([tmp_path / "js.gpkg"], SurveyOptions(crs_in="EPSG:4548"), settings)
    assert checked.report.summary()["findings"] == 0
    first = rows[0]
    point_id = first[header.index("物探点号")]
    x, y = checked.con.execute("SELECT x, y FROM stg_points WHERE point_id = ?", [point_id]).fetchone()
    assert (x, y) == pytest.approx((float(first[iy]), float(first[ix])))


def test_points_outside_the_region_are_refused_even_with_keep_errors(tmp_path: Path, settings: Settings) -> None:
    from cim.errors import OutOfRegionError

    store = DuckDBStore(":memory:")
    swapped = [",".join(p.split(",")[:5] + [p.split(",")[6], p.split(",")[5]] + p.split(",")[7:]) for p in POINTS]
    with pytest.raises(OutOfRegionError, match="outside Shandong"):
        ingest_survey([write_delivery(tmp_path / "d", points=swapped)], store,
                      SurveyOptions(crs_in="EPSG:4548", keep_errors=True), settings)
    assert store.datasets() == []


def test_a_widened_region_loads_foreign_data_on_purpose(tmp_path: Path) -> None:
    # the same pipes placed near Zurich in a Swiss CRS: refused for Shandong, accepted for a widened region
    points = [p.replace("4058000.000", "1250000.000").replace(",5020", ",26890").replace(",5020", ",26890") for p in POINTS]
    folder = write_delivery(tmp_path / "ch", points=points)
    wide = Settings(store="duckdb:///:memory:", region_name="world", region_bbox=(-180, -90, 180, 90))
    checked = qc_survey([folder], SurveyOptions(crs_in="EPSG:2056"), wide)
    assert not [f for f in checked.report.findings if f.rule_id == "crs_region"]
    narrow = qc_survey([folder], SurveyOptions(crs_in="EPSG:2056"), Settings(store="duckdb:///:memory:"))
    assert len([f for f in narrow.report.findings if f.rule_id == "crs_region"]) == 3


def test_centre_lines_follow_the_depth_convention_of_each_pipe_kind(settings: Settings) -> None:
    store = DuckDBStore(":memory:")
    ingest_survey([SAMPLE], store, SurveyOptions(), settings)
    rows = store.read().execute(
        """SELECT kind, category, start_h, start_z, coalesce(height_mm, diameter_mm) / 1000.0, ST_Z(ST_StartPoint(geom))
           FROM pipe_segments"""
    ).fetchall()
    kinds = {r[0] for r in rows}
    assert kinds == {"gravity", "pressure", "duct"}
    for kind, category, recorded, centre, section, z in rows:
        expected = recorded + section / 2 if kind == "gravity" else recorded - section / 2
        assert centre == pytest.approx(expected, abs=1e-9), (kind, category)
        assert z == pytest.approx(centre)
    assert {r[1] for r in rows if r[0] == "gravity"} == {"PS"}
    assert {r[1] for r in rows if r[0] == "duct"} >= {"DL", "TX"}


def test_a_point_without_coordinates_is_not_placed_at_the_origin_when_transforming(tmp_path: Path, settings: Settings) -> None:
    prefixed = [p.replace(",502", ",39502") for p in POINTS]
    prefixed[1] = "JS2,JS2,直线点,,51042101,,,60.200,经十路"  # X and Y left empty
    checked = qc_survey([write_delivery(tmp_path / "p", points=prefixed)], SurveyOptions(crs_in="EPSG:4527"), settings)
    x, y = checked.con.execute("SELECT x, y FROM stg_points WHERE point_id = 'JS2'").fetchone()
    assert (x, y) == (None, None)  # NULL, never a transformed (0, 0)
    assert any(f.rule_id == "not_null" and f.field in ("x", "y") for f in checked.report.findings)
