-- A stream's settings (JSON, `StreamSettings`), and the keys of the events stored in streams
-- that deduplicate (`dedup_fields`), kept for `DEDUP_RETENTION_SECS`.
ALTER TABLE streams ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
CREATE TABLE event_keys (
    account_id BIGINT NOT NULL,
    stream TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, stream, dedup_key)
);
CREATE INDEX event_keys_by_age ON event_keys (received_at);
