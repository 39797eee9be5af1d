ALTER TABLE space_access DROP COLUMN documents_version;
