-- One value sealed under the master key when the database is first used, so a start with
-- another master key is refused at once instead of failing every call that opens a secret.
CREATE TABLE master_key_check (
    id          INTEGER PRIMARY KEY,
    sealed      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
