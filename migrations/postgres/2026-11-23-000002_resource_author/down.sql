DROP TABLE resource_author;
