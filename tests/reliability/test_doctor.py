"""cim.doctor: each kind of damage to a store or a tile folder is found; --fix removes only leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from cim.doctor import DoctorReport, check_store, check_tiles, content_problem, run_doctor
from cim.errors import StoreError
from cim.store import DatasetInfo, DuckDBStore
from tiles.glb import PropertyTable, write_glb
from tiles.solids import pipe_cylinders

Rows = list[dict[str, Any]]
POINTS: Rows = [
    {"feature_id": f"P{i}", "point_id": f"J{i}", "category": "JS", "x": 500000.0 + 10 * i, "y": 4057000.0,
     "ground_h": 30.0 + i} for i in range(3)
]
SEGMENTS: Rows = [
    {"feature_id": f"S{i}", "start_id": f"J{i}", "end_id": f"J{i + 1}", "category": "JS", "material": "PE",
     "diameter_mm": 200.0, "x1": 500000.0 + 10 * i, "y1": 4057000.0, "x2": 500010.0 + 10 * i, "y2": 4057000.0,
     "start_z": 28.0, "end_z": 28.5} for i in range(2)
]


@pytest.fixture
def filled(tmp_path: Path, point_table: Callable[[Rows], pa.Table],
           segment_table: Callable[[Rows], pa.Table]) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "cim.duckdb")
    info = DatasetInfo(id="water", title="给水", kind="pipe_survey", storage_crs="EPSG:4548")
    s.write_pipe_network(info, point_table(POINTS), segment_table(SEGMENTS))
    changed = [dict(p, ground_h=99.0) if p["feature_id"] == "P1" else p for p in POINTS]
    s.write_pipe_network(info, point_table(changed[:2]), segment_table(SEGMENTS))  # v2: P1 changed, P2 gone
    yield s
    s.close()


def _codes(report: DoctorReport, severity: str = "error") -> set[str]:
    return {p.code for p in report.problems if p.severity == severity}


def test_a_sound_store_has_no_problems_and_a_stable_checksum(filled: DuckDBStore) -> None:
    report = check_store(filled.read())
    assert report.ok and report.problems == []
    assert report.checked["version counts"] == 4  # two versions x two tables
    again = check_store(filled.read())
    assert again.checksums == report.checksums and set(report.checksums) == {"water/pipe_points",
                                                                            "water/pipe_segments"}


def test_lost_current_rows_are_a_count_and_checksum_mismatch(filled: DuckDBStore) -> None:
    filled.read().execute("DELETE FROM pipe_points WHERE feature_id = 'P0'")
    report = check_store(filled.read())
    assert _codes(report) == {"count-mismatch", "checksum-mismatch"}  # the version records both
    assert any("version 2: 1 pipe_points rows, the version records 2" in p.message for p in report.problems)


def test_content_changed_behind_the_stores_back_breaks_the_row_hash(filled: DuckDBStore) -> None:
    filled.read().execute("UPDATE pipe_segments SET material = 'PVC' WHERE feature_id = 'S0'")
    assert _codes(check_store(filled.read())) == {"row-hash-mismatch"}


def test_orphan_rows_and_versions_are_found(filled: DuckDBStore) -> None:
    con = filled.read()
    con.execute("INSERT INTO qc_findings (dataset_id, version, rule_id, severity) VALUES ('ghost', 1, 'R', 'error')")
    con.execute("UPDATE pipe_points SET version_from = 7 WHERE feature_id = 'P0'")
    con.execute("INSERT INTO dataset_versions (dataset_id, version, created_at, action) "
                "VALUES ('water', 9, now(), 'ingest')")
    report = check_store(con)
    assert {"orphan-rows", "orphan-version"} <= _codes(report)
    assert {p.where for p in report.errors if p.code == "orphan-rows"} >= {"ghost", "water"}


def test_a_current_version_without_its_row_is_found(filled: DuckDBStore) -> None:
    filled.read().execute("UPDATE datasets SET current_version = 3")
    assert "version-missing" in _codes(check_store(filled.read()))


def test_a_recorded_checksum_is_compared(filled: DuckDBStore) -> None:
    con = filled.read()
    con.execute("""UPDATE dataset_versions SET counts = json_merge_patch(counts,
                   '{"checksum": {"pipe_points": "0000000000000001"}}') WHERE version = 2""")
    report = check_store(con)
    assert _codes(report) == {"checksum-mismatch"}
    good = report.checksums["water/pipe_points"]
    con.execute(f"""UPDATE dataset_versions SET counts = json_merge_patch(counts,
                    '{{"checksum": {{"pipe_points": "{good}"}}}}') WHERE version = 2""")
    assert check_store(con).ok


def test_assets_missing_builds_and_leftover_builds(tmp_path: Path, filled: DuckDBStore) -> None:
    root = tmp_path / "assets"
    (root / "cloud" / "current").mkdir(parents=True)
    (root / "cloud" / "current" / "tileset.json").write_text(json.dumps({"asset": {"version": "1.1"},
                                                                         "root": {"boundingVolume": {}}}))
    (root / "cloud" / "crashed").mkdir()
    (root / "cloud" / "crashed" / "part.bin").write_bytes(b"x")
    for did, build in (("cloud", "current"), ("mesh", "gone")):
        filled.write_asset(DatasetInfo(id=did, title=did, kind="pointcloud", storage_crs="EPSG:4548",
                                       metadata={"build": build, "tileset": "tileset.json"}), extent=(0.0,) * 6)
    report = check_store(filled.read(), assets_root=root)
    assert _codes(report) == {"asset-missing"} and report.errors[0].where == "mesh"
    leftovers = [p for p in report.problems if p.code == "leftover"]
    assert len(leftovers) == 1 and "crashed" in leftovers[0].message and "kept" in leftovers[0].message
    fixed = check_store(filled.read(), assets_root=root, fix=True, min_age_s=0)
    assert fixed.fixed == [str(root / "cloud" / "crashed")]
    assert (root / "cloud" / "current").is_dir() and not (root / "cloud" / "crashed").exists()


# ---------------------------------------------------------------------------------------------- tiles


def _glb(path: Path) -> None:
    mesh = pipe_cylinders(np.array([[0.0, 0.0, 0.0]]), np.array([[5.0, 0, 0]]), np.array([0.2]), np.array([0]))
    write_glb(path, [(mesh, (10, 20, 30))], PropertyTable(count=1, columns={}))


def _tileset(folder: Path, uris: list[str]) -> None:
    children = [{"boundingVolume": {"box": [0] * 12}, "geometricError": 0, "content": {"uri": u}} for u in uris]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tileset.json").write_text(json.dumps({
        "asset": {"version": "1.1"}, "geometricError": 10,
        "root": {"boundingVolume": {"box": [0] * 12}, "geometricError": 5, "children": children}}))


def test_a_complete_tile_folder_passes(tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    _glb(tmp_path / "tiles" / "a.glb")
    _tileset(tmp_path, ["tiles/a.glb"])
    report = check_tiles(tmp_path)
    assert report.problems == [] and report.checked["tile files"] == 1


def test_missing_truncated_and_escaping_contents_are_errors(tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    _glb(tmp_path / "tiles" / "a.glb")
    data = (tmp_path / "tiles" / "a.glb").read_bytes()
    (tmp_path / "tiles" / "cut.glb").write_bytes(data[: len(data) // 2])
    (tmp_path / "tiles" / "fake.b3dm").write_bytes(b"glTF" + b"\0" * 40)
    _tileset(tmp_path, ["tiles/a.glb", "tiles/none.glb", "tiles/cut.glb", "../../etc/passwd", "tiles/fake.b3dm"])
    report = check_tiles(tmp_path)
    assert [p.code for p in report.errors].count("content-invalid") == 2
    assert {"content-missing", "uri-outside"} <= _codes(report)
    assert "truncated" in content_problem(tmp_path / "tiles" / "cut.glb")


def test_a_torn_tileset_json_is_an_error_and_an_unpublished_folder_a_warning(tmp_path: Path) -> None:
    _tileset(tmp_path / "a", [])
    text = (tmp_path / "a" / "tileset.json").read_text()
    (tmp_path / "a" / "tileset.json").write_text(text[: len(text) // 2])
    assert _codes(check_tiles(tmp_path / "a")) == {"tileset-invalid"}
    (tmp_path / "b" / "tiles").mkdir(parents=True)
    _glb(tmp_path / "b" / "tiles" / "x.glb")
    report = check_tiles(tmp_path / "b")
    assert report.ok and _codes(report, "warning") == {"not-published"}


def test_fix_removes_only_old_unreferenced_tiles_and_temp_files(tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    for name in ("a.glb", "stale.glb"):
        _glb(tmp_path / "tiles" / name)
    (tmp_path / "tiles" / ".a.glb.123.tmp").write_bytes(b"half")
    (tmp_path / "manifest.json").write_text(json.dumps({"tiles": {"a": {}, "b": {}}}))
    _tileset(tmp_path, ["tiles/a.glb"])
    report = check_tiles(tmp_path)
    assert report.ok
    assert _codes(report, "warning") == {"leftover", "manifest-stale"}
    assert check_tiles(tmp_path, fix=True).fixed == []  # younger than an hour: maybe a build in progress
    old = time.time() - 7200
    for p in (tmp_path / "tiles").iterdir():
        os.utime(p, (old, old))
    fixed = check_tiles(tmp_path, fix=True)
    assert sorted(Path(p).name for p in fixed.fixed) == [".a.glb.123.tmp", "stale.glb"]
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir()) == ["a.glb"]
    assert check_tiles(tmp_path).ok


# ---------------------------------------------------------------------------------------------- entry


def test_run_doctor_refuses_memory_stores_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="in-memory"):
        run_doctor(":memory:")
    with pytest.raises(StoreError, match="does not exist"):
        run_doctor(str(tmp_path / "none.duckdb"))


def test_cli_exits_1_on_inconsistencies_and_prints_json(tmp_path: Path, filled: DuckDBStore) -> None:
    filled.read().execute("DELETE FROM pipe_segments WHERE feature_id = 'S1'")
    filled.close()
    (tmp_path / "t" / "tiles").mkdir(parents=True)
    _glb(tmp_path / "t" / "tiles" / "a.glb")
    _tileset(tmp_path / "t", ["tiles/a.glb"])
    cim = [sys.executable, "-c", "from cim.cli import main; main()", "doctor", "--store", str(tmp_path / "cim.duckdb")]
    bad = subprocess.run([*cim, "--tiles", str(tmp_path / "t"), "--json"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stderr
    out = json.loads(bad.stdout)
    # versions 1 and 2 record one row more; version 2 (current) also records the checksum of its rows
    assert out["errors"] == 3 and {p["code"] for p in out["problems"]} == {"count-mismatch", "checksum-mismatch"}
    ok = subprocess.run([*cim[:-3], "doctor", "--no-store", "--tiles", str(tmp_path / "t")], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "doctor: ok" in ok.stderr


SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "3dtiles"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data is absent")
def test_real_third_party_tilesets_pass_and_their_truncated_copies_fail(tmp_path: Path) -> None:
    import shutil

    folders = [p.parent for p in SAMPLES.glob("*/tileset.json")]
    assert len(folders) >= 4
    for folder in folders:
        report = check_tiles(folder, leftovers=False)
        assert report.ok, (folder.name, report.errors)
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        victim = next(p for p in sorted(copy.rglob("*")) if p.suffix in (".b3dm", ".glb", ".pnts"))
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
        assert "content-invalid" in _codes(check_tiles(copy, leftovers=False)), folder.name


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data is absent")
def test_invalid_tilesets_never_crash_the_doctor() -> None:
    for path in sorted((SAMPLES / "validator_invalid_tilesets").glob("*.json")):
        check_tiles(path.parent, tileset_name=path.name, leftovers=False)  # a report, never an exception
