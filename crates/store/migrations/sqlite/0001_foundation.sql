CREATE TABLE accounts (
    aid        INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER REFERENCES accounts (aid),
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    roles       TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX tokens_by_account ON tokens (account_id, id);

-- AUTOINCREMENT: ids are never reused after an erasure, so a consumer's position stays valid.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL,
    stream      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    event_time  INTEGER NOT NULL,
    payload     TEXT    NOT NULL
);
CREATE INDEX events_by_stream ON events (account_id, stream, id);

CREATE TABLE streams (
    account_id    INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    event_count   INTEGER NOT NULL,
    last_received INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
