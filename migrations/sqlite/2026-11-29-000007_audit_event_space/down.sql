-- Compartment rows that named an event's agent are not restored.
SELECT 1;
