-- The Braze export's memory of who it sent: per export job, the identifier value each member
-- was sent under, so the exits of a profile erased or merged away still reach that Braze user.
CREATE TABLE export_identifiers (
    job_id     BIGINT NOT NULL,
    profile_id BIGINT NOT NULL,
    identifier TEXT   NOT NULL,
    PRIMARY KEY (job_id, profile_id)
);

-- Profiles erased on request (not merged away, not reset by a rebuild): an export may delete
-- the Braze user of an erased person.
CREATE TABLE erasures (
    account_id BIGINT NOT NULL,
    profile_id BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (account_id, profile_id)
);
