"""Sniffing and opening IFC files: every real sample opens; broken or foreign uploads fail precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
from ifc_samples import IFC_DIR, ifc, jinan_ifc

from cim.errors import InvalidInputError, UnsupportedError
from converters.ifc.open import decode_step_string, load, openable, sniff

SAMPLES = sorted(p.name for p in IFC_DIR.glob("*.ifc"))
#: expected (declared schema, schema opened, IfcProduct count) per sample (counts as in PROVENANCE.md)
EXPECTED: dict[str, tuple[str, str, int]] = {
    "ifc2x3_arkey_riolering_sewer.ifc": ("IFC2X3", "IFC2X3", 30),
    "ifc2x3_prostructures_no_site_no_georef_mm.ifc": ("IFC2X3", "IFC2X3", 4),
    "ifc2x3_revit2011_duplex_architecture.ifc": ("IFC2X3", "IFC2X3", 295),
    "ifc2x3_revit2013_duplex_electrical.ifc": ("IFC2X3", "IFC2X3", 109),
    "ifc4_archicad20_fzk_haus.ifc": ("IFC4", "IFC4", 127),
    "ifc4_bonsai_geolocation_mapconversion.ifc": ("IFC4", "IFC4", 14),
    "ifc4_bonsai_geolocation_mapconversion_scale_epsg3857.ifc": ("IFC4", "IFC4", 4),
    "ifc4_geometrygym_basin_faceted_brep.ifc": ("IFC4", "IFC4", 2),
    "ifc4_ifcopenshell_ifcopenhouse.ifc": ("IFC4", "IFC4", 47),
    "ifc4x3_acca_ps01_project_setup.ifc": ("IFC4X3_ADD1", "IFC4X3_ADD2", 7),
    "ifc4x3_bsi_georef_utm_epsg25832.ifc": ("IFC4X3_ADD2", "IFC4X3_ADD2", 4),
    "ifc4x3_bsi_wall_extruded_solid.ifc": ("IFC4X3_ADD2", "IFC4X3_ADD2", 2),
    "ifc4x3_civil3d_ps01_project_setup.ifc": ("IFC4X3_ADD1", "IFC4X3_ADD2", 8),
}


def test_the_sample_list_is_the_documented_one() -> None:
    assert SAMPLES == sorted(EXPECTED)
    assert "benchmark" not in " ".join(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_sniffs_and_opens(name: str) -> None:
    declared, opened, products = EXPECTED[name]
    header = sniff(ifc(name))
    assert (header.declared_schema, header.schema) == (declared, opened)
    assert header.size == ifc(name).stat().st_size and len(header.sha256) == 64
    with openable(header) as path:
        assert (path != header.path) == (declared != opened)  # only aliases need a rewritten copy
        model = load(path, header)
        assert model.schema_identifier == opened
        assert len(model.by_type("IfcProduct")) == products
    if header.rewritten:
        assert not path.exists()  # the temporary copy is gone


def test_the_rewritten_copy_changes_only_the_schema_name() -> None:
    header = sniff(ifc("ifc4x3_civil3d_ps01_project_setup.ifc"))
    original = header.path.read_bytes()
    with openable(header) as path:
        copy = path.read_bytes()
    assert copy == original.replace(b"'IFC4X3_ADD1'", b"'IFC4X3_ADD2'", 1)


def test_the_header_file_name_is_read_with_comments_and_escapes() -> None:
    header = sniff(ifc("ifc4x3_civil3d_ps01_project_setup.ifc"))
    assert header.originating_system == "Civil 3D 2024 IfcInfra Plugin built 2023-07-31T04:37:25"
    assert header.preprocessor_version.startswith("GeometryGymIFCcore")
    assert decode_step_string(r"D\X2\0027\X0\Urso") == "D'Urso"
    assert decode_step_string("C30 \\X2\\6DF751DD571F\\X0\\") == "C30 混凝土"
    assert decode_step_string("it''s") == "it's"


# -- broken uploads -----------------------------------------------------------------------------------
def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"empty \(0 bytes\)"):
        sniff(_write(tmp_path, "empty.ifc", b""))


def test_a_file_with_the_wrong_magic_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not an IFC-SPF file: it starts with b'%PDF-1.7"):
        sniff(_write(tmp_path, "report.ifc", b"%PDF-1.7\n" + b"x" * 100))


def test_ifc_xml_and_ifc_zip_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="IFC-XML"):
        sniff(_write(tmp_path, "m.ifcxml", b'<?xml version="1.0"?><ifcXML/>'))
    with pytest.raises(UnsupportedError, match="IFC-ZIP"):
        sniff(_write(tmp_path, "m.ifczip", b"PK\x03\x04" + b"\0" * 64))


def test_a_truncated_copy_of_a_real_file_is_refused(tmp_path: Path) -> None:
    data = ifc("ifc4_ifcopenshell_ifcopenhouse.ifc").read_bytes()
    path = _write(tmp_path, "cut.ifc", data[: len(data) * 2 // 3])
    with pytest.raises(InvalidInputError, match="truncated: it does not end with END-ISO-10303-21;") as exc:
        sniff(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("schema", ["IFC5", "IFC4X1", "IFC2X2_FINAL"])
def test_an_unknown_schema_is_refused_with_the_supported_list(tmp_path: Path, schema: str) -> None:
    data = (
        ifc("ifc4x3_bsi_wall_extruded_solid.ifc")
        .read_bytes()
        .replace(b"'IFC4X3_ADD2'", f"'{schema}'".encode())
    )
    with pytest.raises(UnsupportedError, match=f"unknown IFC schema '{schema}'.*IFC2X3, IFC4, IFC4X3_ADD2"):
        sniff(_write(tmp_path, "odd.ifc", data))


def test_a_header_without_file_schema_is_refused(tmp_path: Path) -> None:
    data = ifc("ifc4x3_bsi_wall_extruded_solid.ifc").read_bytes().replace(b"FILE_SCHEMA", b"FILE_SCHEME")
    with pytest.raises(InvalidInputError, match="FILE_SCHEMA"):
        sniff(_write(tmp_path, "noschema.ifc", data))


def test_a_file_larger_than_the_upload_limit_is_refused() -> None:
    path = ifc("ifc4_ifcopenshell_ifcopenhouse.ifc")
    with pytest.raises(InvalidInputError, match="larger than the accepted 1000 bytes"):
        sniff(path, max_bytes=1000)
    assert sniff(path, max_bytes=path.stat().st_size).size == path.stat().st_size


def test_a_file_without_products_is_refused_after_parsing(tmp_path: Path) -> None:
    text = jinan_ifc(tmp_path).read_text(encoding="ascii")
    head, _, _ = text.partition("#31=")
    path = _write(tmp_path, "bare.ifc", (head + "ENDSEC;\nEND-ISO-10303-21;\n").encode())
    header = sniff(path)
    with openable(header) as p, pytest.raises(InvalidInputError, match="holds no IfcProduct"):
        load(p, header)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        sniff(tmp_path / "nope.ifc")
