-- A counter per space, bumped in the same transaction as every write to the space's
-- Patient or Consents: servers cache what the access rules read of a space and
-- revalidate it with this one indexed row, which stays right across instances.
CREATE TABLE space_access (
    patient_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
