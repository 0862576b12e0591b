-- Schema 9: on SQLite the raw event log moves to a database file of its own (events.db),
-- done in code at open (src/migrate/event_log.rs); on PostgreSQL it stays where it is. The
-- version is bumped on both so that an older Tributary refuses a data dir in the new layout.
SELECT 1;
