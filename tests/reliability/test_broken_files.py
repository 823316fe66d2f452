"""A corpus of broken real files: truncated, wrong magic, empty, zip bombs, lying sizes, path-traversal names.

Every one ends in a clear CIMError (or an HTTP 4xx), quickly and in bounded memory, and leaves the store as it
was (checked with the doctor). IFC conversion runs in the worker: a model that runs past its time or memory
budget is stopped with a clear error, and the calling process carries on.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cim.doctor import check_store
from cim.errors import CIMError, InvalidInputError, UnsupportedError
from cim.settings import Settings
from cim.store import DuckDBStore

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
HOUSE = SHARED / "ifc" / "ifc4_ifcopenshell_ifcopenhouse.ifc"
DUPLEX = SHARED / "ifc" / "ifc2x3_revit2011_duplex_architecture.ifc"
needs_data = pytest.mark.skipif(not HOUSE.is_file(), reason="../shared/data is absent")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def _zip_bomb(member: str, unpacked: int) -> bytes:
    """A zip whose one member unpacks to ``unpacked`` bytes of zeros (about 1000x compression)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z, z.open(member, "w") as f:
        chunk = b"\0" * (1 << 20)
        for _ in range(unpacked >> 20):
            f.write(chunk)
    return buf.getvalue()


