-- How far each import job has got into each of its files (a file is its name, size and
-- modification time). In the log's file, so an import's batch and this record commit together.
CREATE TABLE import_files (
    job_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    rows_done BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    done BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, name, size, modified)
);
