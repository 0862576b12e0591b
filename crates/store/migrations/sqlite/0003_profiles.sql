-- Profiles, their identities, the merge history, the pipeline's cursor, and leases.
CREATE INDEX events_by_account ON events (account_id, id);

-- A profile's id is the id of the event that created it (unique, and needs no allocator).
CREATE TABLE profiles (
    account_id  INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE identities (
    account_id INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    profile_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, field, value)
);
CREATE INDEX identities_by_profile ON identities (account_id, profile_id);

CREATE TABLE merges (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    winner     INTEGER NOT NULL,
    loser      INTEGER NOT NULL,
    event_id   INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX merges_by_winner ON merges (account_id, winner);

CREATE TABLE pipeline_cursors (
    account_id INTEGER PRIMARY KEY,
    position   INTEGER NOT NULL
);

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE identity_blocklist (
    account_id INTEGER NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (account_id, value)
);
