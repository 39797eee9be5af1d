DROP INDEX resource_compartment_typed;
ALTER TABLE resource_compartment DROP COLUMN doc_system;
ALTER TABLE resource_compartment DROP COLUMN doc_code;
