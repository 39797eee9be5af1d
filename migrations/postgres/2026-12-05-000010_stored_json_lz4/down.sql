ALTER TABLE resources ALTER COLUMN content SET COMPRESSION default;
ALTER TABLE resource_versions ALTER COLUMN content SET COMPRESSION default;
