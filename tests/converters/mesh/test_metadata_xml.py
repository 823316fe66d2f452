"""ContextCapture metadata.xml: the SRS is built from the WKT parameters, not its contradicting EPSG code;
EPSG and ENU forms; absent SRSOrigin; entity declarations and broken values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyproj import Transformer

from cim.errors import CRSError, CRSMissingError, InvalidInputError
from converters.mesh.metadata_xml import georef_from_args, parse_metadata_xml

SAMPLE = Path(__file__).resolve().parents[3] / "../shared/data/oblique/osgb_cgcs2000_gk113_production5/metadata.xml"


def write(tmp: Path, body: str) -> Path:
    path = tmp / "metadata.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n{body}', encoding="utf-8")
    return path


def test_sample_srs_uses_the_wkt_parameters():
    g = parse_metadata_xml(SAMPLE)
    assert g.origin == (501027.524, 2488718.808, 0.0)
    assert g.crs is not None and g.crs.to_epsg() is None
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4490", always_xy=True).transform(*g.origin[:2])
    assert lon == pytest.approx(113.37999, abs=1e-4) and lat == pytest.approx(22.49514, abs=1e-4)
    lon_wrong, _ = Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True).transform(*g.origin[:2])
    assert lon_wrong == pytest.approx(114.01, abs=1e-2)  # what trusting the code would do
    assert any("EPSG:4547" in n and "differ" in n for n in g.notes)


def test_epsg_and_enu_forms_and_absent_origin(tmp_path):
    g = parse_metadata_xml(write(tmp_path, "<ModelMetadata><SRS>EPSG:4548</SRS></ModelMetadata>"))
    assert g.crs.to_epsg() == 4548 and g.origin == (0.0, 0.0, 0.0)
    g = parse_metadata_xml(write(tmp_path, "<ModelMetadata><SRS>ENU:36.65,117.0</SRS>"
                                           "<SRSOrigin>1,2,3</SRSOrigin></ModelMetadata>"))
    assert g.crs is None and g.enu == (36.65, 117.0) and g.origin == (1.0, 2.0, 3.0)
    assert georef_from_args("EPSG:4548+5737", "500000,4057669.9,10").crs.to_epsg() == 4548


@pytest.mark.parametrize(("body", "error", "match"), [
    ("<ModelMetadata><SRS>EPSG:999999</SRS></ModelMetadata>", CRSError, "cannot be read"),
    ("<ModelMetadata><SRS>EPSG:4490</SRS></ModelMetadata>", CRSError, "not a projected CRS"),
    ("<ModelMetadata><SRS></SRS></ModelMetadata>", CRSMissingError, "no <SRS>"),
    ("<ModelMetadata><SRS>EPSG:4548</SRS><SRSOrigin>1,x,3</SRSOrigin></ModelMetadata>", InvalidInputError,
     "SRSOrigin"),
    ("<ModelMetadata><SRS>EPSG:4548</SRS>", InvalidInputError, "well-formed"),
    ('<!DOCTYPE m [<!ENTITY e "EPSG:4548">]><ModelMetadata><SRS>&e;</SRS></ModelMetadata>', InvalidInputError,
     "DTD or entities"),
])
def test_bad_metadata_is_refused(tmp_path, body, error, match):
    with pytest.raises(error, match=match):
        parse_metadata_xml(write(tmp_path, body))


def test_no_georeference_given():
    with pytest.raises(CRSMissingError, match="no georeference"):
        georef_from_args(None, "1,2,3")
