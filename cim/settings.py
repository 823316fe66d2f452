"""Deployment settings, read from the environment (prefix ``CIM_``) or given in code."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Shandong province, generously bounded (lon/lat, CGCS2000): 114.2–123.0 E, 34.3–38.5 N.
SHANDONG_BBOX: tuple[float, float, float, float] = (114.2, 34.3, 123.0, 38.5)


class Settings(BaseSettings):
    """Settings of one deployment.

    Environment variables use the prefix ``CIM_``: ``CIM_STORE=duckdb:///data/cim.duckdb``,
    ``CIM_STORAGE_CRS=EPSG:4548``, ``CIM_REGION_BBOX='[73,3,136,54]'`` (JSON list).
    """

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    store: str = Field("duckdb:///cim.duckdb", description="Store URL: duckdb:///path, duckdb:///:memory:")
    storage_crs: str = Field("EPSG:4548", description="Projected CRS every geometry is stored in")
    vertical_crs: str = Field("EPSG:5737", description="Height system of stored Z (1985 national heights)")
    region_name: str = Field("Shandong", description="Name of the configured region, used in messages")
    region_bbox: tuple[float, float, float, float] = Field(
        SHANDONG_BBOX, description="Region accepted at ingest as lon/lat bbox (west, south, east, north)"
    )
    geoid: str = Field("egm96", description="Geoid model turning normal heights into ellipsoidal ones")
    geoid_path: Path | None = Field(None, description="Explicit grid file for the geoid model")
    local_crs_file: Path | None = Field(
        None, description="TOML file of city-independent systems (4/7-parameter transforms); kept out of git"
    )
    owner_contacts_file: Path | None = Field(
        None, description="CSV of pipe owners' contacts (权属单位, 联系部门, 联系电话, 邮箱) for analysis reports"
    )
    files_dir: Path | None = Field(
        None, description="Content-addressed store of submitted files (default: <store file>.files next to the store)"
    )
    assets_dir: Path | None = Field(
        None, description="Folder of real-scene assets (point clouds, rasters, meshes and their tilesets); default: "
        "<store file>.assets next to the store"
    )
    security_file: Path | None = Field(
        None, description="TOML of keys, JWT issuers, roles, limits, audit retention and CORS (see cim.security.config)"
    )
    jwt_secret: SecretStr | None = Field(None, description="Shared secret for HS256 bearer tokens")
    linkage_file: Path | None = Field(
        None, description="TOML of the platform linkage: this platform, upstreams, cities (cim.linkage.config)"
    )
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest source file accepted")
    staging_memory: str = Field("2GB", description="DuckDB memory limit of an ingest's staging database (spills beyond)")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once."""
    return Settings()
