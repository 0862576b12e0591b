-- Events stored per stream and minute (UTC, in microseconds at the minute's start), counted
-- in the append's transaction: the console's events-per-minute chart.
CREATE TABLE stream_minutes (
    account_id INTEGER NOT NULL,
    minute     INTEGER NOT NULL,
    stream     TEXT    NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (account_id, minute, stream)
);
