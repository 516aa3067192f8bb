-- Change and incident numbers come from sequences, so that concurrent requests never queue for MAX + 1.
CREATE SEQUENCE change_numbers;
SELECT setval('change_numbers', COALESCE(MAX(number), 0) + 1, false) FROM changes;
CREATE SEQUENCE incident_numbers;
SELECT setval('incident_numbers', COALESCE(MAX(number), 0) + 1, false) FROM incidents;
