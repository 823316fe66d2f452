"""The point-cloud samples of ``../shared/data/pointcloud`` and helpers to make bad files from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PC_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "pointcloud"
#: Every real sample with a CRS (file name relative to PC_DIR).
WITH_CRS = ("autzen_trim.las", "autzen_trim.laz", "autzen-utm_epsg26910.las", "autzen-dd_epsg4326.las",
            "simple.copc.laz", "with_srs_3857.las", "benchmark/lambert93_epsg2154_extra_bytes_697k.laz")
WORLD = (-180.0, -90.0, 180.0, 90.0)


def sample(name: str) -> Path:
    """A sample file; the test skips when ``../shared/data`` is absent (CI fails instead, see conftest)."""
    path = PC_DIR / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI needs ../shared/data")
        pytest.skip(f"{path} is missing")
    return path
