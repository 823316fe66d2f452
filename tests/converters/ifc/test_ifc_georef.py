"""Georeferencing: the samples land where their own georeferencing says, computed independently here.

Expected positions use only the IFC formula and pyproj (never the module under test):
E = Eastings + s·(a·x − b·y), N = Northings + s·(b·x + a·y), H = OrthogonalHeight + s·z, (a, b) = normalised
XAxis, then pyproj from the file's CRS to the storage CRS. Foreign samples are loaded with their own (or a
nearby) metric storage CRS and the region widened on purpose.
"""

from __future__ import annotations

import math
from pathlib import Path

import ifcopenshell
import ifcopenshell.util.placement
import numpy as np
import pytest
from ifc_samples import foreign, ifc, jinan_ifc
from pyproj import Transformer

from cim.settings import Settings
from converters.ifc.georef import (
    Georeference,
    UserPlacement,
    dms_to_degrees,
    effective_scale,
    georeference,
    parse_crs_name,
    unit_label_m,
)
from converters.ifc.open import load, openable, sniff

MM = 1e-3  # metres: the tolerance of every position check


def open_model(path: Path) -> ifcopenshell.file:
    header = sniff(path)
    with openable(header) as p:
        return load(p, header)


def codes(g: Georeference, severity: str | None = None) -> set[str]:
    return {f.code for f in g.findings if severity is None or f.severity == severity}


def expected(
    conv: dict[str, float],
    s: float,
    xyz: tuple[float, float, float],
    src: str,
    dst: str,
    map_unit_m: float = 1.0,
) -> tuple[float, float, float]:
    a, b = conv["XAxisAbscissa"], conv["XAxisOrdinate"]
    norm = math.hypot(a, b)
    a, b = a / norm, b / norm
    x, y, z = xyz
    e = (conv["Eastings"] + s * (a * x - b * y)) * map_unit_m
    n = (conv["Northings"] + s * (b * x + a * y)) * map_unit_m
    h = (conv["OrthogonalHeight"] + s * z) * map_unit_m
    if src != dst:
        e, n = Transformer.from_crs(src, dst, always_xy=True).transform(e, n)
    return e, n, h


def assert_lands(g: Georeference, xyz: tuple[float, float, float], want: tuple[float, float, float]) -> None:
    got = [float(v[0]) for v in g.to_storage([xyz[0]], [xyz[1]], [xyz[2]])]
    assert np.allclose(got, want, rtol=0, atol=MM), f"{xyz} → {got}, expected {want}"


# -- IfcMapConversion samples -------------------------------------------------------------------------
BSI = {
    "Eastings": 458657.30,
    "Northings": 5438232.25,
    "OrthogonalHeight": 113.7,
    "XAxisAbscissa": 0.270600445976,
    "XAxisOrdinate": 0.962691746426,
}


@pytest.mark.parametrize("storage", ["EPSG:25832", "EPSG:32632"])
def test_bsi_utm_sample_lands_where_its_map_conversion_says(storage: str) -> None:
    g = georeference(open_model(ifc("ifc4x3_bsi_georef_utm_epsg25832.ifc")), foreign(storage))
    assert (g.method, g.source_crs, g.length_unit_m) == ("map_conversion", "EPSG:25832", MM)
    assert g.rotation_deg == pytest.approx(74.2999, abs=1e-3)
    # project unit mm, map unit m, Scale written 1000: the inverse of the IFC definition → s = 0.001
    for xyz in [(0.0, 0.0, 0.0), (500.0, 500.0, 4000.0), (-500.0, -500.0, 2000.0), (12345.0, -6789.0, 10.0)]:
        assert_lands(g, xyz, expected(BSI, MM, xyz, "EPSG:25832", storage))
    assert "georef.unit_mismatch" in codes(g, "warning")
    assert "georef.crs_not_cgcs2000" in codes(g, "warning")
    assert "georef.ref_latlon_agrees" in codes(g, "info")  # its IfcSite RefLat/RefLon is the same point
    assert not g.errors


BONSAI = {
    "Eastings": 10000.0,
    "Northings": 0.0,
    "OrthogonalHeight": 0.0,
    "XAxisAbscissa": 1.0,
    "XAxisOrdinate": 0.0,
}


