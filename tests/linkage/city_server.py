"""A city platform for the provincial test: ``python city_server.py PORT STORE SECURITY_FILE LINKAGE_FILE`` serves
the real application (its own store, keys and linkage file) with uvicorn on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from api.app import create_app  # noqa: E402
from cim.settings import Settings  # noqa: E402

if __name__ == "__main__":
    port, store, security, linkage = sys.argv[1:5]
    settings = Settings(store=f"duckdb:///{store}", security_file=Path(security), linkage_file=Path(linkage))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=int(port), log_level="warning")
