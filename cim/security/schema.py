"""Store tables for security: API keys and the append-only audit log (created with the store schema).

``api_keys`` holds only salted hashes of the secrets (:mod:`cim.security.keys`). ``audit_log`` is written
only by :class:`cim.security.audit.AuditLog`: rows are appended in batches and chained by SHA-256
(``prev_hash`` → ``row_hash``), so an edited or deleted row shows up in :meth:`AuditLog.verify`; the only
delete is the purge of rows older than the configured retention (≥ 180 days, Cybersecurity Law art. 21).
"""

from __future__ import annotations

SECURITY_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        secret_hash VARCHAR NOT NULL,   -- scrypt$n$r$p$salt$hash (base64): the secret itself is never stored
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR,
        expires_at TIMESTAMP,
        revoked_at TIMESTAMP,
        revoked_by VARCHAR,
        last_used_at TIMESTAMP,
        note VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT NOT NULL,            -- order of writing (the hash chain follows it)
        ts TIMESTAMP NOT NULL,          -- UTC, when the request arrived
        principal VARCHAR, role VARCHAR, via VARCHAR,
        method VARCHAR, path VARCHAR, query VARCHAR,
        datasets VARCHAR[],
        status INTEGER, bytes BIGINT,
        client_ip VARCHAR, user_agent VARCHAR,
        duration_ms DOUBLE,
        outcome VARCHAR,                -- ok | denied | limited | not_found | invalid | error
        action VARCHAR,                 -- read | change | key.issue | key.revoke | ...
        detail JSON,
        prev_hash VARCHAR, row_hash VARCHAR
    )""",
)
