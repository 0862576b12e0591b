-- Fewer B-trees per pipeline write. A profile's id is an event id, unique across accounts,
-- so it can be the rowid itself (one B-tree instead of table + primary-key index), and
-- identities need no rowid and no second index (one B-tree instead of three).
CREATE TABLE profiles_compact (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
INSERT INTO profiles_compact (id, account_id, state, created_at, modified_at)
    SELECT id, account_id, state, created_at, modified_at FROM profiles;
DROP TABLE profiles;
ALTER TABLE profiles_compact RENAME TO profiles;


CREATE TABLE identities_compact (
    account_id INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    profile_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, field, value)
) WITHOUT ROWID;
INSERT INTO identities_compact SELECT account_id, field, value, profile_id FROM identities;
DROP TABLE identities;
ALTER TABLE identities_compact RENAME TO identities;
-- No index from profile to identities: a merge re-points the loser's identities by key (the
-- engine knows them from the profile), so only erasure reads identities by profile, rarely.
