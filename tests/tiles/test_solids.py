"""Tests for tiles.solids: vectorised pipe-network triangle meshes."""

from __future__ import annotations

import numpy as np
import pytest

from tiles.solids import (
    Mesh,
    pipe_boxes,
    pipe_cylinders,
    simplified_segments,
    symbols,
    vertical_cylinders,
)

# A flat, a sloping, a steep-ish and a vertical segment in a local frame.
STARTS = np.array([[0.0, 0.0, -1.5], [100.0, 50.0, -2.0], [10.0, 10.0, 0.0], [5.0, -5.0, -4.0]])
ENDS = np.array([[30.0, 0.0, -1.5], [120.0, 80.0, -2.6], [11.0, 11.5, -3.0], [5.0, -5.0, -1.0]])
RADII = np.array([0.3, 0.15, 0.05, 0.5])
IDS = np.array([7, 8, 9, 10], dtype=np.uint32)


def _weld(mesh: Mesh) -> np.ndarray:
    """Triangles (t, 3) in terms of position-welded vertex ids."""
    _, inverse = np.unique(np.round(mesh.positions, 9), axis=0, return_inverse=True)
    return inverse.reshape(-1)[mesh.indices].reshape(-1, 3)


def _directed_edges(mesh: Mesh) -> np.ndarray:
    tri = _weld(mesh)
    return np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])


def _is_closed_and_consistent(mesh: Mesh) -> bool:
    """Every edge is used by exactly two triangles, once in each direction."""
    edges = _directed_edges(mesh)
    directed = {tuple(e) for e in edges.tolist()}
    if len(directed) != len(edges):
        return False
    return all((b, a) in directed for a, b in directed)


def _face_normals(mesh: Mesh) -> np.ndarray:
    p = mesh.positions[mesh.indices.reshape(-1, 3)]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def _assert_winding_matches_normals(mesh: Mesh) -> None:
    tri = mesh.indices.reshape(-1, 3)
    vertex_normals = mesh.normals[tri].astype(np.float64).sum(axis=1)
    assert np.all(np.einsum("ij,ij->i", _face_normals(mesh), vertex_normals) > 0)


def _assert_unit_normals(mesh: Mesh) -> None:
    assert mesh.normals.dtype == np.float32
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-6)


