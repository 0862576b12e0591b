-- Audiences (FilterQL, by slug) and LQL queries (by alias), in canonical text.
CREATE TABLE definitions (
    account_id BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    text       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, name)
);
