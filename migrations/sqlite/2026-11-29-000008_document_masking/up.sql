-- Who put the current MASQUE_PS on a document (R-ACC-7, R-MHD-7): the patient's
-- masking is lifted by the patient only; a professional who masked a document (at
-- deposit, at the patient's request, or through PDSm TD3.3a) may lift their own.
-- No row: nobody but the patient unmasks.
CREATE TABLE document_masking (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk) ON DELETE CASCADE,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL
);
