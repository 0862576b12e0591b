-- On SQLite stream settings and deduplication keys live in the event log's file
-- (sqlite-events/0003); this version keeps the two databases' numbering in step.
SELECT 1;
