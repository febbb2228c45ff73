-- Tenants, apps, app keys and user group memberships. Times are Unix milliseconds.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX apps_by_tenant ON apps (tenant_id, created_at, id);

CREATE TABLE app_keys (
    id             TEXT PRIMARY KEY,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    secret_sealed  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX app_keys_by_app ON app_keys (app_id, created_at, id);

CREATE TABLE user_groups (
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hub         TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, hub, user_id, group_name)
);
