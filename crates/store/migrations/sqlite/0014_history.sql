-- What the console's charts show, kept as it happens rather than read back from logs.
-- A job's cumulative metrics as they stood at its last report in each minute (UTC, in
-- microseconds at the minute's start); a chart takes the differences.
CREATE TABLE job_minutes (
    job_id  INTEGER NOT NULL,
    minute  INTEGER NOT NULL,
    metrics TEXT    NOT NULL,
    PRIMARY KEY (job_id, minute)
);
-- Each audience's size at the last sample of each day (days since 1970-01-01, UTC).
CREATE TABLE audience_days (
    account_id INTEGER NOT NULL,
    segment    TEXT    NOT NULL,
    day        INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    PRIMARY KEY (account_id, segment, day)
);