@pytest.mark.parametrize("storage", ["EPSG:3857", "EPSG:32631"])
def test_bonsai_sample_with_millimetre_map_unit_and_scale_1000(storage: str) -> None:
    g = georeference(
        open_model(ifc("ifc4_bonsai_geolocation_mapconversion_scale_epsg3857.ifc")), foreign(storage)
    )
    assert (g.method, g.source_crs, g.map_unit_m, g.scale_attr) == ("map_conversion", "EPSG:3857", MM, 1000.0)
    # project m, map mm, Scale 1000 as IFC defines it: E[mm] = 10000 + 1000·x[m]
    for xyz in [(0.0, 0.0, 0.0), (1.0, 2.0, 3.0), (-250.5, 40.25, -7.0)]:
        assert_lands(g, xyz, expected(BONSAI, 1000.0, xyz, "EPSG:3857", storage, map_unit_m=MM))
    if storage == "EPSG:3857":
        assert_lands(g, (1.0, 2.0, 3.0), (11.0, 2.0, 3.0))
    assert "georef.unit_mismatch" not in codes(g)


SWISS = {
    "Eastings": 2689000.0,
    "Northings": 1253000.0,
    "OrthogonalHeight": 450.0,
    "XAxisAbscissa": 1.0,
    "XAxisOrdinate": 0.0,
}


@pytest.mark.parametrize(
    "name", ["ifc4x3_civil3d_ps01_project_setup.ifc", "ifc4x3_acca_ps01_project_setup.ifc"]
)
@pytest.mark.parametrize("storage", ["EPSG:2056", "EPSG:21781"])
def test_ps01_vendor_outputs_land_on_the_same_lv95_point(name: str, storage: str) -> None:
    g = georeference(open_model(ifc(name)), foreign(storage))
    assert (g.method, g.source_crs) == ("map_conversion", "EPSG:2056")
    reference_point = (700.00097, 1570.0, 0.0)  # Civil 3D 'Referenzpunkt' annotation, metres
    for xyz in [(0.0, 0.0, 0.0), reference_point, (-12.5, 3.25, 7.0)]:
        assert_lands(g, xyz, expected(SWISS, 1.0, xyz, "EPSG:2056", storage))
    if storage == "EPSG:2056":
        assert_lands(g, reference_point, (2689700.00097, 1254570.0, 450.0))


def test_acca_compound_crs_name_is_split_and_its_vertical_datum_reported() -> None:
    g = georeference(open_model(ifc("ifc4x3_acca_ps01_project_setup.ifc")), foreign("EPSG:2056"))
    assert (g.source_crs, g.vertical_datum) == ("EPSG:2056", "EPSG:5728")
    vertical = [f for f in g.findings if f.code == "georef.vertical_datum"]
    assert vertical and vertical[0].severity == "warning" and "not converted" in vertical[0].message


def test_an_empty_crs_name_is_an_error_unless_the_crs_is_given() -> None:
    model = open_model(ifc("ifc4_bonsai_geolocation_mapconversion.ifc"))
    g = georeference(model, foreign("EPSG:4548"))
    empty = [f for f in g.errors if f.code == "georef.crs_empty"]
    assert empty and empty[0].entity == "#292 IfcProjectedCRS.Name"
    given = georeference(model, foreign("EPSG:4548"), UserPlacement(crs="EPSG:4548"))
    assert given.source_crs == "EPSG:4548" and not given.errors
    assert "georef.crs_given" in codes(given, "info")


# -- IfcSite RefLatitude / RefLongitude ---------------------------------------------------------------
def _site_origin(model: ifcopenshell.file) -> tuple[float, float, float]:
    matrix = ifcopenshell.util.placement.get_local_placement(model.by_type("IfcSite")[0].ObjectPlacement)
    return tuple(float(v) for v in matrix[:3, 3])


