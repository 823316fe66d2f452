"""Helpers of the linkage tests: free ports, subprocess servers with start-up deadlines, JSON over HTTP,
small generated districts ingested into a store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Server:
    """A subprocess listening on ``port``; :meth:`start` waits (with a deadline) until ``probe`` answers."""

    def __init__(self, args: list[str], port: int, probe: str, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.args, self.port, self.probe = args, port, probe
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 60.0) -> Server:
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self._tail()}")
            try:
                urllib.request.urlopen(self.url + self.probe, timeout=1.0).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (even if refusing): it is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start within {deadline_s} s: {self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def upstream(tmp: Path, port: int, sender: str, secret: str) -> Server:
    """The stand-in upstream platform (not started)."""
    return Server([sys.executable, str(HERE / "upstream_server.py"), str(port), str(tmp / "upstream.sqlite"),
                   sender, secret], port, "/_stats", log=tmp / "upstream.log")


def ingest_district(folder: Path, store: Any, dataset_id: str, *, blocks: tuple[int, int] = (1, 1), seed: int = 2025,
                    dirty: bool = False) -> Any:
    """Generate a small district into ``folder`` and ingest it as ``dataset_id`` (QC errors kept)."""
    from cim.settings import Settings
    from converters.pipes.ingest import SurveyOptions, ingest_survey
    from converters.samples.district import generate_district

    generate_district(folder, blocks_x=blocks[0], blocks_y=blocks[1], seed=seed, layout="single", dirty=dirty)
    version, _ = ingest_survey([folder], store, SurveyOptions(crs_in="EPSG:4548", dataset_id=dataset_id,
                                                              keep_errors=True),
                               Settings(store="duckdb:///:memory:"))
    return version


ADMIN_SECRET = "admin-secret-0123456789abcdef"
PLATFORM_SECRET = "platform-secret-0123456789abcdef"
ADMIN_KEY = f"cim_lkadmin.{ADMIN_SECRET}"
PLATFORM_KEY = f"cim_lkprovince.{PLATFORM_SECRET}"


def security_toml() -> str:
    """A security file: an admin key and a platform key (ADMIN_KEY, PLATFORM_KEY), no rate limits."""
    from cim.security.keys import hash_secret

    return (f'[[keys]]\nid = "lkadmin"\nname = "test admin"\nrole = "admin"\nhash = "{hash_secret(ADMIN_SECRET)}"\n\n'
            f'[[keys]]\nid = "lkprovince"\nname = "provincial platform"\nrole = "platform"\n'
            f'hash = "{hash_secret(PLATFORM_SECRET)}"\n\n'
            "[limits]\nrequests_per_minute = 0\nanonymous_requests_per_minute = 0\nip_requests_per_minute = 0\n")


def security_config() -> Any:
    """:func:`security_toml` parsed."""
    import tomllib

    from cim.security.config import parse_security_config

    return parse_security_config(tomllib.loads(security_toml()))
