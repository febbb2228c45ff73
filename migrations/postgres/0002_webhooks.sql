-- Webhooks, their delivery queue and log, and the connections their disconnects are owed for.
-- Times are Unix milliseconds.
CREATE TABLE webhooks (
    id                      TEXT PRIMARY KEY,
    app_id                  TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    url                     TEXT NOT NULL,
    events                  TEXT NOT NULL,
    secret_sealed           TEXT NOT NULL,
    previous_secret_sealed  TEXT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX webhooks_by_app ON webhooks (app_id, created_at, id);

-- One row per event still to deliver to one webhook; deleted once delivered or given up.
-- Rows of one (webhook, ordering_key) are delivered one at a time, in id order.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    ordering_key     TEXT NOT NULL,
    body             TEXT NOT NULL,
    event_time       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (webhook_id, ordering_key, id);

-- The delivery log: the last attempts per webhook (older ones are pruned).
CREATE TABLE webhook_attempts (
    id          BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    latency_ms  BIGINT NOT NULL,
    error       TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, id);

-- Connections announced as connected to an app that wants disconnects: if their edge is lost,
-- the dispatcher owes the app their disconnected events.
CREATE TABLE open_connections (
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    connection_id  TEXT NOT NULL,
    node           TEXT NOT NULL,
    hub            TEXT NOT NULL,
    user_id        TEXT,
    groups         TEXT NOT NULL,
    connected_at   BIGINT NOT NULL,
    PRIMARY KEY (app_id, connection_id)
);
CREATE INDEX open_connections_by_node ON open_connections (node);
