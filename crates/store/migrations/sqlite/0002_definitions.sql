-- Audiences (FilterQL, by slug) and LQL queries (by alias), in canonical text.
CREATE TABLE definitions (
    account_id INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, name)
);
