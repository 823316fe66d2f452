"""Fixtures for the BIM review tests: writers of ``bim_*`` store rows (the converter is not needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from cim.store import DuckDBStore


def _json(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


@pytest.fixture
def add_model() -> Callable[..., None]:
    """Insert a ``bim_models`` row: ``add_model(store, dataset_id, version, **columns)``."""

    def add(store: DuckDBStore, dataset_id: str, version: int, **cols: Any) -> None:
        row = {"file_sha256": "0" * 64, "ifc_schema": "IFC4", "created_at": datetime(2025, 6, 1), **cols}
        names = ["dataset_id", "version", *row]
        with store.transaction() as con:
            con.execute(
                f"INSERT INTO bim_models ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [dataset_id, version, *(_json(v) for v in row.values())],
            )

    return add


@pytest.fixture
def add_elements() -> Callable[..., None]:
    """Insert ``bim_elements`` rows (dicts with global_id, ifc_class and any other columns)."""

    def add(store: DuckDBStore, dataset_id: str, version: int, rows: list[dict[str, Any]]) -> None:
        with store.transaction() as con:
            for row in rows:
                names = ["dataset_id", "version", *row]
                con.execute(
                    f"INSERT INTO bim_elements ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [dataset_id, version, *(_json(v) for v in row.values())],
                )

    return add


@pytest.fixture
def add_spatial() -> Callable[..., None]:
    """Insert ``bim_spatial`` rows (dicts with global_id, ifc_class, name, ...)."""

    def add(store: DuckDBStore, dataset_id: str, version: int, rows: list[dict[str, Any]]) -> None:
        with store.transaction() as con:
            for row in rows:
                names = ["dataset_id", "version", *row]
                con.execute(
                    f"INSERT INTO bim_spatial ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [dataset_id, version, *(_json(v) for v in row.values())],
                )

    return add
