-- Links between incidents and changes: the change that caused an incident, the change that fixed it.
CREATE TABLE incident_changes (
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    change_id TEXT NOT NULL REFERENCES changes(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (incident_id, change_id, kind)
);
CREATE INDEX incident_changes_change ON incident_changes(change_id);
