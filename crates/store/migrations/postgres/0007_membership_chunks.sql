-- Members and the membership log as bitmaps of 65,536-id chunks (see crates/store/src/membership.rs).
-- The old tables are renamed; the store moves their rows over at open (it needs Rust to build
-- the bitmaps) and drops them.
ALTER TABLE memberships RENAME TO memberships_v1;
ALTER TABLE membership_log RENAME TO membership_log_v1;
ALTER INDEX membership_log_pkey RENAME TO membership_log_v1_pkey;
ALTER INDEX membership_log_by_segment RENAME TO membership_log_v1_by_segment;

CREATE TABLE membership_chunks (
    account_id BIGINT  NOT NULL,
    segment    TEXT    NOT NULL,
    chunk      BIGINT  NOT NULL,
    size       BIGINT  NOT NULL,
    bits       BYTEA   NOT NULL,
    PRIMARY KEY (account_id, segment, chunk)
);
-- A profile's audiences, for an erasure.
CREATE INDEX membership_chunks_by_chunk ON membership_chunks (account_id, chunk);

-- One commit's entries (or exits) of one audience within one chunk, under the sequence numbers
-- first_seq..=seq, in ascending profile id order.
CREATE TABLE membership_log (
    account_id BIGINT  NOT NULL,
    seq        BIGINT  NOT NULL,
    first_seq  BIGINT  NOT NULL,
    segment    TEXT    NOT NULL,
    entered    BOOLEAN NOT NULL,
    at         BIGINT  NOT NULL,
    chunk      BIGINT  NOT NULL,
    bits       BYTEA   NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX membership_log_by_segment ON membership_log (account_id, segment, seq);
