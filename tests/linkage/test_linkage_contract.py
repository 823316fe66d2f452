"""The documented contract (docs/linkage/*.schema.json, docs/linkage.md) matches what the code sends and serves,
and the command line gives the same documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from api.app import create_app
from cim.cli import _load_plugins
from cim.cli import app as cli_app
from cim.linkage.changes import read_changes
from cim.linkage.indicators import compute_indicators, sum_indicators
from cim.linkage.notices import Notice
from cim.linkage.outbox import Outbox, enqueue
from cim.linkage.registry import service_registry
from cim.settings import Settings
from cim.store import DuckDBStore
from tests.linkage.linkage_support import REPO, ingest_district

DOCS = REPO / "docs" / "linkage"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DuckDBStore:
    tmp = tmp_path_factory.mktemp("contract")
    s = DuckDBStore(tmp / "cim.duckdb")
    ingest_district(tmp / "d", s, "lixia")
    return s


@pytest.mark.parametrize("name", ["message", "notice", "indicators", "changes", "services"])
def test_every_schema_is_valid_and_its_examples_conform(name: str) -> None:
    v = _validator(name)
    for example in v.schema.get("examples", []):
        v.validate(example)


def test_what_the_code_produces_conforms_to_the_schemas(store: DuckDBStore) -> None:
    doc = compute_indicators(store, platform="370100")
    _validator("indicators").validate(doc)
    _validator("indicators").validate(sum_indicators([doc, doc], platform="370000"))
    for as_features in (True, False):
        page = read_changes(store, limit=50, as_features=as_features).to_dict()
        assert page["entries"] == 50
        _validator("changes").validate(page)
    _validator("changes").validate(read_changes(store, limit=10_000).to_dict())
    services = service_registry(store, Settings(), platform="370100", base_url="https://cim.jinan.example")
    _validator("services").validate(services)
    with store.transaction() as con:
        msg = enqueue(con, "370000", "indicators", "indicators", doc, source="370100")
    envelope = Outbox(store).get(msg.id).envelope("370100")
    _validator("message").validate(envelope)
    assert envelope["payload"] == json.loads(json.dumps(doc))
    notice_schema = _validator("notice").schema
    assert set(notice_schema["properties"]) == set(Notice.model_fields)
    assert set(notice_schema["required"]) == {n for n, f in Notice.model_fields.items() if f.is_required()}


def test_the_guide_names_every_linkage_route_and_setting() -> None:
    guide = (REPO / "docs" / "linkage.md").read_text(encoding="utf-8")
    paths = create_app(Settings(store="duckdb:///:memory:")).openapi()["paths"]
    routes = [p for p in paths if p.startswith(("/api/linkage", "/admin/linkage"))]
    assert len(routes) >= 14
    for p in routes:
        assert re.sub(r"\{[^}]+\}", "{", p).split("{")[0].rstrip("/") in guide, p
    from cim.linkage.config import CitySection, InboundSection, SyncSection, UpstreamSection

    for section in (SyncSection, UpstreamSection, InboundSection, CitySection):
        for name in section.model_fields:
            assert name in guide, f"{section.__name__}.{name}"


def test_the_command_line_prints_the_same_documents(store: DuckDBStore, tmp_path: Path) -> None:
    _load_plugins()
    url = f"duckdb:///{store.path}"
    store.close()
    runner = CliRunner()
    out = runner.invoke(cli_app, ["linkage", "indicators", "--store", url])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["pipes"]["segments"] == 117
    out = runner.invoke(cli_app, ["linkage", "changes", "--store", url, "--limit", "5", "--ids"])
    page = json.loads(out.output)
    assert page["entries"] == 5 and page["collections"]["pipe-points"]["added"][0] == "DH1"
    nxt = json.loads(runner.invoke(cli_app, ["linkage", "changes", "--store", url, "--cursor",
                                             page["next_cursor"], "--limit", "5", "--ids"]).output)
    assert nxt["collections"]["pipe-points"]["added"][0] != "DH1"
    csv_file = tmp_path / "links.csv"
    csv_file.write_text("platform,scheme,external_id,dataset_id,feature_id\n370000,sd,X9,lixia,JS1-JS5\n",
                        encoding="utf-8")
    assert json.loads(runner.invoke(cli_app, ["linkage", "crosswalk", "--store", url, "--import", str(csv_file)])
                      .output) == {"written": 1}
    found = json.loads(runner.invoke(cli_app, ["linkage", "crosswalk", "--store", url, "--dataset", "lixia"]).output)
    assert [r["external_id"] for r in found] == ["X9"]
    out = runner.invoke(cli_app, ["linkage", "outbox", "--store", url, "--json"])
    assert json.loads(out.output)[0]["pending"] == 1
    out = runner.invoke(cli_app, ["linkage", "sync", "--store", url])
    assert out.exit_code != 0 and "no [[upstream]]" in out.output + str(out.exception)
