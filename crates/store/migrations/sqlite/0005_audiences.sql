-- Audience membership, its log, and what the pipeline needs to keep them current.

-- Current members. Authoritative: the log records a change only when it changes this table.
CREATE TABLE memberships (
    account_id INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    profile_id INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    PRIMARY KEY (account_id, segment, profile_id)
) WITHOUT ROWID;

-- Every entry and exit, per account in commit order.
CREATE TABLE membership_log (
    account_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    profile_id INTEGER NOT NULL,
    entered    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;

CREATE TABLE membership_seq (
    account_id INTEGER PRIMARY KEY,
    last       INTEGER NOT NULL
);

-- Which definition (by its updated_at) each audience's stored membership was computed for.
CREATE TABLE audience_versions (
    account_id INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (account_id, segment)
);

-- Positions of the log's consumers (export jobs), committed after they acted.
CREATE TABLE log_positions (
    account_id INTEGER NOT NULL,
    consumer   TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (account_id, consumer)
);

-- When a date-relative audience may next change its mind about a profile.
ALTER TABLE profiles ADD COLUMN next_check INTEGER;
CREATE INDEX profiles_due ON profiles (account_id, next_check) WHERE next_check IS NOT NULL;
