"""``cim analyse …`` on a file store holding the sample district: every analysis runs from the command line,
writes the format its file suffix names, and bad input is one clear error line with exit code 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cim.cli import app
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.pipes.ingest import SurveyOptions, ingest_survey

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "jinan_district"
runner = CliRunner()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "cim.duckdb"
    store = DuckDBStore(path)
    ingest_survey([SAMPLE], store, SurveyOptions(), Settings(store=f"duckdb:///{path}"))
    store.close()
    return f"duckdb:///{path}"


@pytest.fixture(scope="module", autouse=True)
def _plugins() -> None:
    from cim.analysis.cli import register

    if not any(g.name == "analyse" for g in app.registered_groups):
        register(app)


def _store(url: str) -> DuckDBStore:
    return DuckDBStore(url.removeprefix("duckdb:///"))


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_excavation_writes_a_printable_report(store_url: str, tmp_path: Path) -> None:
    s = _store(store_url)
    x, y = s.read().execute("SELECT x, y FROM pipe_points WHERE category = 'JS' AND feature = '三通' "
                            "ORDER BY point_id LIMIT 1").fetchone()
    s.close()
    wkt = f"POLYGON(({x - 8} {y - 8}, {x + 8} {y - 8}, {x + 8} {y + 8}, {x - 8} {y + 8}, {x - 8} {y - 8}))"
    out = tmp_path / "pit.html"
    code, text = _invoke("analyse", "excavation", "--area", wkt, "--crs", "EPSG:4548", "--depth", "3",
                         "--out", str(out), "--store", store_url)
    assert code == 0, text
    assert "济南水务集团" in out.read_text(encoding="utf-8")
    code, text = _invoke("analyse", "excavation", "--area", wkt, "--depth", "3", "--store", store_url)
    assert code != 0 and "metres, not degrees" in text  # the CRS was forgotten


def test_isolation_geojson_and_a_failed_valve(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "burst.geojson"
    code, text = _invoke("analyse", "isolate", "JS22-JS6", "--out", str(out), "--store", store_url)
    assert code == 0, text
    fc = json.loads(out.read_text(encoding="utf-8"))
    valves = sorted(f["properties"]["valve_id"] for f in fc["features"] if f["properties"]["role"] == "valve")
    assert valves == ["JS22", "JS24", "JS59"]
    code, text = _invoke("analyse", "isolate", "JS22-JS6", "--failed-valve", "JS22", "--store", store_url)
    assert code == 0, text
    body = json.loads(text)
    assert "JS21" in [v["valve_id"] for v in body["valves"]]
    code, text = _invoke("analyse", "isolate", "NOPE", "--store", store_url)
    assert code != 0 and "NOPE" in text


def test_section_svg_and_profile_png(store_url: str, tmp_path: Path) -> None:
    s = _store(store_url)
    x, y = s.read().execute("SELECT x, y FROM pipe_points WHERE category = 'JS' AND feature = '三通' "
                            "ORDER BY point_id LIMIT 1").fetchone()
    start, end = s.read().execute("SELECT start_id, end_id FROM pipe_segments WHERE category = 'PS' "
                                  "ORDER BY length_3d DESC LIMIT 1").fetchone()
    s.close()
    svg = tmp_path / "section.svg"
    code, text = _invoke("analyse", "section", "--line", f"LINESTRING({x - 40} {y - 3}, {x + 40} {y + 3})",
                         "--crs", "EPSG:4548", "--out", str(svg), "--store", store_url)
    assert code == 0, text
    assert ET.parse(svg).getroot().tag.endswith("svg")
    png = tmp_path / "profile.png"
    code, text = _invoke("analyse", "profile", "--start", start, "--end", end, "--out", str(png), "--store", store_url)
    assert code == 0, text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, text = _invoke("analyse", "isolate", "JS22-JS6", "--format", "svg", "--store", store_url)
    assert code != 0 and "available: json, geojson" in text


def test_connectivity_clearance_cover_gas_and_valves(store_url: str, tmp_path: Path) -> None:
    for args in (("connectivity", "--category", "PS"), ("clearance",), ("cover", "--road-type", "footway"),
                 ("gas-risk", "--distance", "10"), ("trace", "YS114", "--direction", "upstream"),
                 ("pollution", "YS114")):
        code, text = _invoke("analyse", *args, "--store", store_url)
        assert code == 0, (args, text)
        assert isinstance(json.loads(text), dict)
    valves = tmp_path / "valves.csv"
    valves.write_text("valve_id,link,node\nV1,JS6-JS23,JS23\n", encoding="utf-8")
    code, text = _invoke("analyse", "valves", "import", str(valves), "--dataset", "jinan_district",
                         "--store", store_url)
    assert code == 0 and "imported 1 valves" in text, text
    code, text = _invoke("analyse", "isolate", "JS22-JS6", "--store", store_url)
    assert "V1" in [v["valve_id"] for v in json.loads(text)["valves"]]
    valves.write_text("valve_id,link,node\nV2,NO-SUCH-LINK,JS23\n", encoding="utf-8")
    code, text = _invoke("analyse", "valves", "import", str(valves), "--dataset", "jinan_district",
                         "--store", store_url)
    assert code != 0 and "NO-SUCH-LINK" in text
