-- Audience membership, its log, and what the pipeline needs to keep them current.

-- Current members. Authoritative: the log records a change only when it changes this table.
CREATE TABLE memberships (
    account_id BIGINT NOT NULL,
    segment    TEXT   NOT NULL,
    profile_id BIGINT NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (account_id, segment, profile_id)
);

-- Every entry and exit, per account in commit order.
CREATE TABLE membership_log (
    account_id BIGINT  NOT NULL,
    seq        BIGINT  NOT NULL,
    segment    TEXT    NOT NULL,
    profile_id BIGINT  NOT NULL,
    entered    BOOLEAN NOT NULL,
    at         BIGINT  NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX membership_log_by_segment ON membership_log (account_id, segment, seq);

-- The row lock on an account's counter also orders concurrent commits' sequence numbers.
CREATE TABLE membership_seq (
    account_id BIGINT PRIMARY KEY,
    last       BIGINT NOT NULL
);

-- Which definition (by its updated_at) each audience's stored membership was computed for.
CREATE TABLE audience_versions (
    account_id BIGINT NOT NULL,
    segment    TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (account_id, segment)
);

-- Positions of the log's consumers (export jobs), committed after they acted.
CREATE TABLE log_positions (
    account_id BIGINT NOT NULL,
    consumer   TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (account_id, consumer)
);

-- When a date-relative audience may next change its mind about a profile.
ALTER TABLE profiles ADD COLUMN next_check BIGINT;
CREATE INDEX profiles_due ON profiles (account_id, next_check) WHERE next_check IS NOT NULL;
