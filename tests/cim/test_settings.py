"""Settings come from the environment with the CIM_ prefix."""

from __future__ import annotations

import pytest

from cim.settings import SHANDONG_BBOX, Settings


def test_defaults_describe_a_shandong_deployment_on_the_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CIM_STORE", "CIM_STORAGE_CRS", "CIM_REGION_BBOX", "CIM_GEOID"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.store, s.storage_crs, s.vertical_crs, s.geoid) == ("duckdb:///cim.duckdb", "EPSG:4548", "EPSG:5737", "egm96")
    assert s.region_bbox == SHANDONG_BBOX


def test_environment_variables_with_the_cim_prefix_override_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIM_STORE", "duckdb:///:memory:")
    monkeypatch.setenv("CIM_STORAGE_CRS", "EPSG:4549")
    monkeypatch.setenv("CIM_REGION_BBOX", "[73, 3, 136, 54]")
    monkeypatch.setenv("CIM_REGION_NAME", "China")
    s = Settings()
    assert (s.store, s.storage_crs, s.region_name) == ("duckdb:///:memory:", "EPSG:4549", "China")
    assert s.region_bbox == (73, 3, 136, 54)
