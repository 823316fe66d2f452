"""The .glb writer: valid glTF 2.0 with EXT_mesh_features / EXT_structural_metadata, decoded back exactly."""

from __future__ import annotations

import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tiles.glb import (
    Column,
    PropertyTable,
    feature_positions,
    read_accessor,
    read_glb,
    read_property_table,
    srgb_to_linear,
    write_glb,
)


def _load_validators() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "validators.py"
    spec = importlib.util.spec_from_file_location("cim_test_validators", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validators = _load_validators()

RED = (200, 30, 30)
BLUE = (30, 60, 200)
#: (ENU centre, half sizes east/north/up, feature id, colour)
BOXES = [
    ((10.0, 20.0, -1.5), (1.0, 0.5, 0.25), 0, RED),
    ((-5.0, 3.0, -2.0), (1.0, 0.5, 0.25), 1, BLUE),
    ((0.0, -8.0, -1.0), (0.5, 0.5, 0.5), 2, RED),
]
NAMES = ["给水管 DN300", "雨水检查井 Y-12", "污水管道（混凝土）"]
DIAMETERS = [0.3, None, 1.25]
NODES = [2, 0, 4_000_000_000]


@dataclass(frozen=True)
class BoxMesh:
    """A mesh dataclass of another module's shape (fits the ``Mesh`` protocol)."""

    positions: np.ndarray
    normals: np.ndarray
    indices: np.ndarray
    feature_ids: np.ndarray


def box(centre: tuple[float, float, float], half: tuple[float, float, float], feature_id: int) -> BoxMesh:
    """An axis-aligned ENU box: four vertices per face with the face normal, two triangles per face."""
    positions, normals, indices = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [a for a in range(3) if a != axis]
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
            base = len(positions)
            for cu, cv in corners:
                p = np.array(centre, dtype=np.float64)
                p[axis] += sign * half[axis]
                p[u] += cu * half[u]
                p[v] += cv * half[v]
                positions.append(p)
                n = np.zeros(3)
                n[axis] = sign
                normals.append(n)
            # counter-clockwise seen from outside
            quad = [0, 1, 2, 0, 2, 3] if (sign > 0) == ((v - u) % 3 == 1) else [0, 2, 1, 0, 3, 2]
            indices += [base + q for q in quad]
    return BoxMesh(
        positions=np.array(positions, dtype=np.float64),
        normals=np.array(normals, dtype=np.float32),
        indices=np.array(indices, dtype=np.uint32),
        feature_ids=np.full(len(positions), feature_id, dtype=np.uint32),
    )


def sample_table() -> PropertyTable:
    return PropertyTable(
        count=3,
        columns={
            "name": Column("STRING", None, NAMES, description="管线名称"),
            "diameter_m": Column("SCALAR", "FLOAT64", DIAMETERS),
            "node_count": Column("SCALAR", "UINT32", NODES),
        },
    )


def write_sample(path: Path, **kwargs: object) -> int:
    parts = [(box(centre, half, fid), colour) for centre, half, fid, colour in BOXES]
    return write_glb(path, parts, sample_table(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def glb_path(tmp_path: Path) -> Path:
    path = tmp_path / "pipes.glb"
    write_sample(path)
    return path


def repack(path: Path, gltf: dict, binary: bytes) -> None:
    """Write a GLB from edited JSON (test helper, independent of the writer)."""
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    path.write_bytes(
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<II", len(text), 0x4E4F534A)
        + text
        + struct.pack("<II", len(binary), 0x004E4942)
        + binary
    )


needs_validator = pytest.mark.skipif(
    not validators.gltf_validator_available(),
    reason="node_modules/gltf-validator is absent (run `npm ci --ignore-scripts`)",
)


@needs_validator
def test_the_khronos_validator_reports_no_errors_and_no_warnings(glb_path: Path) -> None:
    report = validators.gltf_validate([glb_path])[glb_path]
    problems = [m for m in report["messages"] if m["severity"] <= 1]
    assert report["numErrors"] == 0, problems
    assert report["numWarnings"] == 0, problems


@needs_validator
def test_the_khronos_validator_catches_a_wrong_position_bound(glb_path: Path, tmp_path: Path) -> None:
    gltf, binary = read_glb(glb_path)
    position = gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    gltf["accessors"][position]["max"][0] += 1.0
    broken = tmp_path / "broken.glb"
    repack(broken, gltf, binary)
    report = validators.gltf_validate([broken])[broken]
    assert report["numErrors"] >= 1
    assert "ACCESSOR_MAX_MISMATCH" in {m["code"] for m in report["messages"]}


def test_the_validator_runner_says_how_to_install_a_missing_validator(
    glb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validators, "GLTF_VALIDATOR", tmp_path / "node_modules" / "gltf-validator")
    monkeypatch.setattr(validators.shutil, "which", lambda name: "/usr/bin/node")
    assert not validators.gltf_validator_available()
    with pytest.raises(validators.ValidatorUnavailable, match="npm ci --ignore-scripts"):
        validators.gltf_validate([glb_path])


def test_the_extension_objects_validate_against_the_official_schemas(glb_path: Path) -> None:
    gltf, _ = read_glb(glb_path)
    assert validators.validate_gltf_extensions(gltf) == []


def test_the_schema_check_rejects_a_broken_feature_id_set(glb_path: Path) -> None:
    gltf, _ = read_glb(glb_path)
    gltf["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]["featureCount"] = 0
    gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["count"] = 0
    errors = validators.validate_gltf_extensions(gltf)
    assert any(
        e.startswith("/meshes/0/primitives/0/extensions/EXT_mesh_features/featureIds/0/featureCount")
        for e in errors
    )
    assert any(e.startswith("/extensions/EXT_structural_metadata/propertyTables/0/count") for e in errors)


def test_the_property_table_round_trips_chinese_text_missing_floats_and_large_uint32(glb_path: Path) -> None:
    assert read_property_table(glb_path) == {"name": NAMES, "diameter_m": DIAMETERS, "node_count": NODES}


def test_only_columns_with_missing_values_declare_no_data(glb_path: Path) -> None:
    gltf, _ = read_glb(glb_path)
    metadata = gltf["extensions"]["EXT_structural_metadata"]
    props = metadata["schema"]["classes"]["pipe_feature"]["properties"]
    assert props["diameter_m"] == {
        "type": "SCALAR",
        "componentType": "FLOAT64",
        "noData": -np.finfo(np.float64).max,
    }
    assert "noData" not in props["node_count"]
    assert props["name"] == {"type": "STRING", "description": "管线名称"}
    assert metadata["schema"]["id"] == "cim"
    assert metadata["propertyTables"][0]["properties"]["name"]["stringOffsetType"] == "UINT32"


def test_every_buffer_view_and_the_bin_chunk_start_on_8_byte_boundaries(glb_path: Path) -> None:
    data = glb_path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    assert (12 + 8 + json_length + 8) % 8 == 0
    assert len(data) % 8 == 0
    gltf, binary = read_glb(glb_path)
    assert gltf["buffers"] == [{"byteLength": len(binary)}]
    assert all(view["byteOffset"] % 8 == 0 for view in gltf["bufferViews"])


def test_feature_positions_are_the_box_centres_in_enu_z_up(glb_path: Path) -> None:
    centres = feature_positions(glb_path)
    assert sorted(centres) == [0, 1, 2]
    for centre, _, fid, _ in BOXES:
        np.testing.assert_allclose(centres[fid], centre, atol=1e-6)


def test_positions_are_y_up_float32_with_exact_min_and_max(glb_path: Path) -> None:
    gltf, binary = read_glb(glb_path)
    red, blue = gltf["meshes"][0]["primitives"]
    blue_position = gltf["accessors"][blue["attributes"]["POSITION"]]
    # ENU box centred (-5, 3, -2), half sizes (1, 0.5, 0.25): glTF (x, z, -y)
    assert blue_position["componentType"] == 5126
    assert blue_position["min"] == [-6.0, -2.25, -3.5]
    assert blue_position["max"] == [-4.0, -1.75, -2.5]
    red_position = gltf["accessors"][red["attributes"]["POSITION"]]
    assert red_position["min"] == [-0.5, -1.75, -20.5]
    assert red_position["max"] == [11.0, -0.5, 8.5]
    values = read_accessor(gltf, binary, red["attributes"]["POSITION"])
    assert values.dtype == np.float32
    assert values.min(axis=0).tolist() == red_position["min"]
    assert values.max(axis=0).tolist() == red_position["max"]


def test_normals_turn_with_the_positions_to_y_up(glb_path: Path) -> None:
    gltf, binary = read_glb(glb_path)
    primitive = gltf["meshes"][0]["primitives"][1]
    normals = read_accessor(gltf, binary, primitive["attributes"]["NORMAL"])
    positions = read_accessor(gltf, binary, primitive["attributes"]["POSITION"])
    centre = np.array([-5.0, -2.0, -3.0])  # ENU (-5, 3, -2) in glTF
    outward = np.einsum("ij,ij->i", normals, positions - centre)
    assert (outward > 0).all()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-6)


def test_parts_of_one_colour_share_a_primitive_and_a_linear_srgb_material(glb_path: Path) -> None:
    gltf, _ = read_glb(glb_path)
    primitives = gltf["meshes"][0]["primitives"]
    assert [p["material"] for p in primitives] == [0, 1]
    assert len(gltf["nodes"]) == 1 and gltf["nodes"][0] == {"mesh": 0}
    red = gltf["materials"][0]
    assert red["doubleSided"] is False
    pbr = red["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == pytest.approx(0.8)
    assert pbr["baseColorFactor"] == pytest.approx([0.5776, 0.0130, 0.0130, 1.0], abs=1e-4)
    assert srgb_to_linear((0, 255, 10)) == pytest.approx([0.0, 1.0, 0.003035, 1.0], abs=1e-6)


def test_each_primitive_declares_its_distinct_feature_count_and_the_property_table(glb_path: Path) -> None:
    gltf, binary = read_glb(glb_path)
    red, blue = gltf["meshes"][0]["primitives"]
    for primitive, expected_ids in ((red, [0, 2]), (blue, [1])):
        ext = primitive["extensions"]["EXT_mesh_features"]
        assert ext == {
            "featureIds": [{"featureCount": len(expected_ids), "attribute": 0, "propertyTable": 0}]
        }
        ids = read_accessor(gltf, binary, primitive["attributes"]["_FEATURE_ID_0"])
        assert np.unique(ids).tolist() == expected_ids
    accessor = gltf["accessors"][red["attributes"]["_FEATURE_ID_0"]]
    assert (accessor["componentType"], accessor["type"]) == (5126, "SCALAR")


def test_the_asset_names_the_generator_and_lists_both_extensions_as_used_only(tmp_path: Path) -> None:
    path = tmp_path / "x.glb"
    written = write_sample(path, extras={"origin": [1, 2, 3]}, class_id="pipe_segment", schema_id="city")
    assert written == path.stat().st_size
    gltf, _ = read_glb(path)
    assert gltf["asset"] == {"version": "2.0", "generator": "cim-service"}
    assert sorted(gltf["extensionsUsed"]) == ["EXT_mesh_features", "EXT_structural_metadata"]
    assert "extensionsRequired" not in gltf
    assert gltf["extras"] == {"origin": [1, 2, 3]}
    metadata = gltf["extensions"]["EXT_structural_metadata"]
    assert list(metadata["schema"]["classes"]) == ["pipe_segment"] and metadata["schema"]["id"] == "city"
    assert metadata["propertyTables"][0]["class"] == "pipe_segment"


def test_boolean_and_signed_columns_round_trip_with_an_explicit_no_data(tmp_path: Path) -> None:
    table = PropertyTable(
        count=10,
        columns={
            "active": Column("BOOLEAN", None, [i % 3 == 0 for i in range(10)]),
            "depth_cm": Column("SCALAR", "INT16", [-5, None, 7, 0, 1, 2, 3, 4, 5, 6], no_data=-999),
            "label": Column(
                "STRING", None, ["", "a", None, "井", "b", "c", "d", "e", "f", "g"], no_data="N/A"
            ),
        },
    )
    path = tmp_path / "b.glb"
    write_glb(path, [(box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 9), BLUE)], table)
    decoded = read_property_table(path)
    assert decoded == {name: list(column.values) for name, column in table.columns.items()}
    props = read_glb(path)[0]["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["pipe_feature"]
    assert props["properties"]["depth_cm"]["noData"] == -999
    assert props["properties"]["label"]["noData"] == "N/A"


def test_feature_ids_beyond_the_property_table_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feature IDs"):
        write_glb(tmp_path / "x.glb", [(box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 3), RED)], sample_table())


def test_a_value_equal_to_the_no_data_sentinel_is_rejected(tmp_path: Path) -> None:
    table = PropertyTable(count=2, columns={"n": Column("SCALAR", "UINT8", [255, None])})
    with pytest.raises(ValueError, match="noData"):
        write_glb(tmp_path / "x.glb", [(box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1), RED)], table)