@pytest.mark.parametrize(
    ("name", "storage", "lat_dms", "lon_dms", "elevation", "true_north"),
    [
        (
            "ifc2x3_revit2011_duplex_architecture.ifc",
            "EPSG:26916",
            (41, 52, 27.84),
            (-87, -38, -21.839999),
            0.0,
            (0.0, 1.0),
        ),
        (
            "ifc4_archicad20_fzk_haus.ifc",
            "EPSG:25832",
            (49, 6, 1.566),
            (8, 26, 11.5404),
            110.0,
            (0.766044443119, 0.642787609687),
        ),
    ],
)
def test_ref_latlon_site_origin_lands_on_its_dms_position(
    name: str, storage: str, lat_dms: tuple, lon_dms: tuple, elevation: float, true_north: tuple[float, float]
) -> None:
    model = open_model(ifc(name))
    g = georeference(model, foreign(storage))
    assert g.method == "ref_latlon" and "georef.approximate" in codes(g, "warning") and not g.errors

    def deg(d: tuple) -> float:
        return math.copysign(abs(d[0]) + abs(d[1]) / 60 + abs(d[2]) / 3600, d[0])

    e, n, h = g.to_storage(*([v] for v in _site_origin(model)))
    lon, lat = Transformer.from_crs(storage, "EPSG:4326", always_xy=True).transform(e[0], n[0])
    assert lat == pytest.approx(deg(lat_dms), abs=1e-8)  # ≈ 1 mm
    assert lon == pytest.approx(deg(lon_dms), abs=1e-8)
    assert h[0] == pytest.approx(elevation, abs=MM)
    # 10 m along TrueNorth from the site origin is 10 m north (geodesic distance and azimuth)
    from pyproj import Geod

    ox, oy, oz = _site_origin(model)
    tx, ty = true_north  # as written in the file's 'Model' context
    step = 10.0 / g.length_unit_m
    e2, n2, _ = g.to_storage([ox + tx * step], [oy + ty * step], [oz])
    lon2, lat2 = Transformer.from_crs(storage, "EPSG:4326", always_xy=True).transform(e2[0], n2[0])
    azimuth, _, dist = Geod(ellps="WGS84").inv(lon, lat, lon2, lat2)
    assert dist == pytest.approx(10.0, abs=2e-3) and azimuth == pytest.approx(0.0, abs=0.01)


# -- placements given with the upload, ePSet, refusals ------------------------------------------------
def test_user_placement_places_and_rotates_the_project_origin() -> None:
    model = open_model(ifc("ifc4_ifcopenshell_ifcopenhouse.ifc"))  # mm, no georeferencing
    bare = georeference(model, Settings())
    assert bare.method == "none" and [f.code for f in bare.errors] == ["georef.none"]
    placement = UserPlacement(
        crs="EPSG:4548", easting=500100.0, northing=4057700.0, height=25.0, rotation_deg=90.0
    )
    g = georeference(model, Settings(), placement)
    assert g.method == "user" and not g.errors
    assert_lands(g, (0.0, 0.0, 0.0), (500100.0, 4057700.0, 25.0))
    assert_lands(g, (1000.0, 0.0, 2000.0), (500100.0, 4057701.0, 27.0))  # project X points north
    assert_lands(g, (0.0, 1000.0, 0.0), (500099.0, 4057700.0, 25.0))
    zone39 = georeference(
        model, Settings(), UserPlacement(crs="EPSG:4527", easting=39500100.0, northing=4057700.0)
    )
    assert_lands(zone39, (0.0, 0.0, 0.0), (500100.0, 4057700.0, 0.0))  # same place, other CGCS2000 zone code
    assert "georef.crs_not_cgcs2000" not in codes(zone39)


def test_epset_map_conversion_on_an_ifc2x3_site(tmp_path: Path) -> None:
    g = georeference(open_model(jinan_ifc(tmp_path)), Settings())
    assert (g.method, g.source_crs, g.scale) == ("epset_map_conversion", "EPSG:4548", MM)
    conv = {
        "Eastings": 500000.0,
        "Northings": 4057669.9,
        "OrthogonalHeight": 30.5,
        "XAxisAbscissa": 0.8,
        "XAxisOrdinate": 0.6,
    }
    for xyz in [(0.0, 0.0, 0.0), (5000.0, 200.0, 6000.0), (-1234.5, 987.0, -10.0)]:
        assert_lands(g, xyz, expected(conv, MM, xyz, "EPSG:4548", "EPSG:4548"))
    assert g.findings == []  # CGCS2000 zone, 1985 heights, inside Shandong: nothing to report


