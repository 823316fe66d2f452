"""Configured limits hold: request bodies, uploads, page sizes and source files beyond them are refused early
(413 or a clear error) instead of being read whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.errors import InvalidInputError
from cim.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import fastapi  # noqa: F401 - installed by scripts/setup.sh
    from fastapi.testclient import TestClient

    from api.app import create_app
    from cim.security.config import parse_security_config
    from cim.store import DuckDBStore
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import generate_district

    tmp = tmp_path_factory.mktemp("bounds")
    generate_district(tmp / "d", blocks_x=1, blocks_y=1)
    settings = Settings(store="duckdb:///:memory:", files_dir=tmp / "files", max_upload_bytes=1 << 20)
    store = DuckDBStore(":memory:")
    ingest_survey([tmp / "d"], store, SurveyOptions(crs_in="EPSG:4548"), settings)
    security = parse_security_config({"auth": {"anonymous_role": "reviewer"}, "limits": {
        "requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0,
        "max_body_bytes": 65536}})
    app = create_app(settings, store=store, tiles_dir=tmp / "tiles", buildings_tiles_dir=tmp / "b",
                     security=security)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    store.close()


def test_a_json_body_over_the_limit_is_413(client: object) -> None:
    body = json.dumps({"polygon": [[0, 0]] * 20000}).encode()
    r = client.post("/api/analysis/excavation", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.text


def test_a_streamed_body_without_length_is_cut_at_the_limit(client: object) -> None:
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):  # 8 MB offered, in 8 kB pieces
            sent["bytes"] += 8192
            yield b" " * 8192

    r = client.post("/api/analysis/excavation", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_an_upload_over_max_upload_bytes_is_413_and_nothing_is_kept(client: object,
                                                                    tmp_path: Path) -> None:
    r = client.post("/api/bim/submissions", files={"file": ("big.ifc", b"ISO-10303-21;" + b" " * (2 << 20))},
                    data={"project": "p", "stage": "drawing_review"})
    assert r.status_code == 413 and "CIM_MAX_UPLOAD_BYTES" in r.text


def test_a_page_size_beyond_the_maximum_is_capped(client: object) -> None:
    from cim.features.query import MAX_LIMIT

    ids = [c["id"] for c in client.get("/ogc/collections").json()["collections"]]
    r = client.get(f"/ogc/collections/{ids[0]}/items", params={"limit": 10**9})
    assert r.status_code == 200 and len(r.json()["features"]) <= MAX_LIMIT


def test_a_source_table_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    from converters.pipes.tables import read_tables

    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.truncate(64 << 20)  # 64 MiB sparse file: refused by its size, never read
    with pytest.raises(InvalidInputError, match="over the limit"):
        read_tables(path, max_bytes=1 << 20)
