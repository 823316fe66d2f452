"""A full disk or a read-only store: the job fails with an error, the store and the tiles stay as they were.

The file-size limit variant (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG) runs everywhere; the
tmpfs (ENOSPC) and read-only mount variants need mount rights and skip without them.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cim.doctor import DoctorReport, check_store, check_tiles, open_read_only

LAUNCH = [sys.executable, "-c", "from cim.cli import main; main()"]


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.samples.district import generate_district

    root = tmp_path_factory.mktemp("full")
    generate_district(root / "d0", blocks_x=1, blocks_y=1, seed=1)
    generate_district(root / "d1", blocks_x=2, blocks_y=2, seed=2)
    return root


def _cim(args: list[str], cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    def pre() -> None:
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CIM_STORE", None)
    return subprocess.run([*LAUNCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=pre)


def _ingest(store: Path, delivery: Path) -> list[str]:
    return ["ingest", str(delivery), "--crs", "EPSG:4548", "--dataset", "water", "--store", str(store),
            "--report-dir", str(store.parent / "qc")]


def _state(store: Path) -> tuple[int, dict[str, str]]:
    con = open_read_only(store)
    try:
        report = check_store(con, DoctorReport())
        assert report.ok, report.errors
        return int(con.execute("SELECT count(*) FROM dataset_versions").fetchone()[0]), report.checksums
    finally:
        con.close()


@pytest.fixture
def store(deliveries: Path, tmp_path: Path) -> Path:
    path = tmp_path / "cim.duckdb"
    done = _cim(_ingest(path, deliveries / "d0"), tmp_path)
    assert done.returncode == 0, done.stderr
    return path


def test_file_size_limit_during_ingest_leaves_the_store_unchanged(store: Path, deliveries: Path) -> None:
    before = _state(store)
    failed = _cim(_ingest(store, deliveries / "d1"), store.parent, limit=100_000)
    assert failed.returncode != 0
    assert "File too large" in failed.stderr
    assert _state(store) == before
    again = _cim(_ingest(store, deliveries / "d1"), store.parent)  # space is back: the ingest goes through
    assert again.returncode == 0, again.stderr
    assert _state(store)[0] == before[0] + 1


def test_a_full_disk_is_reported_in_one_clear_line(store: Path, deliveries: Path) -> None:
    failed = _cim(_ingest(store, deliveries / "d1"), store.parent, limit=100_000)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr and "error" in failed.stderr


def test_file_size_limit_during_tiling_keeps_the_published_tileset(store: Path) -> None:
    out = store.parent / "tiles"
    args = ["tile", "--out", str(out), "--store", str(store), "--leaf-capacity", "50"]
    assert _cim(args, store.parent).returncode == 0
    published = {p.name: p.read_bytes() for p in (out / "tiles").iterdir()} | {
        "tileset.json": (out / "tileset.json").read_bytes()}
    failed = _cim([*args[:-1], "80"], store.parent, limit=20_000)  # a new layout: every tile is rewritten
    assert failed.returncode != 0
    assert "cannot write" in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    assert (out / "tileset.json").read_bytes() == published["tileset.json"]
    report = check_tiles(out)
    assert report.ok, report.errors
    assert not [p for p in out.rglob("*.tmp")]


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Callable[[list[str]], Path]]:
    mounted: list[Path] = []

    def mount(options: list[str]) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_full_tmpfs_leaves_the_store_unchanged(store: Path, deliveries: Path,
                                                 mount_point: Callable[[list[str]], Path]) -> None:
    size = store.stat().st_size + 256 * 1024
    disk = mount_point(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"])
    shutil.copy(store, disk / "cim.duckdb")
    before = _state(disk / "cim.duckdb")
    failed = _cim(_ingest(disk / "cim.duckdb", deliveries / "d1"), disk)
    assert failed.returncode != 0
    assert "No space left" in failed.stderr or "space" in failed.stderr.lower(), failed.stderr[-800:]
    assert _state(disk / "cim.duckdb") == before


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_read_only_store_is_refused_and_unchanged(store: Path, deliveries: Path,
                                                    mount_point: Callable[[list[str]], Path]) -> None:
    before = _state(store)
    if os.geteuid() != 0:  # an ordinary user: permissions are enough
        folder = store.parent
        store.chmod(0o444)
        folder.chmod(0o555)
    else:  # root ignores permissions: a read-only bind mount of the store's folder
        folder = mount_point(["--bind", str(store.parent)])
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    try:
        failed = _cim(_ingest(folder / store.name, deliveries / "d1"), store.parent)
    finally:
        if os.geteuid() != 0:
            folder.chmod(0o755)
            store.chmod(0o644)
    assert failed.returncode != 0
    assert "cannot open store" in failed.stderr and "Traceback" not in failed.stderr, failed.stderr[-800:]
    assert _state(store) == before