def test_a_model_outside_the_region_is_an_error_naming_where_it_lies() -> None:
    g = georeference(open_model(ifc("ifc2x3_revit2011_duplex_architecture.ifc")), Settings())
    outside = [f for f in g.errors if f.code == "georef.outside_region"]
    assert outside and "lon -87.6" in outside[0].message and "CIM_REGION_BBOX" in outside[0].message


def test_double_offset_is_an_error(tmp_path: Path) -> None:
    text = ifc("ifc4x3_bsi_georef_utm_epsg25832.ifc").read_text(encoding="ascii")
    text = text.replace(
        "#100022= IFCLOCALPLACEMENT($,#100040);",
        "#100022= IFCLOCALPLACEMENT($,#900001);\n#900001= IFCAXIS2PLACEMENT3D(#900002,$,$);\n"
        "#900002= IFCCARTESIANPOINT((458657300.,5438232250.,0.));",
    )
    path = tmp_path / "double.ifc"
    path.write_text(text, encoding="ascii")
    g = georeference(open_model(path), foreign("EPSG:25832"))
    double = [f for f in g.errors if f.code == "georef.double_offset"]
    assert double and "#100020 IfcSite" in double[0].entity
    clean = georeference(open_model(ifc("ifc4x3_bsi_georef_utm_epsg25832.ifc")), foreign("EPSG:25832"))
    assert "georef.double_offset" not in codes(clean)


# -- the pieces ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scale", "project_m", "map_m", "want", "reading"),
    [
        (None, 1.0, 1.0, 1.0, "ifc"),
        (1000.0, 1.0, 1e-3, 1000.0, "ifc"),  # Bonsai: m → mm
        (0.001, 1e-3, 1.0, 0.001, "ifc"),  # mm → m as IFC defines it
        (1000.0, 1e-3, 1.0, 0.001, "inverse"),  # bSI UTM sample
        (None, 1e-3, 1.0, 0.001, "units_added"),  # Scale left out with mm project units
        (0.9996, 1.0, 1.0, 0.9996, "grid_factor"),
        (7.0, 1e-3, 1.0, 7.0, "inconsistent"),
        (-1.0, 1.0, 1.0, 1.0, "inconsistent"),
    ],
)
def test_effective_scale_reads_both_conventions(
    scale: float | None, project_m: float, map_m: float, want: float, reading: str
) -> None:
    got, how, _ = effective_scale(scale, project_m, map_m)
    assert (got, how) == (pytest.approx(want), reading)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("EPSG:4548", ("EPSG:4548", None, None)),
        ("4548", ("EPSG:4548", None, None)),
        ("urn:ogc:def:crs:EPSG::4527", ("EPSG:4527", None, None)),
        ("EPSG:2056,EPSG:5728", ("EPSG:2056", "EPSG:5728", None)),
        ("EPSG:2056+5728", ("EPSG:2056", "EPSG:5728", None)),
        ("CGCS2000 / 3-degree Gauss-Kruger CM 117E", ("EPSG:4548", None, None)),
        ("", (None, None, "empty")),
        ("   ", (None, None, "empty")),
        ("Jinan city grid v2", (None, None, "unparseable")),
    ],
)
def test_crs_names_as_tools_write_them(name: str, want: tuple) -> None:
    assert parse_crs_name(name) == want


def test_dms_and_unit_labels() -> None:
    assert dms_to_degrees((41, 52, 27, 840000)) == pytest.approx(41.8744)
    assert dms_to_degrees((-87, -38, -21, -839999)) == pytest.approx(-(87 + 38 / 60 + 21.839999 / 3600))
    assert dms_to_degrees(None) is None
    assert (unit_label_m("METRE"), unit_label_m(".MILLI..METRE."), unit_label_m("US survey foot")) == (
        1.0,
        1e-3,
        pytest.approx(0.3048006096),
    )
    assert unit_label_m("furlong") is None
