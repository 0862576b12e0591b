-- The raw event log of a SQLite install (events.db), beside tributary.db; the same tables as
-- schema 1 and 3 made there.

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
CREATE INDEX events_by_account ON events (account_id, id);

CREATE TABLE streams (
    account_id    INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    event_count   INTEGER NOT NULL,
    last_received INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- A row once the events of tributary.db (schema 8 and before) were copied here: see
-- src/migrate/event_log.rs.
CREATE TABLE moved_from_state (moved_at INTEGER NOT NULL);
