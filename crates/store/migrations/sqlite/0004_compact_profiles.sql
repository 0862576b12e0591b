-- Fewer B-trees per pipeline write. A profile's id is an event id, unique across accounts,
-- so it can be the rowid itself (one B-tree instead of table + primary-key index), and
-- identities need no rowid (two B-trees instead of three).
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
CREATE INDEX identities_by_profile ON identities (account_id, profile_id);
