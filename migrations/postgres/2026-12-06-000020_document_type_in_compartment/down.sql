ALTER TABLE resource_compartment DROP CONSTRAINT resource_compartment_pkey;
ALTER TABLE resource_compartment DROP COLUMN doc_system;
ALTER TABLE resource_compartment DROP COLUMN doc_code;
ALTER TABLE resource_compartment ADD CONSTRAINT resource_compartment_pkey
    PRIMARY KEY (patient_id, res_type, resource_pk);
