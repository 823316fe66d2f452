"""A throw-away PostgreSQL + PostGIS cluster on loopback (tests, benchmarks, trying the PostGIS backend).

Runs Debian's ``initdb``/``pg_ctl`` (as the ``postgres`` user when started as root) on a free port with a
data directory in a temp folder; ``new_url()`` gives a fresh database with PostGIS from a template.
Not for production: authentication is ``trust`` on 127.0.0.1 (and fsync off unless asked for).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from cim.errors import StoreError

_counter = itertools.count()


def _pg_bin() -> Path | None:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "initdb").is_file() and (root / "pg_ctl").is_file():
            return root
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class TempPostgres:
    """A throw-away PostgreSQL cluster in a temp dir; ``new_url()`` gives a fresh database with PostGIS."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        bin_dir = _pg_bin()
        if bin_dir is None:
            raise StoreError("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="cim-pg-"))
        self.data = self.dir / "data"
        try:
            self._start(bin_dir)
        except BaseException:
            if (self.data / "postmaster.pid").is_file():
                subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                               capture_output=True, timeout=60)
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _start(self, bin_dir: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self._run([str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C.UTF-8"])
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        opts += "" if self.fsync else " -c fsync=off"
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                   "start"])
        self.admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._sql("CREATE DATABASE cim_template")
        self._sql("CREATE EXTENSION postgis", db="cim_template")

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise StoreError(f"{Path(cmd[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _sql(self, sql: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/{db}", autocommit=True) as conn:
            conn.execute(sql)

    def new_url(self) -> str:
        """URL of a new, empty database (PostGIS installed, no store schema yet)."""
        name = f"cim_{os.getpid()}_{next(_counter)}"
        self._sql(f"CREATE DATABASE {name} TEMPLATE cim_template")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`new_url` (after its connections are closed)."""
        name = url.rsplit("/", 1)[1]
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
