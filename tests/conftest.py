"""Shared fixtures: an in-memory store and builders of small pipe-network tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from cim.store import DuckDBStore
from cim.store.schema import POINT_COLUMNS, SEGMENT_COLUMNS

Rows = list[dict[str, Any]]

_FLOAT_POINT = {"x", "y", "ground_h", "well_depth", "well_bottom_h"}
_FLOAT_SEGMENT = {
    "diameter_mm",
    "width_mm",
    "height_mm",
    "start_depth",
    "end_depth",
    "start_h",
    "end_h",
    "start_z",
    "end_z",
    "length_3d",
    "slope",
    "x1",
    "y1",
    "x2",
    "y2",
}


def _column_type(name: str, floats: set[str]) -> pa.DataType:
    if name in floats:
        return pa.float64()
    if name == "status":
        return pa.int32()
    if name == "source_row":
        return pa.int64()
    if name == "qc_flags":
        return pa.list_(pa.string())
    return pa.string()


def _table(rows: Rows, columns: tuple[str, ...], floats: set[str]) -> pa.Table:
    unknown = {key for row in rows for key in row} - set(columns)
    assert not unknown, f"test rows name columns the schema lacks: {unknown}"
    return pa.table(
        {c: pa.array([row.get(c) for row in rows], type=_column_type(c, floats)) for c in columns}
    )


@pytest.fixture
def point_table() -> Callable[[Rows], pa.Table]:
    """Build a ``pipe_points`` input table (every POINT_COLUMNS column) from a few dicts."""
    return lambda rows: _table(rows, POINT_COLUMNS, _FLOAT_POINT)


@pytest.fixture
def segment_table() -> Callable[[Rows], pa.Table]:
    """Build a ``pipe_segments`` input table (every SEGMENT_COLUMNS column) from a few dicts."""
    return lambda rows: _table(rows, SEGMENT_COLUMNS, _FLOAT_SEGMENT)


@pytest.fixture
def store() -> Iterator[DuckDBStore]:
    """An in-memory DuckDB store, closed after the test."""
    s = DuckDBStore(":memory:")
    yield s
    s.close()


@pytest.fixture(scope="session", autouse=True)
def _shared_data_in_ci() -> None:
    """Tests on real files skip when ``../shared/data`` is absent (a bare checkout); in CI it must be there, so
    those skips can never hide a failure."""
    import os
    from pathlib import Path

    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if os.environ.get("CI") and not (shared / "ifc").is_dir():
        pytest.fail(f"CI runs the tests on real data: {shared} is missing")
