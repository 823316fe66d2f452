"""Property-based API testing of the /ogc routes from the app's own OpenAPI document (schemathesis): every
generated request is answered without a server error, with a documented status code and media type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance

from api.app import create_app
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey
from tests.api.trusted import trusted

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(store="duckdb:///:memory:")
pytestmark = pytest.mark.skipif(not Path("/usr/share/proj/egm96_15.gtx").is_file(), reason="EGM96 grid not installed")




@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    store = DuckDBStore(":memory:")
    ingest_survey([ROOT / "sample_data" / "jinan_district"], store, SurveyOptions(), SETTINGS)
    app = create_app(SETTINGS, store=store, tiles_dir=tmp_path_factory.mktemp("st") / "tiles", security=trusted())
    yield app
    store.close()


def test_no_server_errors(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/ogc")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