def _axis_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points from the line a-b and their parameter along it (0 at a, 1 at b)."""
    d = b - a
    t = (points - a) @ d / (d @ d)
    foot = a + t[:, None] * d
    return np.linalg.norm(points - foot, axis=1), t


def test_mesh_empty_has_no_vertices_and_the_declared_dtypes() -> None:
    m = Mesh.empty()
    assert m.vertex_count == 0 and m.triangle_count == 0
    assert m.positions.shape == (0, 3) and m.positions.dtype == np.float64
    assert m.normals.dtype == np.float32
    assert m.indices.dtype == np.uint32 and m.feature_ids.dtype == np.uint32


def test_cylinder_has_four_rings_of_sides_vertices_and_four_sides_minus_four_triangles() -> None:
    m = pipe_cylinders(STARTS, ENDS, RADII, IDS, sides=12)
    assert m.vertex_count == 4 * 48
    assert m.triangle_count == 4 * 44
    assert m.indices.dtype == np.uint32 and m.positions.dtype == np.float64
    assert int(m.indices.max()) == m.vertex_count - 1


@pytest.mark.parametrize("i", range(4), ids=["flat", "sloping", "steep", "vertical"])
def test_every_cylinder_vertex_lies_at_the_radius_from_the_segment_axis(i: int) -> None:
    m = pipe_cylinders(STARTS[i : i + 1], ENDS[i : i + 1], RADII[i : i + 1], IDS[i : i + 1], sides=12)
    dist, t = _axis_distance(m.positions, STARTS[i], ENDS[i])
    assert np.allclose(dist, RADII[i], rtol=1e-9, atol=0)
    assert np.allclose(np.minimum(np.abs(t), np.abs(t - 1.0)), 0.0, atol=1e-12)


@pytest.mark.parametrize("i", range(4), ids=["flat", "sloping", "steep", "vertical"])
def test_cylinders_are_closed_with_outward_unit_normals(i: int) -> None:
    m = pipe_cylinders(STARTS[i : i + 1], ENDS[i : i + 1], RADII[i : i + 1], IDS[i : i + 1], sides=7)
    assert _is_closed_and_consistent(m)
    _assert_unit_normals(m)
    _assert_winding_matches_normals(m)
    centre = 0.5 * (STARTS[i] + ENDS[i])
    assert np.all(np.einsum("ij,ij->i", m.normals, m.positions - centre) > 0)


def test_cylinder_side_normals_point_radially_away_from_the_axis() -> None:
    sides = 10
    m = pipe_cylinders(STARTS, ENDS, RADII, IDS, sides=sides)
    per = 4 * sides
    for i in range(len(STARTS)):
        block = slice(i * per, i * per + 2 * sides)  # the two mantle rings
        p, n = m.positions[block], m.normals[block].astype(np.float64)
        d = ENDS[i] - STARTS[i]
        t = (p - STARTS[i]) @ d / (d @ d)
        radial = p - (STARTS[i] + t[:, None] * d)
        assert np.all(np.einsum("ij,ij->i", n, radial) > 0)
        assert np.allclose(n @ (d / np.linalg.norm(d)), 0.0, atol=1e-6)


def test_cylinder_cap_normals_are_axial() -> None:
    sides = 6
    m = pipe_cylinders(STARTS[1:2], ENDS[1:2], 0.2, 1, sides=sides)
    d = (ENDS[1] - STARTS[1]) / np.linalg.norm(ENDS[1] - STARTS[1])
    assert np.allclose(m.normals[2 * sides : 3 * sides], -d, atol=1e-6)
    assert np.allclose(m.normals[3 * sides :], d, atol=1e-6)


def test_feature_ids_are_carried_on_every_vertex_of_their_item() -> None:
    m = pipe_cylinders(STARTS, ENDS, RADII, IDS, sides=5)
    assert m.feature_ids.dtype == np.uint32
    assert np.array_equal(m.feature_ids, np.repeat(IDS, 20))
    tri_ids = m.feature_ids[m.indices.reshape(-1, 3)]
    assert np.all(tri_ids == tri_ids[:, :1])


def test_degenerate_segments_are_skipped_without_nan() -> None:
    starts = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0], [np.nan, 0, 0], [0, 0, 0]], float)
    ends = np.array([[5, 0, 0], [1, 1, 1], [5, 0, 0], [5, 0, 0], [5, 0, 0], [0, 0, 5]], float)
    radii = np.array([0.1, 0.1, 0.0, np.nan, 0.1, 0.2])
    ids = np.arange(6)
    for mesh in (
        pipe_cylinders(starts, ends, radii, ids, sides=6),
        simplified_segments(starts, ends, radii, ids),
        pipe_boxes(starts, ends, radii, radii, ids),
    ):
        assert set(mesh.feature_ids.tolist()) == {0, 5}
        assert np.isfinite(mesh.positions).all() and np.isfinite(mesh.normals).all()


def test_all_degenerate_input_gives_an_empty_mesh() -> None:
    m = pipe_cylinders(np.zeros((2, 3)), np.zeros((2, 3)), 0.1, [1, 2])
    assert m.vertex_count == 0 and m.triangle_count == 0 and m.positions.shape == (0, 3)


def test_box_has_24_vertices_and_12_triangles_per_segment() -> None:
    m = pipe_boxes(STARTS, ENDS, 1.0, 0.5, IDS)
    assert m.vertex_count == 24 * 4 and m.triangle_count == 12 * 4
    assert np.array_equal(m.feature_ids, np.repeat(IDS, 24))


@pytest.mark.parametrize("i", range(4), ids=["flat", "sloping", "steep", "vertical"])
def test_boxes_are_closed_with_outward_unit_face_normals(i: int) -> None:
    m = pipe_boxes(STARTS[i : i + 1], ENDS[i : i + 1], 1.2, 0.8, 3)
    assert _is_closed_and_consistent(m)
    _assert_unit_normals(m)
    _assert_winding_matches_normals(m)
    centre = 0.5 * (STARTS[i] + ENDS[i])
    assert np.all(np.einsum("ij,ij->i", m.normals, m.positions - centre) > 0)
    assert len(np.unique(np.round(m.positions, 9), axis=0)) == 8


def test_sloping_box_stays_upright_with_corners_at_half_width_across_and_half_height_vertically() -> None:
    a, b, w, h = STARTS[1], ENDS[1], 1.2, 0.8
    m = pipe_boxes(a[None], b[None], w, h, 1)
    plan = (b - a)[:2]
    plan_len = np.linalg.norm(plan)
    along_dir = plan / plan_len
    left = np.array([-along_dir[1], along_dir[0]])
    rel = m.positions - a
    along = rel[:, :2] @ along_dir
    across = rel[:, :2] @ left
    axis_z = a[2] + along / plan_len * (b[2] - a[2])
    assert np.allclose(np.abs(across), w / 2, rtol=1e-12)
    assert np.allclose(np.abs(m.positions[:, 2] - axis_z), h / 2, rtol=1e-9)
    assert np.allclose(np.minimum(np.abs(along), np.abs(along - plan_len)), 0.0, atol=1e-9)
    top = m.normals[:, 2] > 0.5
    assert np.allclose(m.positions[top, 2] - axis_z[top], h / 2)


def test_box_steeper_than_45_degrees_takes_a_section_perpendicular_to_the_axis() -> None:
    a, b, w, h = STARTS[2], ENDS[2], 1.0, 0.6
    m = pipe_boxes(a[None], b[None], w, h, 1)
    d = (b - a) / np.linalg.norm(b - a)
    left = np.array([-d[1], d[0], 0.0]) / np.hypot(d[0], d[1])
    height_dir = np.cross(d, left)
    rel = m.positions - a
    along = rel @ d
    assert np.allclose(np.minimum(np.abs(along), np.abs(along - np.linalg.norm(b - a))), 0.0, atol=1e-9)
    assert np.allclose(np.abs(rel @ left), w / 2, rtol=1e-9)
    assert np.allclose(np.abs(rel @ height_dir), h / 2, rtol=1e-9)


def test_vertical_box_falls_back_to_width_east_and_height_north() -> None:
    a, b = STARTS[3], ENDS[3]
    m = pipe_boxes(a[None], b[None], 1.0, 0.4, 1)
    assert np.allclose(np.abs(m.positions[:, 0] - a[0]), 0.5)
    assert np.allclose(np.abs(m.positions[:, 1] - a[1]), 0.2)
    assert set(np.round(m.positions[:, 2], 9).tolist()) == {a[2], b[2]}


def test_vertical_cylinders_span_bottom_to_top_at_the_radius() -> None:
    xy = np.array([[10.0, 20.0], [-3.0, 4.0]])
    top, bottom, r = np.array([5.0, 4.0]), np.array([2.0, 1.5]), np.array([0.5, 0.7])
    m = vertical_cylinders(xy, top, bottom, r, [1, 2], sides=8)
    assert m.vertex_count == 2 * 32 and m.triangle_count == 2 * 28
    for i in range(2):
        block = m.feature_ids == i + 1
        p = m.positions[block]
        assert np.allclose(np.hypot(p[:, 0] - xy[i, 0], p[:, 1] - xy[i, 1]), r[i], rtol=1e-9)
        assert set(np.round(p[:, 2], 9).tolist()) == {top[i], bottom[i]}
    assert _is_closed_and_consistent(m)
    _assert_winding_matches_normals(m)


def test_symbols_are_closed_octahedra_with_tips_at_half_size() -> None:
    c = np.array([[1.0, 2.0, 3.0], [-5.0, 0.0, 1.0]])
    m = symbols(c, [0.4, 1.0], [4, 5])
    assert m.vertex_count == 48 and m.triangle_count == 16
    dist = np.linalg.norm(m.positions - np.repeat(c, 24, axis=0), axis=1)
    assert np.allclose(dist, np.repeat([0.2, 0.5], 24))
    assert _is_closed_and_consistent(m)
    _assert_unit_normals(m)
    _assert_winding_matches_normals(m)
    assert np.array_equal(m.feature_ids, np.repeat([4, 5], 24))


def test_simplified_segments_are_open_triangular_prisms_at_the_radius() -> None:
    m = simplified_segments(STARTS, ENDS, RADII, IDS)
    assert m.vertex_count == 6 * 4 and m.triangle_count == 6 * 4
    for i in range(4):
        block = slice(6 * i, 6 * i + 6)
        dist, _ = _axis_distance(m.positions[block], STARTS[i], ENDS[i])
        assert np.allclose(dist, RADII[i], rtol=1e-9)
    _assert_unit_normals(m)
    _assert_winding_matches_normals(m)
    one = simplified_segments(STARTS[:1], ENDS[:1], 0.3, 1)
    assert not _is_closed_and_consistent(one)


def test_concat_offsets_indices_and_keeps_triangles_on_the_same_positions() -> None:
    m1 = pipe_cylinders(STARTS[:2], ENDS[:2], RADII[:2], IDS[:2], sides=6)
    m2 = pipe_boxes(STARTS[2:], ENDS[2:], 1.0, 1.0, IDS[2:])
    m = Mesh.concat([m1, Mesh.empty(), m2])
    assert m.vertex_count == m1.vertex_count + m2.vertex_count
    assert m.triangle_count == m1.triangle_count + m2.triangle_count
    assert m.indices.dtype == np.uint32
    n1 = m1.indices.size
    assert np.array_equal(m.indices[n1:], m2.indices + m1.vertex_count)
    assert np.array_equal(m.positions[m.indices[n1:]], m2.positions[m2.indices])
    assert np.array_equal(m.feature_ids, np.concatenate([m1.feature_ids, m2.feature_ids]))
    assert Mesh.concat([]).vertex_count == 0


def test_feature_ids_outside_uint32_are_rejected() -> None:
    with pytest.raises(ValueError):
        pipe_cylinders(STARTS[:1], ENDS[:1], 0.1, [-1])


def test_many_segments_across_chunks_build_a_consistent_mesh() -> None:
    k = 200_000
    rng = np.random.default_rng(0)
    start = rng.uniform(-5000, 5000, (k, 3))
    end = start + rng.normal(0, 20, (k, 3))
    end[::1000, :2] = start[::1000, :2]  # some vertical ones
    ids = np.arange(k, dtype=np.uint32)
    m = pipe_cylinders(start, end, rng.uniform(0.05, 1.0, k), ids, sides=6)
    assert m.vertex_count == 24 * k and m.triangle_count == 20 * k
    assert int(m.indices.max()) == m.vertex_count - 1
    assert m.feature_ids[-1] == k - 1
    assert np.isfinite(m.positions).all() and np.isfinite(m.normals).all()
    last = m.indices[-60:].reshape(-1, 3)
    assert np.all(m.feature_ids[last] == k - 1)
