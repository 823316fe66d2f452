"""Store tables of the platform linkage (created with the rest of the store schema).

Plain DDL (sequences, VARCHAR/BIGINT/TIMESTAMP/JSON, primary keys) so a PostGIS backend can translate it.

* ``linkage_outbox``: durable messages to upstream platforms, ordered per ``(target, stream)`` by ``seq``;
  ``status`` pending → delivered | dead; each carries a unique idempotency key.
* ``linkage_streams``: per ``(target, stream)`` the next ``seq`` and the producer's position (e.g. the
  change-feed cursor up to which change batches were enqueued) — advanced in the enqueueing transaction.
* ``linkage_nonces``: nonces of accepted signed requests, per platform (replay refusal within the window).
* ``linkage_notices``: supervision notices/tasks received from upstream platforms.
* ``linkage_crosswalk``: external ids (platform, scheme, id) ↔ our (dataset, stable feature id).
* ``linkage_cities`` / ``linkage_city_pulls``: provincial mode — running state and pulled documents per city.
"""

from __future__ import annotations

LINKAGE_DDL: tuple[str, ...] = (
    "CREATE SEQUENCE IF NOT EXISTS seq_linkage_outbox START 1",
    """CREATE TABLE IF NOT EXISTS linkage_outbox (
        id BIGINT PRIMARY KEY DEFAULT nextval('seq_linkage_outbox'),
        target VARCHAR NOT NULL,        -- upstream platform id
        stream VARCHAR NOT NULL,        -- services | indicators | changes
        seq BIGINT NOT NULL,            -- order within (target, stream), from 1
        kind VARCHAR NOT NULL,          -- message kind (services, indicators, changes)
        idempotency_key VARCHAR NOT NULL,
        payload JSON NOT NULL,
        created_at TIMESTAMP NOT NULL,
        status VARCHAR NOT NULL,        -- pending | delivered | dead
        attempts INTEGER NOT NULL,
        next_attempt_at TIMESTAMP,
        last_status INTEGER,
        last_error VARCHAR,
        delivered_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_streams (
        target VARCHAR NOT NULL,
        stream VARCHAR NOT NULL,
        next_seq BIGINT NOT NULL,
        position VARCHAR,               -- producer state, e.g. the change-feed cursor enqueued up to
        digest VARCHAR,                 -- digest of the last enqueued document (services: skip unchanged)
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (target, stream)
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_nonces (
        platform VARCHAR NOT NULL,
        nonce VARCHAR NOT NULL,
        seen_at TIMESTAMP NOT NULL,
        PRIMARY KEY (platform, nonce)
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_notices (
        platform VARCHAR NOT NULL,      -- the sending platform
        notice_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,          -- notice | task | evaluation
        title VARCHAR NOT NULL,
        body VARCHAR,
        severity VARCHAR NOT NULL,      -- info | warning | urgent
        issued_at TIMESTAMP,
        due_at TIMESTAMP,
        payload JSON NOT NULL,          -- the notice as received
        received_at TIMESTAMP NOT NULL,
        acknowledged_at TIMESTAMP,
        acknowledged_by VARCHAR,
        PRIMARY KEY (platform, notice_id)
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_crosswalk (
        platform VARCHAR NOT NULL,      -- the platform that owns the external id
        scheme VARCHAR NOT NULL,        -- its id scheme (e.g. province-pipe-code)
        external_id VARCHAR NOT NULL,
        dataset_id VARCHAR NOT NULL,
        feature_id VARCHAR NOT NULL,    -- our stable feature id within the dataset
        collection VARCHAR NOT NULL,    -- pipe-segments | pipe-points | bim-elements | features
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR,
        PRIMARY KEY (platform, scheme, external_id)
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_cities (
        city VARCHAR PRIMARY KEY,
        name VARCHAR,
        url VARCHAR NOT NULL,
        status VARCHAR NOT NULL,        -- up | degraded | down | unknown
        checked_at TIMESTAMP,
        latency_ms DOUBLE,
        last_ok_at TIMESTAMP,
        last_error VARCHAR,
        info JSON,                      -- the city's /api/linkage/status answer
        changes_cursor VARCHAR,         -- where the pull of its change feed stands
        changes_pulled BIGINT NOT NULL  -- change entries pulled so far
    )""",
    """CREATE TABLE IF NOT EXISTS linkage_city_pulls (
        city VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,          -- indicators | changes
        pulled_at TIMESTAMP NOT NULL,
        dataset_id VARCHAR, version INTEGER,
        document JSON NOT NULL
    )""",
)
