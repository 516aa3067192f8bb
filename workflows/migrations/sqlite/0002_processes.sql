-- Versioned process definitions: every upload that changes one adds a version; records keep theirs.
CREATE TABLE process_definitions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    applies_to TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
