DROP TABLE space_access;
