DROP TABLE document_masking;
