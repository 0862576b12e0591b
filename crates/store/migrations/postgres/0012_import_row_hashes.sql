-- Fingerprints of the rows of files imported with `diff`: per job, the last fully imported
-- file's (its `generation`), against which the next file's rows are compared, and the file
-- being imported. In the log's file, so a batch and its rows' fingerprints commit together.
CREATE TABLE import_row_hashes (
    job_id BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    row_hash BIGINT NOT NULL,
    PRIMARY KEY (job_id, generation, row_hash)
);
