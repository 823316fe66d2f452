"""The content-addressed file store: hashing, layout, no overwrite, size limit, no path tricks."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from cim.bim.files import FileStore, file_store
from cim.errors import InvalidInputError, NotFoundError
from cim.settings import Settings

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SEWER = SHARED / "ifc" / "ifc2x3_arkey_riolering_sewer.ifc"


def test_put_bytes_is_content_addressed(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "files")
    data = b"ISO-10303-21;\nHEADER;\n"
    f = fs.put(data, "模型/../a.ifc")
    sha = hashlib.sha256(data).hexdigest()
    assert (f.sha256, f.size) == (sha, len(data))
    assert f.path == tmp_path / "files" / sha[:2] / sha
    assert f.path.read_bytes() == data
    assert f.name == "a.ifc"  # only the last component of a client name is kept
    assert fs.path(sha) == f.path and fs.exists(sha)
    with fs.open(sha) as stream:
        assert stream.read() == data
    assert list((tmp_path / "files" / "tmp").iterdir()) == []  # no temp file left behind


def test_same_content_same_entry_never_overwritten(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    a = fs.put(b"same content", "a.ifc")
    inode = a.path.stat().st_ino
    b = fs.put(io.BytesIO(b"same content"), "b.ifc")
    assert b.sha256 == a.sha256 and b.path == a.path
    assert a.path.stat().st_ino == inode  # the first file was kept, not replaced
    assert not a.path.stat().st_mode & 0o222  # stored files are read-only
    c = fs.put(b"other content")
    assert c.sha256 != a.sha256 and c.name is None


@pytest.mark.skipif(not SEWER.is_file(), reason="shared IFC data not present")
def test_put_path_streams_a_real_file(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    f = fs.put(SEWER)
    assert f.name == SEWER.name
    assert f.size == SEWER.stat().st_size
    assert f.sha256 == hashlib.sha256(SEWER.read_bytes()).hexdigest()


def test_size_limit(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, max_bytes=10)
    for source in (b"x" * 11, io.BytesIO(b"x" * (3 << 20))):
        with pytest.raises(
            InvalidInputError, match=r"larger than the 10 bytes accepted \(CIM_MAX_UPLOAD_BYTES\)"
        ):
            fs.put(source, "big.ifc")
    big = tmp_path / "big.ifc"
    big.write_bytes(b"y" * 11)
    with pytest.raises(InvalidInputError, match="file big.ifc"):
        fs.put(big)
    assert fs.put(b"x" * 10).size == 10
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == []


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "ab/../../x", "A" * 64, "0" * 63, "/" + "0" * 64, "0" * 64 + "\n", ""]
)
def test_path_refuses_non_hash_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a SHA-256"):
        FileStore(tmp_path).path(name)


def test_missing_entries(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    with pytest.raises(NotFoundError, match="no stored file"):
        fs.path("0" * 64)
    with pytest.raises(NotFoundError, match="does not exist"):
        fs.put(tmp_path / "nope.ifc")


def test_file_store_location(tmp_path: Path) -> None:
    explicit = file_store(Settings(files_dir=tmp_path / "f", max_upload_bytes=5), "duckdb:///x.duckdb")
    assert explicit.root == tmp_path / "f" and explicit.max_bytes == 5
    beside = file_store(Settings(), f"duckdb:///{tmp_path}/cim.duckdb")
    assert beside.root == tmp_path / "cim.duckdb.files"
    assert file_store(Settings(), tmp_path / "s.duckdb").root == tmp_path / "s.duckdb.files"
    with pytest.raises(InvalidInputError, match="CIM_FILES_DIR"):
        file_store(Settings(), "duckdb:///:memory:")
