"""Store tables for security: API keys and the append-only audit log (created with the store schema)."""

from __future__ import annotations

SECURITY_DDL: tuple[str, ...] = ()
