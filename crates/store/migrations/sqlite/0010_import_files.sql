-- On SQLite the import bookkeeping lives in the event log's file (sqlite-events/0002); this
-- version keeps the two databases' numbering in step.
SELECT 1;
