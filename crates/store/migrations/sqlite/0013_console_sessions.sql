-- Web console sign-ins. The cookie holds a random secret; only its SHA-256 is kept. A session
-- ends when it expires, at sign-out, or with its token (deleted in the same statement set as
-- the token, see `delete_token`).
CREATE TABLE console_sessions (
    hash       TEXT    PRIMARY KEY,
    token_id   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_token ON console_sessions (token_id);
