"""Fixtures of the IFC converter tests (helpers live in ``ifc_samples``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ifc_samples import jinan_ifc


@pytest.fixture
def jinan(tmp_path: Path) -> Path:
    """The Jinan ePSet model in a fresh folder."""
    return jinan_ifc(tmp_path)
