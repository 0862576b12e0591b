-- A SQLite storage-layout change (profiles keyed by rowid, identities without rowid);
-- PostgreSQL's heap tables have no equivalent to change. Kept so both lists stay in step.
SELECT 1;
