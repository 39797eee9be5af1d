DROP TABLE space_lifecycle;
