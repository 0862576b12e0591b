-- Authorizations (credentials for Braze and SFTP) and jobs with their bounded logs.

CREATE TABLE authorizations (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    -- The public part of the configuration (JSON); secrets are only in sealed_secret.
    config        TEXT    NOT NULL,
    sealed_secret BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX authorizations_by_account ON authorizations (account_id, id);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    workflow    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    auth_ids    TEXT    NOT NULL,
    config      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    progress    TEXT    NOT NULL,
    metrics     TEXT    NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX jobs_by_account ON jobs (account_id, id);
CREATE INDEX jobs_by_state ON jobs (state);

CREATE TABLE job_logs (
    job_id  INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