def _ifc_cases() -> dict[str, Callable[[bytes], bytes]]:
    def middle_cut(d: bytes) -> bytes:
        data = d.find(b"DATA;")
        return d[: data + (len(d) - data) // 2] + b"\nENDSEC;\nEND-ISO-10303-21;\n"

    return {
        "empty": lambda d: b"",
        "png-named-ifc": lambda d: PNG,
        "truncated-40pc": lambda d: d[: len(d) * 2 // 5],
        "truncated-in-header": lambda d: d[:200],
        "cut-in-the-middle-with-valid-end": middle_cut,
        "garbage-entities": lambda d: d.replace(b"DATA;", b"DATA;\n#999999999=IFCWALL($,$,#888888888,'\xff\xfe',(((;\n", 1),
        "zip-named-ifc": lambda d: _zip_bomb("model.ifc", 1 << 24),
        "xml": lambda d: b"<?xml version='1.0'?><ifcXML/>",
        "unknown-schema": lambda d: d.replace(b"IFC4", b"IFC9X9", 1),
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "cim.duckdb")
    yield s
    s.close()


def _untouched(store: DuckDBStore) -> None:
    report = check_store(store.read())
    assert report.ok, report.errors
    assert store.datasets() == [] and store.read().execute("SELECT count(*) FROM bim_elements").fetchone()[0] == 0


@needs_data
@pytest.mark.parametrize("case", list(_ifc_cases()))
def test_broken_ifc_is_refused_with_a_clear_error(case: str, tmp_path: Path, store: DuckDBStore) -> None:
    from converters.ifc.georef import UserPlacement
    from converters.ifc.ingest import IfcOptions, ingest_ifc

    path = tmp_path / "broken.ifc"
    path.write_bytes(_ifc_cases()[case](HOUSE.read_bytes()))
    options = IfcOptions(dataset_id="broken", placement=UserPlacement("EPSG:4548", 501990, 4058050, 75.3),
                         time_budget_s=120, memory_budget_mb=2048)
    try:
        result = ingest_ifc(path, store, options, Settings(store="duckdb:///:memory:"))
    except CIMError as exc:
        assert len(str(exc)) > 10
        _untouched(store)
        return
    # the parser repaired what it could: then the model is stored whole and consistent, with findings
    assert case in ("cut-in-the-middle-with-valid-end", "garbage-entities"), f"{case} was accepted"
    assert result.counts["elements"] >= 0 and check_store(store.read()).ok


@needs_data
def test_an_ifc_past_its_time_budget_is_stopped_and_the_caller_carries_on(tmp_path: Path,
                                                                           store: DuckDBStore) -> None:
    from converters.ifc.georef import UserPlacement
    from converters.ifc.ingest import IfcOptions, ingest_ifc
    from converters.ifc.worker import WorkerTimeoutError

    place = UserPlacement("EPSG:4548", 501990, 4058050, 75.3)
    settings = Settings(store="duckdb:///:memory:")
    with pytest.raises(WorkerTimeoutError, match="time budget of 0.3 s"):
        ingest_ifc(DUPLEX, store, IfcOptions(dataset_id="slow", placement=place, time_budget_s=0.3), settings)
    _untouched(store)
    ok = ingest_ifc(HOUSE, store, IfcOptions(dataset_id="house", placement=place), settings)
    assert ok.counts["elements"] > 0 and check_store(store.read()).ok


@needs_data
def test_an_ifc_past_its_memory_budget_is_a_clear_error(store: DuckDBStore) -> None:
    from converters.ifc.georef import UserPlacement
    from converters.ifc.ingest import IfcOptions, ingest_ifc
    from converters.ifc.worker import WorkerError

    options = IfcOptions(dataset_id="big", placement=UserPlacement("EPSG:4548", 501990, 4058050, 75.3),
                         memory_budget_mb=200)
    with pytest.raises(WorkerError, match="memory|budget|crash|died"):
        ingest_ifc(DUPLEX, store, options, Settings(store="duckdb:///:memory:"))
    _untouched(store)


# ---------------------------------------------------------------------------------------------- tables


def test_xlsx_zip_bomb_is_refused_without_unpacking(tmp_path: Path) -> None:
    from converters.pipes.tables import read_tables

    path = tmp_path / "bomb.xlsx"
    path.write_bytes(_zip_bomb("xl/worksheets/sheet1.xml", 1 << 28))  # 256 MiB of zeros in about 260 kB
    with pytest.raises(InvalidInputError, match="zip bomb"):
        read_tables(path)


@pytest.mark.parametrize("name, data, error", [
    ("empty.csv", b"", InvalidInputError),
    ("bom-only.csv", b"\xef\xbb\xbf", InvalidInputError),
    ("header-only.csv", "物探点号,X,Y\n".encode(), InvalidInputError),
    ("png.xlsx", PNG, InvalidInputError),
    ("truncated.xlsx", None, InvalidInputError),
    ("png.dbf", PNG, InvalidInputError),
    ("zero.gpkg", b"", InvalidInputError),
    ("table.pdf", b"%PDF-1.4", UnsupportedError),
    ("utf16-nul.csv", "a,b\n1,2\n".encode("utf-16"), CIMError),
])
def test_broken_pipe_tables(tmp_path: Path, name: str, data: bytes | None, error: type[Exception]) -> None:
    import pyogrio  # noqa: F401 - installed by scripts/setup.sh
    import python_calamine  # noqa: F401 - installed by scripts/setup.sh

    from converters.pipes.tables import read_tables

    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("xl/workbook.xml", "<workbook/>" * 200)
        data = buf.getvalue()[:300]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error) as exc:
        read_tables(path)
    assert str(exc.value).strip()


def test_a_pipe_ingest_with_a_traversal_dataset_id_stores_nothing(tmp_path: Path, store: DuckDBStore) -> None:
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import generate_district

    generate_district(tmp_path / "d", blocks_x=1, blocks_y=1)
    for bad in ("../../etc", "a/b", "x\\y"):
        with pytest.raises(InvalidInputError, match="dataset id"):
            ingest_survey([tmp_path / "d"], store, SurveyOptions(crs_in="EPSG:4548", dataset_id=bad),
                          Settings(store="duckdb:///:memory:"))
    assert store.datasets() == [] and check_store(store.read()).ok


def test_an_inp_with_a_huge_line_or_binary_is_a_clear_error(tmp_path: Path) -> None:
    from converters.network.epanet import read_epanet
    from converters.network.swmm import read_swmm

    cases = {"zero.inp": b"", "binary.inp": PNG * 100, "huge-line.inp": b"[JUNCTIONS]\n" + b"J" * (8 << 20) + b" 1\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for reader in (read_epanet, read_swmm):
            with pytest.raises(CIMError):
                reader(tmp_path / name, crs_in="EPSG:4548")


# ---------------------------------------------------------------------------------------------- uploads


@pytest.fixture
def upload_client(tmp_path: Path) -> Iterator[tuple[object, DuckDBStore, Path]]:
    import fastapi  # noqa: F401 - installed by scripts/setup.sh
    from fastapi.testclient import TestClient

    from api.app import create_app
    from cim.security.config import parse_security_config

    settings = Settings(store="duckdb:///:memory:", files_dir=tmp_path / "files", max_upload_bytes=4 << 20)
    store = DuckDBStore(":memory:")
    security = parse_security_config({"auth": {"anonymous_role": "reviewer"}, "limits": {
        "requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0}})
    app = create_app(settings, store=store, tiles_dir=tmp_path / "tiles",
                     buildings_tiles_dir=tmp_path / "buildings", security=security)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store, tmp_path
    store.close()


@pytest.mark.parametrize("name, content, status", [
    ("../../../../tmp/cim-escape.ifc", b"", 400),
    ("..\\..\\evil.ifc", PNG, 400),
    ("bomb.ifczip", _zip_bomb("model.ifc", 1 << 26), 415),
    ("big.ifc", b"ISO-10303-21;" + b" " * (5 << 20), 413),
])
def test_hostile_uploads_get_4xx_and_store_nothing(upload_client: tuple, name: str, content: bytes,
                                                   status: int) -> None:
    client, store, tmp = upload_client
    r = client.post("/api/bim/submissions", files={"file": (name, content, "application/octet-stream")},
                    data={"project": "hostile", "stage": "drawing_review"})
    assert r.status_code == status, r.text
    assert r.json().get("detail"), r.text
    assert not Path("/tmp/cim-escape.ifc").exists() and not (tmp.parent / "evil.ifc").exists()
    assert store.datasets() == [] and check_store(store.read()).ok
    files = tmp / "files"
    assert not files.exists() or not [p for p in files.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------------- fuzz finds


def test_fuzz_find_a_carriage_return_inside_the_header_line(tmp_path: Path) -> None:
    """Found by fuzzing: csv.Error escaped from the header sniffer."""
    from converters.pipes.tables import read_tables

    path = tmp_path / "cr.csv"
    path.write_bytes("物探点号,X\rY,地面高程\n1,2,3\n4,5,6\n".encode())
    try:
        tables = read_tables(path)
    except InvalidInputError as exc:
        assert "row" in str(exc) or "field" in str(exc)
    else:
        assert tables[0].num_rows >= 1


def test_fuzz_find_a_workbook_with_a_damaged_sheet_member(tmp_path: Path) -> None:
    """Found by fuzzing: calamine's ZipError escaped when the sheet (not the workbook) was damaged."""
    import openpyxl as openpyxl
    import python_calamine  # noqa: F401 - installed by scripts/setup.sh

    from converters.pipes.tables import read_tables

    book = openpyxl.Workbook()
    for row in (["物探点号", "X", "Y"], ["J1", "1", "2"]):
        book.active.append(row)
    good = tmp_path / "good.xlsx"
    book.save(good)
    data = bytearray(good.read_bytes())
    at = data.find(b"xl/worksheets/sheet1.xml")  # the local header of the sheet: break its signature
    header = data.rfind(b"PK\x03\x04", 0, at)
    data[header + 2] ^= 0xFF
    path = tmp_path / "damaged.xlsx"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError):
        read_tables(path)


def test_fuzz_find_a_dbf_with_two_unnamed_fields(tmp_path: Path) -> None:
    """Found by fuzzing: two fields with the same (empty) name made the Arrow lookup raise KeyError."""
    import pyogrio  # noqa: F401 - installed by scripts/setup.sh

    from converters.pipes.tables import read_tables

    fields = b"".join(b"\0" * 11 + b"C" + b"\0" * 4 + bytes([4, 0]) + b"\0" * 14 for _ in range(2))
    head = (bytes([3, 125, 1, 1]) + (1).to_bytes(4, "little") + (32 + len(fields) + 1).to_bytes(2, "little")
            + (9).to_bytes(2, "little") + b"\0" * 20)
    path = tmp_path / "dup.dbf"
    path.write_bytes(head + fields + b"\r" + b" J1  road" + b"\x1a")
    table = read_tables(path)[0]
    assert table.columns == ["column_1", "column_2"] and table.num_rows == 1
    assert len(table.header_problems) == 2


def test_the_ifc_worker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A SIGKILLed service must not leave a worker stuck in native code running (PR_SET_PDEATHSIG): a worker
    that set it up and then sleeps (as in a geometry kernel that never returns) dies with its parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import multiprocessing, time\nfrom converters.ifc import worker\n"
              "def stuck():\n    worker._die_with_parent()\n    time.sleep(120)\n"
              "if __name__ == '__main__':\n    p = multiprocessing.get_context('spawn').Process(target=stuck)\n"
              "    p.start()\n    print(p.pid, flush=True)\n    p.join()\n")
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, "parent.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(parent.stdout.readline())
        time.sleep(1.5)  # the child has set up its death signal and sleeps
        assert Path(f"/proc/{child}").exists()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "zombie" not in _state(child):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
        if child and Path(f"/proc/{child}").exists():
            os.kill(child, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
