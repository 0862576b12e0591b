-- Members and the membership log as bitmaps of 65,536-id chunks (see crates/store/src/membership.rs).
-- The old tables are renamed; the store moves their rows over at open (it needs Rust to build
-- the bitmaps) and drops them.
ALTER TABLE memberships RENAME TO memberships_v1;
ALTER TABLE membership_log RENAME TO membership_log_v1;

CREATE TABLE membership_chunks (
    account_id INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    chunk      INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    bits       BLOB    NOT NULL,
    PRIMARY KEY (account_id, segment, chunk)
);
-- A profile's audiences, for an erasure.
CREATE INDEX membership_chunks_by_chunk ON membership_chunks (account_id, chunk);

-- One commit's entries (or exits) of one audience within one chunk, under the sequence numbers
-- first_seq..=seq, in ascending profile id order.
CREATE TABLE membership_log (
    account_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    first_seq  INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    entered    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    chunk      INTEGER NOT NULL,
    bits       BLOB    NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX membership_log_by_segment ON membership_log (account_id, segment, seq);
