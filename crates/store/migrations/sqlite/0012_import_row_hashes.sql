-- On SQLite the import fingerprints live in the event log's file (sqlite-events/0004); this
-- version keeps the two databases' numbering in step.
SELECT 1;
