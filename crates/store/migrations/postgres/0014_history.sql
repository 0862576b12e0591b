-- What the console's charts show, kept as it happens rather than read back from logs.
-- A job's cumulative metrics as they stood at its last report in each minute (UTC, in
-- microseconds at the minute's start); a chart takes the differences.
CREATE TABLE job_minutes (
    job_id  BIGINT NOT NULL,
    minute  BIGINT NOT NULL,
    metrics TEXT   NOT NULL,
    PRIMARY KEY (job_id, minute)
);
-- Each audience's size at the last sample of each day (days since 1970-01-01, UTC).
CREATE TABLE audience_days (
    account_id BIGINT NOT NULL,
    segment    TEXT   NOT NULL,
    day        BIGINT NOT NULL,
    size       BIGINT NOT NULL,
    PRIMARY KEY (account_id, segment, day)
);
-- Events stored per stream and minute (on SQLite this table is in the event log's file).
CREATE TABLE stream_minutes (
    account_id BIGINT NOT NULL,
    minute     BIGINT NOT NULL,
    stream     TEXT   NOT NULL,
    events     BIGINT NOT NULL,
    PRIMARY KEY (account_id, minute, stream)
);
